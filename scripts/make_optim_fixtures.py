#!/usr/bin/env python3
"""Reference trajectories for switchc's optimizers and schedules (tests/test_optim.c), from torch.optim.AdamW and
transformers 4.57.6's Adafactor and get_*_schedule_with_warmup, in float32 on the CPU.

Three parameters (a 2-D [5, 7] matrix, a 1-D [7] norm, a 3-D [3, 4, 5] expert block), five fixed gradients each,
and the parameters after every step for: AdamW (weight decay 0.01 except on the 1-D norm), Adafactor with T5's
relative step (scale_parameter, no first moment), Adafactor at a fixed lr 1e-3, and Adafactor with beta1 0.9.
Schedules: the lr after t scheduler steps, t = 1..60, warmup 10 of 60 steps.

Regenerate: python3 scripts/make_optim_fixtures.py  -> tests/fixtures/optim/optim.h5
"""
import os

import h5py
import numpy as np
import torch
import transformers
from transformers.optimization import (Adafactor, get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                                       get_inverse_sqrt_schedule, get_linear_schedule_with_warmup)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "optim", "optim.h5")
SHAPES = {"w2": (5, 7), "n1": (7,), "e3": (3, 4, 5)}
STEPS = 5


def params(seed):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.nn.Parameter(torch.randn(s, generator=g)) for k, s in SHAPES.items()}


def grads(seed):
    g = torch.Generator().manual_seed(seed)
    return [{k: torch.randn(s, generator=g) * (0.1 + i) for k, s in SHAPES.items()} for i in range(STEPS)]


def trajectory(make_opt, h, name):
    p = params(1)
    G = grads(2)
    opt = make_opt(p)
    for t in range(STEPS):
        for k in p:
            p[k].grad = G[t][k].clone()
        opt.step()
        for k in p:
            h[f"{name}/step{t + 1}/{k}"] = p[k].detach().numpy().astype(np.float32)


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with h5py.File(OUT, "w") as h:
        h.attrs["transformers_version"] = str(transformers.__version__)
        h.attrs["torch_version"] = str(torch.__version__)
        p0, G = params(1), grads(2)
        for k in p0:
            h[f"init/{k}"] = p0[k].detach().numpy().astype(np.float32)
            for t in range(STEPS):
                h[f"grads/step{t + 1}/{k}"] = G[t][k].numpy().astype(np.float32)
        trajectory(lambda p: torch.optim.AdamW([{"params": [p["w2"], p["e3"]], "weight_decay": 0.01}, {"params": [p["n1"]], "weight_decay": 0.0}],
                                               lr=1e-3, betas=(0.9, 0.98), eps=1e-8), h, "adamw")
        trajectory(lambda p: Adafactor(list(p.values()), lr=None, relative_step=True, scale_parameter=True, warmup_init=False), h, "adafactor_rel")
        trajectory(lambda p: Adafactor(list(p.values()), lr=1e-3, relative_step=False, scale_parameter=False), h, "adafactor_fixed")
        trajectory(lambda p: Adafactor(list(p.values()), lr=1e-3, relative_step=False, scale_parameter=False, beta1=0.9), h, "adafactor_beta1")
        for name, fn in (("constant_warmup", lambda o: get_constant_schedule_with_warmup(o, 10)),
                         ("cosine", lambda o: get_cosine_schedule_with_warmup(o, 10, 60)),
                         ("linear", lambda o: get_linear_schedule_with_warmup(o, 10, 60)),
                         ("inverse_sqrt", lambda o: get_inverse_sqrt_schedule(o, 10))):
            o = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
            s = fn(o)
            lrs = []
            for _ in range(60):
                o.step()
                s.step()
                lrs.append(o.param_groups[0]["lr"])
            h[f"schedules/{name}"] = np.array(lrs, dtype=np.float64)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
