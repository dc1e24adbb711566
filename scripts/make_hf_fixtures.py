#!/usr/bin/env python3
"""Fixtures for switchc's Hugging Face weight readers (tests/test_hf_weights.c): one tiny random
SwitchTransformersForConditionalGeneration (transformers 4.57.6, float32) saved in every form the Hub uses, plus the
logits HF computes for a fixed batch.

  tests/fixtures/hf/safetensors/   config.json + model.safetensors            (save_pretrained)
  tests/fixtures/hf/sharded/       config.json + model-0000k-of-0000n.safetensors + model.safetensors.index.json
  tests/fixtures/hf/bin_f32/       config.json + pytorch_model.bin            (save_pretrained(safe_serialization=False))
  tests/fixtures/hf/bin_bf16/      config.json + pytorch_model.bin of a bf16 state dict (as google/switch-base-8 ships)
  tests/fixtures/hf/reference.h5   inputs, logits of the fp32 model, logits of the bf16-rounded model (what HF gives
                                   loading the bf16 file in float32)

Regenerate: python3 scripts/make_hf_fixtures.py    (torch, transformers==4.57.6, h5py)
"""
import os
import shutil
import sys

import h5py
import numpy as np
import torch
import transformers
from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration

if transformers.__version__ != "4.57.6":
    sys.exit(f"make_hf_fixtures.py needs transformers 4.57.6, found {transformers.__version__}")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "hf")


def logits(model, ids, mask, labels):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, labels=labels).logits.numpy().astype(np.float32)


def main():
    torch.manual_seed(7)
    cfg = SwitchTransformersConfig(vocab_size=40, d_model=16, d_kv=4, num_heads=4, d_ff=24, num_layers=2, num_decoder_layers=2,
                                   num_sparse_encoder_layers=1, num_sparse_decoder_layers=1, num_experts=4, expert_capacity=64,
                                   router_jitter_noise=0.0, decoder_start_token_id=0)
    model = SwitchTransformersForConditionalGeneration(cfg).float().eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "router" in n:
                p.mul_(0.3)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    model.save_pretrained(os.path.join(OUT, "safetensors"))
    model.save_pretrained(os.path.join(OUT, "sharded"), max_shard_size="30KB")
    model.save_pretrained(os.path.join(OUT, "bin_f32"), safe_serialization=False)
    d = os.path.join(OUT, "bin_bf16")
    os.makedirs(d)
    cfg.save_pretrained(d)
    torch.save({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, os.path.join(d, "pytorch_model.bin"))
    for sub in os.listdir(OUT):  # generation_config.json is not needed by the tests
        g = os.path.join(OUT, sub, "generation_config.json")
        if os.path.exists(g):
            os.remove(g)

    g = torch.Generator().manual_seed(3)
    ids = torch.randint(2, 40, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    labels = torch.randint(2, 40, (2, 5), generator=g)
    bf = SwitchTransformersForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
    with h5py.File(os.path.join(OUT, "reference.h5"), "w") as h:
        h["input_ids"] = ids.numpy().astype(np.int32)
        h["attention_mask"] = mask.numpy().astype(np.int32)
        h["labels"] = labels.numpy().astype(np.int32)
        h["logits_f32"] = logits(model, ids, mask, labels)
        h["logits_bf16"] = logits(bf, ids, mask, labels)
    # hostile and damaged .bin files: the reader must refuse each with a clear error, running nothing
    import pickle, zipfile
    bad = os.path.join(OUT, "bad")
    os.makedirs(bad)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    def write_zip(name, members, compression=zipfile.ZIP_STORED):
        with zipfile.ZipFile(os.path.join(bad, name), "w", compression=compression) as z:
            for k, v in members.items():
                z.writestr(f"archive/{k}", v)

    write_zip("evil_global.bin", {"data.pkl": pickle.dumps({"x": Evil()}, protocol=2), "byteorder": b"little"})
    write_zip("bad_opcode.bin", {"data.pkl": pickle.dumps({"x": {1, 2}}, protocol=4), "byteorder": b"little"})
    write_zip("compressed.bin", {"data.pkl": pickle.dumps({}, protocol=2) * 50}, zipfile.ZIP_DEFLATED)
    write_zip("no_pickle.bin", {"version": b"3\n"})

    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total} bytes; shards: {sorted(os.listdir(os.path.join(OUT, 'sharded')))}")


if __name__ == "__main__":
    main()
