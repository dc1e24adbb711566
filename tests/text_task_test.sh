#!/usr/bin/env bash
# The text path end to end with the built switchc on the committed text task (tests/fixtures/text_task, made by
# scripts/make_text_task.py): prepare JSONL text with spiece.model -> train a tiny Switch model -> eval -> generate
# text, plus raw text for span corruption and the errors a user meets first. Usage: text_task_test.sh SWITCHC SRC_DIR
set -u
bin=$1 src=$2
fx=$src/tests/fixtures/text_task
work=$(mktemp -d "${TMPDIR:-/tmp}/switchc_text_task.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
status=0
fail() { echo "FAIL: $*"; status=1; }
# run NAME CMD...: runs a command, keeps its output in NAME.out/NAME.err, and reports a non-zero exit
run() {
  local name=$1; shift
  "$@" >"$name.out" 2>"$name.err"
  local rc=$?
  if [ $rc -ne 0 ]; then fail "$name exited with $rc: $*"; sed 's/^/    /' "$name.err" | tail -5; fi
  return $rc
}
# expect_error NAME PATTERN CMD...: the command must fail with one clear line matching PATTERN on stderr
expect_error() {
  local name=$1 pattern=$2; shift 2
  if "$@" >"$name.out" 2>"$name.err"; then fail "$name: expected a non-zero exit: $*"; return; fi
  if grep -qE "$pattern" "$name.err"; then echo "ok: $name: $(head -1 "$name.err")"; else fail "$name: stderr lacks /$pattern/:"; cat "$name.err"; fi
}

# ---- prepare: JSONL text -> token datasets with the tokenizer's vocabulary (300 pieces + 100 extra ids) ----------
run prep_train "$bin" prepare --input "$fx/train.jsonl" --output train.h5 --spm "$fx/spiece.model" --max-input-len 32 --max-target-len 16 &&
  echo "ok: $(head -1 prep_train.out)" && grep -q "vocabulary 400 (300 pieces + 100 extra ids)" prep_train.out ||
  fail "prepare did not report the tokenizer's vocabulary"
run prep_val "$bin" prepare --input "$fx/validation.jsonl" --output validation.h5 --model "$fx" --max-input-len 32 --max-target-len 16 &&
  echo "ok: $(head -1 prep_val.out)"
grep -q " 2400 examples" prep_train.out || fail "prepare: expected 2400 training examples"

# bad lines: reported with their line number; stop (nothing written) or skip (counted)
printf '{"input": "sum: one plus one", "target": "two"}\n{"input": "sum: one plus\n{"input": "a", "answer": "b"}\n' >bad.jsonl
printf '{"input": "bad \xff byte", "target": "x"}\n{"input": "reverse: a b c d e f g h i j k l m", "target": "m l"}\n' >>bad.jsonl
expect_error prep_stop 'bad.jsonl:2: invalid JSON' "$bin" prepare --input bad.jsonl --output bad.h5 --spm "$fx/spiece.model"
[ -e bad.h5 ] && fail "prepare wrote a dataset although it stopped"
run prep_skip "$bin" prepare --input bad.jsonl --output bad.h5 --spm "$fx/spiece.model" --on-error skip --max-input-len 8
grep -q "2 examples.*1 truncated.*3 bad lines skipped" prep_skip.out && grep -q "bad.jsonl:3: missing field \"target\"" prep_skip.err &&
  grep -q "bad.jsonl:4: invalid UTF-8" prep_skip.err && echo "ok: skip mode: $(head -1 prep_skip.out)" || {
  fail "prepare --on-error skip:"; cat prep_skip.out prep_skip.err; }
expect_error prep_no_tokenizer 'missing.model: cannot open' "$bin" prepare --input bad.jsonl --output x.h5 --spm missing.model

# ---- train: a dataset whose vocabulary exceeds the model's is refused; then a short run that must learn -----------
cat >run.json <<EOF
{
  "data": {"task": "dataset", "train": "train.h5", "eval": "validation.h5", "tokenizer": "$fx/spiece.model",
           "max_input_len": 32, "max_target_len": 16, "eval_examples": 100},
  "optim": {"name": "adamw", "lr": 0.003},
  "schedule": {"name": "cosine", "warmup_steps": 50, "min_lr": 0.0001},
  "train": {"steps": 600, "batch_size": 32, "log_every": 50, "eval_every": 0, "ckpt_every": 0, "out_dir": "run", "seed": 7,
            "threads": 1},
  "eval": {"batch_size": 100, "max_gen_len": 12}
}
EOF
expect_error train_small_vocab "train.h5: token ids up to 400 but the model's vocab_size is 256" \
  "$bin" train --config run.json --set model.vocab_size=256 --set train.out_dir=run_small
run train "$bin" train --config run.json --set model.vocab_size=400 || { cat train.out; exit 1; }
grep -E "^(eval|held-out)" train.out | sed 's/^/    /'
first=$(grep -m1 '"train/loss"' run/metrics.jsonl | sed 's/.*"train\/loss":\([-0-9.eE+]*\).*/\1/')
last=$(grep '"train/loss"' run/metrics.jsonl | tail -1 | sed 's/.*"train\/loss":\([-0-9.eE+]*\).*/\1/')
if awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.5 * a) }'; then echo "ok: train loss $first (first logged step) -> $last (last)"
else fail "train loss did not fall by half: $first -> $last"; fi
ckpt=$(ls run/ckpt_step*.h5 2>/dev/null | tail -1)
[ -n "$ckpt" ] || { fail "no checkpoint in run/"; exit 1; }

