#!/usr/bin/env python3
"""Reference fixtures for switchc's model parity test (tests/test_model_parity.c).

Builds small random SwitchTransformersForConditionalGeneration models with Hugging Face transformers 4.57.6 in
float32 on the CPU, runs forward and backward on fixed inputs (eval mode: no dropout, no jitter; labels given;
output_router_logits=True), and writes one HDF5 file per case to tests/fixtures/reference/<case>.h5. The layout is
documented in tests/fixtures/reference/README.md.

Regenerate with:   python3 scripts/make_reference.py        (needs torch, transformers==4.57.6, h5py, numpy)
The output is deterministic for a given torch build (seeded); the C test reads only the files.
"""
import json
import os
import sys

import h5py
import numpy as np
import torch
import transformers
from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5DenseGatedActDense

if transformers.__version__ != "4.57.6":
    sys.exit(f"make_reference.py: needs transformers 4.57.6 (the reference semantics, SPEC.md 0.2), found {transformers.__version__}")

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "reference")

BASE = dict(vocab_size=50, d_model=16, d_kv=4, num_heads=4, d_ff=32, num_layers=4, num_decoder_layers=4,
            num_sparse_encoder_layers=2, num_sparse_decoder_layers=2, num_experts=4, expert_capacity=64,
            router_jitter_noise=0.0, dropout_rate=0.1, relative_attention_num_buckets=32,
            relative_attention_max_distance=128, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
            router_z_loss_coef=0.001, router_aux_loss_coef=0.001)

CASES = {
    # padding in inputs (row 1 ends in pads) and in targets (-100 at the end of row 0)
    "relu_tied": dict(),
    # capacity 2 with 14 source / 9 target tokens per row: tokens are dropped in both stacks
    "capacity_drop": dict(expert_capacity=2),
    "untied": dict(tie_word_embeddings=False),
    # every encoder block sparse: HF zeroes that stack's router losses (encoder_sparse_step == 1, SPEC 5.4)
    "step1": dict(num_sparse_encoder_layers=4, num_layers=4),
    # exact (erf) gelu, ungated, with a router bias
    "gelu_router_bias": dict(dense_act_fn="gelu", router_bias=True),
    # T5 v1.1 gated-gelu FFNs: a switchc knob (HF's Switch code has none: see gated() below)
    "gated_gelu": dict(dense_act_fn="gelu_new", switchc={"gated_ffn": True}),
    # silu FFNs; is_gated_act and feed_forward_proj "gated-gelu" as Google's configs carry them, which HF's Switch code
    # never reads: the FFNs stay wi/wo with ACT2FN["silu"]
    "silu_gated_keys_ignored": dict(dense_act_fn="silu", is_gated_act=True, feed_forward_proj="gated-gelu"),
}


def gated(model, config):
    """HF Switch has no gated FFN (issue #25347), and is_gated_act / feed_forward_proj do not give it one. For the
    switchc knob switchc.gated_ffn, every dense FFN and every expert is replaced by transformers'
    T5DenseGatedActDense (wi_0, wi_1, wo: act(x wi_0^T) * (x wi_1^T) wo^T), which takes and returns the same tensors
    as SwitchTransformersDenseActDense; the act is config.dense_act_fn (gelu_new = tanh gelu)."""
    from transformers.models.switch_transformers import modeling_switch_transformers as M
    n = 0
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, M.SwitchTransformersDenseActDense):
                new = T5DenseGatedActDense(config)
                setattr(mod, child_name, new)
                n += 1
    assert n > 0
    return n


