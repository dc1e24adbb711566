#!/usr/bin/env python3
"""The Hugging Face side of switchc's CPU benchmarks: the same config, batch shape and mode as bench_model, timed the
same way (warm-up iterations, then the mean of --steps), printing one JSON line with the same fields.

  python3 bench/hf_bench.py --config configs/models/switch-base-8.json --mode fwdbwd --batch 2 --src-len 128 --tgt-len 32
  python3 bench/hf_bench.py --config run_model.json --mode trainstep --batch 32 --src-len 8 --tgt-len 8 --threads 2

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
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    with open(a.config) as f:
        cfg = json.load(f)
    cfg.pop("switchc", None)
    config = SwitchTransformersConfig(**cfg)
    torch.manual_seed(0)
    model = SwitchTransformersForConditionalGeneration(config).float()
    model.train(a.train)
    fwd = torch.compile(model) if a.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01) if a.mode == "trainstep" else None
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
    print(json.dumps({"impl": "hf" + ("+compile" if a.compile else ""), "torch": torch.__version__,
                      "transformers": transformers.__version__, "mode": a.mode, "batch": a.batch,
                      "src_len": a.src_len, "tgt_len": a.tgt_len, "threads": torch.get_num_threads(),
                      "sec_per_step": round(sec, 6), "tokens_per_s": round(a.batch * (a.src_len + a.tgt_len) / sec, 1),
                      "peak_rss_mb": round(peak_rss_mb(), 1),
                      "params": model.num_parameters()}))


if __name__ == "__main__":
    main()
