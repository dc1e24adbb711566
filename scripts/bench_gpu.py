#!/usr/bin/env python3
"""The GPU benchmark of the CUDA issue: a training step of switch-base-8 shape (random weights, bf16, batch 16 x 512
input / 128 target tokens, or the largest batch that fits every workload) in switchc and in Hugging Face transformers
(eager, and torch.compile), with tokens/s, peak memory and switchc's MFU on routed FLOPs against a large cuBLASLt
bf16 GEMM measured in the same run; written into docs/benchmarks.md (section <!-- bench:gpu -->) with the device,
driver, CUDA, cuBLAS, cuDNN and NCCL versions.

HOW TO RUN IT (a session with a lent GPU, one call of the device tool, well inside its 10-minute limit):

  run(command="python3 scripts/bench_gpu.py --out $OUT --wheels build-bench/whl",
      carry=["build-bench/whl"], timeout_s=600)

  - It builds what it needs in --build (default build-gpu): cmake for bench_gemm_cuda and bench_model; if the
    project does not configure there (its C dependencies missing on that image), bench_gemm_cuda is compiled
    with nvcc alone. A build dir made beforehand (scripts/gpu_check.sh builds build-gpu) is reused; carry it
    only if it was built on that machine.
  - --wheels DIR: pip-installs the wheels in DIR into <build>/hf-site and puts them first on the HF runs'
    PYTHONPATH. The device image has transformers 5.x; the project's peer is transformers 4.57.6, so carry
    transformers 4.57.6 with huggingface_hub 0.36.2 and tokenizers 0.22.2 (what 4.57.6 requires). Made here with
      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d build-bench/whl transformers==4.57.6 huggingface_hub==0.36.2 tokenizers==0.22.2
    (16 MB). Without --wheels the image's transformers is used and its version is recorded.
  - The results come back in $OUT: bench_gpu.json (every number), bench_gpu_section.md, bench_gpu.log. The
    device machine's copy of docs/benchmarks.md is written too but does not come back: apply the results here with
      python3 scripts/bench_gpu.py --apply /path/to/returned/bench_gpu.json
    which writes the section into docs/benchmarks.md (no GPU needed for that).
  - It keeps to --time-budget seconds (default 560): torch.compile, the slow part, gets what is left, at most
    --compile-timeout; pure-bf16 HF runs last, if time remains. Each stage is saved to bench_gpu.json as it ends,
    so a run cut short still returns what it measured. The table is printed last.
  - The switchc side calls `<build>/bench_model --device cuda --dtype bf16 ...` when bench_model lists --device in
    its usage (see switchc_gpu_step below: the plug-in point); until then the row says "not implemented yet".

  python3 scripts/bench_gpu.py --dry-run     # FLOPs per step at the benchmark shape and the commands, no GPU needed

Without a GPU the measuring run exits 2 with a message and leaves docs/benchmarks.md alone.

Definitions. tokens/s = batch * (src_len + tgt_len) / mean seconds per timed step (as the CPU benchmarks count).
MFU = routed model FLOPs per step / step time / measured bf16 GEMM rate, routed FLOPs as routed_flops() documents:
matmul FLOPs only, each token through its selected expert(s) only, backward = 2x forward.
"""
import argparse
import datetime
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG = "configs/models/switch-base-8.json"
SECTION = "gpu"


# ---- FLOPs ---------------------------------------------------------------------------------------------------------

