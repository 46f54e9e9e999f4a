#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, a virtualenv with the package and its
# test extras) and runs the whole suite: ruff, mypy, pytest. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v rclone >/dev/null || need_apt+=(rclone)
command -v s3cmd >/dev/null || need_apt+=(s3cmd)
# PostgreSQL server binaries (initdb, postgres): tests/pg starts its own throw-away cluster
# with them (no system service is used). Debian keeps them in /usr/lib/postgresql/*/bin.
have_pg() {
  command -v initdb >/dev/null && command -v postgres >/dev/null && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_pg || need_apt+=(postgresql)
# The market's web interface is tested in Debian's headless Chromium via its chromedriver.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# A C compiler and Python's headers build the multi-lane MD5 extension (optional for a node,
# which falls back to hashlib without it; tests/node/test_md5lanes.py requires it).
command -v gcc >/dev/null || need_apt+=(gcc)
PY=${PYTHON:-python3}
"$PY" -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