def init_weights(model, seed):
    """HF's _init_weights at initializer_factor 1 gives router logits of size ~sqrt(d_model): with these tiny widths
    that routes well. Gated modules (not known to _init_weights) get the same std as wi/wo."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "wi_0" in name or "wi_1" in name or ".wi." in name:
                p.copy_(torch.randn(p.shape, generator=g) * model.config.d_model ** -0.5)
            elif ".wo." in name:
                p.copy_(torch.randn(p.shape, generator=g) * model.config.d_ff ** -0.5)
            elif "router.classifier" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (model.config.d_model ** -0.5 if p.dim() == 2 and "shared" not in name and "lm_head" not in name else 1.0))


def make_case(name, over, seed):
    cfg = dict(BASE)
    cfg.update(over)
    torch.manual_seed(seed)
    config = SwitchTransformersConfig(**cfg)
    model = SwitchTransformersForConditionalGeneration(config)
    if cfg.get("switchc", {}).get("gated_ffn"):
        gated(model, config)
    init_weights(model, seed)
    model.eval()
    model.float()

    B, S, T = 3, 14, 9
    g = torch.Generator().manual_seed(seed + 1)
    input_ids = torch.randint(2, cfg["vocab_size"], (B, S), generator=g)
    attention_mask = torch.ones(B, S, dtype=torch.long)
    attention_mask[1, 10:] = 0
    input_ids[1, 10:] = 0
    input_ids[:, -1] = torch.where(attention_mask[:, -1] == 1, torch.tensor(1), input_ids[:, -1])
    labels = torch.randint(2, cfg["vocab_size"], (B, T), generator=g)
    labels[0, 6:] = -100
    labels[2, -1] = 1

    # router hooks: raw logits, the argmax before capacity, and the capacity-masked one-hot
    captured = {}

    def hook(key):
        def fn(mod, inp, out):
            expert_index, probs, logits = out
            captured[key] = dict(logits=logits.detach().clone(),
                                 choice=torch.argmax(torch.softmax(logits, dim=-1), dim=-1).detach().clone(),
                                 kept=expert_index.sum(-1).detach().clone())
        return fn

    for stack_name in ("encoder", "decoder"):
        stack = getattr(model, stack_name)
        for i, blk in enumerate(stack.block):
            mlp = blk.layer[-1].mlp
            if hasattr(mlp, "router"):
                mlp.router.register_forward_hook(hook((stack_name, i)))

    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, output_router_logits=True,
                return_dict=True)
    model.zero_grad()
    out.loss.backward()

    logits = out.logits.detach()
    ce = torch.nn.CrossEntropyLoss(ignore_index=-100)(logits.view(-1, logits.size(-1)), labels.view(-1)).item()
    f = lambda v: float(v) if not torch.is_tensor(v) else float(v.item())
    ez, ea, dz, da = f(out.encoder_z_loss), f(out.encoder_aux_loss), f(out.decoder_z_loss), f(out.decoder_aux_loss)
    total = ce + config.router_z_loss_coef * (ez + dz) + config.router_aux_loss_coef * (ea + da)
    assert abs(total - out.loss.item()) <= 1e-6 * max(1.0, abs(total)), (total, out.loss.item())

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{name}.h5")
    dropped = {"encoder": 0, "decoder": 0}
    with h5py.File(path, "w") as h:
        h.attrs["case"] = str(name)
        h.attrs["transformers_version"] = str(transformers.__version__)
        h.attrs["torch_version"] = str(torch.__version__)
        h.attrs["config_json"] = config.to_json_string(use_diff=False)
        h.attrs["seed"] = seed
        seen = set()
        for pname, p in model.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            h[f"weights/{pname}"] = p.detach().numpy().astype(np.float32)
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            h[f"grads/{pname}"] = grad.detach().numpy().astype(np.float32)
        h["inputs/input_ids"] = input_ids.numpy().astype(np.int32)
        h["inputs/attention_mask"] = attention_mask.numpy().astype(np.int32)
        h["inputs/labels"] = labels.numpy().astype(np.int32)
        h["inputs/decoder_input_ids"] = model._shift_right(labels).numpy().astype(np.int32)
        h["outputs/logits"] = logits.numpy().astype(np.float32)
        h["outputs/encoder_last_hidden_state"] = out.encoder_last_hidden_state.detach().numpy().astype(np.float32)
        for key, val in (("loss", out.loss.item()), ("ce_loss", ce), ("encoder_z_loss", ez), ("encoder_aux_loss", ea),
                         ("decoder_z_loss", dz), ("decoder_aux_loss", da)):
            h[f"outputs/{key}"] = np.array([val], dtype=np.float64)
        for (stack_name, i), c in captured.items():
            grp = f"router/{stack_name}/block_{i}"
            h[f"{grp}/logits"] = c["logits"].numpy().astype(np.float32)
            h[f"{grp}/expert_index"] = c["choice"].numpy().astype(np.int32)
            h[f"{grp}/kept"] = c["kept"].numpy().astype(np.int32)
            dropped[stack_name] += int((c["kept"] == 0).sum())
    print(f"{name}: loss {out.loss.item():.6f} ce {ce:.6f} z {ez:.4g}/{dz:.4g} aux {ea:.4g}/{da:.4g} "
          f"dropped enc {dropped['encoder']} dec {dropped['decoder']} -> {os.path.relpath(path)} "
          f"({os.path.getsize(path)} bytes)")
    return dropped


def main():
    for k, (name, over) in enumerate(CASES.items()):
        dropped = make_case(name, over, 1000 + k)
        if name == "capacity_drop":
            assert dropped["encoder"] > 0 and dropped["decoder"] > 0, "capacity_drop must drop tokens in both stacks"


if __name__ == "__main__":
    main()
