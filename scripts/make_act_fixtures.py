#!/usr/bin/env python3
"""Hugging Face's FFN activations, as transformers 4.57.6 computes them (torch, float32, CPU), for
tests/test_model.c: every ACT2FN name switchc accepts for dense_act_fn, its values and its derivative (torch
autograd) on a fixed grid of inputs.

  tests/fixtures/activations/act2fn.h5: x f32 [N]; <name>/y f32 [N]; <name>/dydx f32 [N]; attrs versions

The grid: -12 .. 12 in steps of 1/20 (exactly 0, 6 and 10, where relu6 and gelu_10 clamp), plus a few large inputs.
prelu and xielu are left out: they carry learnable parameters (switchc refuses them).

  python3 scripts/make_act_fixtures.py        (torch, transformers==4.57.6, h5py, numpy)
"""
import os
import sys

import h5py
import numpy as np
import torch
import transformers
from transformers.activations import ACT2CLS, ACT2FN

if transformers.__version__ != "4.57.6":
    sys.exit(f"make_act_fixtures.py needs transformers 4.57.6, found {transformers.__version__}")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "activations", "act2fn.h5")
LEARNABLE = {"prelu", "xielu"}


def main():
    x = np.concatenate([np.arange(-240, 241) / 20.0, [-30.0, 15.0, 20.0, 21.0, 30.0, 50.0]]).astype(np.float32)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with h5py.File(OUT, "w") as h:
        h.attrs["transformers_version"] = str(transformers.__version__)
        h.attrs["torch_version"] = str(torch.__version__)
        h["x"] = x
        names = [n for n in ACT2CLS if n not in LEARNABLE]
        for name in names:
            t = torch.tensor(x, requires_grad=True)
            y = ACT2FN[name](t)
            y.sum().backward()
            h[f"{name}/y"] = y.detach().numpy().astype(np.float32)
            h[f"{name}/dydx"] = t.grad.numpy().astype(np.float32)
    print(f"{len(names)} activations on {x.size} inputs -> {os.path.relpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
