#!/usr/bin/env python3
"""Hugging Face in and out, end to end, against transformers 4.57.6 (float32):

1. builds a random SwitchTransformersForConditionalGeneration (tiny by default; --base: switch-base-8's shape) and
   saves it as model.safetensors and as a bf16 pytorch_model.bin (the form google/switch-base-8 ships);
2. `switchc convert` reads each form; `switchc logits` must match HF's float32 logits on a batch within 1e-5
   relative (for the bf16 file: HF's logits after loading that file in float32);
3. `switchc export-hf` writes the converted model back (into a folder whose parents do not exist yet);
   transformers loads the export with output_loading_info=True, which must list no missing, unexpected or mismatched
   key, and its logits must match switchc's within 1e-6 relative;
4. steps 1-3 run for a tied model and an untied one (tie_word_embeddings false: lm_head.weight, no d_model^-0.5);
5. with --base, the peak memory of `switchc convert` (its max RSS) is reported against the fp32 model size.

  python3 scripts/check_hf_roundtrip.py [--switchc build/switchc] [--base] [--workdir DIR]
Exit status 0 when every check holds.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def hf_logits(model, batch):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(batch["input_ids"]), attention_mask=torch.tensor(batch["attention_mask"]),
                    labels=torch.tensor(batch["labels"]))
    return out.logits.float().numpy()


def sx_logits(switchc, model_path, batch_path, work, shape):
    out = os.path.join(work, "logits.f32")
    r = subprocess.run([switchc, "logits", "--model", model_path, "--input", batch_path, "--output", out], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"switchc logits failed: {r.stderr.strip()}")
    return np.fromfile(out, dtype=np.float32).reshape(shape)


# Runs argv[1:] and prints its peak RSS (KiB) from wait4. This small process does the fork, not the caller: Linux
# folds the forking process's resident set into the child's ru_maxrss at exec, so a child forked straight from this
# script (which holds an HF model) would be charged this script's gigabytes.
RSS_WRAPPER = "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); _, st, ru = os.wait4(p.pid, 0); " \
              "print(ru.ru_maxrss, file=sys.stderr); sys.exit(os.waitstatus_to_exitcode(st))"


def run(cmd):
    """runs cmd and returns its peak RSS in KiB, measured by a small wrapper process (see RSS_WRAPPER)"""
    p = subprocess.run([sys.executable, "-c", RSS_WRAPPER] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = p.stderr.strip().splitlines()
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {chr(10).join(lines[:-1]).strip()}")
    return int(lines[-1])


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def check_model(a, work, tied):
    """steps 1-3 for one model; returns whether every check holds"""
    os.makedirs(work, exist_ok=True)
    label = "tied" if tied else "untied"
    if a.base:
        base = json.load(open(os.path.join(ROOT, "configs", "models", "switch-base-8.json")))
        cfg = SwitchTransformersConfig(**base, tie_word_embeddings=tied)
    else:
        cfg = SwitchTransformersConfig(vocab_size=100, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=4, num_decoder_layers=4,
                                       num_sparse_encoder_layers=2, num_sparse_decoder_layers=2, num_experts=8, router_jitter_noise=0.0,
                                       decoder_start_token_id=0, tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = SwitchTransformersForConditionalGeneration(cfg).float().eval()
    with torch.no_grad():  # keep routing diverse at random init
        for n, p in model.named_parameters():
            if "router" in n:
                p.mul_(0.1)
    g = torch.Generator().manual_seed(1)
    B, S, T = 2, 24, 8
    batch = {"input_ids": torch.randint(2, cfg.vocab_size, (B, S), generator=g).tolist(), "attention_mask": [[1] * S, [1] * (S - 5) + [0] * 5],
             "labels": torch.randint(2, cfg.vocab_size, (B, T), generator=g).tolist()}
    bpath = os.path.join(work, "batch.json")
    json.dump(batch, open(bpath, "w"))
    shape = (B, T, cfg.vocab_size)
    ok = True
    fp32_bytes = sum(p.numel() for p in model.parameters()) * 4

    st_dir, bin_dir = os.path.join(work, "hf_safetensors"), os.path.join(work, "hf_bin_bf16")
    model.save_pretrained(st_dir)
    os.makedirs(bin_dir, exist_ok=True)
    cfg.save_pretrained(bin_dir)
    torch.save({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, os.path.join(bin_dir, "pytorch_model.bin"))
    for name, d in (("safetensors", st_dir), ("bf16 pytorch_model.bin", bin_dir)):
        ref_model = model if d == st_dir else SwitchTransformersForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
        ref = hf_logits(ref_model, batch)
        ckpt = os.path.join(work, f"converted_{os.path.basename(d)}.h5")
        peak = run([a.switchc, "convert", "--from-hf", d, "--output", ckpt])
        ours = sx_logits(a.switchc, ckpt, bpath, work, shape)
        e = rel(ours, ref)
        ok &= e <= 1e-5
        print(f"{label}: convert {name}: switchc logits vs HF float32: rel error {e:.3e} {'ok' if e <= 1e-5 else 'FAIL'}"
              + (f"; convert peak RSS {peak / 1024:.0f} MB = {peak * 1024 / fp32_bytes:.2f}x the fp32 model ({fp32_bytes / 2**20:.0f} MB)" if a.base else ""))
        if d == st_dir:
            exp = os.path.join(work, "exported", "parents", "made")  # export-hf creates the missing parents
            run([a.switchc, "export-hf", "--checkpoint", ckpt, "--output", exp])
            back, info = SwitchTransformersForConditionalGeneration.from_pretrained(exp, dtype=torch.float32,
                                                                                    output_loading_info=True)
            back.eval()
            clean = not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"))
            e2 = rel(hf_logits(back, batch), ours)
            good = clean and e2 <= 1e-6
            ok &= good
            print(f"{label}: export-hf: transformers loads the export: missing {info['missing_keys']}, "
                  f"unexpected {info['unexpected_keys']}, mismatched {info['mismatched_keys']}; "
                  f"its logits vs switchc's: rel error {e2:.3e} {'ok' if good else 'FAIL'}")
            del back
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchc", default=os.path.join(ROOT, "build", "switchc"))
    ap.add_argument("--base", action="store_true", help="switch-base-8's shape (needs ~15 GB of disk and ~10 GB of memory)")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    if transformers.__version__ != "4.57.6":
        sys.exit(f"needs transformers 4.57.6, found {transformers.__version__}")
    work = a.workdir or tempfile.mkdtemp(prefix="switchc_hf_")
    os.makedirs(work, exist_ok=True)
    ok = True
    for tied in (True, False):
        ok &= check_model(a, os.path.join(work, "tied" if tied else "untied"), tied)
    if not a.workdir:
        shutil.rmtree(work)
    print("all checks hold" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
