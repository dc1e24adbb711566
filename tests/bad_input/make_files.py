#!/usr/bin/env python3
"""Bad input files for tests/bad_input/run.sh, made at test time (small, standard library only).

  make_files.py craft OUT FIXTURES   crafted pytorch_model.bin, safetensors and index files, each in an HF folder
                                     OUT/<name>/ with the tiny fixture's config.json (FIXTURES = tests/fixtures/hf)
  make_files.py seeds OUT            small torch.save-style archives that reach the storage checks: the fuzz seeds
                                     (fuzz/seeds/torchbin, committed; scripts/fuzz.sh copies them into the corpus)
  make_files.py flip SRC DST FRAC N  DST = SRC with N bytes inverted from offset FRAC * size (a damaged file)
  make_files.py nan SRC DST          DST = the safetensors SRC with its first float set to NaN
"""
import io
import json
import os
import shutil
import struct
import sys
import zipfile

# ---- pickle pieces (protocol 2, the opcodes torch.save writes) ---------------------------------------------------


def s(text):  # BINUNICODE
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i(v):  # BININT1 / BININT2 / BININT, else LONG1 (8 bytes two's complement)
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    return b"\x8a\x08" + struct.pack("<q", v) if v < 2**63 else b"\x8a\x08" + struct.pack("<Q", v)


def tup(items):
    return b"(" + b"".join(items) + b"t"


