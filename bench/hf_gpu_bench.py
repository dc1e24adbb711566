#!/usr/bin/env python3
"""The Hugging Face side of switchc's GPU benchmark (scripts/bench_gpu.py runs it): one training step (forward,
backward, AdamW step) of a Switch Transformer config with random weights and tokens, on a GPU (or, to exercise the
logic, on the CPU), timed after warm-up. Prints one JSON line.

  python3 bench/hf_gpu_bench.py --config configs/models/switch-base-8.json --device cuda --dtype bf16-autocast \\
      --batch 16 --src-len 512 --tgt-len 128 [--compile] [--steps 10] [--warmup 3]
  python3 bench/hf_gpu_bench.py --config configs/models/tiny-switch.json --device cpu --dtype fp32 --batch 4 \\
      --src-len 16 --tgt-len 8 --steps 2 --warmup 1            # the logic on a CPU

Precision (--dtype):
  bf16-autocast (alias bf16; the main peer of switchc's fp32 master weights + bf16 compute): fp32 weights, gradients
      and AdamW state; forward and loss under torch.autocast(bfloat16), so matmuls run in bf16 with fp32 accumulation
      and the router, norms and softmax/loss stay fp32 where autocast keeps them so. HF's sparse MLP needs a one-line
      shim to run under autocast at all (autocast_shim below; issue #27219);
  bf16-pure: weights, gradients and AdamW state in bf16 (the router's classifier stays fp32, as HF casts it);
  fp32: no autocast (TF32 matmuls left off).
Counting and timing, as the CPU benchmarks: tokens/s = batch * (src_len + tgt_len) / mean seconds per timed step;
random token ids in [2, vocab), all-ones attention mask, decoder inputs = labels shifted right (HF does it); loss =
cross-entropy + router z- and aux-losses (output_router_logits=True); eval mode (dropout off) unless --train.
On a GPU each timed step is bracketed by CUDA events (the mean and the median are reported) after
torch.cuda.synchronize(); peak memory is torch.cuda.max_memory_allocated / max_memory_reserved over the whole run
(weights, gradients, optimizer state and activations; not the CUDA context). On the CPU: perf_counter and ru_maxrss.

If the batch does not fit (out of memory), the script runs itself again in a fresh process at half the batch, down to
1, and reports both the batch asked for and the batch used. With --compile the model is wrapped in torch.compile; a
failure (other than out of memory) is reported in the JSON as "compile": "failed: <reason>" with no rate, exit 0.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="an HF config.json (switchc's 'switchc' knobs are dropped)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--dtype", choices=["bf16-autocast", "bf16", "bf16-pure", "fp32"], default="bf16-autocast",
                    help="bf16 = bf16-autocast (fp32 weights, bf16 autocast)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src-len", type=int, default=512)
    ap.add_argument("--tgt-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads on the CPU (0: torch's default)")
    ap.add_argument("--train", action="store_true", help="train mode (dropout on); default eval mode")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (forward and backward)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (default: torch's default)")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--optim-impl", choices=["fused", "foreach", "for-loop"], default="fused",
                    help="AdamW implementation (fused: torch's fastest, on the GPU; falls back to foreach on the CPU)")
    ap.add_argument("--no-shrink", action="store_true", help="fail on out of memory instead of halving the batch")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # the child process that measures
    ap.add_argument("--requested-batch", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--fake-oom-above", type=int, default=0,
                    help="testing aid: treat batches above this as out of memory (exercises the halving on a CPU)")
    a = ap.parse_args(argv)
    if a.dtype == "bf16":
        a.dtype = "bf16-autocast"
    if min(a.batch, a.src_len, a.tgt_len, a.steps) <= 0 or a.warmup < 0:
        ap.error("sizes and --steps must be positive, --warmup non-negative")
    return a


def is_oom(e):
    import torch
    types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    if isinstance(e, types) or isinstance(e, MemoryError):
        return True
    s = str(e).lower()
    return "out of memory" in s or "outofmemoryerror" in s


def short_reason(e, limit=300):
    s = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return s if len(s) <= limit else s[:limit] + "..."


def driver(a):
    """Run the measurement in a child process (this one never touches the GPU); on out of memory (exit code 4) run
    it again at half the batch, each time in a fresh process, so that no attempt inherits a fragmented allocator."""
    import subprocess
    argv, skip = [], False
    for x in sys.argv[1:]:  # drop --batch N / --batch=N, then append the batch of each attempt
        if skip:
            skip = False
        elif x == "--batch":
            skip = True
        elif not x.startswith("--batch="):
            argv.append(x)
    batch = a.batch
    while True:
        cmd = [sys.executable, os.path.abspath(__file__)] + argv + ["--batch", str(batch), "--worker", "--requested-batch", str(a.batch)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if p.returncode == OOM_EXIT and not a.no_shrink and batch > 1:
            print(f"hf_gpu_bench: out of memory at batch {batch}; running again at batch {batch // 2}", file=sys.stderr)
            batch //= 2
            continue
        sys.stdout.write(p.stdout)
        return p.returncode


def versions(torch, transformers, dev):
    v = {"torch": torch.__version__, "transformers": transformers.__version__}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        v.update({"device": p.name, "sm": f"{p.major}{p.minor}", "memory_mib": round(p.total_memory / 2**20),
                  "torch_cuda": torch.version.cuda, "torch_cudnn": torch.backends.cudnn.version()})
        try:
            n = torch.cuda.nccl.version()
            v["torch_nccl"] = ".".join(map(str, n)) if isinstance(n, tuple) else str(n)
        except Exception:  # a build without NCCL
            v["torch_nccl"] = None
    else:
        v["device"] = "cpu"
    return v


OOM_EXIT = 4


def autocast_shim(model):
    """HF's SwitchTransformersSparseMLP fails under autocast (transformers issue #27219, still so in 4.57.6): it
    scatters the experts' bf16 outputs into a buffer of the fp32 hidden-state dtype with an index_put, which does not
    promote ("Index put requires the source and destination dtypes match"). The smallest fix a user would make: cast
    each expert's output to its input's dtype (a forward hook per expert; one elementwise cast of the routed rows).
    Returns the number of experts hooked (0 where the model has no such ModuleDict of experts)."""
    n = 0
    for mod in model.modules():
        experts = getattr(mod, "experts", None)
        if type(mod).__name__.endswith("SparseMLP") and hasattr(experts, "values"):
            for e in experts.values():
                e.register_forward_hook(lambda m, inp, out: out.to(inp[0].dtype) if inp and out.dtype != inp[0].dtype else out)
                n += 1
    return n


def main():
    a = parse_args()
    return worker(a) if a.worker else driver(a)


def worker(a):
    import torch
    import transformers
    from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration

    if a.device == "cuda" and not torch.cuda.is_available():
        print("hf_gpu_bench: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 3
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    with open(a.config) as f:
        cfg = json.load(f)
    cfg.pop("switchc", None)
    config = SwitchTransformersConfig(**cfg)
    torch.manual_seed(0)
    with dev:  # initialise the weights where they will live
        model = SwitchTransformersForConditionalGeneration(config)
    model = model.to(dtype=torch.bfloat16 if a.dtype == "bf16-pure" else torch.float32)
    model.train(a.train)
    shim = autocast_shim(model) if a.dtype == "bf16-autocast" else 0
    opt_kw = {}
    if a.optim_impl == "fused" and dev.type == "cuda":
        opt_kw["fused"] = True
    elif a.optim_impl in ("fused", "foreach"):
        opt_kw["foreach"] = True
    else:
        opt_kw["foreach"] = False
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, **opt_kw)
    optim_name = "fused" if opt_kw.get("fused") else ("foreach" if opt_kw.get("foreach") else "for-loop")

    compile_status = "off"
    fwd = model
    if a.compile:
        try:
            fwd = torch.compile(model, mode=a.compile_mode, backend=a.compile_backend)
            compile_status = "ok"
        except Exception as e:  # an unknown backend or mode fails here; most failures come at the first call
            compile_status = "failed: " + short_reason(e)

    g = torch.Generator(device="cpu").manual_seed(5)
    ids = torch.randint(2, config.vocab_size, (a.batch, a.src_len), generator=g).to(dev)
    labels = torch.randint(2, config.vocab_size, (a.batch, a.tgt_len), generator=g).to(dev)
    mask = torch.ones_like(ids)
    autocast = a.dtype == "bf16-autocast"
    cuda = dev.type == "cuda"

    def step(it):
        if a.fake_oom_above and a.batch > a.fake_oom_above:
            raise (getattr(torch, "OutOfMemoryError", None) or MemoryError)(f"fake out of memory at batch {a.batch}")
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=autocast):
            out = fwd(input_ids=ids, attention_mask=mask, labels=labels, output_router_logits=True)
        out.loss.backward()
        opt.step()
        return out.loss

    result = {"impl": "hf" + ("+compile" if a.compile else ""), "mode": "trainstep", "dtype": a.dtype,
              "optimizer": f"AdamW ({optim_name})", "train_mode": a.train, "compile": compile_status,
              "autocast_shim_experts": shim, "batch_requested": a.requested_batch or a.batch, "batch": a.batch, "src_len": a.src_len,
              "tgt_len": a.tgt_len, "steps": a.steps, "warmup": a.warmup, "params": model.num_parameters()}
    result.update(versions(torch, transformers, dev))
    if compile_status.startswith("failed"):
        result["tokens_per_s"] = None
        print(json.dumps(result))
        return 0

    times = []
    loss = None
    t_start = time.perf_counter()
    try:
        for it in range(a.warmup):
            loss = step(it)
        if cuda:
            torch.cuda.synchronize()
        t_warm = time.perf_counter() - t_start
        if cuda:
            ev = [torch.cuda.Event(enable_timing=True) for _ in range(a.steps + 1)]
            ev[0].record()
            for it in range(a.steps):
                loss = step(a.warmup + it)
                ev[it + 1].record()
            torch.cuda.synchronize()
            times = [ev[i].elapsed_time(ev[i + 1]) / 1e3 for i in range(a.steps)]
        else:
            for it in range(a.steps):
                t0 = time.perf_counter()
                loss = step(a.warmup + it)
                times.append(time.perf_counter() - t0)
        loss_value = float(loss.detach().float().item())
    except Exception as e:
        if is_oom(e):
            result.update({"tokens_per_s": None, "error": f"out of memory at batch {a.batch}: " + short_reason(e, 200)})
            print(json.dumps(result))
            return OOM_EXIT
        if a.compile:
            result.update({"compile": "failed: " + short_reason(e), "tokens_per_s": None})
            print(json.dumps(result))
            return 0
        raise

    sec = statistics.fmean(times)
    result.update({"warmup_s": round(t_warm, 3), "sec_per_step": round(sec, 6),
                   "sec_per_step_median": round(statistics.median(times), 6),
                   "sec_per_step_min": round(min(times), 6), "sec_per_step_max": round(max(times), 6),
                   "tokens_per_s": round(a.batch * (a.src_len + a.tgt_len) / sec, 1), "loss": round(loss_value, 4),
                   "loss_finite": math.isfinite(loss_value)})
    if a.compile:
        try:  # how much of the model dynamo captured: graphs compiled and graph breaks (the experts' data-dependent loop)
            from torch._dynamo.utils import counters
            result["dynamo_unique_graphs"] = int(counters["stats"]["unique_graphs"])
            result["dynamo_graph_breaks"] = int(sum(counters["graph_break"].values()))
        except Exception:
            pass
    if cuda:
        result.update({"peak_alloc_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1),
                       "peak_reserved_mb": round(torch.cuda.max_memory_reserved(dev) / 2**20, 1)})
    else:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
        result["threads"] = torch.get_num_threads()
    print(json.dumps(result))
    return 0 if math.isfinite(loss_value) else 5


if __name__ == "__main__":
    sys.exit(main())
