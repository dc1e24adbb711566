#!/usr/bin/env python3
"""Reference of expert-choice routing (Zhou et al. 2022) for tests/test_moe_expert_choice.c, written in PyTorch from the
paper, independently of moe/route.c: per group of G tokens, S = softmax(x Wr^T) [G, E]; each expert e takes the
C = min(capacity, G) tokens of highest S[:, e] (ties: the earlier token: a stable descending sort); the layer output
is y_t = sum over the experts e that took t of S[t, e] * FFN_e(x_t), with FFN_e(x) = relu(x wi_e^T) wo_e^T. A token no
expert took outputs 0. Stores the inputs, y, and the gradients of sum(y * R) (R fixed random) for every input.

    python3 scripts/make_expert_choice_fixture.py   -> tests/fixtures/moe/expert_choice.h5
"""
import os

import h5py
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "moe", "expert_choice.h5")


def layer(x, wr, wi, wo, G, cap):
    N, E = x.shape[0], wr.shape[0]
    probs = torch.softmax(x @ wr.T, dim=-1)
    y = torch.zeros_like(x)
    chosen = torch.zeros(N, E, dtype=torch.bool)
    C = min(cap, G)
    for g0 in range(0, N, G):
        for e in range(E):
            order = np.argsort(-probs[g0:g0 + G, e].detach().numpy(), kind="stable")[:C]
            for i in order:
                t = g0 + int(i)
                chosen[t, e] = True
                h = torch.relu(x[t] @ wi[e].T) @ wo[e].T
                y = y.index_add(0, torch.tensor([t]), (probs[t, e] * h)[None])
    return y, chosen


def main():
    torch.manual_seed(11)
    cases = [("small", 8, 5, 7, 4, 4, 2), ("groups", 12, 6, 8, 3, 4, 3), ("big_capacity", 6, 4, 5, 2, 6, 9)]
    with h5py.File(OUT, "w") as h:
        h.attrs["torch_version"] = str(torch.__version__)
        for name, N, D, F, E, G, cap in cases:
            x = torch.randn(N, D, dtype=torch.float64, requires_grad=True)
            wr = torch.randn(E, D, dtype=torch.float64, requires_grad=True)
            wi = (0.5 * torch.randn(E, F, D, dtype=torch.float64)).requires_grad_()
            wo = (0.5 * torch.randn(E, D, F, dtype=torch.float64)).requires_grad_()
            R = torch.randn(N, D, dtype=torch.float64)
            y, chosen = layer(x, wr, wi, wo, G, cap)
            (y * R).sum().backward()
            g = h.create_group(name)
            g.attrs["G"], g.attrs["capacity"] = G, cap
            for k, v in (("x", x), ("router", wr), ("wi", wi), ("wo", wo)):
                g[k] = v.detach().numpy()
                g["grad_" + k] = v.grad.numpy()
            g["R"], g["y"], g["chosen"] = R.numpy(), y.detach().numpy(), chosen.numpy().astype(np.uint8)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
