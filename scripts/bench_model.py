#!/usr/bin/env python3
"""Side-by-side CPU benchmarks of switchc and Hugging Face transformers 4.57.6 (PyTorch), measured in one run on the
same machine, config, batch and thread count, written into docs/benchmarks.md (its section between
<!-- bench:model --> and <!-- /bench:model -->):

1. forward + backward of a switch-base-8-shaped model (random weights, batch 2, 128 input / 32 target tokens);
2. a training step (forward, backward, AdamW) of the built-in default tiny model at the trainer's batch shape.

  python3 scripts/bench_model.py [--build build] [--threads 2] [--skip-base]

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


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-base", action="store_true", help="skip the switch-base-8 measurement (needs ~12 GB)")
    a = ap.parse_args()
    bench = os.path.join(a.build, "bench_model")
    switchc = os.path.join(a.build, "switchc")
    rows = []
    if not a.skip_base:
        shape = ["--batch", "2", "--src-len", "128", "--tgt-len", "32", "--steps", "3", "--warmup", "1", "--threads", str(a.threads)]
        ours = run([bench, "--config", "configs/models/switch-base-8.json", "--mode", "fwdbwd"] + shape)
        hf = run([sys.executable, "bench/hf_bench.py", "--config", "configs/models/switch-base-8.json", "--mode", "fwdbwd"] + shape)
        rows.append(("switch-base-8 forward+backward, batch 2 x (128 + 32) tokens, eval mode", ours, hf))
    cfg = json.loads(subprocess.run([switchc, "train", "--print-config"], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg["model"], f)
        tiny = f.name
    B = str(cfg["train"]["batch_size"])
    L = str(cfg["data"]["task_max_len"] + 1)
    shape = ["--batch", B, "--src-len", L, "--tgt-len", L, "--steps", "200", "--warmup", "20", "--threads", str(a.threads)]
    ours = run([bench, "--config", tiny, "--mode", "trainstep"] + shape)
    hf = run([sys.executable, "bench/hf_bench.py", "--config", tiny, "--mode", "trainstep"] + shape)
    rows.append((f"default tiny model (`switchc train`), training step with AdamW, batch {B} x ({L} + {L}) tokens", ours, hf))
    os.unlink(tiny)
    loader = run([os.path.join(a.build, "bench_loader"), "20000", "200"])

    lines = ["## Model on the CPU: switchc vs Hugging Face transformers", "",
             f"Measured by `scripts/bench_model.py` on {datetime.date.today().isoformat()}: {benchdoc.cpu_name()}, "
             f"{os.cpu_count()} cores, {a.threads} threads for both (OpenBLAS / torch.set_num_threads); "
             f"torch {rows[-1][2]['torch']}, transformers {rows[-1][2]['transformers']}, fp32, same config, random weights "
             "and tokens, mean of the timed steps after warm-up; peak RSS of each process (VmHWM: its own address space, "
             "whatever process started it).", "",
             "| workload | switchc tokens/s | HF tokens/s | speed-up | switchc peak RSS | HF peak RSS |",
             "|---|---|---|---|---|---|"]
    for name, o, h in rows:
        lines.append(f"| {name} | {o['tokens_per_s']:.0f} | {h['tokens_per_s']:.0f} | {o['tokens_per_s'] / h['tokens_per_s']:.2f}x | "
                     f"{o['peak_rss_mb']:.0f} MB | {h['peak_rss_mb']:.0f} MB |")
        print(name, json.dumps(o), json.dumps(h))
    if not a.skip_base:
        base_tps = rows[0][1]["tokens_per_s"]
        lines += ["", f"Data loader (`bench_loader`, same run): batches of 16 x (512 + 114) tokens from a 20,000-example HDF5 token dataset "
                  f"of switch-base-8 shapes, shuffled and padded: {loader['batches_per_s']:.0f} batches/s, {loader['tokens_per_s']:.0f} tokens/s, "
                  f"{loader['tokens_per_s'] / base_tps:.0f}x the tokens/s at which this machine trains switch-base-8 (row 1)."]
    print("wrote " + benchdoc.write_section("model", "\n".join(lines)))


if __name__ == "__main__":
    main()
