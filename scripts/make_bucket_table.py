#!/usr/bin/env python3
"""Hugging Face's relative position buckets, and what switchc needs to reproduce them (tests/test_relpos.c).

HF's `_relative_position_bucket` (transformers 4.57.6) computes in float32 torch ops on the CPU:
    me + ((log(n.float() / me) / math.log(max_distance / me)) * (num_buckets - me)).to(long)
The division, the multiplication and the Python-double scalars cast to float32 are IEEE operations that C reproduces
as written. The log is not a libm call: torch.log on a contiguous float32 CPU tensor is at::vml::vlog, which in
the x86-64 wheels (built with MKL) is MKL's vmsLn with VML_HA. MKL picks its kernel by CPU; on this machine (an AMD
CPU, so MKL's generic SSE path; the same bits as MKL_CBWR=COMPATIBLE) its results differ from the correctly rounded
log in ~8% of float32 inputs in [1, 2) (up to 0.97 ulp), and from glibc's logf as well. switchc therefore computes
(float)log((double)x) and corrects it by one ulp where torch's log differs, from a table that this script derives
from torch itself (train/model/relpos_logf_table.h): every x = float(n) / me with 1 <= me <= 64 (num_buckets <= 129) and
me <= n <= 4096.

Outputs:
  train/model/relpos_logf_table.h        the sorted float32 bit patterns where torch's log is one ulp above / below
  tests/fixtures/buckets/hf_buckets.h5
                                   HF's buckets for num_buckets 4..128, a spread of max_distance up to 1024 (with
                                   every value below 1024 that makes an exact boundary, and every value where a
                                   plain log gives another bucket), |relative_position| <= 4096, both directions.

Layout of hf_buckets.h5, stored compactly: buckets grow with the distance n = |relative_position|, so each record
keeps, per bucket k above the exact range, the first n that reaches it (4097: not reached within 4096):
  records  int32 [R, 4]: num_buckets, max_distance, bidirectional, offset into thresholds
  thresholds uint16: for k = me+1 .. nb'-1 (nb' = num_buckets // 2 if bidirectional else num_buckets, me = nb' // 2),
             the first n in 0..4096 with f(n) >= k, where f(n) = n below me
  HF's bucket of relative position r is then: bidirectional: f(|r|) + nb' if r > 0 else f(|r|); otherwise f(-r) for
  r <= 0 and 0 for r > 0. Before writing, the script rebuilds every record's 8193 buckets from the thresholds and
  checks them against HF's output, entry by entry.

Then it compiles train/model/relpos.c, checks model_logf_torch against torch.log on every tabled x, and counts the entries
where the plain logs (the previous glibc logf, and (float)log((double)x) alone) give another bucket than HF.

  python3 scripts/make_bucket_table.py        (torch, transformers==4.57.6, h5py, numpy, a C compiler)
"""
import ctypes
import math
import os
import platform
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import transformers
from transformers.models.switch_transformers.modeling_switch_transformers import SwitchTransformersAttention

if transformers.__version__ != "4.57.6":
    sys.exit(f"make_bucket_table.py needs transformers 4.57.6, found {transformers.__version__}")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
HEADER = os.path.join(ROOT, "train", "relpos_logf_table.h")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "buckets", "hf_buckets.h5")
NMAX = 4096          # |relative_position| covered
ME_MAX = 64          # max_exact covered by the log table: num_buckets <= 129
MD_MAX = 1024
SPREAD = [8, 10, 12, 16, 20, 24, 25, 30, 32, 40, 48, 50, 60, 64, 75, 80, 96, 100, 120, 128, 150, 160, 192, 200, 250,
          256, 300, 320, 384, 400, 500, 512, 600, 640, 768, 800, 900, 1000, 1023, 1024]
LIBM = ctypes.CDLL("libm.so.6")
LIBM.logf.restype, LIBM.logf.argtypes = ctypes.c_float, [ctypes.c_float]


