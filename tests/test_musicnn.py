"""Bundled musicnn port: front end, networks and backend against the TF reference vectors.

The vectors in tests/data/musicnn/ are outputs of the original TensorFlow models (see its
README.md). Tolerances are the ones suggested there for a faithful float32 port.
"""
from __future__ import annotations

import importlib.util
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stream.errors import ModelLoadError
from stream.models.base import AudioModel
from stream.models.musicnn import GENRE_TAGS, SPECS, MusicnnModel, load_bundled
from stream.models.musicnn.frontend import PATCH_FRAMES, LogMel, mel_basis, patch_starts
from stream.models.musicnn.model import TAGS_PATH, WEIGHTS_DIR
from stream.models.musicnn.nets import ARCHITECTURES, EXPECTED_SHAPES

DATA = Path(__file__).parent / "data" / "musicnn"
REPO = Path(__file__).resolve().parent.parent
INPUTS = ("synthetic", "real")
CKPTS = {"MTT_musicnn": "musicnn-mtt", "MSD_musicnn": "musicnn-msd", "MTT_vgg": "vgg-mtt", "MSD_vgg": "vgg-msd"}
TAGS = json.loads((DATA / "tags.json").read_text())
TOP5 = json.loads((DATA / "top5.json").read_text())


def wav(name):
    y, sr = sf.read(DATA / f"{name}.wav", dtype="float32")
    assert sr == 16000 and y.shape == (96000,)
    return y


def ref(name):
    return np.load(DATA / f"{name}.npz")


def raw_tags(ckpt):
    return TAGS[ckpt.split("_")[0] + "_LABELS"]


@pytest.fixture(scope="module")
def models():
    # float32 (upstream's references are float32; "auto" may pick bf16 on this CPU: test_precision.py)
    from stream.models.backends import onnxruntime_available

    fp32 = "onnxruntime" if onnxruntime_available()[0] else "torch"
    return {spec: load_bundled(spec, backend=fp32) for spec in SPECS}


@pytest.fixture(scope="module")
def nets():
    from safetensors.torch import load_file

    return {ck: ARCHITECTURES[ck.split("_")[1]](load_file(str(WEIGHTS_DIR / f"{ck}.safetensors"))).eval()
            for ck in CKPTS}


# -- front end ----------------------------------------------------------------------------

def test_mel_basis_matches_librosa_reference():
    want = np.load(DATA / "frontend.npz")["mel_basis"]
    got = mel_basis()
    assert got.shape == (96, 257) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-8  # float64 -> float32: at most one rounding step


@pytest.mark.parametrize("name", INPUTS)
def test_logmel_from_wav(name):
    r = ref(name)
    got = LogMel()(torch.from_numpy(wav(name))[None])[0].numpy()
    assert got.shape == (376, 96) and got.dtype == np.float32
    assert np.abs(got - r["logmel"]).max() <= 1e-4
    # Frame 0 would be off by ~1.7 with reflection padding (librosa < 0.9).
    assert np.abs(got[0] - r["logmel"][0]).max() <= 1e-4


def test_patch_starts():
    assert patch_starts(376, "start") == [0, 187]  # upstream: drop the newest leftover
    assert patch_starts(376, "end") == [2, 189]  # live: keep the newest frames
    assert patch_starts(186, "end") == [] and patch_starts(187, "start") == [0]
    with pytest.raises(ValueError):
        patch_starts(400, "middle")


# -- networks -------------------------------------------------------------------------------

def assert_scaled_close(got, want, rel=1e-4):
    """|got - want| <= rel x the reference's magnitude (at least 1). float32 summation order
    differs between AVX2 and AVX-512 kernels: logits of ~17 move by ~4e-4 there, while a
    porting error (wrong padding, axis, weight) moves them by whole units."""
    got, want = np.asarray(got), np.asarray(want)
    bound = rel * max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= bound, f"max |diff| {err:.3g} > {bound:.3g} (rel {rel} of max |ref| {np.abs(want).max():.3g})"


@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("ckpt", list(CKPTS))
def test_logits_on_reference_patches(nets, ckpt, name):
    r = ref(name)
    x = torch.from_numpy(np.stack([r["logmel"][a:b] for a, b in r["patch_frames"]]))
    with torch.inference_mode():
        f = nets[ckpt].features(x)
    assert_scaled_close(f["logits"].numpy(), r[f"{ckpt}_logits"])
    assert np.abs(torch.sigmoid(f["logits"]).numpy() - r[f"{ckpt}_probs"]).max() <= 2e-5
    if ckpt.endswith("musicnn"):
        assert_scaled_close(f["penultimate"].numpy(), r[f"{ckpt}_penultimate"])
        for k in ("max_pool", "mean_pool"):
            assert_scaled_close(f[k].numpy(), r[f"{ckpt}_{k}"])
    else:
        assert_scaled_close(f["flat_pool5"].numpy(), r[f"{ckpt}_flat_pool5"])


