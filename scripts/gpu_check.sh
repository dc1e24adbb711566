#!/usr/bin/env bash
# One call on a GPU machine (the device tool): build with CUDA for sm_90 (+ compute_80 PTX), run every GPU test
# binary (tests/gpu/, CTest label "gpu") verbosely, and print a table last: one row per test case with its result,
# then the autograd tensor comparisons that failed (each prints a "gpu-compare" line with max abs/rel error).
# Usage: scripts/gpu_check.sh [build-dir]   (default build-gpu). Full logs: <build-dir>/gpu-logs/.
# SWITCHC_CUDA_SYNC=1 makes every kernel launch synchronise, so a device fault names the op that launched it.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
logs="$build/gpu-logs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 SWITCHC_CUDA_SYNC=1
mkdir -p "$logs"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
nvcc --version | tail -1

build_ok=ok
if ! cmake -S . -B "$build" -DSWITCHC_CUDA=ON -DSWITCHC_CUDA_ARCHS="90-real;80-virtual" > "$logs/cmake.log" 2>&1; then
  build_ok="FAILED (cmake: $logs/cmake.log)"
elif ! cmake --build "$build" -j "$(nproc)" > "$logs/build.log" 2>&1; then
  build_ok="FAILED (build: $logs/build.log)"
  grep -E "error|Error" "$logs/build.log" | head -20
fi

# Every test CTest labels "gpu" (all of tests/gpu/), each binary on its own, one job, verbose: Criterion prints
# [RUN ]/[PASS]/[FAIL]/[SKIP] per test case.
rows=()
for name in $(ctest --test-dir "$build" -N -L gpu 2>/dev/null | sed -nE 's/^ *Test +#[0-9]+: +([^ ]+).*/\1/p'); do
  t="$build/$name"
  [ -x "$t" ] || { rows+=("$name|NOT BUILT"); continue; }
  timeout 600 "$t" --verbose --jobs 1 --ascii > "$logs/$name.log" 2>&1
  rc=$?
  echo "== $name (exit $rc)"
  grep -E "^\[(FAIL|SKIP)\]|CRASH|fatal|CUDA error|cuBLAS error" "$logs/$name.log" | head -40
  while IFS= read -r line; do rows+=("$line"); done < <(
    grep -E "^\[(PASS|FAIL|SKIP)\]" "$logs/$name.log" | sed -E 's/^\[(PASS|FAIL|SKIP)\] ([^:]+::[^: ]+).*/\2|\1/' | sort -u)
  [ $rc -ne 0 ] && [ $rc -ne 1 ] && rows+=("$name (whole binary)|exit $rc")
done

echo
echo "| check | result |"
echo "|---|---|"
echo "| device | $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo none) |"
echo "| build (sm_90 + compute_80 PTX) | $build_ok |"
echo "| switchc sees | $("$build/switchc" --help 2>/dev/null | tail -1 | sed 's/^build: //') |"
for r in "${rows[@]}"; do echo "| ${r%%|*} | ${r##*|} |"; done
n_cmp=$(cat "$logs"/test_*.log 2>/dev/null | grep -c "^gpu-compare")
n_bad=$(cat "$logs"/test_*.log 2>/dev/null | grep "^gpu-compare" | grep -c "FAIL$")
echo "| tensor comparisons | $n_cmp, of which $n_bad outside tolerance |"
if [ "$n_bad" -gt 0 ]; then
  echo
  echo "comparisons outside tolerance (first 30):"
  cat "$logs"/test_*.log | grep "^gpu-compare" | grep "FAIL$" | head -30
fi
