#!/usr/bin/env python3
"""LoRA fine-tuning with transformers 4.57.6 + peft 0.21.2 for tests/test_lora.c: the same run, step by step.

The base is the fine-tuning fixture's random SwitchTransformers (tests/fixtures/finetune/model, written by
scripts/make_finetune_fixtures.py) and its 64 examples, trained in file order, batch 8, 20 AdamW steps (HF Trainer's
decay names, weight decay 0.01, lr 1e-3 linear decay, clipping at 1.0), the loop of make_finetune_fixtures.py, with
peft's get_peft_model(base, LoraConfig(...)) (dropout 0) around the base. Cases:

  attn_qv   LoRA r=4, alpha=8 on target_modules ["q", "v"] (self- and cross-attention)
  experts   LoRA r=4, alpha=16 on every expert's wi and wo (target_modules r".*experts\\.expert_\\d+\\.(wi|wo)")

Each case writes tests/fixtures/lora/<case>/initial/ (peft's save_pretrained right after get_peft_model: A drawn by
peft, B zero: the adapter switchc starts from with --init-adapter), <case>/final/ (after the 20 steps), and in
trajectories.h5 the switchc run-config assignments that mean the same (`--set` syntax), the 20 step losses, and the
eval-mode logits of the final adapter model on the first 8 examples (and of peft's merge_and_unload of it). Regenerate
(about 10 s):
    python3 scripts/make_lora_fixtures.py   -> tests/fixtures/lora/{attn_qv,experts}/{initial,final}/, trajectories.h5
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import SwitchTransformersForConditionalGeneration
from transformers.optimization import get_linear_schedule_with_warmup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_finetune_fixtures as ft  # noqa: E402  (the base model, its examples, batching and decay names)

BASE = os.path.join(HERE, "..", "tests", "fixtures", "finetune", "model")
OUT = os.path.join(HERE, "..", "tests", "fixtures", "lora")
LOGIT_ROWS = 8

CASES = [
    {"name": "attn_qv", "seed": 11, "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q", "v"]},
     "set": ["lora.r=4", "lora.alpha=8", "lora.targets=q,v"]},
    {"name": "experts", "seed": 12, "lora": {"r": 4, "lora_alpha": 16, "target_modules": r".*experts\.expert_\d+\.(wi|wo)"},
     "set": ["lora.r=4", "lora.alpha=16", "lora.targets=*.experts.*.wi,*.experts.*.wo"]},
]


def logits(model, ids, mask, labels):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, labels=labels).logits.numpy().astype(np.float32)


def run(case, ex, h):
    torch.manual_seed(case["seed"])
    base = SwitchTransformersForConditionalGeneration.from_pretrained(BASE, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(lora_dropout=0.0, **case["lora"]))
    cdir = os.path.join(OUT, case["name"])
    shutil.rmtree(cdir, ignore_errors=True)
    model.save_pretrained(os.path.join(cdir, "initial"))
    model.train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    dec = ft.decay_names(model)
    groups = [{"params": [p for n, p in trainable if n in dec], "weight_decay": 0.01},
              {"params": [p for n, p in trainable if n not in dec], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, 0, ft.STEPS)
    losses, idle = [], 0
    for step in range(ft.STEPS):
        ids, mask, labels = ft.batch(ex, step * ft.BATCH, ft.BATCH)
        out = model(input_ids=ids, attention_mask=mask, labels=labels, output_router_logits=True)
        out.loss.backward()
        losses.append(out.loss.item())
        idle += sum(1 for _, p in trainable if p.grad is None)
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable if p.grad is not None], 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    model.save_pretrained(os.path.join(cdir, "final"))
    model.eval()
    ids, mask, labels = ft.batch(ex, 0, LOGIT_ROWS)
    lg = logits(model, ids, mask, labels)
    merged = logits(model.merge_and_unload(), ids, mask, labels)
    g = h.create_group(case["name"])
    g.attrs["set"] = json.dumps(case["set"])
    g["losses"] = np.array(losses, dtype=np.float64)
    g["logits"] = lg
    g["merged_logits"] = merged
    g.attrs["idle_adapter_steps"] = idle
    rel = float(np.abs(merged - lg).max() / np.abs(lg).max())
    print(f"{case['name']:8s} loss {losses[0]:.6f} -> {losses[-1]:.6f}, {len(trainable)} adapter tensors, "
          f"idle adapter-steps {idle}, peft merged vs adapter logits {rel:.2e}")


def main():
    torch.set_num_threads(1)
    if not os.path.isdir(BASE):
        sys.exit(f"{BASE} missing: run scripts/make_finetune_fixtures.py first")
    ex = ft.examples(7)
    os.makedirs(OUT, exist_ok=True)
    with h5py.File(os.path.join(OUT, "trajectories.h5"), "w") as h:
        h.attrs["transformers_version"] = transformers.__version__
        h.attrs["peft_version"] = peft.__version__
        h.attrs["torch_version"] = str(torch.__version__)
        ids, mask, labels = ft.batch(ex, 0, LOGIT_ROWS)
        h["logit_batch/input_ids"] = ids.numpy().astype(np.int32)
        h["logit_batch/attention_mask"] = mask.numpy().astype(np.int32)
        h["logit_batch/labels"] = labels.numpy().astype(np.int32)
        for c in CASES:
            run(c, ex, h)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
