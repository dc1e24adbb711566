#!/usr/bin/env python3
"""The Hugging Face side of switchc's CPU benchmarks: the same config, batch shape and mode as bench_model, timed the
same way (warm-up iterations, then the mean of --steps), printing one JSON line with the same fields.

  python3 bench/hf_bench.py --config configs/models/switch-base-8.json --mode fwdbwd --batch 2 --src-len 128 --tgt-len 32
  python3 bench/hf_bench.py --config run_model.json --mode trainstep --batch 32 --src-len 8 --tgt-len 8 --threads 2
  python3 bench/hf_bench.py --config configs/models/switch-base-8.json --mode trainstep --train --lora 8   # + peft

--lora R wraps the model in peft (LoraConfig r=R, --lora-alpha, --lora-dropout, target_modules the regex
--lora-targets, default every expert's wi/wo: the switchc recipe configs/runs/lora-experts.json), the base frozen;
AdamW then steps the trainable parameters alone, and the line carries lora_r, trainable_params and peft.

Peak memory is this process's VmHWM, so run one measurement per process (scripts/bench_model.py does).
"""
import argparse
import json
import resource
import time

import torch
import transformers
from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration


def peak_rss_mb():
    """VmHWM: this process's own peak. ru_maxrss would include the resident set of the process that forked it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# Every expert's wi and wo (encoder.block.1.layer.1.mlp.experts.expert_0.wi, ...), not the dense layers' mlp.wi/wo:
# peft full-matches a string target_modules against each module's name.
EXPERT_TARGETS = r".*\.mlp\.experts\.expert_\d+\.(wi|wo)"


def add_lora(model, a):
    """peft's LoRA on a.lora_targets; returns the PeftModel (its base frozen)."""
    import peft
    cfg = peft.LoraConfig(r=a.lora, lora_alpha=a.lora_alpha, lora_dropout=a.lora_dropout, target_modules=a.lora_targets)
    pm = peft.get_peft_model(model, cfg)
    n_adapted = sum(1 for _, m in pm.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer))
    if not n_adapted:
        raise SystemExit(f"hf_bench: --lora-targets {a.lora_targets!r} matches no module")
    return pm, peft.__version__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="an HF config.json (switchc's 'switchc' knobs are dropped)")
    ap.add_argument("--mode", choices=["fwdbwd", "trainstep"], default="fwdbwd")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--src-len", type=int, default=128)
    ap.add_argument("--tgt-len", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--train", action="store_true", help="train mode (dropout on); default eval mode")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--lora", type=int, default=0, help="peft LoRA rank (0: no adapters, the whole model trains)")
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    ap.add_argument("--lora-targets", default=EXPERT_TARGETS, help="peft target_modules as a regex over module names")
    a = ap.parse_args()
    if a.lora < 0 or not a.lora_alpha > 0 or not 0 <= a.lora_dropout < 1:
        ap.error("--lora must be >= 0, --lora-alpha > 0, --lora-dropout in [0, 1)")
    if a.threads:
        torch.set_num_threads(a.threads)
    with open(a.config) as f:
        cfg = json.load(f)
    cfg.pop("switchc", None)
    config = SwitchTransformersConfig(**cfg)
    torch.manual_seed(0)
    model = SwitchTransformersForConditionalGeneration(config).float()
    peft_version = None
    if a.lora:
        model, peft_version = add_lora(model, a)
    model.train(a.train)
    fwd = torch.compile(model) if a.compile else model
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01) if a.mode == "trainstep" else None
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(2, config.vocab_size, (a.batch, a.src_len), generator=g)
    labels = torch.randint(2, config.vocab_size, (a.batch, a.tgt_len), generator=g)
    mask = torch.ones_like(ids)
    t0 = None
    for it in range(a.warmup + a.steps):
        if it == a.warmup:
            t0 = time.perf_counter()
        model.zero_grad(set_to_none=False)
        out = fwd(input_ids=ids, attention_mask=mask, labels=labels, output_router_logits=True)
        out.loss.backward()
        if opt is not None:
            opt.step()
    sec = (time.perf_counter() - t0) / a.steps
    extra = {"lora_r": a.lora, "trainable_params": sum(p.numel() for p in trainable), "peft": peft_version} if a.lora else {}
    print(json.dumps({"impl": "hf" + ("+peft" if a.lora else "") + ("+compile" if a.compile else ""), "torch": torch.__version__,
                      "transformers": transformers.__version__, "mode": a.mode, "batch": a.batch,
                      "src_len": a.src_len, "tgt_len": a.tgt_len, "threads": torch.get_num_threads(),
                      "sec_per_step": round(sec, 6), "tokens_per_s": round(a.batch * (a.src_len + a.tgt_len) / sec, 1),
                      "peak_rss_mb": round(peak_rss_mb(), 1),
                      "params": model.num_parameters(), **extra}))


if __name__ == "__main__":
    main()
