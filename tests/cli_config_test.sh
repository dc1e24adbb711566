#!/usr/bin/env bash
# The run config as the CLI builds it: the demo's tuned values only without --config/--init-from, Hugging Face
# Trainer's defaults otherwise, --set model.* over an --init-from folder's config.json (as from_pretrained(dir,
# key=value)), and freeze patterns that match nothing. Usage: cli_config_test.sh SWITCHC SRC_DIR
set -u
bin=$1 src=$2
hf=$src/tests/fixtures/finetune/model
work=$(mktemp -d "${TMPDIR:-/tmp}/switchc_cli_config.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
status=0
fail() { echo "FAIL: $*"; status=1; }
# key FILE SECTION KEY: a value of a printed config
key() { grep -A200 "\"$2\":" "$1" | grep -m1 "\"$3\":" | sed 's/.*:[[:space:]]*//; s/,$//; s/"//g'; }
expect() { # NAME GOT WANT
  if [ "$2" = "$3" ]; then echo "ok: $1 = $2"; else fail "$1: got '$2', want '$3'"; fi
}

"$bin" train --print-config >demo.json || fail "print-config (demo)"
expect "demo optim.lr" "$(key demo.json optim lr)" "0.003"
expect "demo schedule.name" "$(key demo.json schedule name)" "cosine"
echo '{"train": {"steps": 5}}' >run.json
"$bin" train --config run.json --print-config >lib.json || fail "print-config (--config)"
expect "--config optim.lr" "$(key lib.json optim lr)" "5e-05"
expect "--config optim.beta2" "$(key lib.json optim beta2)" "0.999"
expect "--config schedule.name" "$(key lib.json schedule name)" "linear_decay"
expect "--config schedule.warmup_steps" "$(key lib.json schedule warmup_steps)" "0"
# --set wins over --config on either side of it (scripts/launch_mpirun.sh puts its --set before the caller's --config)
"$bin" train --set train.steps=7 --config run.json --set optim.lr=1e-3 --print-config >order.json || fail "print-config (--set --config)"
expect "--set train.steps before --config" "$(key order.json train steps)" "7"
expect "--set optim.lr after --config" "$(key order.json optim lr)" "0.001"

# --init-from an HF folder: its config.json is the model, and --set model.* applies over it (before or after the flag)
"$bin" train --set model.expert_capacity=2 --init-from "$hf" --set model.dropout_rate=0.25 --print-config >init.json ||
  fail "print-config (--init-from)"
grep -qE '"expert_capacity":[[:space:]]*2,' init.json && echo "ok: --set model.expert_capacity over --init-from" ||
  fail "--set model.expert_capacity=2 lost under --init-from: $(grep expert_capacity init.json)"
grep -qE '"dropout_rate":[[:space:]]*0.25,' init.json && echo "ok: --set model.dropout_rate over --init-from" ||
  fail "--set model.dropout_rate=0.25 lost under --init-from: $(grep dropout_rate init.json)"
grep -qE '"num_experts":[[:space:]]*8,' init.json && echo "ok: the folder's num_experts" || fail "the folder's config.json was not used"

# a freeze pattern that matches nothing is an error naming it
if "$bin" train --set train.steps=1 --set train.freeze='encoder.blok.*' --set train.out_dir=frz >frz.out 2>frz.err; then
  fail "train.freeze=encoder.blok.* trained"
elif grep -q "encoder.blok" frz.err; then echo "ok: $(head -1 frz.err)"; else fail "no pattern in: $(cat frz.err)"; fi
exit $status
