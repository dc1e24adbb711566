#!/usr/bin/env python3
"""Side-by-side CPU benchmarks of switchc and Hugging Face transformers 4.57.6 (PyTorch), measured in one run on the
same machine, config, batch and thread count, written into docs/benchmarks.md (its section between
<!-- bench:model --> and <!-- /bench:model -->). Every row is measured 3 times (--rounds), the two sides and the
rows interleaved round by round, and the fastest of the runs is kept (all runs are printed):

  - switch-base-8 forward+backward (eval mode) and training step (dropout 0.1, AdamW), batch 2 x (128 + 32);
  - a mid model (configs/models/mid-switch.json: d_model 256, d_ff 1024, 4+4 blocks, 8 experts) forward+backward
    and training step, batch 8 x (128 + 32), and the same with 64 experts;
  - the built-in default tiny model's training step at the trainer's batch shape;
  - forward+backward of the mid model at 8/16/32/64 experts (fixed tokens: the FLOPs per token do not change);
  - the machine's rates in the same run (bench_rates): OpenBLAS sgemm at switch-base-8's FFN shapes and memcpy, so
    that the forward+backward can be given as a fraction of the sgemm rate (MFU) and the dropout's share of a step
    is measured (the mid training step with dropout 0.1 against dropout 0), and the AdamW step alone (bench_optim)
    against the memcpy rate.

  python3 scripts/bench_model.py [--build build] [--threads 2] [--rounds 3] [--skip-base] [--dry]

Each measurement runs in its own process (peak RSS is per process). Needs torch and transformers==4.57.6.
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
sys.dont_write_bytecode = True  # no scripts/__pycache__ from these imports
import benchdoc  # noqa: E402

BASE = "configs/models/switch-base-8.json"
MID = "configs/models/mid-switch.json"


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def model_json(path, tmpdir, **over):
    """A copy of a model config with some fields replaced (num_experts, dropout_rate)."""
    with open(os.path.join(ROOT, path)) as f:
        cfg = json.load(f)
    cfg.update(over)
    name = os.path.join(tmpdir, "_".join([os.path.basename(path).split(".")[0]] + [f"{k}{v}" for k, v in over.items()]) + ".json")
    with open(name, "w") as f:
        json.dump(cfg, f)
    return name


def fwd_flops(cfg, B, S, T):
    """Matmul FLOPs of one forward pass (top-1: one expert per token), attention scores and the LM head included."""
    D, F, HK, V = cfg["d_model"], cfg["d_ff"], cfg["d_kv"] * cfg["num_heads"], cfg["vocab_size"]
    ffn = 2 * (2 * D * F) if not cfg.get("is_gated_act") else 3 * (2 * D * F)
    enc = cfg["num_layers"] * S * (4 * 2 * D * HK + ffn + 2 * 2 * S * HK)
    dec = cfg["num_decoder_layers"] * (T * (4 * 2 * D * HK + 2 * 2 * D * HK + ffn + 2 * 2 * T * HK + 2 * 2 * S * HK)
                                       + S * 2 * 2 * D * HK)  # cross-attention keys and values over the encoder
    return B * (enc + dec + T * 2 * D * V)


class Row:
    def __init__(self, key, label, config, mode, shape, train=False, hf=True, flops=None):
        self.key, self.label, self.config, self.mode, self.shape, self.train, self.hf = key, label, config, mode, shape, train, hf
        self.flops = flops
        self.runs = {"switchc": [], "hf": []}

    def cmd(self, impl, build, threads):
        args = ["--config", self.config, "--mode", self.mode] + self.shape + ["--threads", str(threads)]
        if self.train:
            args.append("--train")
        if impl == "switchc":
            return [os.path.join(build, "bench_model")] + args
        return [sys.executable, "bench/hf_bench.py"] + args

    def best(self, impl):
        r = self.runs[impl]
        return min(r, key=lambda x: x["sec_per_step"]) if r else None


def shape(B, S, T, steps, warmup):
    return ["--batch", str(B), "--src-len", str(S), "--tgt-len", str(T), "--steps", str(steps), "--warmup", str(warmup)]


def build_rows(a, tmp):
    rows = []
    base_shape = shape(2, 128, 32, 3, 1)
    mid_shape = shape(8, 128, 32, 5, 1)
    with open(os.path.join(ROOT, BASE)) as f:
        base_cfg = json.load(f)
    with open(os.path.join(ROOT, MID)) as f:
        mid_cfg = json.load(f)
    if not a.skip_base:
        rows.append(Row("base_fwdbwd", "switch-base-8 forward+backward, eval mode, batch 2 x (128+32)", BASE, "fwdbwd", base_shape,
                        flops=3 * fwd_flops(base_cfg, 2, 128, 32)))
        rows.append(Row("base_train", "switch-base-8 training step (dropout 0.1, AdamW)", BASE, "trainstep", shape(2, 128, 32, 2, 1), True))
    rows.append(Row("mid_fwdbwd", "mid model (d_model 256, d_ff 1024, 4+4 blocks, 8 experts) fwd+bwd, batch 8 x (128+32)", MID, "fwdbwd",
                    mid_shape, flops=3 * fwd_flops(mid_cfg, 8, 128, 32)))
    rows.append(Row("mid_train", "the same, training step (dropout 0.1, AdamW)", MID, "trainstep", mid_shape, True))
    rows.append(Row("mid_train_nodrop", "the same, training step with dropout 0 (switchc only: the dropout's share)",
                    model_json(MID, tmp, dropout_rate=0.0), "trainstep", mid_shape, True, hf=False))
    for e in (16, 32, 64):
        rows.append(Row(f"mid{e}_fwdbwd", f"mid model, {e} experts, fwd+bwd", model_json(MID, tmp, num_experts=e), "fwdbwd", mid_shape))
    rows.append(Row("mid64_train", "mid model, 64 experts, training step", model_json(MID, tmp, num_experts=64), "trainstep", mid_shape, True))
    cfg = json.loads(subprocess.run([os.path.join(a.build, "switchc"), "train", "--print-config"], check=True, capture_output=True,
                                    text=True, cwd=ROOT).stdout)
    tiny = os.path.join(tmp, "tiny.json")
    with open(tiny, "w") as f:
        json.dump(cfg["model"], f)
    B, L = cfg["train"]["batch_size"], cfg["data"]["task_max_len"] + 1
    rows.append(Row("tiny_train", f"default tiny model (`switchc train`), training step (dropout {cfg['model']['dropout_rate']}, AdamW), "
                    f"batch {B} x ({L}+{L})", tiny, "trainstep", shape(B, L, L, 200, 20), True))
    return rows


def measure(a, rows):
    rates = []
    for r in range(a.rounds):
        rates.append(run([os.path.join(a.build, "bench_rates"), "--threads", str(a.threads)]))
        a.optim.append(run([os.path.join(a.build, "bench_optim"), "--config", MID, "--steps", "5", "--threads", str(a.threads)]))
        for row in rows:
            impls = ["switchc", "hf"] if row.hf else ["switchc"]
            if r % 2:
                impls.reverse()  # alternate which side runs first
            for impl in impls:
                res = run(row.cmd(impl, a.build, a.threads))
                row.runs[impl].append(res)
                print(f"round {r + 1}: {row.key} {impl} {res['sec_per_step']:.4f} s/step, {res['peak_rss_mb']:.0f} MB", flush=True)
    a.loader = run([os.path.join(a.build, "bench_loader"), "20000", "200"])
    return max(rates, key=lambda x: x["sgemm_gflops"]), rates


def report(a, rows, rate, rates):
    by = {row.key: row for row in rows}
    hf_any = next((row.best("hf") for row in rows if row.best("hf")), {})
    lines = ["## Model on the CPU: switchc vs Hugging Face transformers", "",
             f"Measured by `scripts/bench_model.py` on {datetime.date.today().isoformat()}: {benchdoc.cpu_name()}, "
             f"{os.cpu_count()} cores, {a.threads} threads for both (OpenBLAS / torch.set_num_threads); torch {hf_any.get('torch', '?')}, "
             f"transformers {hf_any.get('transformers', '?')}, fp32, same config, random weights and tokens; each run its own process, "
             f"{a.rounds} rounds with the rows and the two sides interleaved, the fastest run kept (every run in brackets); peak RSS "
             "(VmHWM) of the fastest run. Load average at the start and the end: " + a.load + ".", "",
             "| workload | switchc s/step | HF s/step | switchc speed-up | switchc peak RSS | HF peak RSS | switchc runs | HF runs |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        o, h = row.best("switchc"), row.best("hf")
        runs = lambda impl: ", ".join(f"{x['sec_per_step']:.3f}" for x in row.runs[impl])  # noqa: E731
        if h:
            lines.append(f"| {row.label} | {o['sec_per_step']:.3f} | {h['sec_per_step']:.3f} | {h['sec_per_step'] / o['sec_per_step']:.2f}x | "
                         f"{o['peak_rss_mb']:.0f} MB | {h['peak_rss_mb']:.0f} MB | {runs('switchc')} | {runs('hf')} |")
        else:
            lines.append(f"| {row.label} | {o['sec_per_step']:.3f} | | | {o['peak_rss_mb']:.0f} MB | | {runs('switchc')} | |")
    lines += ["", f"Machine rates in the same run (`bench_rates`, the best of {len(rates)}): OpenBLAS sgemm at switch-base-8's FFN shapes "
              f"(256 x 768 x 3072, its three products) {rate['sgemm_gflops']:.0f} GFLOP/s (runs: "
              + ", ".join(f"{x['sgemm_gflops']:.0f}" for x in rates) + f"); memcpy {rate['copy_gb_s']:.1f} GB/s read+write."]
    if "base_fwdbwd" in by:
        row = by["base_fwdbwd"]
        o, h = row.best("switchc"), row.best("hf")
        lines.append(f"switch-base-8 forward+backward: {row.flops / 1e9:.0f} GFLOP of matmuls per step, so switchc runs at "
                     f"{row.flops / o['sec_per_step'] / 1e9:.0f} GFLOP/s = **{row.flops / o['sec_per_step'] / 1e9 / rate['sgemm_gflops'] * 100:.0f}%** "
                     f"of the measured sgemm rate (HF: {row.flops / h['sec_per_step'] / 1e9 / rate['sgemm_gflops'] * 100:.0f}%).")
    opt = min(a.optim, key=lambda x: x["sec_per_step"])
    lines.append(f"AdamW step alone (`bench_optim`, the mid model's {opt['params'] / 1e6:.1f}M parameters, each expert its own unit): "
                 f"{opt['sec_per_step'] * 1e3:.1f} ms = {opt['adamw_gb_s']:.1f} GB/s of the 28 bytes per parameter it must move, "
                 f"**{opt['adamw_gb_s'] / rate['copy_gb_s'] * 100:.0f}%** of the memcpy rate (runs: "
                 + ", ".join(f"{x['sec_per_step'] * 1e3:.1f} ms" for x in a.optim) + ").")
    d, nd = by["mid_train"].best("switchc"), by["mid_train_nodrop"].best("switchc")
    lines.append(f"Dropout's share of the mid training step: ({d['sec_per_step']:.3f} - {nd['sec_per_step']:.3f}) / {d['sec_per_step']:.3f} = "
                 f"**{(d['sec_per_step'] - nd['sec_per_step']) / d['sec_per_step'] * 100:.1f}%**.")
    e8 = by["mid_fwdbwd"]
    sweep = [("8", e8)] + [(str(e), by[f"mid{e}_fwdbwd"]) for e in (16, 32, 64)]
    lines.append("Forward+backward of the mid model by expert count (s/step, switchc / HF): "
                 + "; ".join(f"{e}: {r.best('switchc')['sec_per_step']:.3f} / {r.best('hf')['sec_per_step']:.3f}" for e, r in sweep)
                 + f". 8 -> 64 experts: switchc **{sweep[-1][1].best('switchc')['sec_per_step'] / e8.best('switchc')['sec_per_step']:.2f}x**, "
                 f"HF {sweep[-1][1].best('hf')['sec_per_step'] / e8.best('hf')['sec_per_step']:.2f}x.")
    if "base_fwdbwd" in by:
        base_tps = 2 * (128 + 32) / by["base_fwdbwd"].best("switchc")["sec_per_step"]
        lines.append(f"Data loader (`bench_loader`, same run): batches of 16 x (512 + 114) tokens from a 20,000-example HDF5 token "
                     f"dataset of switch-base-8 shapes, shuffled and padded: {a.loader['batches_per_s']:.0f} batches/s, "
                     f"{a.loader['tokens_per_s']:.0f} tokens/s, {a.loader['tokens_per_s'] / base_tps:.0f}x the tokens/s at which this "
                     "machine runs switch-base-8's forward+backward (row 1).")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-base", action="store_true", help="skip the switch-base-8 rows (they need ~12 GB)")
    ap.add_argument("--dry", action="store_true", help="print the table, do not write docs/benchmarks.md")
    a = ap.parse_args()
    a.load = benchdoc.loadavg()
    a.optim = []
    with tempfile.TemporaryDirectory() as tmp:
        rows = build_rows(a, tmp)
        rate, rates = measure(a, rows)
    a.load += " then " + benchdoc.loadavg()
    text = report(a, rows, rate, rates)
    print(text)
    if not a.dry:
        print("wrote " + benchdoc.write_section("model", text))


if __name__ == "__main__":
    main()
