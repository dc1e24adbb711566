#!/usr/bin/env bash
# Every command of README.md runs as written. The commands are read from the README's ```sh blocks at run time
# (backslash continuations joined, comment lines and trailing "  # ..." comments dropped), so a new README section is
# covered without editing this file. They run in README order in one scratch directory (mktemp -d) that holds a copy
# of configs/ and scripts/ and build/switchc (a link to the switchc under test), so relative paths resolve and nothing
# is written to the source tree. Usage: readme_test.sh SWITCHC SRC_DIR
#
#   runs:     build/switchc ... (as SWITCHC), scripts/..., python3 ..., and plain file commands (cp, mkdir, ...)
#   skips:    (printed as "SKIPPED: <command> (reason)", never silently) downloads, Slurm, GPUs, NCCL, cmake/ctest and
#             scripts/test.sh/train.sh (they build; this test runs inside that build), torch/transformers Python
#             without torch+transformers, mpirun commands without mpirun or an MPI build
#   asserts:  exit 0; a command whose trailing comment starts with "# error" or "# fails" must exit non-zero;
#             scripts/launch_mpirun.sh N E must report N ranks with expert parallelism E
#
# The README assumes a downloaded google/switch-base-8 and the user's own data. The substitutions below stand in for
# them; each one applied is printed ("substitution: ..."). Keep the table short: one that hides a README error is a bug.
#   files the README assumes exist (made here, from tests/fixtures/text_task):
#     switch-base-8/       a tiny HF folder: the tiny model (8 experts, as switch-base-8) trained 20 steps on the text
#                          task, written by switchc export-hf with the fixture's spiece.model
#     spiece.model         the fixture's tokenizer       train.jsonl, dev.jsonl  its training / validation JSONL
#     dev.tsv              the validation set as TSV     corpus.txt              the training inputs, one per line
#     my_run.json          a small run config of the built-in tiny model (20 steps, train.out_dir runs/my_run)
#     data/my_task_train.h5, data/my_task_eval.h5   the placeholder datasets of configs/runs/finetune-switch-base-8.json
#   appended to a command (never replacing what it says):
#     --set train.steps=8                   a training run longer than 100 steps (time)
#     --set train.batch_size=16 [--set train.micro_batch_size=8]   a batch above 32 (time; accumulation kept)
#     --set model.<shape key>=...           --init-from switch-base-8/ with a --config whose model is the real
#                                           switch-base-8: the shape keys of the tiny folder's config.json
#     --overwrite                           a fresh run into a run directory that a command of an earlier README
#                                           section, or the alternative ("# ... or ...") before it, already wrote
#   replaced in a command:
#     DIR/ckpt_stepNNNNNNNN.h5              the newest checkpoint in DIR, when the command that wrote DIR was shortened
#                                           by --set train.steps and NNNNNNNN is the step count it had as written
#     the grid of scripts/sweep.py          its scratch copy with train.steps=10, data.eval_examples=32, the first seed
#   environment: OMPI_MCA_rmaps_base_oversubscribe=1 and btl_vader_single_copy_mechanism=none (8 ranks on 2 cores in a
#     container), HF_HUB_OFFLINE=1 (no network), OPENBLAS_NUM_THREADS=1 unless set
set -u
bin=$(readlink -f "$1") src=$(cd "$2" && pwd)
fx=$src/tests/fixtures/text_task
readme=$src/README.md
work=$(mktemp -d "${TMPDIR:-/tmp}/switchc_readme.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
mkdir _log build
log=$work/_log
ln -s "$bin" build/switchc
cp -r "$src/configs" "$src/scripts" .
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
qbin=$(printf %q "$bin")
ran=0 skipped=0 failed=0 t0=$SECONDS
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
subst() { echo "  substitution: $*"; }

# ---- the commands: SECTION<TAB>TITLE<TAB>ALTERNATIVE<TAB>EXPECT_ERROR<TAB>COMMAND, one per line -------------------
awk '
function strip(s,   i, c, q) {   # cut an unquoted "#" that follows a blank (a shell comment); tc: the comment
  q = ""; tc = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (q != "") { if (c == q) q = ""; continue }
    if (c == "\"" || c == "\047") q = c
    else if (c == "#" && (i == 1 || substr(s, i - 1, 1) ~ /[ \t]/)) { tc = substr(s, i); return substr(s, 1, i - 1) }
  }
  return s
}
/^## / { sec++; title = substr($0, 4); next }
/^```sh[ \t]*$/ { blk = 1; cont = ""; pending = ""; next }
/^```/ { blk = 0; next }
!blk { next }
{
  line = $0
  if (cont == "" && line ~ /^[ \t]*#/) { if (pending == "") pending = line; next }
  if (cont == "" && line ~ /^[ \t]*$/) next
  s = strip(line); sub(/[ \t]+$/, "", s)
  if (cont != "") sub(/^[ \t]+/, "", s)
  if (s ~ /\\$/) { sub(/[ \t]*\\$/, "", s); cont = cont s " "; next }
  cmd = cont s; cont = ""
  alt = (pending ~ /^[ \t]*#[ \t]*([0-9]+[a-z]?\.)?[ \t]*or[ \t]/) ? 1 : 0
  err = (tc ~ /^#[ \t]*(error|fails)/) ? 1 : 0
  printf "%d\t%s\t%d\t%d\t%s\n", sec, title, alt, err, cmd
  pending = ""
}' "$readme" >_log/commands.tsv
[ -s _log/commands.tsv ] || { echo "FAIL: no commands found in $readme's sh blocks"; exit 1; }
echo "README.md: $(wc -l <_log/commands.tsv) commands in sh blocks"

# ---- the files the README assumes exist -----------------------------------------------------------------------
setup() { "$@" >>_log/setup.out 2>>_log/setup.err || { echo "FAIL: fixture set-up: $*"; tail -5 _log/setup.err; exit 1; }; }
cp "$fx/spiece.model" spiece.model
cp "$fx/train.jsonl" train.jsonl
cp "$fx/validation.jsonl" dev.jsonl
sed -E 's/^\{"input": "(.*)", "target": "(.*)"\}$/\1\t\2/' "$fx/validation.jsonl" >dev.tsv
sed -E 's/^\{"input": "(.*)", "target": .*$/\1/' "$fx/train.jsonl" >corpus.txt
echo '{"train": {"steps": 20, "out_dir": "runs/my_run"}}' >my_run.json
mkdir -p _fixture data
setup "$bin" prepare --input train.jsonl --output _fixture/train.h5 --spm spiece.model --max-input-len 32 --max-target-len 16
cat >_fixture/tiny.json <<EOF
{"data": {"task": "dataset", "train": "_fixture/train.h5", "eval": "_fixture/train.h5", "tokenizer": "spiece.model",
          "max_input_len": 32, "max_target_len": 16, "eval_examples": 32},
 "optim": {"name": "adamw", "lr": 0.003},
 "train": {"steps": 20, "batch_size": 16, "log_every": 10, "eval_every": 0, "ckpt_every": 0, "out_dir": "_fixture/run"}}
EOF
setup "$bin" train --config _fixture/tiny.json --set model.vocab_size=400 --set model.num_experts=8
setup "$bin" export-hf --checkpoint _fixture/run/ckpt_step00000020.h5 --output switch-base-8 --tokenizer spiece.model
setup "$bin" prepare --input train.jsonl --output data/my_task_train.h5 --spm spiece.model
setup "$bin" prepare --input dev.jsonl --output data/my_task_eval.h5 --spm spiece.model
echo "fixtures: switch-base-8/ = a tiny HF folder (config.json, model.safetensors, spiece.model; 8 experts, vocab 400)"
echo "fixtures: spiece.model train.jsonl dev.jsonl dev.tsv corpus.txt <- tests/fixtures/text_task; my_run.json = $(cat my_run.json)"
echo "fixtures: data/my_task_train.h5 data/my_task_eval.h5 (placeholders of configs/runs/finetune-switch-base-8.json) <- train.jsonl, dev.jsonl"
# --set model.KEY=V for the shape keys of the tiny folder (the sparse-layer counts before the layer counts they must fit)
shape_sets=""
for k in vocab_size d_model d_kv d_ff num_heads num_sparse_encoder_layers num_sparse_decoder_layers num_layers \
  num_decoder_layers encoder_sparse_step decoder_sparse_step num_experts; do
  v=$(sed -n "s/^[[:space:]]*\"$k\":[[:space:]]*\([0-9]*\),*$/\1/p" switch-base-8/config.json)
  [ -n "$v" ] && shape_sets+=" --set model.$k=$v"
done

have_torch=0; python3 -c "import torch, transformers" >/dev/null 2>&1 && have_torch=1
have_mpi=0; command -v mpirun >/dev/null 2>&1 && ldd "$bin" 2>/dev/null | grep -q libmpi && have_mpi=1

# key FILE SECTION KEY: a value of a printed config (switchc train --print-config)
key() { grep -A300 "^[[:space:]]*\"$2\":[[:space:]]*{" "$1" | grep -m1 "^[[:space:]]*\"$3\":" | sed 's/.*:[[:space:]]*//; s/,$//; s/"//g'; }
# why_skip COMMAND: prints the reason a command cannot run here, nothing when it can
why_skip() {
  case $1 in
    *huggingface-cli*) echo "downloads from the Hugging Face Hub: no network; switch-base-8/ is a tiny local folder" ;;
    sbatch*) echo "a Slurm job on GPUs" ;;
    *gpu_check*|*gpu_bundle*) echo "GPU machine scripts" ;;
    *parallel.transport=nccl*) echo "the NCCL transport needs GPUs" ;;
    cmake*) echo "builds the project: this test runs inside that build" ;;
    ctest*|scripts/test.sh*) echo "runs the test suite this test is part of" ;;
    scripts/train.sh*) echo "installs packages and builds (bootstrap.sh, cmake): its demo run is the README's build/switchc train" ;;
    scripts/launch_mpirun.sh*) [ $have_mpi = 1 ] || echo "no mpirun, or switchc built without MPI" ;;
    python3*)
      local py=${1#python3 }; py=${py%% *}
      if [ $have_torch = 0 ] && { [[ $1 == *torch* || $1 == *transformers* ]] ||
           { [ -f "$py" ] && grep -qE '^[[:space:]]*(import|from) (torch|transformers)' "$py"; }; }; then
        echo "needs torch and transformers: python3 -c \"import torch, transformers\" fails"
      elif [ -f "$py" ] && grep -qE '^[[:space:]]*import matplotlib' "$py" && ! python3 -c "import matplotlib" 2>/dev/null; then
        echo "needs matplotlib"
      fi ;;
    build/switchc*|scripts/*|cp\ *|mv\ *|mkdir\ *|ls\ *|cat\ *) ;;
    *) echo "not a switchc, scripts/ or python3 command" ;;
  esac
}

declare -A writer_sec orig_steps
n=0 cur=0
while IFS=$'\t' read -r -u 3 sec title alt experr cmd; do
  n=$((n + 1)) np="" ep=""
  [ "$sec" != "$cur" ] && { echo "== $title"; cur=$sec; }
  reason=$(why_skip "$cmd")
  if [ -n "$reason" ]; then echo "SKIPPED: $cmd ($reason)"; skipped=$((skipped + 1)); continue; fi
  run=$cmd
  # a training run: switchc train (not --help/--print-config), or scripts/launch_mpirun.sh N E
  targs=""
  if [[ $cmd =~ ^build/switchc\ train(\ (.*))?$ ]]; then targs=${BASH_REMATCH[2]}
  elif [[ $cmd =~ ^scripts/launch_mpirun.sh\ ([0-9]+)\ ([0-9]+)(\ (.*))?$ ]]; then
    np=${BASH_REMATCH[1]} ep=${BASH_REMATCH[2]}; targs="--set parallel.expert_parallel=$ep ${BASH_REMATCH[4]}"; fi
  if [[ -n $cmd && $cmd =~ ^(build/switchc\ train|scripts/launch_mpirun.sh) && ! $cmd =~ --help|--print-config ]]; then
    if [[ $run == *"--init-from switch-base-8"* && $run == *--config* ]]; then
      run+=$shape_sets; targs+=$shape_sets
      subst "--init-from switch-base-8/ is the tiny folder, the --config's model is the real switch-base-8: appended$shape_sets"
    fi
    if bash -c "$qbin train $targs --print-config" >"$log/$n.cfg" 2>/dev/null; then
      steps=$(key "$log/$n.cfg" train steps) bs=$(key "$log/$n.cfg" train batch_size)
      mbs=$(key "$log/$n.cfg" train micro_batch_size) od=$(key "$log/$n.cfg" train out_dir)
      if [ "${steps:-0}" -gt 100 ]; then run+=" --set train.steps=8"; subst "train.steps $steps -> 8: appended --set train.steps=8 (time)"; fi
      if [ "${bs:-0}" -gt 32 ]; then
        run+=" --set train.batch_size=16"; s="train.batch_size $bs -> 16"
        [ "${mbs:-0}" -gt 0 ] && { run+=" --set train.micro_batch_size=8"; s+=", train.micro_batch_size $mbs -> 8"; }
        subst "$s: appended (time)"
      fi
      if [[ ! $cmd =~ --resume|--overwrite ]] && [ -n "$(ls -A "$od" 2>/dev/null)" ] &&
         { [ "${writer_sec[$od]:-$sec}" != "$sec" ] || [ "$alt" = 1 ]; }; then
        run+=" --overwrite"
        subst "$od holds the run of an earlier $([ "$alt" = 1 ] && echo "alternative" || echo "README section"): appended --overwrite"
      fi
      writer_sec[$od]=$sec; orig_steps[$od]=$steps
    fi
  fi
  # a checkpoint named by the README: the one the (shortened) run really wrote
  read -ra words <<<"$cmd"
  for w in "${words[@]}"; do
    [[ $w =~ ^(.*)/ckpt_step([0-9]{8})\.h5$ ]] || continue
    [ -e "$w" ] && continue
    d=${BASH_REMATCH[1]} st=$((10#${BASH_REMATCH[2]}))
    newest=$(ls "$d"/ckpt_step*.h5 2>/dev/null | tail -1)
    if [ -n "${orig_steps[$d]:-}" ] && [ "${orig_steps[$d]}" = "$st" ] && [ -n "$newest" ]; then
      run=${run//"$w"/"$newest"}; subst "$w -> $newest (the run was shortened by --set train.steps)"
    elif [ -n "${orig_steps[$d]:-}" ]; then
      echo "  note: $w: the command that wrote $d trains ${orig_steps[$d]} steps as written"
    fi
  done
  if [[ $cmd == *"python3 scripts/sweep.py"*--grid* ]]; then
    g=$(sed -E 's/.*--grid[ =]([^ ]+).*/\1/' <<<"$cmd")
    if python3 - "$g" <<'EOF'
import json, sys
g = json.load(open(sys.argv[1]))
g["set"] = [s for s in g.get("set", []) if not s.startswith(("train.steps=", "data.eval_examples="))]
g["set"] += ["train.steps=10", "data.eval_examples=32"]
if g.get("seeds"): g["seeds"] = g["seeds"][:1]
json.dump(g, open(sys.argv[1], "w"), indent=1)
EOF
    then subst "$g (scratch copy): train.steps=10, data.eval_examples=32, the first seed only (time)"
    else fail "$cmd: could not shorten the grid $g"; continue; fi
  fi
  run=${run/#build\/switchc/$qbin}
  t=$SECONDS
  bash -c "$run" </dev/null >"$log/$n.out" 2>"$log/$n.err"
  rc=$?
  ran=$((ran + 1))
  if [ "$experr" = 1 ]; then
    if [ $rc -ne 0 ]; then echo "ok: $cmd (exit $rc, an error as the README shows)"
    else fail "$cmd (exit 0, but the README shows an error)"; fi
    continue
  fi
  if [ $rc -ne 0 ]; then
    fail "$cmd (exit $rc)"
    [ "$run" != "${cmd/#build\/switchc/$qbin}" ] && echo "    ran as: $run"
    tail -5 "$log/$n.err" | sed 's/^/    /'
    continue
  fi
  if [ -n "$np" ]; then
    if ! grep -q "$np ranks (expert parallel $ep)" "$log/$n.out"; then
      fail "$cmd: expected $np ranks with expert parallelism $ep, the run reports: $(grep -o '[0-9]* ranks\? (expert parallel [0-9]*)' "$log/$n.out")"
      continue
    fi
  fi
  echo "ok: $cmd ($((SECONDS - t)) s)"
done 3<_log/commands.tsv
echo "readme: $ran ran, $skipped skipped, $failed failed ($((SECONDS - t0)) s)"
[ $failed -eq 0 ]
