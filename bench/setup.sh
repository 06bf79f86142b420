#!/bin/sh
# Bench-only setup: installs cfssl (Debian golang-cfssl) for benchmark 2's floor, with
# `apt-get update` once and then `apt-get install -y golang-cfssl`.
# CI does not run benchmarks, so this is not part of scripts/ci-prepare.sh.
# Exits 0 when cfssl is available afterwards, non-zero (with the reason on stderr) otherwise.
set -u
if command -v cfssl >/dev/null 2>&1; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "bench/setup.sh: cfssl missing and not root (no passwordless sudo): cannot apt-get install golang-cfssl" >&2
    exit 2
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "bench/setup.sh: cfssl missing and apt-get not available" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update >/dev/null 2>&1 || { echo "bench/setup.sh: apt-get update failed" >&2; exit 3; }
$SUDO apt-get install -y --no-install-recommends golang-cfssl >/dev/null 2>&1 || { echo "bench/setup.sh: apt-get install -y golang-cfssl failed" >&2; exit 3; }
command -v cfssl >/dev/null 2>&1 || { echo "bench/setup.sh: golang-cfssl installed but no cfssl on PATH" >&2; exit 4; }
