#!/usr/bin/env bash
# Installs the Debian packages and starts the services the test suite needs, when missing.
# Idempotent: safe to run on a machine that already has everything.
set -euo pipefail

need_pkgs=()
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v setpriv >/dev/null 2>&1 || need_pkgs+=(util-linux)
# The helper tests serve mTLS with a real nginx (test/agent/helper.test.ts).
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need_pkgs+=(nginx)
# systemd-analyze verifies the units in deploy/systemd (test/deploy/systemd.test.ts).
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
# SoftHSM2 is the real PKCS#11 token the pkcs11 key manager tests use (test/ca/key-manager/pkcs11-*.test.ts).
{ command -v softhsm2-util >/dev/null 2>&1 && [ -e /usr/lib/softhsm/libsofthsm2.so ]; } || need_pkgs+=(softhsm2)
# PyJWT is one of the independent relying parties of the OIDC tests (test/oidc/relying-parties.test.ts).
/usr/bin/python3 -c 'import jwt, cryptography' >/dev/null 2>&1 || need_pkgs+=(python3-jwt python3-cryptography)  # Debian's python3, not a pyenv one
# pebble (with pebble-challtestsrv) is the ACME test server of test/server/federation/acme.test.ts and test/oidc/acme.test.ts.
command -v pebble >/dev/null 2>&1 || need_pkgs+=(pebble)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "ci-prepare: installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# PostgreSQL at 127.0.0.1:5432 with a `test` database (test/datastore/postgres.test.ts, which fails without it).
if command -v pg_isready >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "ci-prepare: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || echo "ci-prepare: PostgreSQL did not start" >&2
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>/dev/null | grep -q 1; then
    createdb -h 127.0.0.1 -U postgres test || echo "ci-prepare: cannot create the test database" >&2
  fi
else
  echo "ci-prepare: PostgreSQL is not installed; test/datastore/postgres.test.ts will fail" >&2
fi
echo "ci-prepare: node $(node --version), $(openssl version)"
