#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 600) with the test
# fixtures (and fuzz/seeds/<format>/) as the seed corpus and fuzz/<format>.dict as the dictionary when there is one.
# Usage: scripts/fuzz.sh [SECONDS] [target ...]   (targets: fuzz_safetensors fuzz_torchbin fuzz_spm fuzz_config
# fuzz_ckpt)
# SWITCHC_FUZZ_BUILD names the build folder (default build-fuzz).
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
secs=${1:-600}; shift || true
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} # HDF5 leaks on its own error paths; LSan at exit would report them
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_torchbin fuzz_spm)
SWITCHC_WITH_FUZZ=1 scripts/bootstrap.sh
build=${SWITCHC_FUZZ_BUILD:-build-fuzz}
cmake -S . -B "$build" -DSWITCHC_FUZZ=ON -DSWITCHC_CUDA=OFF -DSWITCHC_MPI=OFF -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
for t in "${targets[@]}"; do
  corpus=$build/corpus_$t; mkdir -p "$corpus"
  case $t in
    fuzz_safetensors) seeds=(tests/fixtures/hf/safetensors/model.safetensors tests/fixtures/hf/sharded/*.safetensors) ;;
    fuzz_torchbin)
      seeds=(tests/fixtures/hf/bin_*/pytorch_model.bin tests/fixtures/hf/bad/*.bin fuzz/seeds/torchbin/*.bin) ;;
    fuzz_spm) seeds=(tests/fixtures/spm/*.model tests/fixtures/spm/bad/*) ;;
    fuzz_config) seeds=(configs/models/*.json configs/runs/*.json tests/fixtures/hf/*/config.json) ;;
    fuzz_ckpt) seeds=(fuzz/seeds/ckpt/*.h5 tests/fixtures/hf/reference.h5) ;; # a real checkpoint (train, 1 step, d_model 8)
  esac
  i=0; for f in "${seeds[@]}"; do cp -f "$f" "$corpus/seed_$i"; i=$((i + 1)); done
  # the format's tokens, when there is a dictionary (fuzz/torchbin.dict)
  dict=(); [ -f "fuzz/${t#fuzz_}.dict" ] && dict=(-dict="fuzz/${t#fuzz_}.dict")
  # inputs as long as the largest seed (libFuzzer's default cap is 4096 bytes: a checkpoint is ~127 KB)
  maxlen=4096; for f in "${seeds[@]}"; do n=$(stat -c %s "$f"); [ "$n" -gt "$maxlen" ] && maxlen=$n; done
  echo "fuzz: $t for ${secs}s"
  # the whole log stays in $build/$t.log; shown: the last status line (coverage, corpus) and the final stats
  "$build/$t" "$corpus" "${dict[@]}" -max_len="$maxlen" -max_total_time="$secs" -rss_limit_mb=4096 -detect_leaks=0 -artifact_prefix="$build/${t}_" \
    -print_final_stats=1 \
    > "$build/$t.log" 2>&1 || { tail -60 "$build/$t.log"; exit 1; }
  grep -E '^#[0-9]+' "$build/$t.log" | tail -1
  tail -8 "$build/$t.log"
done