def sparse_steps(cfg):
    """HF's SwitchTransformersConfig: the sparse step of each stack from the number of sparse layers."""
    L = cfg.get("num_layers", 12)
    Ld = cfg.get("num_decoder_layers") or L
    ne, nd = cfg.get("num_sparse_encoder_layers", 3), cfg.get("num_sparse_decoder_layers", 3)
    return (L // ne if ne > 0 else L), (Ld // nd if nd > 0 else Ld)


def n_sparse(step, n_layers):
    """Layer i of a stack is sparse when i % step == 1 (or step == 1): HF's rule and switchc's model_config."""
    return sum(1 for i in range(n_layers) if step > 0 and (i % step == 1 or step == 1))


def routed_flops(cfg, batch, src_len, tgt_len):
    """Model FLOPs of one training step of a Switch Transformer (T5 encoder-decoder with top-k expert FFNs).

    Counts matmul FLOPs only, 2 per multiply-add, for every token of the batch (no padding at the benchmark shape):
      with d = d_model, f = d_ff, a = num_heads * d_kv, E = num_experts, k = num_selected_experts (1: top-1),
      S = src_len, T = tgt_len, V = vocab_size, Le / Ld = encoder / decoder layers,
      encoder, per token and layer:  q, k, v, o projections 4 * 2*d*a;  scores Q K^T 2*S*a;  probs x V 2*S*a;
                                     FFN 2 * 2*d*f, the same for a dense layer and for the expert a token is routed to
                                     (the other E - k experts are not counted: routed FLOPs), 3 * 2*d*f if gated;
                                     the router 2*d*E on sparse layers;
      decoder, per token and layer:  self-attention as above with T keys;  cross-attention q, o 2 * 2*d*a and
                                     scores, probs x V 2 * 2*S*a;  FFN and router as above;
                                     plus the cross-attention k, v projections of the S encoder outputs, 2 * 2*d*a
                                     per encoder token and decoder layer;
      LM head:                       2*d*V per target token.
    Attention scores count the full S x S (T x T) products, causal or not (the usual convention; a causal kernel
    may skip half of the decoder's). Not counted: norms, softmax, activations, position bias, embedding lookups,
    losses, the optimizer (all memory-bound, a few per cent of the matmuls). Tokens dropped by expert capacity are
    counted as routed (model FLOPs, not the work a given routing happened to do).
    Training step = forward + backward = 3 x forward (the backward computes the gradients of both operands of
    every matmul). Returns a dict with the forward breakdown, 'forward' and 'step'."""
    d, f = cfg["d_model"], cfg["d_ff"]
    a = cfg["num_heads"] * cfg["d_kv"]
    E = cfg.get("num_experts", 8)
    k = cfg.get("num_selected_experts", 1)
    V = cfg["vocab_size"]
    Le = cfg.get("num_layers", 12)
    Ld = cfg.get("num_decoder_layers") or Le
    gated = bool(cfg.get("switchc", {}).get("gated_ffn", False))  # is_gated_act / feed_forward_proj mean nothing (HF)
    ffn = (3 if gated else 2) * 2 * d * f
    es, ds = sparse_steps(cfg)
    nse, nsd = n_sparse(es, Le), n_sparse(ds, Ld)
    S, T, B = src_len, tgt_len, batch
    enc_tok, dec_tok = B * S, B * T
    br = {
        "enc_attn_proj": enc_tok * Le * 4 * 2 * d * a,
        "enc_attn_scores_pv": enc_tok * Le * 2 * 2 * S * a,
        "enc_ffn": enc_tok * ((Le - nse) * ffn + nse * k * ffn),
        "enc_router": enc_tok * nse * 2 * d * E,
        "dec_self_attn_proj": dec_tok * Ld * 4 * 2 * d * a,
        "dec_self_attn_scores_pv": dec_tok * Ld * 2 * 2 * T * a,
        "dec_cross_attn_q_o": dec_tok * Ld * 2 * 2 * d * a,
        "dec_cross_attn_kv": enc_tok * Ld * 2 * 2 * d * a,
        "dec_cross_attn_scores_pv": dec_tok * Ld * 2 * 2 * S * a,
        "dec_ffn": dec_tok * ((Ld - nsd) * ffn + nsd * k * ffn),
        "dec_router": dec_tok * nsd * 2 * d * E,
        "lm_head": dec_tok * 2 * d * V,
    }
    fwd = sum(br.values())
    return {"breakdown": br, "forward": fwd, "step": 3 * fwd, "sparse_layers": [nse, nsd]}


def params_used_per_token(cfg):
    """Hand check of routed_flops: weights a token multiplies by (encoder and decoder layers, its expert only)."""
    d, f = cfg["d_model"], cfg["d_ff"]
    a = cfg["num_heads"] * cfg["d_kv"]
    Le = cfg.get("num_layers", 12)
    Ld = cfg.get("num_decoder_layers") or Le
    enc = Le * (4 * d * a + 2 * d * f)
    dec = Ld * (8 * d * a + 2 * d * f) + d * cfg["vocab_size"]
    return enc, dec


# ---- running things ------------------------------------------------------------------------------------------------

class Log:
    def __init__(self, path):
        self.f = open(path, "a") if path else None

    def __call__(self, *msg):
        line = " ".join(str(m) for m in msg)
        print(line, flush=True)
        if self.f:
            self.f.write(line + "\n")
            self.f.flush()


def run_cmd(log, cmd, timeout=None, env=None):
    """Runs cmd in the repository root in its own process group; returns (rc, stdout, stderr), rc None on timeout,
    when the whole group is killed (hf_gpu_bench.py measures in a child process, which must not outlive it)."""
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    t0 = time.time()
    try:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    except OSError as e:
        log(f"  -> could not start: {e}")
        return 127, "", str(e)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        rc = None
    log(f"  -> rc {rc} in {time.time() - t0:.1f} s")
    if log.f:
        for name, text in (("stdout", out), ("stderr", err)):
            if text.strip():
                log.f.write(f"  [{name}]\n" + "".join("    " + l + "\n" for l in text.strip().splitlines()[-200:]))
        log.f.flush()
    return rc, out, err


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def last_error_line(err):
    lines = [l for l in err.strip().splitlines() if l.strip()]
    return lines[-1][:300] if lines else "no message"


def gpu_count():
    """CUDA devices torch sees, asked in a child process (this one never initialises CUDA); 0 if torch is missing."""
    try:
        p = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"], capture_output=True,
                           text=True, timeout=120)
        return int(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else 0
    except Exception:
        return 0


def ensure_gemm_binary(log, build):
    """build/bench_gemm_cuda: by cmake (cmake/gpu_bench.cmake) or, if the project does not configure, nvcc alone."""
    exe = os.path.join(build, "bench_gemm_cuda")
    if os.path.exists(exe):
        return exe, "existing"
    if configure(log, build):
        rc, _, _ = run_cmd(log, ["cmake", "--build", build, "--target", "bench_gemm_cuda", "-j", str(os.cpu_count() or 4)], timeout=300)
        if rc == 0 and os.path.exists(exe):
            return exe, "cmake"
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    os.makedirs(build, exist_ok=True)
    rc, _, err = run_cmd(log, [nvcc, "-O2", "-std=c++17", "-gencode", "arch=compute_90,code=sm_90", "-gencode",
                               "arch=compute_80,code=compute_80", "-o", exe, "bench/bench_gemm_cuda.cu", "-lcublasLt", "-ldl"],
                         timeout=300)
    if rc == 0:
        return exe, "nvcc (cuDNN and NCCL versions looked up at run time)"
    return None, "build failed: " + last_error_line(err)


_configured = {}


def configure(log, build):
    if build in _configured:
        return _configured[build]
    ok = os.path.exists(os.path.join(build, "CMakeCache.txt"))
    if not ok:
        rc, _, _ = run_cmd(log, ["cmake", "-S", ".", "-B", build, "-DSWITCHC_CUDA=ON", "-DSWITCHC_CUDA_ARCHS=90-real;80-virtual"],
                           timeout=300)
        ok = rc == 0
    _configured[build] = ok
    return ok


def ensure_bench_model(log, build):
    exe = os.path.join(build, "bench_model")
    if os.path.exists(exe):
        return exe, None
    if '"--device"' not in open(os.path.join(ROOT, "bench", "bench_model.c")).read():  # not worth a build yet
        return None, "not implemented yet (bench/bench_model.c has no --device)"
    if configure(log, build):
        rc, _, err = run_cmd(log, ["cmake", "--build", build, "--target", "bench_model", "-j", str(os.cpu_count() or 4)], timeout=420)
        if rc == 0 and os.path.exists(exe):
            return exe, None
        return None, "bench_model did not build: " + last_error_line(err)
    return None, "the project did not configure on this machine (see bench_gpu.log)"


def hf_cmd(a, batch, dtype="bf16-autocast", compile_=False):
    warm = a.compile_warmup if compile_ else a.warmup
    cmd = [sys.executable, "bench/hf_gpu_bench.py", "--config", a.config, "--device", "cuda", "--dtype", dtype,
           "--batch", str(batch), "--src-len", str(a.src_len), "--tgt-len", str(a.tgt_len), "--steps", str(a.steps),
           "--warmup", str(warm)]
    return cmd + (["--compile"] if compile_ else [])


def switchc_cmd(a, bench_model, batch):
    return [bench_model, "--config", a.config, "--mode", "trainstep", "--device", "cuda", "--dtype", "bf16",
            "--batch", str(batch), "--src-len", str(a.src_len), "--tgt-len", str(a.tgt_len),
            "--steps", str(a.switchc_steps), "--warmup", str(a.warmup)]


def run_hf(log, a, env, batch, dtype="bf16-autocast", compile_=False, timeout=300):
    rc, out, err = run_cmd(log, hf_cmd(a, batch, dtype, compile_), timeout=timeout, env=env)
    js = json_lines(out)
    if rc is None:
        return {"status": f"failed: timed out after {timeout:.0f} s" + (" (compilation in the warm-up included)" if compile_ else ""), "tokens_per_s": None}
    if not js:
        return {"status": f"failed: exit {rc}: {last_error_line(err)}", "tokens_per_s": None}
    r = js[-1]
    if r.get("compile", "off").startswith("failed"):
        r["status"] = r["compile"]
    elif r.get("loss_finite") is False:
        r["status"] = "failed: loss not finite"
    elif r.get("tokens_per_s") is None or rc != 0:
        r["status"] = "failed: " + r.get("error", f"exit {rc}")
    else:
        r["status"] = "ok"
    if r["status"] != "ok":
        r["tokens_per_s"] = None
    return r


def switchc_gpu_step(log, a, bench_model, batch, timeout):
    """PLUG-IN POINT for switchc's GPU training step. When bench_model learns `--device cuda` (it must list it in its
    usage, printed for --help) this runs `bench_model --config ... --mode trainstep --device cuda --dtype bf16 --batch B
    --src-len S --tgt-len T --steps N --warmup W`, which is expected to print one JSON line with at least
    tokens_per_s and peak_mem_mb (peak device memory of the process's own allocations, MB), and sec_per_step if it
    can (else it is derived from tokens_per_s). Out of memory: a non-zero exit whose stderr says "out of memory"."""
    rc, out, err = run_cmd(log, [bench_model, "--help"], timeout=60)
    if "--device" not in out + err:
        return {"status": "not implemented yet (bench_model has no --device cuda)", "tokens_per_s": None}
    rc, out, err = run_cmd(log, switchc_cmd(a, bench_model, batch), timeout=timeout)
    js = json_lines(out)
    if rc is None:
        return {"status": f"failed: timed out after {timeout:.0f} s", "tokens_per_s": None}
    if rc != 0 or not js:
        oom = "out of memory" in (out + err).lower()
        return {"status": ("oom" if oom else f"failed: exit {rc}: {last_error_line(err)}"), "tokens_per_s": None}
    r = js[-1]
    r["status"] = "ok" if r.get("tokens_per_s") else "failed: no tokens_per_s in its output"
    r.setdefault("batch", batch)
    if r.get("tokens_per_s") and not r.get("sec_per_step"):
        r["sec_per_step"] = r["batch"] * (a.src_len + a.tgt_len) / r["tokens_per_s"]
    return r


def nvidia_smi():
    try:
        p = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        return p.stdout.strip() if p.returncode == 0 else None
    except Exception:
        return None


# ---- the section ---------------------------------------------------------------------------------------------------

def fmt_mem(r):
    if r.get("peak_rss_mb") is not None:  # a CPU run (testing the script)
        return f"{r['peak_rss_mb']:.0f} MB RSS"
    if r.get("peak_mem_mb") is not None:
        return f"{r['peak_mem_mb']:.0f} MB"
    if r.get("peak_alloc_mb") is not None:
        return f"{r['peak_alloc_mb']:.0f} MB ({r['peak_reserved_mb']:.0f} MB reserved)"
    return "-"


def render(res):
    v = res.get("versions", {})
    g = res.get("gemm", {})
    hf = res.get("hf_eager", {})
    tv = hf if hf.get("torch") else next((r for r in (res.get("hf_compile", {}), res.get("hf_pure", {})) if r.get("torch")), {})
    lines = ["## Training step on the GPU: switchc vs Hugging Face transformers", ""]
    lines.append(
        f"Measured by `scripts/bench_gpu.py` on {res['date']}: {v.get('device', '?')} ({v.get('multiprocessors', '?')} SMs, "
        f"{v.get('memory_mib', 0) / 1024:.0f} GiB), driver {v.get('driver', '?')} (CUDA {v.get('driver_cuda_api', '?')}), "
        f"CUDA runtime {v.get('cuda_runtime', '?')}, cuBLASLt {v.get('cublaslt', '?')}, cuDNN {v.get('cudnn', '?')}, "
        f"NCCL {v.get('nccl', '?')} (as bench_gemm_cuda finds them; switchc links the same); HF side: torch "
        f"{tv.get('torch', '?')} (CUDA {tv.get('torch_cuda', '?')}, cuDNN {tv.get('torch_cudnn', '?')}, NCCL "
        f"{tv.get('torch_nccl', '?')}), transformers {tv.get('transformers', '?')}.")
    lines.append("")
    lines.append(
        f"Workload: a training step (forward, backward, AdamW) of `{res['config']}` ("
        f"{hf.get('params', 0) / 1e6:.0f}M parameters), random weights and tokens, dropout off, loss with the router z- "
        f"and aux-losses; batch {res['batch']} x ({res['src_len']} + {res['tgt_len']}) tokens "
        + (f"(asked {res['batch_requested']}; the largest that fit every run)" if res['batch'] != res['batch_requested'] else "(fits every run)")
        + "; tokens/s = batch x (input + target tokens) / mean step time over the timed steps after warm-up. "
        "switchc: fp32 master weights and AdamW state, bf16 compute. HF main peer: fp32 weights with "
        "torch.autocast(bf16) (the same split), fused AdamW; its sparse MLP needs a one-line cast to run under autocast "
        "(`autocast_shim` in bench/hf_gpu_bench.py, transformers issue #27219). Peak memory: switchc's device allocations; "
        "HF's torch.cuda.max_memory_allocated (reserved by its caching allocator in brackets); neither counts the CUDA context.")
    lines.append("")
    fl = res.get("flops") or routed_flops(res["cfg"], res["batch"], res["src_len"], res["tgt_len"])
    lines.append(
        f"MFU = routed FLOPs per step / step time / measured bf16 GEMM rate. Routed FLOPs (`routed_flops` in the script: "
        f"matmuls only, each token through its one expert, attention scores included, backward = 2x forward): "
        f"{fl.get('step', 0) / 1e12:.2f} TFLOP per step at this batch. GEMM rate: {g.get('tflops', 0):.0f} TFLOP/s "
        f"(cuBLASLt, bf16 inputs, fp32 accumulation, {g.get('m')}x{g.get('n')}x{g.get('k')}, median of {g.get('iters')} "
        f"after {g.get('warmup')} warm-up; `bench/bench_gemm_cuda.cu`).")
    lines += ["", "| workload | tokens/s | peak memory | MFU | vs HF eager |", "|---|---|---|---|---|"]
    base = hf.get("tokens_per_s")
    rows = [("switchc", "switchc, bf16 compute, fp32 master weights", True),
            ("hf_eager", "HF eager, bf16 autocast, fp32 weights", False),
            ("hf_compile", "HF torch.compile, bf16 autocast, fp32 weights", False),
            ("hf_pure", "HF eager, pure bf16 weights and AdamW state", False)]
    for key, name, mfu_col in rows:
        r = res.get(key)
        if r is None:
            continue
        if r.get("status") != "ok":
            lines.append(f"| {name} | {r.get('status', 'not run')} | - | - | - |")
            continue
        batch_note = f" (batch {r['batch']})" if r.get("batch") != res["batch"] else ""
        mfu = f"{100 * r['mfu']:.1f}%" if mfu_col and r.get("mfu") is not None else "-"
        sp = f"{r['tokens_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"| {name}{batch_note} | {r['tokens_per_s']:.0f} | {fmt_mem(r)} | {mfu} | {sp} |")
    ref = [f"{name} {100 * res[key]['mfu']:.1f}%" for key, name in (("hf_eager", "HF eager"), ("hf_compile", "HF compiled"),
           ("hf_pure", "HF pure bf16")) if res.get(key, {}).get("status") == "ok" and res[key].get("mfu") is not None]
    if ref:
        lines += ["", "For reference, the same MFU formula for the HF runs: " + ", ".join(ref) + "."]
    hc = res.get("hf_compile", {})
    if hc.get("status") == "ok" and "dynamo_graph_breaks" in hc:
        lines += ["", f"torch.compile captured {hc.get('dynamo_unique_graphs')} graphs with {hc['dynamo_graph_breaks']} graph "
                  f"breaks (HF's expert loop is data-dependent); its warm-up, compilation included, took {hc.get('warmup_s', 0):.0f} s."]
    t = res.get("targets")
    if t:
        lines += ["", "Targets of the issue: " + "; ".join(f"{k}: {'met' if ok else 'NOT met'} ({why})" for k, (ok, why) in t.items()) + "."]
    else:
        lines += ["", "Targets of the issue (switchc at least 2x HF eager tokens/s, MFU at least 35%, peak memory not above "
                  "HF eager's): not assessed, since " + ("switchc's GPU training step did not run." if res.get("switchc", {}).get("status") != "ok" else "HF eager did not run.")]
    return "\n".join(lines)


def assess(res):
    s, hf = res.get("switchc", {}), res.get("hf_eager", {})
    if s.get("status") != "ok" or hf.get("status") != "ok":
        return None
    t = {}
    sp = s["tokens_per_s"] / hf["tokens_per_s"]
    t[">= 2x HF eager tokens/s"] = (sp >= 2.0, f"{sp:.2f}x")
    t["MFU >= 35%"] = (s.get("mfu", 0) >= 0.35, f"{100 * s.get('mfu', 0):.1f}%")
    if s.get("peak_mem_mb") is not None and hf.get("peak_alloc_mb") is not None:
        t["peak memory <= HF eager's"] = (s["peak_mem_mb"] <= hf["peak_alloc_mb"],
                                           f"{s['peak_mem_mb']:.0f} vs {hf['peak_alloc_mb']:.0f} MB allocated")
    return t


def write_section(text):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import benchdoc
    return benchdoc.write_section(SECTION, text)


# ---- main ----------------------------------------------------------------------------------------------------------

def finish(res, out_dir, log):
    """MFU and targets from what was measured; save the JSON and the section."""
    peak = res.get("gemm", {}).get("tflops")
    res["flops"] = routed_flops(res["cfg"], res["batch"], res["src_len"], res["tgt_len"])
    for key in ("switchc", "hf_eager", "hf_compile", "hf_pure"):
        r = res.get(key)
        if r and r.get("status") == "ok" and peak:
            step_flops = routed_flops(res["cfg"], r["batch"], res["src_len"], res["tgt_len"])["step"]
            sec = r.get("sec_per_step") or r["batch"] * (res["src_len"] + res["tgt_len"]) / r["tokens_per_s"]
            r["mfu"] = step_flops / sec / (peak * 1e12)
    res["targets"] = assess(res)
    with open(os.path.join(out_dir, "bench_gpu.json"), "w") as f:
        json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-gpu", help="build dir (made if missing; default build-gpu)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "", help="results dir (default $OUT, else <build>/bench-gpu)")
    ap.add_argument("--config", default=CONFIG)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src-len", type=int, default=512)
    ap.add_argument("--tgt-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps of each HF run")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile-warmup", type=int, default=5, help="warm-up steps of the compiled run (recompiles settle)")
    ap.add_argument("--switchc-steps", type=int, default=20)
    ap.add_argument("--wheels", default="", help="a folder of wheels (transformers 4.57.6 and its pins) for the HF runs")
    ap.add_argument("--time-budget", type=float, default=560, help="seconds for the whole run (the device call has 600)")
    ap.add_argument("--compile-timeout", type=float, default=300)
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--skip-pure", action="store_true", help="skip the pure-bf16 HF run")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md (results files only)")
    ap.add_argument("--dry-run", action="store_true", help="print FLOPs per step and the commands; needs no GPU")
    ap.add_argument("--apply", metavar="BENCH_GPU_JSON", help="write the section of a returned bench_gpu.json into docs/benchmarks.md")
    a = ap.parse_args()
    os.chdir(ROOT)
    build = a.build if os.path.isabs(a.build) else os.path.join(ROOT, a.build)

    if a.apply:
        res = json.load(open(a.apply))
        print(render(res))
        print("wrote", write_section(render(res)))
        return 0

    cfg = json.load(open(a.config))
    fl = routed_flops(cfg, a.batch, a.src_len, a.tgt_len)

    if a.dry_run:
        print(f"routed FLOPs of one training step, {a.config}, batch {a.batch} x ({a.src_len} + {a.tgt_len}) tokens:")
        for k, v in fl["breakdown"].items():
            print(f"  {k:26s} {v / 1e9:12.1f} GFLOP  ({100 * v / fl['forward']:.1f}% of forward)")
        print(f"  {'forward':26s} {fl['forward'] / 1e12:12.4f} TFLOP")
        print(f"  {'step (3 x forward)':26s} {fl['step'] / 1e12:12.4f} TFLOP   ({fl['step']:.4e} FLOP)")
        pe, pd = params_used_per_token(cfg)
        tok_e, tok_d = a.batch * a.src_len, a.batch * a.tgt_len
        attn = fl["breakdown"]["enc_attn_scores_pv"] + fl["breakdown"]["dec_self_attn_scores_pv"] + fl["breakdown"]["dec_cross_attn_scores_pv"]
        kv_fix = fl["breakdown"]["dec_cross_attn_kv"] - tok_d * cfg.get("num_decoder_layers", cfg["num_layers"]) * 2 * 2 * cfg["d_model"] * cfg["num_heads"] * cfg["d_kv"]
        hand = 2 * (tok_e * pe + tok_d * pd) + attn + kv_fix
        print(f"hand check: 2 x tokens x weights used per token (encoder {pe / 1e6:.1f}M/token, decoder + LM head "
              f"{pd / 1e6:.1f}M/token) = {2 * (tok_e * pe + tok_d * pd) / 1e12:.4f} TFLOP, + attention scores/values "
              f"{attn / 1e12:.4f}, + cross-attention k/v over the encoder tokens instead of the decoder's {kv_fix / 1e12:.4f} "
              f"= {hand / 1e12:.4f} TFLOP forward (routed_flops: {fl['forward'] / 1e12:.4f}; routers are the difference)")
        for g in (800, 990):
            print(f"at 35% MFU of a {g} TFLOP/s GEMM rate: {fl['step'] / (0.35 * g * 1e12) * 1e3:.1f} ms per step, "
                  f"{a.batch * (a.src_len + a.tgt_len) / (fl['step'] / (0.35 * g * 1e12)):.0f} tokens/s")
        print("\ncommands (in this order, the batch of each after the first = the batch HF eager fit):")
        print("  " + os.path.relpath(os.path.join(build, "bench_gemm_cuda"), ROOT) + "   (built by cmake --target bench_gemm_cuda, or nvcc alone)")
        print("  " + " ".join(hf_cmd(a, a.batch)))
        print("  " + os.path.relpath(os.path.join(build, "bench_model"), ROOT) + " --help   (does it list --device?) then:")
        print("  " + " ".join(switchc_cmd(a, os.path.relpath(os.path.join(build, "bench_model"), ROOT), a.batch)))
        if not a.skip_compile:
            print("  " + " ".join(hf_cmd(a, a.batch, compile_=True)) + f"   (timeout <= {a.compile_timeout:.0f} s)")
        if not a.skip_pure:
            print("  " + " ".join(hf_cmd(a, a.batch, dtype="bf16-pure")))
        return 0

    n = gpu_count()
    if n == 0:
        print("bench_gpu: no CUDA device here (torch.cuda.device_count() is 0). Run it on a machine with a GPU "
              "(see the docstring: one call of the device tool); docs/benchmarks.md is left untouched.", file=sys.stderr)
        return 2

    t_start = time.time()
    out_dir = a.out or os.path.join(build, "bench-gpu")
    os.makedirs(out_dir, exist_ok=True)
    log = Log(os.path.join(out_dir, "bench_gpu.log"))
    left = lambda: a.time_budget - (time.time() - t_start)
    res = {"date": datetime.date.today().isoformat(), "config": a.config, "cfg": cfg, "batch_requested": a.batch,
           "batch": a.batch, "src_len": a.src_len, "tgt_len": a.tgt_len, "nvidia_smi": nvidia_smi()}
    log("nvidia-smi:", res["nvidia_smi"])

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if a.wheels:
        site = os.path.join(build, "hf-site")
        whl = sorted(glob.glob(os.path.join(a.wheels, "*.whl")))
        rc, _, err = run_cmd(log, [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                   "--no-cache-dir", "--upgrade", "--target", site] + whl, timeout=300)
        if rc == 0:
            env["PYTHONPATH"] = site + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        else:
            log("wheels did not install, using the image's transformers:", last_error_line(err))

    # 1. the GEMM rate and the versions
    exe, how = ensure_gemm_binary(log, build)
    if not exe:
        log("bench_gpu: bench_gemm_cuda:", how)
        return 1
    rc, out, err = run_cmd(log, [exe], timeout=120)
    if "SKIPPED" in out:
        log("bench_gpu: bench_gemm_cuda sees no CUDA device:", out.strip().splitlines()[-1])
        return 2
    js = json_lines(out)
    vers = next((j["versions"] for j in js if "versions" in j), {})
    gemm = next((j for j in js if "tflops" in j), None)
    if rc != 0 or not gemm:
        log("bench_gpu: the GEMM benchmark failed:", last_error_line(err))
        return 1
    res.update({"versions": vers, "gemm": gemm, "gemm_built_by": how})
    log(f"GEMM: {gemm['tflops']:.1f} TFLOP/s bf16 ({gemm['m']}x{gemm['n']}x{gemm['k']}); versions: {json.dumps(vers)}")

    # 2. HF eager, the main peer; its batch (halved until it fits) is the batch of every other run. A failure other
    #    than memory is recorded and the run goes on: switchc's numbers and the GEMM rate are worth having anyway.
    batch = a.batch
    while True:
        res["hf_eager"] = run_hf(log, a, env, batch, timeout=max(60, min(300, left())))
        if res["hf_eager"].get("status") == "ok":
            batch = res["hf_eager"]["batch"]
        else:
            log("bench_gpu: HF eager failed:", res["hf_eager"].get("status"))
        res["batch"] = batch
        finish(res, out_dir, log)
        # 3. switchc at that batch; if it does not fit, halve and measure HF eager again
        bm, why = ensure_bench_model(log, build)
        if bm is None:
            res["switchc"] = {"status": why if why.startswith("not implemented") else "not measured: " + why, "tokens_per_s": None}
        else:
            res["switchc"] = switchc_gpu_step(log, a, bm, batch, timeout=max(60, min(300, left())))
        if res["switchc"].get("status") == "oom" and batch > 1:
            log(f"switchc ran out of memory at batch {batch}; both again at {batch // 2}")
            batch //= 2
            continue
        break
    finish(res, out_dir, log)

    # 4. HF torch.compile, 5. HF pure bf16, in the time left
    if not a.skip_compile:
        tmo = min(a.compile_timeout, left() - (0 if a.skip_pure else 60))
        res["hf_compile"] = (run_hf(log, a, env, batch, compile_=True, timeout=tmo) if tmo > 60
                             else {"status": "skipped: out of time budget", "tokens_per_s": None})
        finish(res, out_dir, log)
    if not a.skip_pure:
        res["hf_pure"] = (run_hf(log, a, env, batch, dtype="bf16-pure", timeout=left() - 5) if left() > 50
                          else {"status": "skipped: out of time budget", "tokens_per_s": None})
        finish(res, out_dir, log)

    text = render(res)
    with open(os.path.join(out_dir, "bench_gpu_section.md"), "w") as f:
        f.write(text + "\n")
    if not a.no_doc:
        log("wrote", write_section(text), "(on this machine; apply the returned bench_gpu.json elsewhere with --apply)")
    log(f"results in {out_dir} after {time.time() - t_start:.0f} s\n")
    log(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
