#!/usr/bin/env python3
"""Convert the musicnn 0.1.0 TensorFlow checkpoints to safetensors, without TensorFlow.

Usage::

    pip download --no-deps musicnn==0.1.0 -d /tmp/w
    python tools/convert_musicnn.py /tmp/w/musicnn-0.1.0-py3-none-any.whl

The checkpoints are read straight out of the wheel (a zip file). Each one is a TF V2
"tensor bundle": ``.index`` is a LevelDB-format table (SSTable) mapping tensor names to
serialized ``BundleEntryProto`` messages, and ``.data-00000-of-00001`` holds the raw
little-endian tensor bytes. Both are parsed here by hand; every block CRC and every
tensor CRC (masked CRC-32C) is verified.

Only inference tensors are kept (the Adam optimizer slots ``*/Adam``, ``*/Adam_1`` and
``beta1_power``/``beta2_power`` are dropped). They are written as float32 under their
original TF names and in their original TF layouts (conv kernels ``[kh, kw, in, out]``,
dense kernels ``[in, out]``); the PyTorch port transposes them at load time. Keeping the
TF layout means the files are a 1:1, checkable copy of the checkpoint values.

Outputs (under ``stream/models/musicnn/`` by default):

- ``weights/<MODEL>.safetensors`` for MTT_musicnn, MSD_musicnn, MTT_vgg, MSD_vgg
- ``weights/LICENSE``: the wheel's ISC ``LICENSE.md``, verbatim
- ``tags.json``: ``MTT_LABELS`` / ``MSD_LABELS`` read (with ``ast``, never executed) from
  the wheel's ``musicnn/configuration.py``

The output is deterministic: running the tool twice gives byte-identical files.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")
# Facts about these checkpoints (total tensors incl. optimizer state, inference tensors,
# inference float count); the conversion refuses to write anything that disagrees.
EXPECTED = {
    "musicnn": (150, 64, 792079),
    "vgg": (86, 36, 607030),
}
TABLE_MAGIC = 0xDB4775248B80FB57
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "stream" / "models" / "musicnn"

# ---------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, table driven.


def _make_crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of `data` (continuing from `crc`). crc32c(b"123456789") == 0xE3069283."""
    table = _CRC_TABLE
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_MASK_DELTA = 0xA282EAD8


def mask_crc(crc: int) -> int:
    """LevelDB/TF CRC masking (so that CRCs of data containing CRCs stay well-behaved)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Varints and protobuf wire format.


class FormatError(ValueError):
    """The checkpoint bytes do not have the expected structure."""


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise FormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise FormatError("varint too long")


def parse_proto(buf: bytes) -> list[tuple[int, int, object]]:
    """Decode one protobuf message into (field_number, wire_type, value) triples."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wtype = key >> 3, key & 7
        if wtype == 0:
            val, pos = read_varint(buf, pos)
        elif wtype == 1:
            val = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wtype == 2:
            n, pos = read_varint(buf, pos)
            val = bytes(buf[pos:pos + n])
            if len(val) != n:
                raise FormatError("truncated length-delimited field")
            pos += n
        elif wtype == 5:
            val = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise FormatError(f"unsupported wire type {wtype} (field {field})")
        out.append((field, wtype, val))
    if pos != len(buf):
        raise FormatError("protobuf message overruns its buffer")
    return out


DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 19: "<f2"}


def parse_bundle_entry(buf: bytes) -> dict:
    """BundleEntryProto -> dict(dtype, shape, shard_id, offset, size, crc32c).

    Protobuf omits default values, so absent fields are 0 (e.g. offset of the first tensor).
    """
    entry = {"dtype": 0, "shape": [], "shard_id": 0, "offset": 0, "size": 0, "crc32c": None}
    for field, wtype, val in parse_proto(buf):
        if field == 1 and wtype == 0:
            entry["dtype"] = val
        elif field == 2 and wtype == 2:  # TensorShapeProto
            for f2, w2, v2 in parse_proto(val):
                if f2 == 2 and w2 == 2:  # repeated Dim
                    size = 0
                    for f3, w3, v3 in parse_proto(v2):
                        if f3 == 1 and w3 == 0:
                            size = v3 - (1 << 64) if v3 >= 1 << 63 else v3  # int64
                    entry["shape"].append(size)
                elif f2 == 3 and w2 == 0 and v2:
                    raise FormatError("tensor of unknown rank")
        elif field == 3 and wtype == 0:
            entry["shard_id"] = val
        elif field == 4 and wtype == 0:
            entry["offset"] = val
        elif field == 5 and wtype == 0:
            entry["size"] = val
        elif field == 6 and wtype == 5:
            entry["crc32c"] = val
        elif field == 7:
            raise FormatError("sliced tensors are not supported")
    return entry


