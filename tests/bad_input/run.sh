#!/usr/bin/env bash
# The bad-input suite: every case of tests/bad_input/cases.txt runs the given switchc on a bad (or legitimately
# fine) input made here at run time, and must exit as the table says, with no signal, hang or sanitizer report, and
# with stderr naming the file, key, flag or line (the case's pattern). Works on the sanitizer build too.
#
# Usage: run.sh SWITCHC SRC_DIR [NAME_REGEX]   (NAME_REGEX: run only the matching cases)
# Cases that need python3 (crafted weight files, damaged checkpoints) or a small tmpfs (disk full; root only) are
# reported as SKIP when those are missing.
set -u
bin=$(realpath "$1") src=$(realpath "$2") only=${3:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/switchc_bad_input.XXXXXX")
full=$work/full
mounted=0
cleanup() {
  [ $mounted -eq 1 ] && umount "$full" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1
export B=$bin FX=$src/tests/fixtures TT=$src/tests/fixtures/text_task HERE=$src/tests/bad_input
export W=$work CR=$work/craft FULL=$full
# a smaller model for the cases that run big batches (a sanitizer build is slow)
export TINY="--set model.d_model=8 --set model.d_ff=8 --set model.d_kv=4 --set model.num_heads=2"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
t0=$(date +%s)

# ---- inputs shared by the cases ---------------------------------------------------------------------------------
setup_fail() { echo "FAIL: setup: $*"; exit 1; }
# a tiny run (the built-in model: vocab 16) and its checkpoint, an HF folder exported from it
"$B" train --set train.steps=2 --set train.out_dir=run --set train.eval_every=0 --set data.eval_examples=8 \
  --set train.log_every=1 >setup_train.out 2>&1 || { cat setup_train.out; setup_fail "train"; }
export CK=$work/run/ckpt_step00000002.h5
"$B" export-hf --checkpoint "$CK" --output hf --no-tokenizer >/dev/null 2>&1 || setup_fail "export-hf"
export HF=$work/hf
# token-id datasets for the tiny model (vocab 16), and the text task's validation set (vocab 400)
printf '{"input": [5, 6, 7], "target": [7, 6, 5]}\n{"input": [8, 9], "target": [9, 8]}\n' >ids16.jsonl
printf '{"input": [3, 4, 5, 6], "target": [6, 5, 4, 3]}\n' >>ids16.jsonl
"$B" prepare --input ids16.jsonl --output ids16.h5 --vocab-size 16 >/dev/null 2>&1 || setup_fail "prepare ids16"
"$B" prepare --input "$TT/validation.jsonl" --output val400.h5 --spm "$TT/spiece.model" --max-input-len 32 \
  --max-target-len 16 >/dev/null 2>&1 || setup_fail "prepare val400"
# shapes every case can use
mkdir -p emptydir nodir_parent
mkfifo fifo
printf 'not json' >notjson.json
printf '{"input_ids": [[5, 6, 1]], "attention_mask": [[1, 1, 1]], "labels": [[7, 1]]}' >batch_ok.json
have_py=0
if command -v python3 >/dev/null 2>&1; then
  python3 "$HERE/make_files.py" craft "$CR" "$FX/hf" || setup_fail "make_files.py craft"
  for f in 0.25 0.5 0.75; do python3 "$HERE/make_files.py" flip "$CK" "flip_$f.h5" $f 16 || setup_fail "flip"; done
  python3 "$HERE/make_files.py" flip "$CK" flip_head.h5 0.002 64 || setup_fail "flip"
  have_py=1
fi
# a 200 KiB tmpfs for the disk-full cases (root only)
mkdir -p "$full"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=200k tmpfs "$full" 2>/dev/null; then mounted=1; fi

# ---- the cases ----------------------------------------------------------------------------------------------------
shared=(ids16.jsonl ids16.h5 val400.h5 fifo emptydir batch_ok.json notjson.json)
[ $have_py -eq 1 ] && shared+=(flip_0.25.h5 flip_0.5.h5 flip_0.75.h5 flip_head.h5)
shared_paths=("${shared[@]/#/$work/}")
sanitizer_re='ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|SUMMARY: UndefinedBehaviorSanitizer'
sanitizer_re+='|switchc: fatal|Segmentation fault'
# trim VAR: strips the spaces around a field in place (no subshell: the table is read quickly)
trim() { local v=${!1}; v=${v#"${v%%[![:space:]]*}"}; v=${v%"${v##*[![:space:]]}"}; printf -v "$1" %s "$v"; }
n=0 pass=0 failed=0 skipped=0 times=()
while IFS= read -r line; do
  case $line in '' | '#'*) continue ;; esac
  # a line ending in " \" continues on the next (so the table stays 120 columns wide): joined with one space
  while [[ $line == *' \' ]] && IFS= read -r more; do
    more=${more#"${more%%[![:space:]]*}"}
    line="${line% \\} $more"
  done
  name=${line%%' :: '*}; rest=${line#*' :: '}
  expect=${rest%%' :: '*}; rest=${rest#*' :: '}
  pattern=${rest%%' :: '*}; cmd=${rest#*' :: '}
  trim name; trim expect; trim pattern; trim cmd
  [ -n "$only" ] && ! [[ $name =~ $only ]] && continue
  n=$((n + 1))
  if { [[ $cmd == *'$CR'* || $cmd == *flip_* || $cmd == *python3* ]] && [ $have_py -eq 0 ]; } ||
    { [[ $cmd == *'$FULL'* ]] && [ $mounted -eq 0 ]; }; then
    echo "SKIP: $name (needs $([ $have_py -eq 0 ] && echo python3 || echo 'a tmpfs (root)'))"
    skipped=$((skipped + 1))
    continue
  fi
  # each case in a folder of its own, with the shared inputs linked in
  [[ $cmd == *'$FULL'* ]] && rm -rf "${full:?}"/*
  dir=$work/cases/$name
  mkdir -p "$dir" && cd "$dir" && ln -s "${shared_paths[@]}" . || exit 1
  c0=${EPOCHREALTIME/./}
  timeout 120 bash -c "$cmd" >"$work/case.out" 2>"$work/case.err" </dev/null
  rc=$?
  ms=$(((${EPOCHREALTIME/./} - c0) / 1000))
  times+=("$ms $name")
  cd "$work" || exit 1
  why=""
  if [ $rc -eq 124 ]; then why="timed out (a hang?)"
  elif [ $rc -ge 128 ]; then why="killed by signal $((rc - 128))"
  elif grep -qE "$sanitizer_re" "$work/case.err"; then why="sanitizer report or fatal error"
  elif [ "$expect" = fail ] && [ $rc -eq 0 ]; then why="exit 0, expected a failure"
  elif [ "$expect" = ok ] && [ $rc -ne 0 ]; then why="exit $rc, expected success"
  elif [ "$expect" = fail ] && ! grep -qE -- "$pattern" "$work/case.err"; then why="stderr lacks /$pattern/"
  elif [ "$expect" = ok ] && ! cat "$work/case.out" "$work/case.err" | grep -qE -- "$pattern"; then
    why="output lacks /$pattern/"
  fi
  if [ -z "$why" ]; then
    pass=$((pass + 1))
    echo "ok: $name: $(grep -vE '^\s*$' "$work/case.err" | tail -1 | cut -c1-160)"
  else
    failed=$((failed + 1))
    echo "FAIL: $name: $why"
    echo "    command: $cmd"
    sed 's/^/    stderr: /' "$work/case.err" | tail -8
  fi
done <"$HERE/cases.txt"
printf '%s\n' "${times[@]}" | sort -rn | head -5 | awk '{printf "slowest: %s %.1f s\n", $2, $1 / 1000}'
echo "bad_input: $n cases, $pass passed, $failed failed, $skipped skipped ($(($(date +%s) - t0)) s)"
[ $failed -eq 0 ]
