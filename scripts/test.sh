#!/usr/bin/env bash
# The test command: installs what is missing, configures, builds (CUDA code too when nvcc is present) and runs the
# CTest suite. Options: --sanitize (ASan+UBSan build in build-sanitize/), --no-cuda, --build-dir DIR.
# Extra arguments after -- go to ctest (e.g. -- -R grad).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0; cuda=ON; build=build
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=1; build=build-sanitize ;;
    --no-cuda) cuda=OFF ;;
    --build-dir) build="$2"; shift ;;
    --) shift; ctest_args=("$@"); break ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

scripts/bootstrap.sh
jobs=$(nproc 2>/dev/null || echo 2)
flags=(-DSWITCHC_CUDA=$cuda -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ $sanitize = 1 ]; then
  flags+=(-DSWITCHC_SANITIZE=ON -DSWITCHC_CUDA=OFF)
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
cmake -S . -B "$build" "${flags[@]}"
cmake --build "$build" -j "$jobs"
# MPI tests run as root in CI containers.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1
ctest --test-dir "$build" --output-on-failure -j "$jobs" "${ctest_args[@]}"
