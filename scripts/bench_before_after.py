#!/usr/bin/env python3
"""The same run before and after a change: builds bench_model from two commits (CPU-only, the project's default
build type, each in its own folder under --work) and times the same workloads with both, interleaved round by
round, the fastest of --rounds kept, into docs/benchmarks.md (section bench:before_after):

  - the default tiny model's training step (`switchc train`'s built-in model, at the trainer's batch shape);
  - switch-base-8 forward+backward, batch 2 x (128 + 32), eval mode.

  python3 scripts/bench_before_after.py [--before 63f7d70] [--after HEAD] [--rounds 3] [--threads 2] [--skip-base]

Both sides get the same model config: the HF fields of the after side's built-in model (the switchc knobs are left
at their defaults, which both sides read the same way), so a change of the demo's values is not measured as speed.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.dont_write_bytecode = True
import benchdoc  # noqa: E402

HF_FIELDS = ["vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "num_layers", "num_decoder_layers", "num_sparse_encoder_layers",
             "num_sparse_decoder_layers", "encoder_sparse_step", "decoder_sparse_step", "num_experts", "expert_capacity", "router_bias",
             "router_jitter_noise", "relative_attention_num_buckets", "relative_attention_max_distance", "dropout_rate",
             "layer_norm_epsilon", "router_z_loss_coef", "router_aux_loss_coef", "initializer_factor", "dense_act_fn",
             "tie_word_embeddings", "pad_token_id", "eos_token_id", "decoder_start_token_id"]


def sh(cmd, cwd=ROOT):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=cwd).stdout


def build(rev, work):
    """bench_model and switchc of commit rev, built in work/<rev>."""
    sha = sh(["git", "rev-parse", "--short", rev]).strip()
    src, out = os.path.join(work, "src-" + sha), os.path.join(work, "build-" + sha)
    if not os.path.isdir(src):
        os.makedirs(src)
        subprocess.run(f"git archive {sha} | tar -x -C {src}", shell=True, check=True, cwd=ROOT)
        if os.path.isdir(os.path.join(ROOT, "..", "shared")) and not os.path.exists(os.path.join(work, "shared")):
            os.symlink(os.path.abspath(os.path.join(ROOT, "..", "shared")), os.path.join(work, "shared"))
    sh(["cmake", "-S", src, "-B", out, "-DSWITCHC_CUDA=OFF", "-DSWITCHC_MPI=OFF"])
    sh(["cmake", "--build", out, "-j", str(os.cpu_count()), "--target", "bench_model", "switchc"])
    return sha, out


def run(cmd):
    return json.loads(sh(cmd).strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="63f7d70", help="the commit before the change (default: before the architecture issue)")
    ap.add_argument("--after", default="HEAD")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "switchc-before-after"))
    ap.add_argument("--skip-base", action="store_true")
    ap.add_argument("--dry", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    sides = [build(a.before, a.work), build(a.after, a.work)]
    cfg = json.loads(sh([os.path.join(sides[1][1], "switchc"), "train", "--print-config"]))
    tiny = os.path.join(a.work, "tiny.json")
    with open(tiny, "w") as f:
        json.dump({k: cfg["model"][k] for k in HF_FIELDS if k in cfg["model"]}, f)
    B, L = cfg["train"]["batch_size"], cfg["data"]["task_max_len"] + 1
    loads = [benchdoc.loadavg()]
    work = [("tiny", f"default tiny model, training step (AdamW), batch {B} x ({L}+{L})",
             ["--config", tiny, "--mode", "trainstep", "--batch", str(B), "--src-len", str(L), "--tgt-len", str(L), "--steps", "200",
              "--warmup", "20"])]
    if not a.skip_base:
        work.append(("base", "switch-base-8 forward+backward, eval mode, batch 2 x (128+32)",
                     ["--config", "configs/models/switch-base-8.json", "--mode", "fwdbwd", "--batch", "2", "--src-len", "128",
                      "--tgt-len", "32", "--steps", "3", "--warmup", "1"]))
    runs = {(k, s[0]): [] for k, _, _ in work for s in sides}
    for r in range(a.rounds):
        for key, _, args in work:
            order = sides if r % 2 == 0 else sides[::-1]
            for sha, out in order:
                res = run([os.path.join(out, "bench_model")] + args + ["--threads", str(a.threads)])
                runs[(key, sha)].append(res["sec_per_step"])
                print(f"round {r + 1}: {key} {sha} {res['sec_per_step']:.4f} s/step", flush=True)
    loads.append(benchdoc.loadavg())
    (b, _), (af, _) = sides
    lines = ["## Before and after the architecture change (same run)", "",
             f"Measured by `scripts/bench_before_after.py` on {datetime.date.today().isoformat()}: {benchdoc.cpu_name()}, "
             f"{os.cpu_count()} cores, {a.threads} threads; `bench_model` of commit {b} (before) and {af} (after), both built here "
             f"CPU-only with the default flags, the same model config, {a.rounds} rounds interleaved (the order alternating), "
             f"the fastest run kept (all in brackets). Load average (1/5/15 min) at the start {loads[0]}, at the end "
             f"{loads[1]}.", "",
             f"| workload | before ({b}) s/step | after ({af}) s/step | after / before | before runs | after runs |",
             "|---|---|---|---|---|---|"]
    for key, label, _ in work:
        x, y = runs[(key, b)], runs[(key, af)]
        lines.append(f"| {label} | {min(x):.4f} | {min(y):.4f} | {min(y) / min(x):.3f} | {', '.join(f'{v:.4f}' for v in x)} | "
                     f"{', '.join(f'{v:.4f}' for v in y)} |")
    text = "\n".join(lines)
    print(text)
    if not a.dry:
        print("wrote " + benchdoc.write_section("before_after", text))


if __name__ == "__main__":
    main()