def glob(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def tensor(key, numel, offset, shape, stride, storage_type="FloatStorage"):
    pid = tup([s("storage"), glob("torch", storage_type), s(key), s("cpu"), i(numel)]) + b"Q"
    hooks = glob("collections", "OrderedDict") + b")R"
    args = tup([pid, i(offset), tup([i(x) for x in shape]), tup([i(x) for x in stride]), b"\x89", hooks])
    return glob("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict(entries):
    body = b"".join(s(name) + t for name, t in entries)
    return b"\x80\x02" + glob("collections", "OrderedDict") + b")R(" + body + b"u."


def archive(pkl, storages, byteorder=b"little", name="archive"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        def put(member, data):  # a fixed date: reproducible bytes
            z.writestr(zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0)), data)

        put(f"{name}/data.pkl", pkl)
        put(f"{name}/byteorder", byteorder)
        for key, data in storages.items():
            put(f"{name}/data/{key}", data)
        put(f"{name}/version", b"3\n")
    return buf.getvalue()


def floats(n):
    return struct.pack(f"<{n}f", *[0.01 * (k % 7) for k in range(n)])


def contiguous(shape):
    st, acc = [], 1
    for d in reversed(shape):
        st.insert(0, acc)
        acc *= d
    return st


def bins():
    """name -> bytes of a pytorch_model.bin."""
    D = floats(640)  # shared.weight [40, 16] of the fixture's config
    def one(t, storage=D, **kw):  # a state dict holding one tensor, 'shared.weight'
        return archive(state_dict([("shared.weight", t)]), {"0": storage}, **kw)

    ok = one
    out = {
        # parses, then the loader misses the other tensors: the crafting itself works
        "bin_ok_one_tensor": ok(tensor("0", 640, 0, [40, 16], [16, 1])),
        # a storage claiming 2^62 elements: 2^62 x 4 bytes wraps to 0 in 64 bits
        "bin_storage_2p62": one(tensor("0", 2**62, 0, [40, 16], [16, 1]), floats(4)),
        "bin_storage_2p62_big_tensor": one(tensor("0", 2**62, 0, [2**31, 2**31], [2**31, 1]), floats(4)),
        # shape (2^32, 2^32): its element count overflows
        "bin_shape_2p32": ok(tensor("0", 640, 0, [2**32, 2**32], [2**32, 1])),
        "bin_shape_3x2p32": ok(tensor("0", 640, 0, [2**32, 2**32, 2**32], [0, 2**32, 1])),
        "bin_negative_offset": ok(tensor("0", 640, -1, [40, 16], [16, 1])),
        "bin_offset_past_storage": ok(tensor("0", 640, 600, [40, 16], [16, 1])),
        "bin_offset_huge": ok(tensor("0", 640, 2**62, [40, 16], [16, 1])),
        "bin_negative_size": ok(tensor("0", 640, 0, [-40, 16], [16, 1])),
        "bin_negative_numel": ok(tensor("0", -5, 0, [40, 16], [16, 1])),
        "bin_storage_bigger_than_member": ok(tensor("0", 100000, 0, [40, 16], [16, 1])),
        "bin_not_contiguous": ok(tensor("0", 640, 0, [40, 16], [1, 40])),
        "bin_missing_storage": ok(tensor("7", 640, 0, [40, 16], [16, 1])),
        "bin_big_endian": one(tensor("0", 640, 0, [40, 16], [16, 1]), byteorder=b"big"),
        "bin_refused_global": archive(b"\x80\x02" + glob("os", "system") + s("echo pwned") + b"\x85R.", {}),
        "bin_refused_opcode": archive(b"\x80\x02\x93.", {}),
        "bin_no_stop": archive(state_dict([("shared.weight", tensor("0", 640, 0, [40, 16], [16, 1]))])[:-1], {"0": D}),
        "bin_truncated_pickle": archive(state_dict([("shared.weight", tensor("0", 640, 0, [40, 16], [16, 1]))])[:40],
                                        {"0": D}),
        "bin_not_a_dict": archive(b"\x80\x02]" + i(5) + b"a.", {}),
        "bin_key_not_str": archive(b"\x80\x02}" + i(5) + i(6) + b"s.", {}),
        "bin_memo_unset": archive(b"\x80\x02h\x05.", {}),
        "bin_long1_wide": archive(b"\x80\x02\x8a\x09" + b"\x01" * 9 + b".", {}),
        "bin_persid_not_storage": archive(b"\x80\x02" + tup([s("nope")]) + b"Q.", {}),
        "bin_reduce_not_callable": archive(b"\x80\x02" + i(3) + b")R.", {}),
        "bin_bad_protocol": archive(b"\x80\x09.", {}),
        "bin_stop_empty": archive(b"\x80\x02.", {}),
        "bin_int16_storage": one(tensor("0", 640, 0, [40, 16], [16, 1], "ShortStorage"), b"\0" * 1280),
    }
    good = out["bin_ok_one_tensor"]
    out["bin_empty"] = b""
    out["bin_no_eocd"] = good[: len(good) - 30]
    out["bin_half"] = good[: len(good) // 2]
    out["bin_not_zip"] = b"this is not a zip archive, just text " * 4
    # the end-of-central-directory record claims 60000 entries
    k = good.rfind(b"PK\x05\x06")
    out["bin_cd_count"] = good[: k + 10] + struct.pack("<H", 60000) + good[k + 12 :]
    # the central directory offset points past the end
    out["bin_cd_offset"] = good[: k + 16] + struct.pack("<I", 0x7FFFFFFF) + good[k + 20 :]
    # no data.pkl member
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data/0", D)
    out["bin_no_data_pkl"] = buf.getvalue()
    # a deflated member
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", state_dict([]))
    out["bin_deflated"] = buf.getvalue()
    return out


# ---- safetensors -----------------------------------------------------------------------------------------------


def st(header, data=b"", length=None, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def safetensors():
    D = floats(640)

    def w(shape, offsets, dtype="F32"):  # a header with one tensor, 'shared.weight'
        return {"shared.weight": {"dtype": dtype, "shape": shape, "data_offsets": offsets}}

    one = w([40, 16], [0, 2560])
    return {
        "st_ok_one_tensor": st(one, D),
        "st_header_past_end": st(one, D, length=10**6),
        "st_header_over_limit": st(one, D, length=200_000_000),
        "st_header_not_json": st(None, D, raw_header=b"{not json"),
        "st_header_not_object": st(None, b"", raw_header=b"[1, 2, 3]"),
        "st_header_not_utf8": st(None, D, raw_header=b'{"shared.weight\xff": 1}'),
        "st_duplicate_key": st(None, D + D,
                               raw_header=b'{"a": {"dtype": "F32", "shape": [640], "data_offsets": [0, 2560]}, '
                               b'"a": {"dtype": "F32", "shape": [640], "data_offsets": [2560, 5120]}}'),
        "st_unknown_dtype": st({"shared.weight": {"dtype": "F99", "shape": [40, 16], "data_offsets": [0, 2560]}}, D),
        "st_shape_negative": st({"shared.weight": {"dtype": "F32", "shape": [-40, 16], "data_offsets": [0, 2560]}}, D),
        "st_shape_fraction": st({"shared.weight": {"dtype": "F32", "shape": [2.5, 16], "data_offsets": [0, 2560]}}, D),
        "st_shape_overflow": st(w([2**32, 2**32, 2**32], [0, 2560]), D),
        "st_shape_9_dims": st({"shared.weight": {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]}}, D[:4]),
        "st_offsets_reversed": st({"shared.weight": {"dtype": "F32", "shape": [40, 16], "data_offsets": [2560, 0]}}, D),
        "st_offsets_size_mismatch": st(w([40, 16], [0, 2556]), D[:2556]),
        "st_offsets_huge": st(w([40, 16], [2**53, 2**53 + 2560]), D),
        "st_gap": st({"shared.weight": {"dtype": "F32", "shape": [40, 16], "data_offsets": [4, 2564]}}, D + b"\0" * 4),
        "st_overlap": st({"a": {"dtype": "F32", "shape": [640], "data_offsets": [0, 2560]},
                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [2552, 2560]}}, D),
        "st_trailing_bytes": st(one, D + b"\0" * 16),
        "st_missing_bytes": st(one, D[:1000]),
        "st_metadata_not_strings": st({"__metadata__": {"format": 5}, **one}, D),
        "st_tensor_not_object": st({"shared.weight": 5}, D),
        "st_too_small": b"\x01\x02\x03",
        "st_int_dtype": st({"shared.weight": {"dtype": "I32", "shape": [40, 16], "data_offsets": [0, 2560]}}, D),
    }


def craft(out, fx):
    cfg = os.path.join(fx, "bin_f32", "config.json")
    for weights, cases in (("pytorch_model.bin", bins()), ("model.safetensors", safetensors())):
        for name, data in cases.items():
            d = os.path.join(out, name)
            os.makedirs(d, exist_ok=True)
            shutil.copy(cfg, os.path.join(d, "config.json"))
            with open(os.path.join(d, weights), "wb") as f:
                f.write(data)
    # sharded folders: an index that is broken in one way each, beside the fixture's shards
    sh = os.path.join(fx, "sharded")
    index = json.load(open(os.path.join(sh, "model.safetensors.index.json")))
    shards = sorted(f for f in os.listdir(sh) if f.endswith(".safetensors"))

    def sharded(name, idx_text=None, drop_shard=None):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(sh, "config.json"), os.path.join(d, "config.json"))
        for f in shards:
            if f != drop_shard:
                shutil.copy(os.path.join(sh, f), os.path.join(d, f))
        if idx_text is not None:
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                f.write(idx_text)
        return d

    sharded("idx_ok", json.dumps(index))
    bad = json.loads(json.dumps(index))
    bad["weight_map"][next(iter(bad["weight_map"]))] = "../outside.safetensors"
    sharded("idx_escape", json.dumps(bad))
    sharded("idx_missing_shard", json.dumps(index), drop_shard=shards[1])
    bad = json.loads(json.dumps(index))
    bad["weight_map"]["decoder.block.9.layer.0.SelfAttention.k.weight"] = shards[0]
    sharded("idx_tensor_not_in_shard", json.dumps(bad))
    sharded("idx_trailing_junk", json.dumps(index) + "\n{}\n")
    sharded("idx_no_weight_map", json.dumps({"metadata": {}}))
    bad = json.loads(json.dumps(index))
    bad["weight_map"][next(iter(bad["weight_map"]))] = 5
    sharded("idx_value_not_string", json.dumps(bad))
    d = sharded("idx_is_dir")
    os.makedirs(os.path.join(d, "model.safetensors.index.json"), exist_ok=True)


