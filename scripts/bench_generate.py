#!/usr/bin/env python3
"""Generation on the CPU, switchc vs Hugging Face transformers, fp32 and 8-bit, written into docs/benchmarks.md (its
section between <!-- bench:generate --> and <!-- /bench:generate -->):

  greedy decoding of --new-tokens tokens per row (EOS never stops a row) from 32-token inputs, batch 1 and 16, on a
  switch-base-8-shaped model with random weights (transformers' initialisation, saved once as an HF folder that both
  sides load); switchc fp32 / --int8 (bench_generate) against transformers fp32 / load_in_8bit (bitsandbytes' CPU
  backend; bench/hf_generate_bench.py); each measurement in its own process, the runs interleaved, the minimum of
  --reps; the weight memory of the int8 model against fp32 (switchc's weight bytes and resident set), and the
  next-token agreement of int8 with fp32 on random teacher-forced inputs.

  python3 scripts/bench_generate.py [--build build] [--threads 2] [--reps 3] [--new-tokens 16] [--work /tmp/sxgen]

Needs torch, transformers==4.57.6, bitsandbytes (CPU backend), accelerate; ~8 GB of memory and ~3 GB of disk.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.dont_write_bytecode = True
import benchdoc  # noqa: E402


def load():
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def prepare(work):
    from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration
    mdir = os.path.join(work, "switch-base-8-random")
    if not os.path.exists(os.path.join(mdir, "model.safetensors")):
        with open(os.path.join(ROOT, "configs", "models", "switch-base-8.json")) as f:
            cfg = json.load(f)
        torch.manual_seed(0)
        m = SwitchTransformersForConditionalGeneration(SwitchTransformersConfig(**cfg)).float()
        m.save_pretrained(mdir)
    g = torch.Generator().manual_seed(1)
    for B in (1, 16):
        ids = torch.randint(2, 32100, (B, 32), generator=g)
        ids[:, -1] = 1
        with open(os.path.join(work, f"ids{B}.txt"), "w") as f:
            f.write("".join(" ".join(map(str, r)) + "\n" for r in ids.tolist()))
    return mdir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--work", default="/tmp/sxgen")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    mdir = prepare(a.work)
    bench = os.path.join(ROOT, a.build, "bench_generate")
    loads = [load()]
    res = {}
    env_t = ["--threads", str(a.threads)]
    for rep in range(a.reps):
        for B in (1, 16):
            ids = os.path.join(a.work, f"ids{B}.txt")
            for q in (False, True):
                flag = ["--int8"] if q else []
                for impl, cmd in (("switchc", [bench]), ("hf", [sys.executable, "bench/hf_generate_bench.py"])):
                    r = run(cmd + ["--model", mdir, "--ids", ids, "--new-tokens", str(a.new_tokens)] + env_t + flag)
                    res.setdefault((B, q, impl), []).append(r)
                    print(rep, B, "int8" if q else "fp32", impl, r["tokens_per_s"], flush=True)
                    loads.append(load())
    agree = run([bench, "--model", mdir, "--ids", os.path.join(a.work, "ids16.txt"), "--new-tokens",
                 str(a.new_tokens), "--agreement"] + env_t)
    loads.append(load())

    def best(key):
        rs = res[key]
        r = min(rs, key=lambda x: x["sec"])
        return r, [x["tokens_per_s"] for x in rs]

    hf0 = res[(1, False, "hf")][0]
    sw_fp32, _ = best((16, False, "switchc"))
    sw_q, _ = best((16, True, "switchc"))
    ratio = sw_q["weight_bytes"] / sw_q["weight_bytes_fp32"]
    rss_ratio = sw_q["rss_weights_mb"] / sw_fp32["rss_weights_mb"]
    hf_q = res[(1, True, "hf")][0]["weight_bytes"]
    lmax = max(x[0] for x in loads)
    lines = ["## Generation on the CPU: switchc vs Hugging Face transformers, fp32 and int8", "",
             f"Measured by `scripts/bench_generate.py` on {datetime.date.today().isoformat()}: {benchdoc.cpu_name()}, "
             f"{os.cpu_count()} cores, {a.threads} threads for both (OpenBLAS and switchc's int8 pool / "
             f"torch.set_num_threads); torch {hf0['torch']}, transformers {hf0['transformers']}, bitsandbytes "
             f"{bnb_version()} (its CPU backend). switch-base-8 shape, random weights (one HF folder both load), "
             f"greedy, 32-token inputs, {a.new_tokens} new tokens per row (EOS never stops a row), tokens/s = "
             f"generated tokens over the generate call (encoder included) after a 2-token warm-up; each run its own "
             f"process, the {a.reps} rounds interleaved, the fastest of {a.reps} kept (all runs in brackets). int8: "
             "switchc --int8 (threshold 6.0) against transformers' load_in_8bit (the same LLM.int8 arithmetic: "
             "tests/test_int8.c).", "",
             "| batch | weights | switchc tokens/s | HF tokens/s | speed-up | switchc runs | HF runs |",
             "|---|---|---|---|---|---|---|"]
    for B in (1, 16):
        for q in (False, True):
            s, s_all = best((B, q, "switchc"))
            h, h_all = best((B, q, "hf"))
            lines.append(f"| {B} | {'int8' if q else 'fp32'} | {s['tokens_per_s']:.2f} | {h['tokens_per_s']:.2f} | "
                         f"{s['tokens_per_s'] / h['tokens_per_s']:.2f}x | {', '.join(f'{v:.2f}' for v in s_all)} | "
                         f"{', '.join(f'{v:.2f}' for v in h_all)} |")
    lines += ["",
              f"Weight memory of the int8 model (same runs): {sw_q['weight_bytes'] / 1e6:.1f} MB held against "
              f"{sw_q['weight_bytes_fp32'] / 1e6:.1f} MB of fp32 = **{ratio:.3f}x** (int8 values with 32-byte row "
              "padding and an fp32 scale per row for every Linear of the blocks, experts per expert; the tied "
              "embedding, relative biases and norms stay fp32); the process's resident set after loading and "
              f"quantizing {sw_q['rss_weights_mb']:.0f} MB against {sw_fp32['rss_weights_mb']:.0f} MB for fp32 "
              f"({rss_ratio:.3f}x: the fp32 pages of the quantized tensors are returned to the system). "
              f"transformers' get_memory_footprint for load_in_8bit: {hf_q / 1e6:.1f} MB. Quantizing took "
              f"{sw_q['quantize_s']:.1f} s.",
              "",
              f"Next-token agreement of int8 with fp32 (switchc, same model): {agree['same_next_token']} of "
              f"{agree['positions']} teacher-forced positions ({100 * agree['agreement']:.1f}%), 16 random 32-token "
              f"inputs x {a.new_tokens} random decoder tokens. With random weights the logits are nearly flat, so "
              "this is a harsher test than a trained model's peaked distributions.",
              "",
              f"Notes: the machine was shared with other jobs: load average (1/5/15 min) {loads[0]} at the start, "
              f"{loads[-1]} at the end, a 1-minute load of up to {lmax:.1f} between runs on {os.cpu_count()} "
              "cores; the runs of one row (in brackets) show how much that moved them. The interleaving spreads the "
              "disturbance over both sides and the fastest run is the least disturbed one. On this CPU (AVX2, no "
              "AVX-512) bitsandbytes' CPU backend computes each int8 matmul as an fp32 matmul of the int8 values "
              "converted on the fly, so transformers' int8 is slower than its fp32; switchc's int8 kernel sums the "
              "int8 products in int32 (AVX2) and reads a quarter of fp32's weight bytes."]
    print("wrote " + benchdoc.write_section("generate", "\n".join(lines)))


def bnb_version():
    try:
        import importlib.metadata
        return importlib.metadata.version("bitsandbytes")
    except Exception:
        return "unknown"


if __name__ == "__main__":
    main()
