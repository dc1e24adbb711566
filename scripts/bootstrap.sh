#!/usr/bin/env bash
# Installs what switchc needs to build and test, from Debian's packages. Idempotent: installs only what is missing.
# Not root: prints the exact command to run instead. The CUDA toolkit (nvcc, cuBLAS, cuDNN, NCCL) is not installed
# here: the build uses it when present and builds without it otherwise (-DSWITCHC_CUDA=OFF).
set -euo pipefail

PKGS=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev libcjson-dev libcriterion-dev
      libopenblas-dev)
# Optional extras: clang and its sanitizer runtime for the fuzz targets (scripts/fuzz.sh).
[ "${SWITCHC_WITH_FUZZ:-0}" = 1 ] && PKGS+=(clang libclang-rt-14-dev)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The Python side (scripts only): the pinned requirements, installed when they are not all present at those
# versions. Never fatal: the C build and tests do not need Python.
python_reqs() {
  [ "${SWITCHC_NO_PYTHON:-0}" = 1 ] && return 0
  command -v python3 >/dev/null || { echo "bootstrap: no python3: the scripts/ tools will not run (the build does not need it)"; return 0; }
  local req; req="$(dirname "$0")/requirements.txt"
  if python3 - "$req" <<'PY' 2>/dev/null; then echo "bootstrap: Python requirements present"; return 0; fi
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, want = line.split("==")
        if version(name) != want:
            sys.exit(1)
PY
  echo "bootstrap: installing the Python requirements ($req) for scripts/"
  python3 -m pip install -q -r "$req" </dev/null || echo "bootstrap: pip install -r $req failed: the scripts/ tools may not run (the build does not need them)"
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#PKGS[@]} packages present"
  python_reqs
  exit 0
fi
echo "bootstrap: missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else
    echo "bootstrap: not root; install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
echo "bootstrap: installed ${missing[*]}"
python_reqs