def seeds(out):
    """Small valid and near-valid archives whose pickles reach the storage records: what a fuzzer needs to get past
    the ZIP and into _rebuild_tensor_v2's bounds checks."""
    os.makedirs(out, exist_ok=True)
    b = bins()
    D = floats(12)
    two = state_dict([("a", tensor("0", 12, 0, [3, 4], [4, 1])), ("b", tensor("1", 6, 2, [4], [1], "BFloat16Storage"))])
    picks = {
        "two_tensors.bin": archive(two, {"0": D, "1": b"\0" * 12}),
        "offset_view.bin": archive(state_dict([("a", tensor("0", 12, 4, [2, 4], [4, 1]))]), {"0": D}),
        "scalar.bin": archive(state_dict([("a", tensor("0", 1, 0, [], []))]), {"0": D[:4]}),
        "storage_2p62.bin": archive(state_dict([("a", tensor("0", 2**62, 0, [3, 4], [4, 1]))]), {"0": D}),
        "shape_2p32.bin": archive(state_dict([("a", tensor("0", 12, 0, [2**32, 2**32], [2**32, 1]))]), {"0": D}),
        "not_contiguous.bin": archive(state_dict([("a", tensor("0", 12, 0, [3, 4], [1, 3]))]), {"0": D}),
        "memo.bin": archive(b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01" + tensor("0", 12, 0, [3, 4], [4, 1]) +
                            b"q\x02X\x01\x00\x00\x00bh\x02u.", {"0": D}),
    }
    picks["refused_global.bin"] = b["bin_refused_global"]
    for name, data in picks.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


def flip(src, dst, frac, n):
    b = bytearray(open(src, "rb").read())
    at = int(float(frac) * len(b))
    for k in range(at, min(at + int(n), len(b))):
        b[k] ^= 0xFF
    open(dst, "wb").write(b)


def nan(src, dst):
    b = bytearray(open(src, "rb").read())
    n = struct.unpack("<Q", b[:8])[0]
    b[8 + n : 8 + n + 4] = struct.pack("<I", 0x7FC00000)
    open(dst, "wb").write(b)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "craft":
        craft(sys.argv[2], sys.argv[3])
    elif cmd == "seeds":
        seeds(sys.argv[2])
    elif cmd == "flip":
        flip(*sys.argv[2:6])
    elif cmd == "nan":
        nan(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
