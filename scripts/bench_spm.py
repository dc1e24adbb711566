#!/usr/bin/env python3
"""Tokenizer throughput, switchc's native SentencePiece encoder (bench/bench_spm.c) against the sentencepiece Python
package on the same text, model and thread count (1), measured in one run; written into docs/benchmarks.md between
<!-- bench:spm --> and <!-- /bench:spm -->.

  python3 scripts/bench_spm.py [--build build] [--mb 10] [--models m1_nmt_nfkc,m2_byte_fallback]

The text (not committed) is the fixture generator of scripts/make_spm_fixtures.py run with another seed until it
holds --mb megabytes: a dozen scripts, numbers, emoji and odd whitespace, one line per call. sentencepiece is timed
two ways, one encode() call per line and one batched encode(lines, num_threads=1) call; the ratio is taken against the
faster. The passes of both sides are interleaved and each keeps its best of --repeat; both must produce the same
number of tokens.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from this import
from make_spm_fixtures import gen_lines  # noqa: E402
import benchdoc  # noqa: E402


def make_text(mb):
    lines, size, seed = [], 0, 777
    while size < mb * 1e6:
        for line in gen_lines(seed, 5000):
            line = line.replace("\n", " ").replace("\r", " ")  # one line per record
            lines.append(line)
            size += len(line.encode()) + 1
        seed += 1
    return lines


def run_switchc(build, model, path):
    out = subprocess.run([os.path.join(build, "bench_spm"), model, path, "1"], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_pair(build, model, path, lines, repeat):
    """Passes of both sides interleaved (switchc, per-line, batched, switchc, ...), so a busy machine slows both
    alike; each side keeps its best pass."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model)
    sp.encode(lines[:1000])
    ours, per_line, batched, tokens = None, 1e30, 1e30, 0
    for _ in range(repeat):
        o = run_switchc(build, model, path)
        if ours is None or o["seconds"] < ours["seconds"]:
            ours = o
        t = time.perf_counter()
        n = 0
        for line in lines:
            n += len(sp.encode(line))
        per_line = min(per_line, time.perf_counter() - t)
        tokens = n
        t = time.perf_counter()
        out = sp.encode(lines, num_threads=1)
        batched = min(batched, time.perf_counter() - t)
        assert sum(map(len, out)) == tokens
    return ours, {"per_line_s": per_line, "batched_s": batched, "tokens": tokens, "version": spm.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", default="m1_nmt_nfkc,m2_byte_fallback,m3_identity_user")
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    a = ap.parse_args()
    lines = make_text(a.mb)
    nbytes = sum(len(l.encode()) + 1 for l in lines)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    rows = []
    try:
        for name in a.models.split(","):
            model = os.path.join(ROOT, "tests", "fixtures", "spm", name + ".model")
            ours, py = bench_pair(a.build, model, path, lines, a.repeat)
            if ours["tokens"] != py["tokens"]:
                sys.exit(f"{name}: switchc produced {ours['tokens']} tokens, sentencepiece {py['tokens']}")
            rows.append((name, ours, py))
            print(name, json.dumps(ours), json.dumps(py))
    finally:
        os.unlink(path)
    n = len(lines)
    md = ["## Tokenizer: switchc's SentencePiece encoder vs the sentencepiece package", "",
          f"Measured by `scripts/bench_spm.py` on {datetime.date.today().isoformat()}: {benchdoc.cpu_name()}, 1 thread for both; "
          f"sentencepiece {rows[0][2]['version']} (Python {platform.python_version()}), switchc `bench_spm` built -O3. "
          f"Text: {n} generated lines, {nbytes / 1e6:.1f} MB (a dozen scripts, numbers, emoji, odd whitespace; "
          "`scripts/make_spm_fixtures.py`'s generator), one encode call per line; best of "
          f"{a.repeat} interleaved passes per side; both sides produced the same token count. Models: the unigram fixtures in "
          "`tests/fixtures/spm/`. sentencepiece is timed per line (`sp.encode(line)`) and batched "
          "(`sp.encode(lines, num_threads=1)`); the speed-up is against the faster of the two.", "",
          "| model | switchc lines/s | switchc MB/s | sentencepiece lines/s (per line / batched) | sentencepiece MB/s (best) | speed-up |",
          "|---|---|---|---|---|---|"]
    for name, o, p in rows:
        best = min(p["per_line_s"], p["batched_s"])
        md.append(f"| {name} | {o['lines_per_s']:.0f} | {o['mb_per_s']:.1f} | {n / p['per_line_s']:.0f} / {n / p['batched_s']:.0f} | "
                  f"{nbytes / best / 1e6:.1f} | {best / o['seconds']:.2f}x |")
    text = "\n".join(md)
    print(text)
    if not a.no_write:
        print("wrote " + benchdoc.write_section("spm", text))


if __name__ == "__main__":
    main()
