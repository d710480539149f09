#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with Python 3.11:
# installs DCMTK (the real DICOM peers the tests talk to), openssl, and the package with its test
# extras into .venv, then runs ruff, mypy --strict and pytest.  Used by README and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
dpkg -s dcmtk >/dev/null 2>&1 || need_apt+=(dcmtk)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # the TLS tests make their PKI
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

export PATH="$PWD/.venv/bin:$PATH"
ruff check xvactor tests benchmarks
ruff format --check xvactor tests benchmarks
mypy
exec python -m pytest "$@"
