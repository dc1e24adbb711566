#!/usr/bin/env python3
"""LoRA inside the experts against full fine-tuning, switchc and Hugging Face transformers 4.57.6 + peft, measured in
one run on the same machine, config, batch and thread count, written into docs/benchmarks.md (its section between
<!-- bench:lora --> and <!-- /bench:lora -->). Four training steps (AdamW, lr 1e-4, weight decay 0.01, no clipping,
dropout as the model config) on the switch-base-8 shape (configs/models/switch-base-8.json, random weights and
tokens), batch 2 x (128 + 32):

  - switchc full fine-tuning (bench_model --mode trainstep);
  - switchc LoRA r=8, alpha 16, dropout 0.05 on every expert's wi and wo, the base frozen (bench_model --lora 8: the
    adapters of configs/runs/lora-experts.json);
  - HF full fine-tuning (bench/hf_bench.py --mode trainstep);
  - HF + peft, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules the experts' wi/wo alone), torch AdamW
    over the trainable parameters (bench/hf_bench.py --lora 8).

Each measurement runs in its own process (peak RSS is the process's VmHWM), the four interleaved round by round (the
order reversed every other round), --rounds of them, the fastest run kept and every run listed. The gradient and
optimizer memory is computed from the parameter counts (4 bytes of gradient and 8 of AdamW moments per trainable
fp32 parameter) and set against the measured peak RSS; the acceptance bound is the adapters' at most 5% of full
fine-tuning's. The two sides must adapt the same parameters (their counts are checked against each other and against
the config's).

  python3 scripts/bench_lora.py [--build build] [--threads 2] [--rounds 3] [--dry]
  python3 scripts/bench_lora.py --build build-cpu --smoke     # tiny model, 1 round, 2 steps: the commands run; no doc

Needs about 12 GB of memory (the full fine-tuning runs), torch, transformers==4.57.6 and peft.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from these imports
import benchdoc  # noqa: E402

BASE = "configs/models/switch-base-8.json"
TINY = "configs/models/tiny-switch.json"
R, ALPHA, DROPOUT = 8, 16, 0.05
GRAD_BYTES, ADAMW_BYTES = 4, 8  # per trainable fp32 parameter: its gradient, AdamW's m and v

# (key, label, implementation, LoRA?)
RUNS = [("switchc_full", "switchc, full fine-tuning", "switchc", False),
        ("switchc_lora", f"switchc, LoRA r={R} on the experts' wi/wo", "switchc", True),
        ("hf_full", "HF transformers, full fine-tuning", "hf", False),
        ("hf_lora", f"HF transformers + peft, LoRA r={R} on the experts' wi/wo", "hf", True)]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"bench_lora: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def command(a, impl, lora):
    args = ["--config", a.config, "--mode", "trainstep", "--train", "--batch", str(a.batch), "--src-len", str(a.src_len),
            "--tgt-len", str(a.tgt_len), "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads)]
    if lora:
        args += ["--lora", str(R), "--lora-alpha", str(ALPHA), "--lora-dropout", str(DROPOUT)]
    if impl == "switchc":
        return [os.path.join(a.build, "bench_model")] + args
    return [sys.executable, "bench/hf_bench.py"] + args  # its default --lora-targets: every expert's wi/wo alone


def measure(a):
    runs = {key: [] for key, *_ in RUNS}
    for r in range(a.rounds):
        order = RUNS if r % 2 == 0 else RUNS[::-1]
        for key, _, impl, lora in order:
            res = run(command(a, impl, lora))
            runs[key].append(res)
            print(f"round {r + 1}: {key} {res['sec_per_step']:.4f} s/step, {res['peak_rss_mb']:.0f} MB peak RSS", flush=True)
    return runs


def expected_adapters(cfg):
    """LoRA r on wi [F, D] and wo [D, F] of every expert of every Switch layer: 2 r (D + F) per expert."""
    n_sparse = cfg.get("num_sparse_encoder_layers", 0) + cfg.get("num_sparse_decoder_layers", 0)
    return n_sparse * cfg["num_experts"] * 2 * R * (cfg["d_model"] + cfg["d_ff"])


def trainable(res):
    return res.get("trainable_params", res["params"])


def check_counts(cfg, best):
    """Both sides adapt the same parameters, as many as the config says; full fine-tuning trains as many on both."""
    want = expected_adapters(cfg)
    got = {k: trainable(best[k]) for k in ("switchc_lora", "hf_lora")}
    if any(v != want for v in got.values()):
        raise SystemExit(f"bench_lora: adapter parameters switchc {got['switchc_lora']}, HF + peft {got['hf_lora']}, config {want}")
    if best["switchc_full"]["params"] != best["hf_full"]["params"]:
        print(f"bench_lora: note: full parameter counts differ (switchc {best['switchc_full']['params']}, "
              f"HF {best['hf_full']['params']})", flush=True)


def mb(x):
    """Bytes in MB of 2^20 bytes, as the peak RSS columns."""
    return f"{x / 1048576:.1f} MB"


def report(a, cfg, runs):
    best = {k: min(v, key=lambda x: x["sec_per_step"]) for k, v in runs.items()}
    check_counts(cfg, best)
    hf = best["hf_lora"]
    state = {k: trainable(best[k]) * (GRAD_BYTES + ADAMW_BYTES) for k in best}
    ratio = {impl: state[f"{impl}_lora"] / state[f"{impl}_full"] for impl in ("switchc", "hf")}
    shape = f"batch {a.batch} x ({a.src_len} + {a.tgt_len}) tokens"
    lines = [f"## LoRA inside the experts vs full fine-tuning: switchc and HF + peft ({a.model_name} shape)", "",
             f"Measured by `scripts/bench_lora.py` on {datetime.date.today().isoformat()}: {benchdoc.cpu_name()}, {os.cpu_count()} cores, "
             f"{a.threads} thread{'s' if a.threads > 1 else ''} for both (OpenBLAS / torch.set_num_threads); torch {hf.get('torch', '?')}, transformers "
             f"{hf.get('transformers', '?')}, peft {hf.get('peft', '?')}; fp32, `{a.config}` with random weights and tokens, {shape}, "
             f"training mode (dropout {cfg.get('dropout_rate', 0.1)}; adapters' dropout {DROPOUT}), AdamW (lr 1e-4, weight decay 0.01, "
             f"no clipping) over the trainable parameters. LoRA r={R}, alpha {ALPHA} on every expert's wi and wo (switchc: "
             f"`bench_model --lora {R}`, the adapters of `configs/runs/lora-experts.json`; peft: `target_modules` a regex matching "
             f"the experts' wi/wo alone), the base frozen. s/step: the mean of {a.steps} steps after {a.warmup} warm-up, each run its "
             f"own process, {a.rounds} round{'s' if a.rounds > 1 else ''} with the four interleaved, the fastest run kept (every run "
             "in brackets); peak RSS (VmHWM) of the fastest run. Load average at the start and the end: " + a.load + ".", "",
             "| run | s/step | peak RSS | trainable parameters | gradients + AdamW state (computed) | runs (s/step) |",
             "|---|---|---|---|---|---|"]
    for key, label, _, _ in RUNS:
        b = best[key]
        lines.append(f"| {label} | {b['sec_per_step']:.3f} | {b['peak_rss_mb']:.0f} MB | {trainable(b):,} | {mb(state[key])} | "
                     + ", ".join(f"{x['sec_per_step']:.3f}" for x in runs[key]) + " |")
    sec = {k: best[k]["sec_per_step"] for k in best}
    rss = {k: best[k]["peak_rss_mb"] for k in best}
    met = "met" if ratio["switchc"] <= 0.05 else "**not met**"
    lines += ["", "Gradients + AdamW state of the adapters against full fine-tuning's, computed from the parameter counts "
              f"({GRAD_BYTES} + {ADAMW_BYTES} bytes per trainable fp32 parameter): switchc {mb(state['switchc_lora'])} / "
              f"{mb(state['switchc_full'])} = **{ratio['switchc'] * 100:.2f}%**, HF + peft {mb(state['hf_lora'])} / "
              f"{mb(state['hf_full'])} = {ratio['hf'] * 100:.2f}% (bound: at most 5%: {met}).",
              f"Measured peak RSS, LoRA against full fine-tuning: switchc {rss['switchc_lora']:.0f} / {rss['switchc_full']:.0f} MB "
              f"({rss['switchc_lora'] / rss['switchc_full'] * 100:.0f}%), HF + peft {rss['hf_lora']:.0f} / {rss['hf_full']:.0f} MB "
              f"({rss['hf_lora'] / rss['hf_full'] * 100:.0f}%); the frozen fp32 base weights and the activations stay in both.",
              f"Step time, LoRA: switchc {sec['switchc_lora']:.3f} s, HF + peft {sec['hf_lora']:.3f} s (HF + peft / switchc = "
              f"**{sec['hf_lora'] / sec['switchc_lora']:.2f}x**); LoRA's step over full fine-tuning's: switchc "
              f"{sec['switchc_lora'] / sec['switchc_full']:.2f}, HF + peft {sec['hf_lora'] / sec['hf_full']:.2f}."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help=f"{TINY}, batch 2 x (16 + 8), 1 round, 2 steps; implies --dry")
    ap.add_argument("--dry", action="store_true", help="print the section, do not write docs/benchmarks.md")
    a = ap.parse_args()
    a.config, a.batch, a.src_len, a.tgt_len = BASE, 2, 128, 32
    if a.smoke:
        a.config, a.src_len, a.tgt_len, a.rounds, a.steps, a.dry = TINY, 16, 8, 1, 2, True
    if a.rounds < 1 or a.steps < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--rounds, --steps and --threads must be >= 1, --warmup >= 0")
    with open(os.path.join(ROOT, a.config)) as f:
        cfg = json.load(f)
    a.model_name = os.path.basename(a.config).rsplit(".", 1)[0]
    a.load = benchdoc.loadavg()
    runs = measure(a)
    a.load += " then " + benchdoc.loadavg()
    text = report(a, cfg, runs)
    print(text)
    if not a.dry:
        print("wrote " + benchdoc.write_section("lora", text))


if __name__ == "__main__":
    main()
