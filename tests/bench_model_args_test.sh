#!/usr/bin/env bash
# bench_model's LoRA flags (scripts/bench_lora.py uses them): a bad value is an error, exit status 2 and one line
# naming the flag; a tiny LoRA step runs and reports its rank and the adapters' parameter count (2 Switch layers x 4
# experts x wi and wo x r 8 x (32 + 64) = 12288). Usage: bench_model_args_test.sh BENCH_MODEL SRC_DIR
set -u
bin=$1 src=$2
cfg=$src/configs/models/tiny-switch.json
status=0
fail() { echo "FAIL: $*"; status=1; }
bad() { # WANT_IN_MESSAGE ARGS...: exit 2, one stderr line naming the flag
  local want=$1
  shift
  local err
  err=$("$bin" --config "$cfg" --steps 1 --warmup 0 "$@" 2>&1 >/dev/null)
  local rc=$?
  if [ $rc -ne 2 ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || [[ "$err" != *"$want"* ]]; then
    fail "bench_model $*: rc $rc, message '$err' (want rc 2 and one line naming $want)"
  else
    echo "ok: $* -> $err"
  fi
}
bad "--lora:" --lora x
bad "--lora:" --lora 0
bad "--lora:" --lora 2.5
bad "--lora:" --lora -3
bad "--lora:" --lora inf
bad "--lora:" --lora ""
bad "--lora-alpha:" --lora 8 --lora-alpha 0
bad "--lora-alpha:" --lora 8 --lora-alpha nan
bad "--lora-alpha:" --lora 8 --lora-alpha 16x
bad "--lora-dropout:" --lora 8 --lora-dropout 1
bad "--lora-dropout:" --lora 8 --lora-dropout -0.1
out=$("$bin" --config "$cfg" --mode trainstep --batch 2 --src-len 8 --tgt-len 4 --steps 1 --warmup 0 --lora 8 2>/dev/null | tail -1)
case $out in
  *'"lora_r": 8, "trainable_params": 12288}') echo "ok: LoRA step: $out" ;;
  *) fail "LoRA step: '$out'" ;;
esac
"$bin" --config "$cfg" --steps 1 --warmup 0 --lora 8 --lora-targets nothing.here >/dev/null 2>&1 && fail "a target matching nothing ran"
exit $status
