#!/usr/bin/env python3
"""Reference trajectories for switchc's optimizers and schedules (tests/test_optim.c), from torch.optim.AdamW and
transformers 4.57.6's Adafactor and get_*_schedule_with_warmup, in float32 on the CPU.

Three parameters (a 2-D [5, 7] matrix, a 1-D [7] norm, a [3, 4, 5] expert block held by torch as three [4, 5]
experts, as transformers holds them), five fixed gradients each, and the parameters after every step for: AdamW
(weight decay 0.01 except on the 1-D norm), Adafactor with T5's relative step (scale_parameter, no first moment),
Adafactor at a fixed lr 1e-3, and Adafactor with beta1 0.9; each also with some experts idle (grad None) at some
steps ("_idle": torch skips them and their step counts stay).
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


def trajectory(make_opt, h, name, idle=()):
    """The expert block e3 is held as 3 separate [4, 5] parameters, as transformers holds one weight per expert: each
    has its own step count, factoring and update clipping. idle: (step, expert) pairs whose expert gets no gradient
    (grad None: torch skips it, as an expert that received no token)."""
    p = params(1)
    units = {"w2": [p["w2"]], "n1": [p["n1"]], "e3": [torch.nn.Parameter(p["e3"][e].detach().clone()) for e in range(3)]}
    G = grads(2)
    opt = make_opt(units)
    active = np.ones((STEPS, 3), dtype=np.uint8)
    for t in range(STEPS):
        for k in ("w2", "n1"):
            units[k][0].grad = G[t][k].clone()
        for e in range(3):
            units["e3"][e].grad = None if (t + 1, e) in idle else G[t]["e3"][e].clone()
            active[t, e] = (t + 1, e) not in idle
        opt.step()
        for k in units:
            h[f"{name}/step{t + 1}/{k}"] = torch.stack([u.detach() for u in units[k]]).reshape(SHAPES[k]).numpy().astype(np.float32)
    h[f"{name}/active"] = active


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
        def every(u):
            return u["w2"] + u["n1"] + u["e3"]

        idle = ((1, 2), (2, 1), (3, 1), (5, 0))
        for suffix, idl in (("", ()), ("_idle", idle)):
            trajectory(lambda u: torch.optim.AdamW([{"params": u["w2"] + u["e3"], "weight_decay": 0.01}, {"params": u["n1"], "weight_decay": 0.0}],
                                                   lr=1e-3, betas=(0.9, 0.98), eps=1e-8), h, "adamw" + suffix, idl)
            trajectory(lambda u: Adafactor(every(u), lr=None, relative_step=True, scale_parameter=True, warmup_init=False), h,
                       "adafactor_rel" + suffix, idl)
            trajectory(lambda u: Adafactor(every(u), lr=1e-3, relative_step=False, scale_parameter=False), h, "adafactor_fixed" + suffix, idl)
            trajectory(lambda u: Adafactor(every(u), lr=1e-3, relative_step=False, scale_parameter=False, beta1=0.9), h,
                       "adafactor_beta1" + suffix, idl)
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
