#!/usr/bin/env python3
"""Share of the training step spent in the expert-parallel all-to-all, on 2 and 4 CPU ranks (OpenMPI, shared memory),
written into docs/benchmarks.md (section <!-- bench:alltoall -->). Each run trains a mid-size Switch model for a few
steps with expert parallelism = ranks and reads train/alltoall_time_share (time inside all-to-all(v) calls over the
wall time of the logged steps, rank 0) and tokens/s from metrics.jsonl.

  python3 scripts/bench_alltoall.py [--switchc build/switchc] [--steps 30]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from this import
import benchdoc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchc", default=os.path.join(ROOT, "build", "switchc"))
    ap.add_argument("--steps", type=int, default=30)
    a = ap.parse_args()
    rows = []
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1")
    model = ["--set", "model.d_model=256", "--set", "model.d_kv=32", "--set", "model.num_heads=8", "--set", "model.d_ff=1024",
             "--set", "model.num_experts=8", "--set", "model.vocab_size=64", "--set", "model.expert_capacity=64"]
    for np_ in (2, 4):
        with tempfile.TemporaryDirectory() as d:
            cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "--mca", "btl", "self,vader", "-np", str(np_),
                   a.switchc, "train", "--set", f"parallel.expert_parallel={np_}", "--set", f"train.steps={a.steps}",
                   "--set", f"train.log_every={max(1, a.steps - 5)}", "--set", "train.eval_every=0", "--set", "train.ckpt_every=0",
                   "--set", "train.batch_size=64", "--set", f"train.out_dir={d}"] + model
            subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
            last = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if "train/alltoall_time_share" in l][-1]
            rows.append((np_, last["train/alltoall_time_share"], last["train/tokens_per_s"]))
            print(f"{np_} ranks (expert parallel {np_}): all-to-all {100 * last['train/alltoall_time_share']:.1f}% of step time, "
                  f"{last['train/tokens_per_s']:.0f} tokens/s")
    cpu = benchdoc.cpu_name()
    text = "\n".join(["## Expert-parallel all-to-all on CPU ranks", "",
                      f"Measured by `scripts/bench_alltoall.py` on {datetime.date.today().isoformat()}: {cpu}, {os.cpu_count()} cores, OpenMPI "
                      "shared memory (vader), ranks oversubscribed, 1 BLAS thread per rank. Model: d_model 256, d_ff 1024, 8 experts, "
                      "2+2 blocks, global batch 64; expert parallelism = ranks. Share = time inside all-to-all(v) calls (token "
                      "dispatch, combine and their backward, plus the count exchange) over the wall time of the logged steps, on rank 0. "
                      "With more ranks than cores (4 on 2) a rank also waits inside the collective for peers the OS has "
                      "descheduled, so that share is an upper bound on the cost of moving tokens, not a network figure.",
                      "", "| ranks | all-to-all share of step time | tokens/s (all ranks) |", "|---|---|---|"]
                     + [f"| {n} | {100 * s:.1f}% | {t:.0f} |" for n, s, t in rows])
    print("wrote " + benchdoc.write_section("alltoall", text))


if __name__ == "__main__":
    main()