def torch_log(x):
    return torch.log(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def plain_log(x):
    """(float)log((double)x): CPython's math.log is the C library's log"""
    return np.array([math.log(float(v)) for v in x], dtype=np.float32)


def glibc_logf(x):
    return np.array([LIBM.logf(float(v)) for v in x], dtype=np.float32)


def log_table():
    xs = np.unique(np.concatenate([np.arange(me, NMAX + 1).astype(np.float32) / np.float32(me)
                                   for me in range(1, ME_MAX + 1)]))
    t, p = torch_log(xs), plain_log(xs)
    up = xs[t == np.nextafter(p, np.float32(np.inf))]
    down = xs[t == np.nextafter(p, np.float32(-np.inf))]
    other = int((t != p).sum()) - up.size - down.size
    if other:
        sys.exit(f"{other} inputs where torch's log is more than one ulp from (float)log((double)x): "
                 "extend the table format")
    return xs, up.view(np.uint32), down.view(np.uint32)


def write_header(up, down):
    def rows(a):
        vals = [f"0x{v:08x}u" for v in a.tolist()]
        return "\n".join("    " + ", ".join(vals[i:i + 9]) + "," for i in range(0, len(vals), 9))
    text = f"""/* Generated by scripts/make_bucket_table.py: do not edit.
 * torch {torch.__version__} (x86-64, MKL vmsLn VML_HA) on {cpu_name()}. Float32 bit patterns x = float(n) / me
 * (1 <= me <= {ME_MAX}, me <= n <= {NMAX}) where torch.log(x) on the CPU is one ulp above (UP) or below (DOWN)
 * (float)log((double)x); sorted, for bsearch (train/model/relpos.c). */
static const uint32_t RELPOS_LOGF_UP[{up.size}] = {{
{rows(up)}
}};
static const uint32_t RELPOS_LOGF_DOWN[{down.size}] = {{
{rows(down)}
}};
"""
    with open(HEADER, "w") as f:
        f.write(text)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def emulate(n, me, k, md, log):
    """HF's large-distance bucket offset for distances n (all >= me), with the given float32 log values of n/me"""
    with np.errstate(all="ignore"):
        v = (log / np.float32(math.log(md / me))) * np.float32(k)
    return np.minimum(me + v.astype(np.int64), me + k - 1)


def interesting_max_distances():
    """per nb' (the buckets of one direction): max_distance values <= MD_MAX with an exact boundary (some n below
    max_distance lands exactly on a bucket edge in real arithmetic), or where a plain log gives another bucket"""
    out = {}
    for nbe in range(2, 129):
        me, k = nbe // 2, nbe - nbe // 2
        n = np.arange(me, NMAX + 1)
        x = n.astype(np.float32) / np.float32(me)
        lt, lp, lg = torch_log(x), plain_log(x), glibc_logf(x)
        ln = np.log(n / me)
        s = set()
        for md in range(me + 1, MD_MAX + 1):
            below = n < md
            v = ln[below] / math.log(md / me) * k
            if (np.abs(v - np.round(v)) < 1e-11)[n[below] > me].any():
                s.add(md)
                continue
            ref = emulate(n, me, k, md, lt)
            if (emulate(n, me, k, md, lp) != ref).any() or (emulate(n, me, k, md, lg) != ref).any():
                s.add(md)
        out[nbe] = s
    return out


def thresholds(buckets_fn, me, nbe):
    """buckets_fn [NMAX + 1] over n -> the first n reaching each k in me+1..nbe-1"""
    return [int(np.argmax(buckets_fn >= k)) if (buckets_fn >= k).any() else NMAX + 1 for k in range(me + 1, nbe)]


def rebuild(th, nb, bidir):
    nbe = nb // 2 if bidir else nb
    me = nbe // 2
    n = np.arange(NMAX + 1)
    f = np.where(n < me, n, me)
    for j, t in enumerate(th):
        f = np.where(n >= t, me + 1 + j, f)
    return both_sides(f, nbe, bidir)


def both_sides(f, nbe, bidir):
    """one direction's buckets f [NMAX + 1] over n -> the buckets of relative positions -NMAX..NMAX"""
    r = np.arange(-NMAX, NMAX + 1)
    if bidir:
        return np.where(r > 0, f[np.abs(r)] + nbe, f[np.abs(r)])
    return np.where(r > 0, 0, f[np.minimum(-r, NMAX)])


def main():
    xs, up, down = log_table()
    write_header(up, down)
    print(f"log table: {xs.size} inputs, torch's log one ulp above the plain log for {up.size}, below for {down.size} "
          f"-> {os.path.relpath(HEADER, ROOT)}")

    special = interesting_max_distances()
    rp = torch.arange(-NMAX, NMAX + 1)
    records, th_all, n_entries = [], [], 0
    for nb in range(4, 129):
        lo = nb // 2  # HF needs max_distance > the decoder's max_exact (log(max_distance / max_exact) > 0)
        mds = set(range(lo + 1, lo + 9)) | set(SPREAD) | special[nb // 2] | special[nb]
        for md in sorted(m for m in mds if lo < m <= MD_MAX):
            for bidir in (1, 0):
                ref = SwitchTransformersAttention._relative_position_bucket(
                    rp, bidirectional=bool(bidir), num_buckets=nb, max_distance=md).numpy()
                nbe = nb // 2 if bidir else nb
                me = nbe // 2
                f = ref[NMAX:] - np.where(np.arange(NMAX + 1) > 0, nbe, 0) if bidir else ref[NMAX::-1]
                th = thresholds(f, me, nbe)
                if not np.array_equal(rebuild(th, nb, bidir), ref):
                    sys.exit(f"num_buckets {nb} max_distance {md} bidirectional {bidir}: HF's buckets do not have the "
                             "assumed shape")
                records.append((nb, md, bidir, len(th_all)))
                th_all.extend(th)
                n_entries += ref.size
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with h5py.File(FIXTURE, "w") as h:
        h.attrs["transformers_version"] = str(transformers.__version__)
        h.attrs["torch_version"] = str(torch.__version__)
        h.attrs["cpu"] = cpu_name()
        h.attrs["max_relative_position"] = NMAX
        h.create_dataset("records", data=np.array(records, dtype=np.int32), compression="gzip", compression_opts=9,
                         shuffle=True)
        h.create_dataset("thresholds", data=np.array(th_all, dtype=np.uint16), compression="gzip", compression_opts=9,
                         shuffle=True)
    print(f"{len(records)} records ({len({(r[0], r[1]) for r in records})} (num_buckets, max_distance) pairs), "
          f"{n_entries} buckets -> {os.path.relpath(FIXTURE, ROOT)} ({os.path.getsize(FIXTURE)} bytes)")
    check_c(xs, records, th_all)


def check_c(xs, records, th_all):
    """compiles train/model/relpos.c and compares it with torch; counts what the plain logs would get wrong"""
    with tempfile.TemporaryDirectory() as d:
        so = os.path.join(d, "relpos.so")
        src = os.path.join(ROOT, "train", "relpos.c")
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-I", ROOT, src, "-o", so, "-lm"], check=True)
        lib = ctypes.CDLL(so)
        lib.model_logf_torch.restype, lib.model_logf_torch.argtypes = ctypes.c_float, [ctypes.c_float]
        ours = np.array([lib.model_logf_torch(float(v)) for v in xs], dtype=np.float32)
        bad = int((ours.view(np.uint32) != torch_log(xs).view(np.uint32)).sum())
        print(f"model_logf_torch vs torch.log on the {xs.size} tabled inputs: {bad} differ")
        if bad:
            sys.exit(1)
    # the previous implementation (glibc logf) and the untabled plain log, over every entry of the fixture
    for name, logfn in (("glibc logf (before)", glibc_logf), ("(float)log((double)x) without the table", plain_log)):
        cache, wrong = {}, 0
        for nb, md, bidir, off in records:
            nbe = nb // 2 if bidir else nb
            me = nbe // 2
            if me not in cache:
                n = np.arange(me, NMAX + 1)
                cache[me] = (n, logfn(n.astype(np.float32) / np.float32(me)))
            n, lx = cache[me]
            f = np.arange(NMAX + 1)
            f[me:] = emulate(n, me, nbe - me, md, lx)
            th = th_all[off:off + nbe - me - 1]
            ref = rebuild(th, nb, bidir)
            got = both_sides(f, nbe, bidir)
            wrong += int((got != ref).sum())
        print(f"entries where {name} gives another bucket than HF: {wrong}")


if __name__ == "__main__":
    main()