@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("ckpt", list(CKPTS))
def test_end_to_end_from_wav_and_top5(models, ckpt, name):
    r = ref(name)
    m = models[CKPTS[ckpt]]
    m.align = "start"  # upstream patching, as in the reference
    try:
        logits = m.patch_logits(wav(name)[None])[ckpt][0].numpy()
        probs = m.predict(wav(name)[None])[0]
    finally:
        m.align = "end"
    assert logits.shape == (2, 50)
    assert_scaled_close(logits, r[f"{ckpt}_logits"])
    tags = raw_tags(ckpt)
    expected = TOP5[name][ckpt]
    for i, patch in enumerate(expected["per_patch"]):
        p = 1 / (1 + np.exp(-logits[i].astype(np.float64)))
        assert [tags[j] for j in np.argsort(-p)[:5]] == [t for t, _ in patch["top5"]]
    # predict() = mean of the patch sigmoids, in the model's own tag order (single model).
    assert [tags[j] for j in np.argsort(-probs)[:5]] == [t for t, _ in expected["mean_over_patches_top5"]]
    assert np.abs(probs - r[f"{ckpt}_probs"].mean(0)).max() <= 2e-5


# -- backend --------------------------------------------------------------------------------

def test_interface(models):
    for spec, m in models.items():
        assert isinstance(m, AudioModel) and isinstance(m, MusicnnModel)
        assert m.sample_rate == 16000 and m.multi_label is True
        assert m.min_samples == 47616  # 186 * 256: first length giving a full 187-frame patch
        assert m.default_hop_s == 1.0
        assert len(set(m.labels)) == len(m.labels)
        assert m.name == spec
    # The default window holds a whole number of patches (3).
    m = models["musicnn"]
    assert (1 + int(m.default_window_s * 16000) // 256) // PATCH_FRAMES == 3


def test_merged_labels(models):
    m = models["musicnn"]
    union = {t.lower() for t in TAGS["MTT_LABELS"]} | {t.lower() for t in TAGS["MSD_LABELS"]}
    assert set(m.labels) == union and len(m.labels) == 92
    assert "hip-hop" in m.labels and "Hip-Hop" not in m.labels
    assert "female vocalists" in m.labels and "female vocalist" in m.labels  # distinct MSD tags


def test_merged_probabilities_average_shared_tags(models):
    m, mtt, msd = models["musicnn-original"], models["musicnn-mtt"], models["musicnn-msd"]  # the upstream pair
    y = np.stack([wav("real"), wav("synthetic")])
    p, a, b = m.predict(y), mtt.predict(y), msd.predict(y)
    for tag in ("rock", "electronic", "guitar", "country"):  # in both lists
        np.testing.assert_allclose(p[:, m.labels.index(tag)],
                                   (a[:, mtt.labels.index(tag)] + b[:, msd.labels.index(tag)]) / 2, atol=1e-6)
    np.testing.assert_allclose(p[:, m.labels.index("techno")], a[:, mtt.labels.index("techno")], atol=1e-6)
    np.testing.assert_allclose(p[:, m.labels.index("jazz")], b[:, msd.labels.index("jazz")], atol=1e-6)


def test_genre_view(models):
    m = models["musicnn"]
    assert set(m.default_labels) <= set(m.labels)
    for tag in ("classical", "rock", "jazz", "hip-hop", "metal", "blues", "country", "techno", "pop"):
        assert tag in m.default_labels
    for tag in ("00s", "80s", "female vocalists", "beautiful", "guitar", "slow", "male vocal", "sexy", "mellow"):
        assert tag not in m.default_labels
    assert "reggae" not in m.default_labels  # no model outputs it
    for spec, single in models.items():
        assert set(single.default_labels) <= set(single.labels), spec
        assert set(single.default_labels) == GENRE_TAGS & set(single.labels)
    assert "classical" in models["musicnn-mtt"].default_labels
    assert "jazz" not in models["musicnn-mtt"].default_labels


def test_predict_shape_range_and_batch_equality(models):
    m = models["musicnn"]
    rng = np.random.default_rng(0)
    n = int(m.default_window_s * 16000)
    w = np.stack([np.resize(wav("real"), n), np.resize(wav("synthetic"), n),
                  (0.1 * rng.standard_normal(n)).astype(np.float32)])
    p = m.predict(w)
    assert p.shape == (3, 92) and p.dtype == np.float32
    assert np.all((p >= 0) & (p <= 1)) and np.isfinite(p).all()
    single = np.concatenate([m.predict(w[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(p, single, atol=1e-5)
    assert np.abs(p[0] - p[1]).max() > 0.05  # different music, different tags
    assert m.predict(np.zeros((0, n), np.float32)).shape == (0, 92)


def test_end_alignment_scores_the_newest_audio(models):
    m = models["musicnn-mtt"]
    n = 3 * m.min_samples + 256 * 40  # 40 leftover frames
    w = np.zeros(n, np.float32)
    w[-m.min_samples:] = np.resize(wav("real"), m.min_samples)  # music only at the end
    p_end = m.predict(w[None])[0]
    m.align = "start"
    try:
        p_start = m.predict(w[None])[0]
    finally:
        m.align = "end"
    assert np.abs(p_end - p_start).max() > 0.01  # "start" drops most of the music


def test_short_windows_are_repeat_padded(models):
    m = models["musicnn-mtt"]
    y = wav("real")[:16000]  # 1 s = 63 frames
    lm = m.logmel(y[None])
    patches = m.patches(lm)
    assert patches.shape == (1, 1, 187, 96)
    t = lm.shape[1]
    assert torch.equal(patches[0, 0, t:2 * t], lm[0])  # repeated, not zero padded
    p = m.predict(y[None])
    assert p.shape == (1, 50) and np.isfinite(p).all()
    exact = m.predict(wav("real")[None, :m.min_samples])
    assert exact.shape == (1, 50)
    assert m.patches(m.logmel(wav("real")[None, :m.min_samples - 1])).shape[1] == 1  # padded, still one


def test_predict_rejects_bad_input(models):
    m = models["musicnn-msd"]
    with pytest.raises(ValueError, match="shape"):
        m.predict(np.zeros(48000, np.float32))
    with pytest.raises(ValueError, match="empty"):
        m.predict(np.zeros((1, 0), np.float32))
    bad = np.zeros((1, 48000), np.float32)
    bad[0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.predict(bad)


def test_load_bundled_errors():
    with pytest.raises(ModelLoadError, match="musicnn-xyz") as e:
        load_bundled("musicnn-xyz")
    assert "musicnn-mtt" in str(e.value)  # the advice lists the valid specs
    with pytest.raises(ModelLoadError, match="device"):
        load_bundled("musicnn", device="nonsense")
    assert load_bundled(" MusiCNN-MTT ").name == "musicnn-mtt"


def test_load_model_routes_bundled_specs():
    from stream import load_model

    assert isinstance(load_model("vgg-msd"), MusicnnModel)


# -- shipped files and converter ------------------------------------------------------------

def test_shipped_weights_and_tags():
    from safetensors import safe_open

    assert json.loads(TAGS_PATH.read_text()) == TAGS
    assert "Universitat Pompeu Fabra" in (WEIGHTS_DIR / "LICENSE").read_text()
    for ck in CKPTS:
        with safe_open(str(WEIGHTS_DIR / f"{ck}.safetensors"), "np") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            meta = f.metadata()
            assert all(f.get_tensor(k).dtype == np.float32 for k in f.keys())
        assert shapes == EXPECTED_SHAPES[ck.split("_")[1]]
        assert meta["source_sha256"] == "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"


def _converter():
    spec = importlib.util.spec_from_file_location("convert_musicnn", REPO / "tools" / "convert_musicnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_crc32c_and_mask():
    c = _converter()
    assert c.crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert c.crc32c(b"") == 0
    assert c.crc32c(b"6789", c.crc32c(b"12345")) == 0xE3069283  # incremental
    for v in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert c.unmask_crc(c.mask_crc(v)) == v
    assert c.mask_crc(0) == 0xA282EAD8


def test_protobuf_bundle_entry():
    c = _converter()
    # dtype=1, shape {dim {size 3} dim {size 2}}, offset=300, size=24, crc32c=0x01020304
    msg = bytes([0x08, 0x01, 0x12, 0x08, 0x12, 0x02, 0x08, 0x03, 0x12, 0x02, 0x08, 0x02,
                 0x20, 0xAC, 0x02, 0x28, 0x18, 0x35, 0x04, 0x03, 0x02, 0x01])
    e = c.parse_bundle_entry(msg)
    assert e == {"dtype": 1, "shape": [3, 2], "shard_id": 0, "offset": 300, "size": 24, "crc32c": 0x01020304}
    with pytest.raises(c.FormatError):
        c.parse_proto(bytes([0x08]))  # truncated varint


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tiny_bundle(c, tensors):
    """A minimal single-shard TF bundle (.index SSTable + .data) written from the format
    description, so the reader is tested without the musicnn wheel."""
    import struct

    data, entries = b"", [(b"", bytes([0x08, 0x01, 0x1A, 0x02, 0x08, 0x01]))]  # header
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name], "<f4").tobytes()
        shape = b"".join(b"\x12" + _varint(len(d)) + d for d in (b"\x08" + _varint(n) for n in tensors[name].shape))
        msg = (b"\x08\x01" + b"\x12" + _varint(len(shape)) + shape + (b"\x20" + _varint(len(data)) if data else b"")
               + b"\x28" + _varint(len(raw)) + b"\x35" + struct.pack("<I", c.mask_crc(c.crc32c(raw))))
        entries.append((name.encode(), msg))
        data += raw
    table = bytearray()

    def block(items):  # prefix-shared keys, one restart point
        body, prev = bytearray(), b""
        for k, v in items:
            shared = 0
            while shared < min(len(k), len(prev)) and k[shared] == prev[shared]:
                shared += 1
            body += _varint(shared) + _varint(len(k) - shared) + _varint(len(v)) + k[shared:] + v
            prev = k
        body += struct.pack("<II", 0, 1)
        off = len(table)
        table.extend(body + b"\x00" + struct.pack("<I", c.mask_crc(c.crc32c(bytes(body) + b"\x00"))))
        return _varint(off) + _varint(len(body))

    data_handle = block(entries)
    meta_handle = block([])
    index_handle = block([(b"z", data_handle)])
    footer = (meta_handle + index_handle).ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    return bytes(table + footer), data


def test_bundle_reader_on_a_synthetic_bundle():
    c = _converter()
    tensors = {"conv/kernel": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
               "conv/kernel/Adam": np.ones((2, 3), np.float32), "conv/bias": np.array([1.5], np.float32)}
    index, data = _tiny_bundle(c, tensors)
    got = c.read_bundle(index, data)
    assert set(got) == set(tensors)
    for k in tensors:
        assert got[k].shape == tensors[k].shape and np.array_equal(got[k], tensors[k])
    assert sorted(k for k in got if c.is_inference_tensor(k)) == ["conv/bias", "conv/kernel"]
    bad = bytearray(data)
    bad[3] ^= 0x01
    with pytest.raises(c.FormatError, match="CRC"):
        c.read_bundle(index, bytes(bad))
    bad = bytearray(index)
    bad[5] ^= 0x01  # inside the data block: block CRC must fail
    with pytest.raises(c.FormatError, match="CRC"):
        c.read_bundle(bytes(bad), data)
    with pytest.raises(c.FormatError, match="magic"):
        c.read_bundle(index[:-1] + b"\x00", data)


def _wheel():
    env = os.environ.get("MUSICNN_WHEEL")
    for p in ([Path(env)] if env else []) + [Path("/tmp/musicnn_whl/musicnn-0.1.0-py3-none-any.whl")]:
        if p.is_file():
            return p
    pytest.skip("musicnn-0.1.0 wheel not available (set MUSICNN_WHEEL or pip download it to /tmp/musicnn_whl)")


@pytest.mark.parametrize("ckpt", list(CKPTS))
def test_converter_reproduces_shipped_weights(ckpt):
    from safetensors.numpy import load_file

    c = _converter()
    with zipfile.ZipFile(_wheel()) as z:
        prefix = f"musicnn/{ckpt}/"
        index, data = z.read(prefix + ".index"), z.read(prefix + ".data-00000-of-00001")
        assert c.read_labels(z.read("musicnn/configuration.py").decode()) == TAGS
    entries = c.read_sstable(index)
    arch = ckpt.split("_")[1]
    assert len(entries) == {"musicnn": 151, "vgg": 87}[arch]  # tensors + header
    everything = c.read_bundle(index, data)
    assert len(everything) == {"musicnn": 150, "vgg": 86}[arch]
    kept = {k: v for k, v in everything.items() if c.is_inference_tensor(k)}
    assert sum(v.size for v in kept.values()) == {"musicnn": 792079, "vgg": 607030}[arch]
    shipped = load_file(str(WEIGHTS_DIR / f"{ckpt}.safetensors"))
    assert set(shipped) == set(kept)
    for k in kept:
        assert np.array_equal(shipped[k], kept[k]), k
    # A flipped bit in a tensor must be caught by its CRC.
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2] ^= 0x10
    with pytest.raises(c.FormatError, match="CRC"):
        c.read_bundle(index, bytes(corrupt))
    bad_index = bytearray(index)
    bad_index[10] ^= 0x01
    with pytest.raises(c.FormatError):
        c.read_bundle(bytes(bad_index), data)
