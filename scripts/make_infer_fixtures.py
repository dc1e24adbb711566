#!/usr/bin/env python3
"""Fixtures for switchc's inference commands (tests/test_infer.c): generate over a file, sampling, embed and int8.

A small random SwitchTransformersForConditionalGeneration (transformers 4.57.6, float32, CPU) with a real
SentencePiece tokenizer (tests/fixtures/text_task/spiece.model: 300 pieces + 100 sentinels = vocab 400), and what HF
computes for it:

  tests/fixtures/infer/model/        config.json, model.safetensors, spiece.model (an HF folder switchc reads)
  tests/fixtures/infer/inputs.jsonl  one {"input": TEXT} per line (the last few as {"input": [ids]})
  tests/fixtures/infer/inputs.txt    the same texts, one per line
  tests/fixtures/infer/generate.jsonl  per setting and input, what HF's model.generate gives for that input alone
                                     (batch of one): {"setting", "index", "output_ids", "score"}; the settings are
                                     in SETTINGS. An input is left out of a setting (and listed in "dropped") when
                                     its output changes under a 3e-5 perturbation of HF's log-probabilities, or when
                                     HF's own batched run (all inputs right-padded together) differs from the
                                     batch-of-one run: such a case tests float rounding, not the algorithm.
                                     "output" is T5Tokenizer.decode of the ids without EOS and padding
                                     (skip_special_tokens=False: sentinels kept, as switchc prints them).
  tests/fixtures/infer/sampling.h5   the first decoding step of one input: HF's logits [V] and, per warper setting
                                     (temperature, top_k, top_p), softmax after HF's TemperatureLogitsWarper,
                                     TopKLogitsWarper, TopPLogitsWarper in _get_logits_processor's order [n, V]
  tests/fixtures/infer/embed.h5      SwitchTransformersEncoderModel.from_pretrained(model/) on all inputs right-padded
                                     together: input_ids, mask [N, S]; hidden [N, S, D] (last_hidden_state); pooled
                                     [N, D] (the mean over mask = 1); router_logits/block_<b> [N, S, E] for each
                                     sparse encoder block b (router_probs[b][0], the raw router logits)
  tests/fixtures/infer/int8.h5       bitsandbytes 0.50 (its CPU backend) Linear8bitLt, has_fp16_weights=False, eval:
                                     /linear: W [O, I], X [N, I] with outlier columns, CB (int8) and SCB (its
                                     quantized weight), Y_t6 / Y_t0 (outputs at threshold 6.0 and 0.0: no outlier
                                     decomposition); /model: int8_model/ loaded with transformers'
                                     BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=T), dtype float32 on
                                     the CPU: input_ids, attention_mask, decoder_input_ids, logits_t6, logits_t0, and
                                     the float32 model's logits_fp32
  tests/fixtures/infer/int8_model/   a second random model (tied embeddings as switch-base-8's: an untied folder
                                     loses its embedding in from_pretrained with load_in_8bit; no tokenizer) whose
                                     layer norm weights are +-8 at two features (3 and 11), so that those input
                                     features of most Linears exceed the threshold (the systematic outliers LLM.int8
                                     decomposes); router_bias=True, so the routers' Linear8bitLt carry a bias

Regenerate: python3 scripts/make_infer_fixtures.py    (torch, transformers==4.57.6, bitsandbytes==0.50.2 with its CPU
backend (no GPU needed), accelerate, h5py, numpy, sentencepiece)
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np
import torch
import transformers
from transformers import (LogitsProcessor, LogitsProcessorList, SwitchTransformersConfig,
                          SwitchTransformersForConditionalGeneration, T5Tokenizer)
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

if transformers.__version__ != "4.57.6":
    sys.exit(f"make_infer_fixtures.py needs transformers 4.57.6, found {transformers.__version__}")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "infer")
SPM = os.path.join(ROOT, "tests", "fixtures", "text_task", "spiece.model")

TEXTS = [
    "sum: five plus four",
    "translate English to German: the house is small.",
    "The capital of France is <extra_id_0>.",
    "a",
    "sum: one plus five plus two plus seven plus three",
    "reverse: 1 2 3 4 5 6 7 8",
    "Hello world, the cat sat on the mat <extra_id_0> and <extra_id_1>.",
    "question: what is nine minus six? answer:",
    "",
    "sort: nine three one seven",
    "one two three four five six seven eight nine ten eleven twelve",
    "The <extra_id_0> walks in <extra_id_1> park",
]
N_IDS = 3  # the last N_IDS inputs of inputs.jsonl are given as id lists (their tokenization)

# name: generate kwargs (do_sample False)
SETTINGS = {
    "greedy": dict(num_beams=1, max_new_tokens=10),
    "beam3": dict(num_beams=3, length_penalty=1.0, early_stopping=False, max_new_tokens=10),
    "beam4_lp05_es": dict(num_beams=4, length_penalty=0.5, early_stopping=True, max_new_tokens=8),
}
# (temperature, top_k, top_p) for the sampling distribution; (1, 50, 1) is HF's default do_sample=True
WARPERS = [(1.0, 0, 1.0), (1.0, 50, 1.0), (2.0, 20, 1.0), (3.0, 0, 0.9), (2.5, 0, 0.5), (2.0, 40, 0.8), (0.7, 5, 0.95)]


def build_model(vocab):
    torch.manual_seed(7)
    cfg = SwitchTransformersConfig(vocab_size=vocab, d_model=16, d_kv=4, num_heads=4, d_ff=24, num_layers=2,
                                   num_decoder_layers=2, num_sparse_encoder_layers=1, num_sparse_decoder_layers=1,
                                   num_experts=4, expert_capacity=64, router_jitter_noise=0.0, pad_token_id=0,
                                   eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False)
    model = SwitchTransformersForConditionalGeneration(cfg).float().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)  # a sharper next-token distribution than the init's: fewer near-ties
        # EOS made a scaled copy of token 96's row: EOS wins where 96 would, and some outputs end early (2..7 tokens
        # of 10 under greedy), others at the limit
        model.lm_head.weight[1] = 1.3 * model.lm_head.weight[96]
    return model


class Noise(LogitsProcessor):
    def __init__(self, amp, seed):
        self.amp, self.g = amp, torch.Generator().manual_seed(seed)

    def __call__(self, input_ids, scores):
        return scores + (torch.rand(scores.shape, generator=self.g) * 2 - 1) * self.amp


def gen(model, ids, mask, kw, amp=0.0, seed=0):
    procs = LogitsProcessorList([Noise(amp, seed)]) if amp else None
    with torch.no_grad():
        o = model.generate(ids, attention_mask=mask, do_sample=False, return_dict_in_generate=True,
                           output_scores=True, logits_processor=procs, **kw)
    out = []
    for b, row in enumerate(o.sequences[:, 1:].tolist()):
        n = row.index(1) + 1 if 1 in row else len(row)
        score = float(o.sequences_scores[b]) if kw["num_beams"] > 1 else 0.0
        out.append((row[:n], score))
    return out


def padded(seqs):
    S = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), S), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
    return ids, mask


def write_generate(model, tok, tok_ids):
    lines, stats = [], {}
    ids_all, mask_all = padded(tok_ids)
    for name, kw in SETTINGS.items():
        batched = gen(model, ids_all, mask_all, kw)
        kept, dropped = 0, []
        for i, s in enumerate(tok_ids):
            ids, mask = padded([s])
            ref = gen(model, ids, mask, kw)[0]
            stable = all(gen(model, ids, mask, kw, 3e-5, k)[0][0] == ref[0] for k in (1, 2))
            if not stable or batched[i][0] != ref[0]:
                dropped.append(i)
                continue
            text = tok.decode([t for t in ref[0] if t not in (0, 1)], skip_special_tokens=False)
            lines.append(json.dumps({"setting": name, "index": i, "output_ids": ref[0], "output": text,
                                     "score": ref[1]}))
            kept += 1
        lines.append(json.dumps({"setting": name, "dropped": dropped}))
        stats[name] = (kept, dropped)
    with open(os.path.join(OUT, "generate.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return stats


def write_sampling(model, tok_ids):
    ids, mask = padded([tok_ids[1]])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask,
                       decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id]])).logits[0, -1].float()
    probs = []
    for t, k, p in WARPERS:
        procs = []  # _get_logits_processor's conditions and order (min_tokens_to_keep 1 without beams)
        if t != 1.0:
            procs.append(TemperatureLogitsWarper(t))
        if k != 0:
            procs.append(TopKLogitsWarper(top_k=k, min_tokens_to_keep=1))
        if p < 1.0:
            procs.append(TopPLogitsWarper(top_p=p, min_tokens_to_keep=1))
        s = logits[None].clone()
        for proc in procs:
            s = proc(None, s)
        probs.append(torch.softmax(s, -1)[0].numpy())
    with h5py.File(os.path.join(OUT, "sampling.h5"), "w") as h:
        h["input_ids"] = np.array(tok_ids[1], np.int32)
        h["logits"] = logits.numpy().astype(np.float32)
        h["warpers"] = np.array(WARPERS, np.float64)
        h["probs"] = np.array(probs, np.float32)
    return [int((q > 0).sum()) for q in probs]


def write_embed(model, tok_ids):
    from transformers import SwitchTransformersEncoderModel
    # from_pretrained(model/) would re-initialise the embedding of an untied folder (its encoder.embed_tokens key is
    # missing): the encoder's weights are copied over instead, and checked
    enc = SwitchTransformersEncoderModel(model.config).float().eval()
    missing, _ = enc.load_state_dict(model.state_dict(), strict=False)
    assert not [k for k in missing if k != "encoder.embed_tokens.weight"], missing
    assert enc.encoder.embed_tokens.weight.data_ptr() == enc.shared.weight.data_ptr()
    assert torch.equal(enc.shared.weight, model.shared.weight)
    ids, mask = padded(tok_ids)
    with torch.no_grad():
        o = enc(input_ids=ids, attention_mask=mask, output_router_logits=True, return_dict=True)
    h = o.last_hidden_state
    m = mask[..., None].float()
    pooled = (h * m).sum(1) / m.sum(1)
    with h5py.File(os.path.join(OUT, "embed.h5"), "w") as f:
        f["input_ids"] = ids.numpy().astype(np.int32)
        f["mask"] = mask.numpy().astype(np.int32)
        f["hidden"] = h.numpy().astype(np.float32)
        f["pooled"] = pooled.numpy().astype(np.float32)
        blocks = []
        for b, r in enumerate(o.router_probs):
            if len(r) == 2:  # a sparse block: (router_logits, expert_index); dense blocks give a zero placeholder
                f[f"router_logits/block_{b}"] = r[0].numpy().astype(np.float32)
                blocks.append(b)
    return blocks


def write_int8():
    import bitsandbytes as bnb
    from transformers import BitsAndBytesConfig
    torch.manual_seed(11)
    out = {}
    # one layer: W with a few large entries, X with outliers in columns 2, 9 and 30 of some rows only
    O, I, N = 24, 40, 7
    W = torch.randn(O, I) * 0.5
    W[3, 5] = 4.0
    X = torch.randn(N, I) * 1.5
    X[1, 2], X[4, 2], X[0, 9], X[6, 30] = 9.0, -7.5, 6.0, -12.0
    for thr in (6.0, 0.0):
        lin = bnb.nn.Linear8bitLt(I, O, bias=False, has_fp16_weights=False, threshold=thr)
        lin.weight = bnb.nn.Int8Params(W.clone(), requires_grad=False, has_fp16_weights=False)
        lin = lin.to("cpu").eval()
        with torch.no_grad():
            out[f"Y_t{int(thr)}"] = lin(X.clone()).float().numpy()
        out["CB"], out["SCB"] = lin.state.CB.numpy().astype(np.int8), lin.state.SCB.float().numpy()
    # a model with systematic outlier features
    torch.manual_seed(12)
    cfg = SwitchTransformersConfig(vocab_size=64, d_model=16, d_kv=4, num_heads=4, d_ff=32, num_layers=2,
                                   num_decoder_layers=2, num_sparse_encoder_layers=1, num_sparse_decoder_layers=1,
                                   num_experts=4, expert_capacity=64, router_jitter_noise=0.0, pad_token_id=0,
                                   eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=True,
                                   router_bias=True)
    model = SwitchTransformersForConditionalGeneration(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p[3], p[11] = 8.0, -8.0
    mdir = os.path.join(OUT, "int8_model")
    model.save_pretrained(mdir)
    os.remove(os.path.join(mdir, "generation_config.json"))
    g = torch.Generator().manual_seed(13)
    ids = torch.randint(2, 64, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    for b, n in enumerate((12, 9, 5, 12)):
        ids[b, n - 1], ids[b, n:], mask[b, n:] = 1, 0, 0
    dec = torch.randint(2, 64, (4, 6), generator=g)
    dec[:, 0] = 0
    with torch.no_grad():
        out["logits_fp32"] = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits.numpy()
    n_conv = {}
    for thr in (6.0, 0.0):
        qm = SwitchTransformersForConditionalGeneration.from_pretrained(
            mdir, quantization_config=BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=thr),
            device_map="cpu", dtype=torch.float32).eval()
        assert torch.equal(qm.shared.weight, model.shared.weight), "the embedding did not load"
        for emb in (qm.encoder.embed_tokens, qm.decoder.embed_tokens, qm.lm_head):
            assert torch.equal(emb.weight, model.shared.weight), "an embedding did not load"
        n_conv[thr] = sum(type(m).__name__ == "Linear8bitLt" for m in qm.modules())
        assert type(qm.lm_head).__name__ == "Linear"
        with torch.no_grad():
            out[f"logits_t{int(thr)}"] = qm(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits.numpy()
    with h5py.File(os.path.join(OUT, "int8.h5"), "w") as h:
        for k in ("W", "X", "CB", "SCB", "Y_t6", "Y_t0"):
            h["linear/" + k] = out[k] if k in out else (W if k == "W" else X).numpy()
        h["model/input_ids"] = ids.numpy().astype(np.int32)
        h["model/attention_mask"] = mask.numpy().astype(np.int32)
        h["model/decoder_input_ids"] = dec.numpy().astype(np.int32)
        for k in ("logits_fp32", "logits_t6", "logits_t0"):
            h["model/" + k] = out[k].astype(np.float32)
    d6 = np.abs(out["logits_t6"] - out["logits_fp32"]).max()
    d0 = np.abs(out["logits_t0"] - out["logits_fp32"]).max()
    return dict(linear8bitlt_modules=n_conv[6.0], max_dev_fp32_t6=float(d6), max_dev_fp32_t0=float(d0))


def main():
    torch.set_num_threads(1)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    tok = T5Tokenizer(SPM, legacy=True)
    tok_ids = [tok(t).input_ids for t in TEXTS]
    model = build_model(len(tok))
    mdir = os.path.join(OUT, "model")
    model.save_pretrained(mdir)
    os.remove(os.path.join(mdir, "generation_config.json"))
    shutil.copy(SPM, os.path.join(mdir, "spiece.model"))
    with open(os.path.join(OUT, "inputs.jsonl"), "w") as f:
        for i, t in enumerate(TEXTS):
            f.write(json.dumps({"input": tok_ids[i] if i >= len(TEXTS) - N_IDS else t}) + "\n")
    with open(os.path.join(OUT, "inputs.txt"), "w") as f:
        f.write("".join(t + "\n" for t in TEXTS))
    print("generate:", write_generate(model, tok, tok_ids))
    print("sampling support sizes:", write_sampling(model, tok_ids))
    print("embed: sparse encoder blocks", write_embed(model, tok_ids))
    print("int8:", write_int8())
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