# ---- eval on the validation set, with decoded examples (the run config records data.tokenizer) ----------------
run eval "$bin" eval --checkpoint "$ckpt" --data validation.h5 --examples 200
sed 's/^/    /' eval.out
grep -q '"examples": 200' eval.out || fail "eval did not evaluate 200 examples"
grep -q "generated:" eval.out || fail "eval printed no decoded examples"

# ---- generate: text in, text out, from the checkpoint (with --spm, and from the run config) and an HF folder ---
run gen_spm "$bin" generate --model "$ckpt" --spm "$fx/spiece.model" --input "sum: two plus three"
run gen_cfg "$bin" generate --checkpoint "$ckpt" --input "reverse: the red cat sat" --beams 2
for g in gen_spm gen_cfg; do
  if [ -s $g.out ] && grep -q '[a-z]' $g.out; then echo "ok: $g: '$(cat $g.out)'"; else fail "$g printed no text"; fi
done
run gen_ids "$bin" generate --checkpoint "$ckpt" --ids "5 6 7 1" && grep -qE '^[0-9]+( [0-9]+)*$' gen_ids.out || fail "generate --ids: $(cat gen_ids.out)"
run export_bare "$bin" export-hf --checkpoint "$ckpt" --output hf --no-tokenizer
expect_error gen_no_spiece "hf: no spiece.model" "$bin" generate --model hf --input "sum: one plus one"
# without flags, export-hf takes the tokenizer the run config recorded (data.tokenizer) into the folder
run export "$bin" export-hf --checkpoint "$ckpt" --output hf && cmp -s hf/spiece.model "$fx/spiece.model" &&
  echo "ok: export-hf copied the run's tokenizer" || fail "export-hf did not copy spiece.model from data.tokenizer"
run gen_hf "$bin" generate --model hf --input "sum: one plus one" && cmp -s gen_hf.out <("$bin" generate --model "$ckpt" --input "sum: one plus one" --spm "$fx/spiece.model") &&
  echo "ok: generate --model DIR (HF folder + spiece.model): '$(cat gen_hf.out)'" || fail "generate --model DIR differs from the checkpoint"
printf 'not a sentencepiece model' >bad.model
expect_error gen_bad_model "bad.model" "$bin" generate --model "$ckpt" --spm bad.model --input "x"

# ---- raw text (one document per line) -> an inputs-only dataset the trainer span-corrupts ------------------------
sed 's/.*"input": "\([^"]*\)".*/\1/' "$fx/train.jsonl" | head -400 >corpus.txt
run prep_text "$bin" prepare --input corpus.txt --output corpus.h5 --spm "$fx/spiece.model" --format text &&
  grep -q "400 examples (inputs only" prep_text.out && echo "ok: $(head -1 prep_text.out)" || fail "prepare --format text"
run train_span "$bin" train --config run.json --set model.vocab_size=400 --set data.train=corpus.h5 --set data.eval=corpus.h5 \
  --set train.steps=20 --set train.out_dir=run_span --set data.eval_examples=32 && echo "ok: 20 span-corruption steps on raw text"

[ $status -eq 0 ] && echo "text task: all checks passed"
exit $status
