#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 600) with the test
# fixtures as the seed corpus. Usage: scripts/fuzz.sh [SECONDS] [target ...]   (targets: fuzz_safetensors fuzz_torchbin)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_torchbin)
SWITCHC_WITH_FUZZ=1 scripts/bootstrap.sh
cmake -S . -B build-fuzz -DSWITCHC_FUZZ=ON -DSWITCHC_CUDA=OFF -DSWITCHC_MPI=OFF -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}"
for t in "${targets[@]}"; do
  corpus=build-fuzz/corpus_$t; mkdir -p "$corpus"
  case $t in
    fuzz_safetensors) seeds=(tests/fixtures/hf/safetensors/model.safetensors tests/fixtures/hf/sharded/*.safetensors) ;;
    fuzz_torchbin) seeds=(tests/fixtures/hf/bin_*/pytorch_model.bin tests/fixtures/hf/bad/*.bin) ;;
  esac
  i=0; for f in "${seeds[@]}"; do cp -f "$f" "$corpus/seed_$i"; i=$((i + 1)); done
  echo "fuzz: $t for ${secs}s"
  build-fuzz/$t "$corpus" -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tail -12
done
