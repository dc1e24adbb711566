#!/usr/bin/env python3
"""Fine-tuning trajectories of transformers 4.57.6 + torch for tests/test_finetune.c: the same run, step by step.

A random SwitchTransformersForConditionalGeneration (2+2 blocks, 8 experts, every second FFN sparse, dropout 0, no
jitter) is saved as an HF folder (config.json + model.safetensors); 64 random token-id examples are trained on in file
order, batch 8, 20 steps, padded per (micro-)batch to its longest example as switchc pads, labels -100 on padding.
The plain loop a user writes: loss (CE + the router z and aux losses, as the model returns it) / micro-batches,
backward, clip_grad_norm_ over the parameters that have a gradient, optimizer.step(), scheduler.step(), zero_grad.
An expert that no kept token reaches has grad None and torch skips it. Cases:

  adamw           torch AdamW (HF Trainer defaults: betas 0.9/0.999, eps 1e-8; weight decay 0.01 on HF Trainer's
                  decay parameters), linear decay without warmup, clipping at 1.0
  adafactor       transformers' Adafactor, lr 1e-3, scale_parameter/relative_step False, beta1 None, no clipping
  adafactor_b1    the same with beta1 0.9
  drops           AdamW with expert_capacity 1: tokens dropped, experts idle
  train_only      AdamW training only the routers and expert 3 of every layer (requires_grad False elsewhere)
  accum           AdamW, each batch of 8 as 2 micro-batches of 4 (gradient accumulation)

Each case records the switchc run-config assignments that mean the same (`--set` syntax), the 20 step losses, the
parameters after the run, and the expert-steps that were idle. Regenerate (about 20 s):
    python3 scripts/make_finetune_fixtures.py   -> tests/fixtures/finetune/{model/, trajectories.h5}
"""
import fnmatch
import json
import os
import re
import shutil

import h5py
import numpy as np
import torch
import transformers
from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration
from transformers.optimization import Adafactor, get_constant_schedule, get_linear_schedule_with_warmup

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "finetune")
N_EXAMPLES, BATCH, STEPS, VOCAB = 64, 8, 20, 32


def config(capacity):
    return SwitchTransformersConfig(
        vocab_size=VOCAB, d_model=16, d_kv=4, d_ff=32, num_heads=2, num_layers=2, num_decoder_layers=2,
        num_sparse_encoder_layers=1, num_sparse_decoder_layers=1, num_experts=8, expert_capacity=capacity,
        router_jitter_noise=0.0, dropout_rate=0.0, relative_attention_num_buckets=8, relative_attention_max_distance=20,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=True)


def examples(seed):
    g = np.random.default_rng(seed)
    ex = []
    for _ in range(N_EXAMPLES):
        n_in, n_tgt = int(g.integers(3, 11)), int(g.integers(2, 7))
        ex.append((g.integers(2, VOCAB, n_in).tolist() + [1], g.integers(2, VOCAB, n_tgt).tolist() + [1]))
    return ex


def batch(ex, first, n):
    rows = [ex[(first + i) % len(ex)] for i in range(n)]
    S, T = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    ids = torch.zeros(n, S, dtype=torch.long)
    mask = torch.zeros(n, S, dtype=torch.long)
    labels = torch.full((n, T), -100, dtype=torch.long)
    for i, (a, b) in enumerate(rows):
        ids[i, :len(a)] = torch.tensor(a)
        mask[i, :len(a)] = 1
        labels[i, :len(b)] = torch.tensor(b)
    return ids, mask, labels


def decay_names(model):
    """HF Trainer.get_decay_parameter_names: not LayerNorm modules, not names matching bias / norm patterns."""
    pats = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    return {n for n, _ in model.named_parameters() if not any(re.search(p, n.lower()) for p in pats)}


def experts_of(name):
    m = re.search(r"experts\.expert_(\d+)\.", name)
    return int(m.group(1)) if m else None


