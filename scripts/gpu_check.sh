#!/usr/bin/env bash
# One call on a GPU machine (the device tool): build with CUDA for sm_90, run the GPU tests and the GPU benchmarks,
# and print a short table last. Usage: scripts/gpu_check.sh [build-dir]   (default build-gpu)
# What exists so far: the CUDA smoke test (tests/gpu/); the op-by-op CUDA path, its tests and the HF-vs-switchc GPU
# benchmark are the open work of the GPU issue (docs/gpu.md).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
nvcc --version | tail -1
cmake -S . -B "$build" -DSWITCHC_CUDA=ON -DSWITCHC_CUDA_ARCHS="90-real;80-virtual" >/dev/null && cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" -L gpu --output-on-failure -V 2>&1 | grep -E "SKIPPED|Passed|Failed|tests passed" | tee "$build/gpu_tests.txt"
echo
echo "| check | result |"
echo "|---|---|"
echo "| build (sm_90 + compute_80 PTX) | $( [ -x "$build/switchc" ] && echo ok || echo FAILED ) |"
echo "| GPU tests | $(grep -E 'tests passed' "$build/gpu_tests.txt" | tail -1) |"
echo "| device | $("$build/switchc" --help | tail -1 | sed 's/^build: //') |"
