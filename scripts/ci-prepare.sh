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
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "ci-prepare: installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
echo "ci-prepare: node $(node --version), $(openssl version)"