# ---------------------------------------------------------------------------
# SSTable (LevelDB table format) reader.


def _read_block(table: bytes, offset: int, size: int) -> bytes:
    """Return the contents of one block after checking its 5-byte trailer (type + CRC)."""
    if offset + size + 5 > len(table):
        raise FormatError(f"block [{offset}, +{size}) runs past the end of the index file")
    contents = table[offset:offset + size]
    btype = table[offset + size]
    if btype != 0:
        raise FormatError(f"block compression type {btype} is not supported (only 0 = none)")
    stored = struct.unpack_from("<I", table, offset + size + 1)[0]
    actual = crc32c(table[offset:offset + size + 1])  # CRC covers contents + type byte
    if unmask_crc(stored) != actual:
        raise FormatError(f"block CRC mismatch at offset {offset}")
    return contents


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Decode prefix-compressed (key, value) entries of one block."""
    if len(block) < 4:
        raise FormatError("block too short")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    if end < 0:
        raise FormatError("bad restart count")
    entries = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        vlen, pos = read_varint(block, pos)
        if shared > len(key):
            raise FormatError("shared key prefix longer than the previous key")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        value = block[pos:pos + vlen]
        pos += vlen
        entries.append((key, value))
    if pos != end:
        raise FormatError("block entries overrun the restart array")
    return entries


def _footer_handles(table: bytes) -> tuple[tuple[int, int], tuple[int, int]]:
    if len(table) < 48:
        raise FormatError("index file shorter than an SSTable footer")
    footer = table[-48:]
    if struct.unpack_from("<Q", footer, 40)[0] != TABLE_MAGIC:
        raise FormatError("bad SSTable magic number")
    pos = 0
    meta_off, pos = read_varint(footer, pos)
    meta_size, pos = read_varint(footer, pos)
    index_off, pos = read_varint(footer, pos)
    index_size, pos = read_varint(footer, pos)
    return (meta_off, meta_size), (index_off, index_size)


def read_sstable(table: bytes) -> dict[bytes, bytes]:
    """Every (key, value) of an uncompressed SSTable, keys checked to be strictly sorted."""
    (meta_off, meta_size), (index_off, index_size) = _footer_handles(table)
    _read_block(table, meta_off, meta_size)  # empty here, but its CRC is still checked
    out: dict[bytes, bytes] = {}
    last = None
    for _sep, handle in _block_entries(_read_block(table, index_off, index_size)):
        off, p = read_varint(handle, 0)
        size, _ = read_varint(handle, p)
        for key, value in _block_entries(_read_block(table, off, size)):
            if last is not None and key <= last:
                raise FormatError("SSTable keys are not strictly increasing")
            last = key
            out[key] = value
    return out


# ---------------------------------------------------------------------------
# Tensor bundle reader.


def read_bundle(index: bytes, data: bytes, verify_crc: bool = True) -> dict[str, np.ndarray]:
    """All tensors of a single-shard TF V2 checkpoint as numpy arrays (keyed by TF name)."""
    entries = read_sstable(index)
    header = entries.pop(b"", None)
    if header is None:
        raise FormatError("no BundleHeaderProto (empty key) in the index")
    hdr = {f: v for f, _w, v in parse_proto(header)}
    if hdr.get(1, 0) != 1:
        raise FormatError(f"expected 1 shard, header says {hdr.get(1, 0)}")
    if hdr.get(2, 0) != 0:
        raise FormatError("big-endian checkpoints are not supported")
    tensors = {}
    for key, value in entries.items():
        name = key.decode("utf-8")
        e = parse_bundle_entry(value)
        if e["shard_id"] != 0:
            raise FormatError(f"{name}: shard {e['shard_id']} (only single-shard bundles)")
        if e["dtype"] not in DTYPES:
            raise FormatError(f"{name}: unsupported dtype enum {e['dtype']}")
        dt = np.dtype(DTYPES[e["dtype"]])
        n = int(np.prod(e["shape"], dtype=np.int64))
        if e["size"] != n * dt.itemsize:
            raise FormatError(f"{name}: {e['size']} bytes for shape {e['shape']} of {dt}")
        raw = data[e["offset"]:e["offset"] + e["size"]]
        if len(raw) != e["size"]:
            raise FormatError(f"{name}: tensor bytes run past the end of the data file")
        if verify_crc:
            if e["crc32c"] is None:
                raise FormatError(f"{name}: no CRC stored")
            if unmask_crc(e["crc32c"]) != crc32c(raw):
                raise FormatError(f"{name}: tensor CRC mismatch")
        tensors[name] = np.frombuffer(raw, dtype=dt).reshape(e["shape"]).copy()
    return tensors


def is_inference_tensor(name: str) -> bool:
    """False for optimizer state: Adam slots and the Adam beta power accumulators."""
    leaf = name.rsplit("/", 1)[-1]
    return leaf not in ("Adam", "Adam_1") and name not in ("beta1_power", "beta2_power")


def read_labels(config_py: str) -> dict[str, list[str]]:
    """MTT_LABELS / MSD_LABELS from configuration.py, via ast (the file is never executed)."""
    labels = {}
    for node in ast.parse(config_py).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("MTT_LABELS", "MSD_LABELS"):
                labels[target.id] = list(ast.literal_eval(node.value))
    if set(labels) != {"MTT_LABELS", "MSD_LABELS"}:
        raise FormatError("configuration.py lacks MTT_LABELS or MSD_LABELS")
    return labels


def convert_model(wheel: zipfile.ZipFile, model: str, verify_crc: bool = True) -> dict[str, np.ndarray]:
    """Inference tensors of one model from the wheel, after checking the known facts."""
    prefix = f"musicnn/{model}/"
    index = wheel.read(prefix + ".index")
    data = wheel.read(prefix + ".data-00000-of-00001")
    tensors = read_bundle(index, data, verify_crc=verify_crc)
    arch = model.split("_", 1)[1]
    n_total, n_infer, n_values = EXPECTED[arch]
    keep = {k: v for k, v in tensors.items() if is_inference_tensor(k)}
    got_values = sum(v.size for v in keep.values())
    if (len(tensors), len(keep), got_values) != (n_total, n_infer, n_values):
        raise FormatError(
            f"{model}: {len(tensors)} tensors / {len(keep)} inference / {got_values} values, "
            f"expected {n_total} / {n_infer} / {n_values}")
    for k, v in keep.items():
        if v.dtype != np.float32:
            raise FormatError(f"{model}: {k} is {v.dtype}, expected float32")
    return keep


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write a safetensors file with sorted keys, so the bytes are reproducible.

    (``safetensors.numpy.save_file`` orders ``__metadata__`` by a hash map, which changes
    from run to run.) Format: u64 LE header length, JSON header padded with spaces to a
    multiple of 8, then the raw little-endian tensors back to back.
    """
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    names = sorted(tensors)
    for name in names:
        arr = tensors[name]
        if arr.dtype != np.float32:
            raise ValueError(f"{name}: only float32 is written, got {arr.dtype}")
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    hbytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for name in names:
            f.write(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheel", type=Path, help=f"path to {WHEEL_NAME}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="package directory to write into (default: stream/models/musicnn)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--skip-sha256", action="store_true",
                    help="do not insist on the known wheel sha256 (CRCs are still checked)")
    args = ap.parse_args(argv)

    blob = args.wheel.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    if sha != WHEEL_SHA256 and not args.skip_sha256:
        print(f"error: {args.wheel} has sha256 {sha}, expected {WHEEL_SHA256} "
              f"({WHEEL_NAME}); pass --skip-sha256 to convert it anyway", file=sys.stderr)
        return 2
    weights_dir = args.out / "weights"
    weights_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.wheel) as wheel:
        labels = read_labels(wheel.read("musicnn/configuration.py").decode("utf-8"))
        license_text = wheel.read("musicnn-0.1.0.dist-info/LICENSE.md")
        for model in args.models:
            tensors = convert_model(wheel, model)
            meta = {
                "source": f"{WHEEL_NAME} musicnn/{model}/",
                "source_sha256": sha,
                "architecture": model.split("_", 1)[1],
                "dataset": model.split("_", 1)[0],
                "layout": "TF: conv kernel [kh, kw, in, out], dense kernel [in, out]",
                "license": "ISC, see LICENSE",
            }
            path = weights_dir / f"{model}.safetensors"
            write_safetensors(path, tensors, meta)
            n = sum(v.size for v in tensors.values())
            print(f"{model}: {len(tensors)} tensors, {n} floats -> {path} "
                  f"({path.stat().st_size} bytes)")
    (weights_dir / "LICENSE").write_bytes(license_text)
    tags_path = args.out / "tags.json"
    tags_path.write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    print(f"labels -> {tags_path}; license -> {weights_dir / 'LICENSE'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
