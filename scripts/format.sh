#!/usr/bin/env bash
# Applies .clang-format to every tracked C/CUDA source (scripts/format.sh), or lists the files that differ from it
# and fails (scripts/format.sh --check). Generated tables (train/model/relpos_logf_table.h) and the CUDA emulator's
# stand-in headers are formatted too: nothing is exempt.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cu' '*.cuh')
if [ "${1:-}" = --check ]; then
  bad=0
  for f in "${files[@]}"; do
    if ! clang-format --style=file "$f" | cmp -s - "$f"; then echo "not formatted: $f"; bad=1; fi
  done
  [ $bad -eq 0 ] && echo "format: ${#files[@]} files follow .clang-format"
  exit $bad
fi
clang-format --style=file -i "${files[@]}"