def run(case, model_dir, ex, h):
    torch.manual_seed(0)
    model = SwitchTransformersForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    cap = case.get("capacity")
    if cap is not None:
        for mod in model.modules():
            if hasattr(mod, "expert_capacity"):
                mod.expert_capacity = cap
    model.train()
    named = dict(model.named_parameters())
    if case.get("train_only"):
        pats = case["train_only"].split(",")
        for n, p in named.items():
            p.requires_grad_(any(fnmatch.fnmatchcase(n, q) for q in pats))
    trainable = [(n, p) for n, p in named.items() if p.requires_grad]
    if case["opt"] == "adamw":
        dec = decay_names(model)
        groups = [{"params": [p for n, p in trainable if n in dec], "weight_decay": 0.01},
                  {"params": [p for n, p in trainable if n not in dec], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        sched = get_linear_schedule_with_warmup(opt, 0, STEPS)
    else:
        opt = Adafactor([p for _, p in trainable], lr=1e-3, scale_parameter=False, relative_step=False, warmup_init=False,
                        beta1=case.get("beta1"), weight_decay=0.0, clip_threshold=1.0, decay_rate=-0.8)
        sched = get_constant_schedule(opt)
    n_micro = case.get("micro", 1)
    losses, idle = [], []
    for step in range(STEPS):
        total = 0.0
        for k in range(n_micro):
            mb = BATCH // n_micro
            ids, mask, labels = batch(ex, step * BATCH + k * mb, mb)
            out = model(input_ids=ids, attention_mask=mask, labels=labels, output_router_logits=True)
            (out.loss / n_micro).backward()
            total += out.loss.item() / n_micro
        losses.append(total)
        idle.append(sorted({n for n, p in trainable if experts_of(n) is not None and p.grad is None}))
        if case["opt"] == "adamw":
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable if p.grad is not None], 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    g = h.create_group(case["name"])
    g.attrs["set"] = json.dumps(case["set"])
    g["losses"] = np.array(losses, dtype=np.float64)
    n_idle = sum(len(i) for i in idle) // 2  # wi and wo of one expert
    g.attrs["idle_expert_steps"] = n_idle
    for n, p in named.items():
        g[f"final/{n}"] = p.detach().numpy().astype(np.float32)
    print(f"{case['name']:12s} loss {losses[0]:.4f} -> {losses[-1]:.4f}, idle expert-steps {n_idle}")


def main():
    torch.manual_seed(1234)
    model_dir = os.path.join(OUT, "model")
    shutil.rmtree(model_dir, ignore_errors=True)
    model = SwitchTransformersForConditionalGeneration(config(64)).eval()
    model.save_pretrained(model_dir, safe_serialization=True)
    ex = examples(7)
    common = ["data.shuffle=false", "model.dropout_rate=0", "train.batch_size=8", f"train.steps={STEPS}"]
    adamw = ["optim.name=adamw", "optim.lr=1e-3", "optim.weight_decay=0.01", "schedule.name=linear_decay",
             "train.grad_clip=1.0"]
    adafactor = ["optim.name=adafactor", "optim.lr=1e-3", "optim.relative_step=false", "optim.scale_parameter=false",
                 "schedule.name=constant", "train.grad_clip=0"]
    cases = [
        {"name": "adamw", "opt": "adamw", "set": common + adamw},
        {"name": "adafactor", "opt": "adafactor", "set": common + adafactor},
        {"name": "adafactor_b1", "opt": "adafactor", "beta1": 0.9, "set": common + adafactor + ["optim.beta1=0.9"]},
        {"name": "drops", "opt": "adamw", "capacity": 1, "set": common + adamw + ["model.expert_capacity=1"]},
        {"name": "train_only", "opt": "adamw", "train_only": "*.router.*,*.expert_3.*",
         "set": common + adamw + ["train.train_only=*.router.*,*.expert_3.*"]},
        {"name": "accum", "opt": "adamw", "micro": 2, "set": common + adamw + ["train.micro_batch_size=4"]},
    ]
    with h5py.File(os.path.join(OUT, "trajectories.h5"), "w") as h:
        h.attrs["transformers_version"] = transformers.__version__
        h.attrs["torch_version"] = str(torch.__version__)
        flat_in, off_in, flat_tgt, off_tgt = [], [0], [], [0]
        for a, b in ex:
            flat_in += a
            flat_tgt += b
            off_in.append(len(flat_in))
            off_tgt.append(len(flat_tgt))
        h["data/inputs"] = np.array(flat_in, dtype=np.int32)
        h["data/input_offsets"] = np.array(off_in, dtype=np.int64)
        h["data/targets"] = np.array(flat_tgt, dtype=np.int32)
        h["data/target_offsets"] = np.array(off_tgt, dtype=np.int64)
        for c in cases:
            run(c, model_dir, ex, h)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
