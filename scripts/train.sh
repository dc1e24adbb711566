#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs `switchc train` on its built-in default (a tiny Switch
# Transformer learning a synthetic seq2seq task on the CPU). Arguments go to `switchc train`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target switchc
# the demo replaces its run directory (runs/default) each time: --overwrite
exec build/switchc train --overwrite "$@"
