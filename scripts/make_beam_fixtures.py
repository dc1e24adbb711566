#!/usr/bin/env python3
"""Fixtures for switchc's beam-search parity test (tests/test_beam_parity.c): small random
SwitchTransformersForConditionalGeneration models (transformers 4.57.6, float32, CPU) and what HF's
model.generate(input_ids, attention_mask=..., num_beams=nb, length_penalty=lp, early_stopping=es, max_new_tokens=L,
do_sample=False) returns for a grid of settings.

  tests/fixtures/beam/<model>/   config.json + model.safetensors (save_pretrained; read by switchc's HF loader)
  tests/fixtures/beam/cases.h5   per model, a group /<model> with input_ids, attention_mask [B, S] int32
                                 (right-padded rows) and one table row per case n:
                                   num_beams, max_new_tokens, rows (the first `rows` inputs are the batch),
                                   early_stopping (0 False, 1 True, 2 "never"), steps (decoding steps HF ran) [N]
                                   int32; length_penalty [N] float64;
                                   sequences [N, B, Lmax] int32: HF's output without the start token, -1 beyond
                                   its width and in rows past `rows`; lengths [N, B] int32: generated tokens up
                                   to and including EOS (0 past `rows`); scores [N, B] float32: HF's
                                   sequences_scores (0 for greedy)

The lm_head row of EOS is changed in two of the models (see MODELS) so that some hypotheses finish early and some
run to the length limit, and generation sometimes stops before it. A case is kept only if its output survives two random
perturbations of HF's log-probabilities by up to 3e-5 per step (a logits processor): switchc's logits differ from
HF's by ~1e-6, so a case decided by a smaller margin would test float rounding, not the algorithm.

Regenerate: python3 scripts/make_beam_fixtures.py    (torch, transformers==4.57.6, h5py, numpy)
"""
import itertools
import os
import shutil
import sys

import h5py
import numpy as np
import torch
import transformers
from transformers import (LogitsProcessor, LogitsProcessorList, SwitchTransformersConfig,
                          SwitchTransformersForConditionalGeneration)

if transformers.__version__ != "4.57.6":
    sys.exit(f"make_beam_fixtures.py needs transformers 4.57.6, found {transformers.__version__}")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "beam")
V, EOS = 32, 1
ES_CODE = {False: 0, True: 1, "never": 2}

# name: (seed, tie_word_embeddings, scale of lm_head[EOS], EOS logit shift)
#   tied:        EOS untouched: most hypotheses run to the length limit
#   untied_eos4: lm_head[EOS] x 4: EOS very likely after some prefixes, very unlikely after others
#   eos_bias:    lm_head[EOS] + 5 mu / |mu|^2, mu the mean final decoder state: EOS logit raised by ~5 everywhere,
#                most hypotheses finish early and generation often stops before the limit
MODELS = {"tied": (1, True, 1.0, 0.0), "untied_eos4": (2, False, 4.0, 0.0), "eos_bias": (3, False, 1.0, 5.0)}


def build(seed, tied, eos_scale, eos_shift, ids, mask):
    torch.manual_seed(seed)
    cfg = SwitchTransformersConfig(vocab_size=V, d_model=16, d_kv=4, num_heads=4, d_ff=16, num_layers=2,
                                   num_decoder_layers=2, num_sparse_encoder_layers=1, num_sparse_decoder_layers=1,
                                   num_experts=4, expert_capacity=64, router_jitter_noise=0.0, pad_token_id=0,
                                   eos_token_id=EOS, decoder_start_token_id=0, tie_word_embeddings=tied)
    model = SwitchTransformersForConditionalGeneration(cfg).float().eval()
    with torch.no_grad():
        if eos_scale != 1.0:
            model.lm_head.weight[EOS] *= eos_scale
        if eos_shift:
            dec = torch.randint(2, V, (ids.shape[0], 12), generator=torch.Generator().manual_seed(seed))
            out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True)
            mu = out.decoder_hidden_states[-1].reshape(-1, cfg.d_model).mean(0)
            model.lm_head.weight[EOS] += eos_shift * mu / mu.norm() ** 2
    return model


