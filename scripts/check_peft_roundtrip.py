#!/usr/bin/env python3
"""switchc's LoRA exports in peft 0.21.2 and transformers 4.57.6 (float32), for each case of tests/fixtures/lora:

1. `switchc train --init-from BASE --init-adapter <case>/final` for one step at learning rate 0 (AdamW then changes
   nothing) gives a switchc checkpoint holding peft's trained adapter;
2. `switchc export-hf --adapter-only` writes a peft folder: peft.PeftModel.from_pretrained(base, DIR) must load it
   (every adapter tensor equal to peft's own), and its logits must match `switchc logits` within 1e-6 relative;
3. `switchc export-hf --merge` writes an HF folder: transformers loads it with no missing, unexpected or mismatched
   key, and its logits must match switchc's adapter logits within 1e-6 relative.

  python3 scripts/check_peft_roundtrip.py [--switchc build/switchc] [--workdir DIR]
Exit status 0 when every check holds.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from peft import PeftModel
from safetensors.numpy import load_file
from transformers import SwitchTransformersForConditionalGeneration

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BASE = os.path.join(ROOT, "tests", "fixtures", "finetune", "model")
LORA = os.path.join(ROOT, "tests", "fixtures", "lora")
BATCH = {"input_ids": [[5, 9, 3, 17, 1], [8, 2, 30, 1, 0]], "attention_mask": [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]],
         "labels": [[4, 11, 1], [7, 1, -100]]}


def sh(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


def hf_logits(model):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in BATCH.items()}).logits.numpy()


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def check(case, switchc, work):
    w = os.path.join(work, case)
    run = os.path.join(w, "run")
    sh([switchc, "train", "--init-from", BASE, "--init-adapter", os.path.join(LORA, case, "final"), "--set", "data.task=reverse",
        "--set", "train.steps=1", "--set", "optim.lr=0", "--set", f"train.out_dir={run}", "--overwrite"])
    ckpt = os.path.join(run, "ckpt_step00000001.h5")
    batch = os.path.join(w, "batch.json")
    with open(batch, "w") as f:
        json.dump(BATCH, f)
    out = os.path.join(w, "logits.f32")
    sh([switchc, "logits", "--model", ckpt, "--input", batch, "--output", out])
    base = SwitchTransformersForConditionalGeneration.from_pretrained(BASE, dtype=torch.float32).eval()
    sx = np.fromfile(out, dtype=np.float32).reshape(hf_logits(base).shape)
    ok = True
    adir = os.path.join(w, "adapter")
    sh([switchc, "export-hf", "--checkpoint", ckpt, "--output", adir, "--adapter-only"])
    ours, theirs = load_file(os.path.join(adir, "adapter_model.safetensors")), load_file(
        os.path.join(LORA, case, "final", "adapter_model.safetensors"))
    same = sorted(ours) == sorted(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    peft_model = PeftModel.from_pretrained(base, adir).eval()
    r_peft = rel(hf_logits(peft_model), sx)
    print(f"{case:8s} adapter export: {len(ours)} tensors {'equal to' if same else 'DIFFERENT from'} peft's; "
          f"peft logits vs switchc {r_peft:.2e}")
    ok &= same and r_peft <= 1e-6
    mdir = os.path.join(w, "merged")
    sh([switchc, "export-hf", "--checkpoint", ckpt, "--output", mdir, "--merge", "--no-tokenizer"])
    merged, info = SwitchTransformersForConditionalGeneration.from_pretrained(mdir, dtype=torch.float32, output_loading_info=True)
    clean = not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    r_merged = rel(hf_logits(merged.eval()), sx)
    print(f"{case:8s} merged export: loading info {'clean' if clean else info}; transformers logits vs switchc {r_merged:.2e}")
    return ok and clean and r_merged <= 1e-6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switchc", default=os.path.join(ROOT, "build", "switchc"))
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    work = a.workdir or tempfile.mkdtemp(prefix="peft_roundtrip_")
    ok = all([check(c, a.switchc, work) for c in ("attn_qv", "experts")])
    print("all checks hold" if ok else "a check FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
