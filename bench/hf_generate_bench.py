#!/usr/bin/env python3
"""The Hugging Face side of bench_generate: greedy generate of the same ids with the same model folder, fp32 or
load_in_8bit (bitsandbytes' CPU backend), exactly --new-tokens per row (min_new_tokens), after a 2-token warm-up;
one JSON line with the same fields.

  python3 bench/hf_generate_bench.py --model DIR --ids IDS.txt --new-tokens 32 --threads 2 [--int8]
"""
import argparse
import json
import time

import torch
import transformers
from transformers import SwitchTransformersForConditionalGeneration


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--int8-threshold", type=float, default=6.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    kw = dict(dtype=torch.float32)
    if a.int8:
        from transformers import BitsAndBytesConfig
        kw.update(quantization_config=BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=a.int8_threshold),
                  device_map="cpu")
    t0 = time.perf_counter()
    model = SwitchTransformersForConditionalGeneration.from_pretrained(a.model, **kw).eval()
    load_s = time.perf_counter() - t0
    with open(a.ids) as f:
        ids = torch.tensor([[int(v) for v in line.split()] for line in f if line.strip()])
    mask = torch.ones_like(ids)
    gen = dict(do_sample=False, num_beams=1, attention_mask=mask)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **gen)
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, **gen)
        sec = time.perf_counter() - t
    tokens = int((out.shape[1] - 1) * out.shape[0])
    print(json.dumps({"impl": "hf", "int8": a.int8, "torch": torch.__version__,
                      "transformers": transformers.__version__, "batch": int(ids.shape[0]),
                      "src_len": int(ids.shape[1]), "new_tokens": a.new_tokens, "threads": torch.get_num_threads(),
                      "sec": round(sec, 4), "tokens": tokens, "tokens_per_s": round(tokens / sec, 2),
                      "load_s": round(load_s, 2), "first_row": out[0, 1:4].tolist(),
                      "weight_bytes": int(model.get_memory_footprint())}))


if __name__ == "__main__":
    main()