def inputs(seed):
    """Four right-padded rows of 9, 6, 4 and 9 tokens, each ending in EOS as T5Tokenizer writes them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, V, (4, 9), generator=g)
    lens = [9, 6, 4, 9]
    mask = torch.zeros_like(ids)
    for b, n in enumerate(lens):
        ids[b, n - 1] = EOS
        ids[b, n:] = 0
        mask[b, :n] = 1
    return ids, mask


class Noise(LogitsProcessor):
    """Adds uniform noise in [-amp, amp] to every log-probability; counts the decoding steps."""

    def __init__(self, amp, seed):
        self.amp, self.g, self.steps = amp, torch.Generator().manual_seed(seed), 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        if self.amp == 0:
            return scores
        return scores + (torch.rand(scores.shape, generator=self.g) * 2 - 1) * self.amp


def run(model, ids, mask, nb, lp, es, L, amp=0.0, seed=0):
    proc = Noise(amp, seed)
    kw = dict(num_beams=nb, length_penalty=lp, early_stopping=es) if nb > 1 else dict(num_beams=1)
    with torch.no_grad():
        o = model.generate(ids, attention_mask=mask, max_new_tokens=L, do_sample=False, return_dict_in_generate=True,
                           output_scores=True, logits_processor=LogitsProcessorList([proc]), **kw)
    seqs = o.sequences[:, 1:].numpy().astype(np.int32)  # the decoder start token dropped
    lengths = []
    for b, row in enumerate(seqs.tolist()):
        n = row.index(EOS) + 1 if EOS in row else len(row)
        if nb > 1:  # HF's own count of generated tokens: the beam indices set for this sequence
            assert n == int((o.beam_indices[b] >= 0).sum()), (row, o.beam_indices[b])
        assert n == len(row) or n < L, row
        lengths.append(n)
    scores = o.sequences_scores.numpy().astype(np.float32) if nb > 1 else np.zeros(len(seqs), np.float32)
    return seqs, np.array(lengths, np.int32), scores, proc.steps


def grid():
    """(num_beams, length_penalty, early_stopping, max_new_tokens, rows)"""
    for nb, lp, es, L in itertools.product(range(2, 9), (0.5, 1.0, 2.0), (False, True), (5, 24)):
        yield nb, lp, es, L, 4
    for nb, lp, L in itertools.product((2, 4, 8), (0.0, 0.5, 1.0, 2.0), (5, 24)):
        yield nb, lp, "never", L, 4
    for nb, es in itertools.product((3, 5), (False, True, "never")):  # batch of one: it alone decides the stop
        yield nb, 1.0, es, 24, 1
    for L in (5, 24):
        yield 1, 1.0, False, L, 4


def same(a, b):
    return all(x.shape == y.shape and (x == y).all() for x, y in zip(a[:2], b[:2]))


def main():
    torch.set_num_threads(1)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    stats = dict(cases=0, dropped=0, rows_eos=0, rows_maxlen=0, stopped_early=0, ran_to_limit=0)
    Lmax = max(c[3] for c in grid())
    with h5py.File(os.path.join(OUT, "cases.h5"), "w") as h:
        for mi, (name, (seed, tied, eos_scale, eos_shift)) in enumerate(MODELS.items()):
            ids, mask = inputs(100 + mi)
            model = build(seed, tied, eos_scale, eos_shift, ids, mask)
            model.save_pretrained(os.path.join(OUT, name))
            os.remove(os.path.join(OUT, name, "generation_config.json"))  # not read by the test
            B = ids.shape[0]
            table = {k: [] for k in ("num_beams", "max_new_tokens", "rows", "early_stopping", "steps",
                                     "length_penalty", "sequences", "lengths", "scores")}
            for nb, lp, es, L, rows in grid():
                ref = run(model, ids[:rows], mask[:rows], nb, lp, es, L)
                if not all(same(ref, run(model, ids[:rows], mask[:rows], nb, lp, es, L, 3e-5, s)) for s in (1, 2)):
                    stats["dropped"] += 1
                    print(f"{name}: dropped (fragile) nb={nb} lp={lp} es={es} L={L} rows={rows}", flush=True)
                    continue
                seqs, lengths, scores, steps = ref
                padded = np.full((B, Lmax), -1, np.int32)
                padded[:rows, :seqs.shape[1]] = seqs
                for k, v in (("num_beams", nb), ("max_new_tokens", L), ("rows", rows), ("early_stopping", ES_CODE[es]),
                             ("steps", steps), ("length_penalty", lp), ("sequences", padded),
                             ("lengths", np.pad(lengths, (0, B - rows))),
                             ("scores", np.pad(scores, (0, B - rows)))):
                    table[k].append(v)
                stats["cases"] += 1
                stats["rows_eos"] += int(sum(int(s[n - 1] == EOS) for s, n in zip(seqs, lengths)))
                stats["rows_maxlen"] += int(sum(int(s[n - 1] != EOS) for s, n in zip(seqs, lengths)))
                stats["stopped_early" if steps < L else "ran_to_limit"] += 1
            grp = h.create_group(name)
            grp["input_ids"] = ids.numpy().astype(np.int32)
            grp["attention_mask"] = mask.numpy().astype(np.int32)
            for k, v in table.items():
                dt = np.float64 if k == "length_penalty" else np.float32 if k == "scores" else np.int32
                grp[k] = np.array(v, dt)
            print(f"{name}: {len(table['rows'])} cases; {stats}", flush=True)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total} bytes; {stats}")


if __name__ == "__main__":
    main()
