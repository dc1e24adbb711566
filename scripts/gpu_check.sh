#!/usr/bin/env bash
# One call on a GPU machine (the device tool): build with CUDA for sm_90 (+ compute_80 PTX), run every GPU test
# binary (tests/gpu/, CTest label "gpu") verbosely, and print a table last: one row per test case with its result,
# then the autograd tensor comparisons that failed (each prints a "gpu-compare" line with max abs/rel error).
# Usage: scripts/gpu_check.sh [build-dir]          (default build-gpu: builds on the device)
#        scripts/gpu_check.sh --bundle gpu-bundle  (binaries built here by scripts/gpu_bundle.sh, carried along:
#                                                   the device image lacks cJSON, HDF5, OpenBLAS and Criterion)
# Then the GPU benchmark (scripts/bench_gpu.py; skip with SWITCHC_GPU_BENCH=0). Logs: <build-dir>/gpu-logs/ and
# $OUT when the device tool sets it.
# SWITCHC_CUDA_SYNC=1 makes every kernel launch synchronise, so a device fault names the op that launched it.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=""
if [ "${1:-}" = "--bundle" ]; then
  bundle=${2:?--bundle needs a folder or a .tar.xz made by scripts/gpu_bundle.sh}
  if [[ $bundle == *.tar.xz ]]; then
    mkdir -p /tmp/switchc-bundle && tar -xJf "$bundle" -C /tmp/switchc-bundle
    bundle=/tmp/switchc-bundle/$(basename "$bundle" .tar.xz)
  fi
  bundle=$(cd "$bundle" && pwd)
  build="$bundle/bin"
else
  build=${1:-build-gpu}
fi
logs="${OUT:-$build}/gpu-logs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 SWITCHC_CUDA_SYNC=1
mkdir -p "$logs"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
nvcc --version | tail -1

build_ok=ok
if [ -n "$bundle" ]; then
  export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  build_ok="prebuilt by scripts/gpu_bundle.sh"
elif ! cmake -S . -B "$build" -DSWITCHC_CUDA=ON -DSWITCHC_CUDA_ARCHS="90-real;80-virtual" > "$logs/cmake.log" 2>&1; then
  build_ok="FAILED (cmake: $logs/cmake.log)"
elif ! cmake --build "$build" -j "$(nproc)" > "$logs/build.log" 2>&1; then
  build_ok="FAILED (build: $logs/build.log)"
  grep -E "error|Error" "$logs/build.log" | head -20
fi

# Every test CTest labels "gpu" (all of tests/gpu/), each binary on its own, one job, verbose: Criterion prints
# [RUN ]/[PASS]/[FAIL]/[SKIP] per test case.
rows=()
if [ -n "$bundle" ]; then names=$(cat "$bundle/tests.txt"); else names=$(ctest --test-dir "$build" -N -L gpu 2>/dev/null | sed -nE 's/^ *Test +#[0-9]+: +([^ ]+).*/\1/p'); fi
for name in $names; do
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

# The benchmark (switch-base-8 train step vs HF eager / torch.compile, MFU against a cuBLASLt bf16 GEMM): its own
# table and JSON land in $OUT; apply them here afterwards with scripts/bench_gpu.py --apply.
bench_row="skipped (SWITCHC_GPU_BENCH=0)"
if [ "${SWITCHC_GPU_BENCH:-1}" != 0 ]; then
  wheels=(); [ -d build-bench/whl ] && wheels=(--wheels build-bench/whl)
  [ -n "$bundle" ] && [ -d "$bundle/whl" ] && wheels=(--wheels "$bundle/whl")
  if python3 scripts/bench_gpu.py --build "$build" --out "${OUT:-$build/bench-gpu}" --no-doc "${wheels[@]}" \
      --time-budget "${SWITCHC_GPU_BENCH_BUDGET:-400}" > "$logs/bench_gpu.log" 2>&1; then
    bench_row="ran: see bench_gpu.json / bench_gpu_section.md in ${OUT:-$build/bench-gpu}"
  else
    bench_row="FAILED (exit $?): $logs/bench_gpu.log"
  fi
  tail -25 "$logs/bench_gpu.log"
fi

echo
echo "| check | result |"
echo "|---|---|"
echo "| device | $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo none) |"
echo "| build (sm_90 + compute_80 PTX) | $build_ok |"
echo "| switchc sees | $("$build/switchc" --help 2>/dev/null | tail -1 | sed 's/^build: //') |"
for r in "${rows[@]}"; do echo "| ${r%%|*} | ${r##*|} |"; done
n_cmp=$(cat "$logs"/test_*.log 2>/dev/null | grep -c "^gpu-compare")
n_bad=$(cat "$logs"/test_*.log 2>/dev/null | grep "^gpu-compare" | grep -c "FAIL$")
echo "| benchmark | $bench_row |"
echo "| tensor comparisons | $n_cmp, of which $n_bad outside tolerance |"
if [ "$n_bad" -gt 0 ]; then
  echo
  echo "comparisons outside tolerance (first 30):"
  cat "$logs"/test_*.log | grep "^gpu-compare" | grep "FAIL$" | head -30
fi
