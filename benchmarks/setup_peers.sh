#!/usr/bin/env bash
# Install the peers the benchmark compares against, each in its own virtual environment so
# their dependencies never touch the project's .venv. Idempotent: a second run only checks.
#
#   benchmarks/.peers/client      python3.11: aiohttp + botocore (the one benchmark client), py-spy
#   benchmarks/.peers/moto        python3.11: moto[server]
#   benchmarks/.peers/localstack  python 3.13 (pyenv): localstack-core[runtime], PEERS.md pins
#   nginx, wrk                    Debian packages (apt-get)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
peers="$here/.peers"
mkdir -p "$peers"

log() { printf '== %s\n' "$*"; }

# make_venv DIR PYTHON: create DIR with PYTHON unless it already holds a working interpreter.
make_venv() {
  local dir=$1 python=$2
  if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c 'import sys' 2>/dev/null; then
    log "creating $dir with $python"
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/pip" install --quiet --upgrade pip
  fi
}

# find_python MINOR...: the first pyenv (or PATH) interpreter of one of the given 3.x versions.
find_python() {
  local v cand root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for v in "$@"; do
    for cand in "$root"/versions/3."$v".*/bin/python3."$v" "$(command -v python3."$v" || true)"; do
      if [ -n "$cand" ] && [ -x "$cand" ]; then
        echo "$cand"
        return 0
      fi
    done
  done
  return 1
}

py311=$(find_python 11) || { echo "python3.11 not found" >&2; exit 1; }

# --- client -------------------------------------------------------------------------------
make_venv "$peers/client" "$py311"
if ! "$peers/client/bin/python" -c 'import aiohttp, botocore' 2>/dev/null \
    || [ ! -x "$peers/client/bin/py-spy" ]; then
  log "installing the client libraries"
  "$peers/client/bin/pip" install --quiet aiohttp botocore py-spy
fi

# --- moto ---------------------------------------------------------------------------------
make_venv "$peers/moto" "$py311"
if [ ! -x "$peers/moto/bin/moto_server" ]; then
  log "installing moto[server]"
  "$peers/moto/bin/pip" install --quiet "moto[server]"
fi

# --- LocalStack ---------------------------------------------------------------------------
# Its newest release needs Python >= 3.12; these pins keep it importable (see PEERS.md).
py_ls=$(find_python 13 12) || { echo "python 3.12 or 3.13 not found (pyenv versions)" >&2; exit 1; }
make_venv "$peers/localstack" "$py_ls"
# The [runtime] extra brings the gateway (twisted) and the service providers.
if ! "$peers/localstack/bin/python" -c 'import twisted, localstack.services.s3.provider' \
    2>/dev/null; then
  log "installing localstack-core[runtime] (takes a few minutes)"
  "$peers/localstack/bin/pip" install --quiet "localstack-core[runtime]" \
    "cbor2<6" "pyopenssl<25" "cryptography<45" service_identity
fi

# --- nginx, wrk ---------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  # The Debian nginx package starts a system-wide nginx on 0.0.0.0:80 via its postinst;
  # policy-rc.d forbids that so only the benchmark's own loopback nginx ever runs.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ $created_policy = 1 ] && rm -f "$policy"
fi

log "versions"
"$peers/client/bin/python" -c 'import aiohttp, botocore; print("client: aiohttp", aiohttp.__version__, "botocore", botocore.__version__)'
"$peers/moto/bin/python" -c 'import moto; print("moto", moto.__version__)'
"$peers/localstack/bin/python" -c 'import importlib.metadata as m; print("localstack-core", m.version("localstack-core"))'
{ command -v nginx >/dev/null && nginx -v; } 2>&1 || /usr/sbin/nginx -v 2>&1
wrk --version 2>&1 | head -1 || true
log "peers ready"
