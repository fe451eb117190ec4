"""Kernel backends of the bundled model (issue 10): ONNX Runtime float32 where installed and
exact, torch otherwise, with an off switch."""
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream.errors import ModelLoadError
from stream.models import accel
from stream.models.backends import onnxruntime_available
from stream.models.musicnn import load_bundled

pytestmark = pytest.mark.slow

REAL = Path(__file__).parent / "data" / "musicnn" / "real.wav"
HAVE_ORT = onnxruntime_available()[0]


@pytest.fixture(scope="module")
def torch_model():
    return load_bundled("musicnn-mtt", backend="torch")


def real_windows():
    y, _ = sf.read(REAL, dtype="float32")
    return np.stack([y[:47616], y[-47616:], y[:90000][-47616:]])


def test_torch_backend_and_off_switch(monkeypatch, torch_model):
    assert torch_model.backend == "torch"
    monkeypatch.setenv("STREAM_BACKEND", "torch")
    m = load_bundled("musicnn-mtt")
    assert m.backend == "torch" and "STREAM_BACKEND=torch" in m.kernels["MTT_musicnn"].reason


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime/onnx not installed")
def test_auto_picks_onnxruntime_and_it_is_exact(monkeypatch, torch_model, tmp_path):
    monkeypatch.delenv("STREAM_BACKEND", raising=False)
    monkeypatch.setattr(accel, "cpu_flags", lambda: frozenset({"avx2"}))  # no bf16: float32 (test_precision.py)
    monkeypatch.setenv("STREAM_CACHE", str(tmp_path))
    m = load_bundled("musicnn-mtt")
    assert m.backend == "onnxruntime", m.kernels["MTT_musicnn"].reason
    assert list(tmp_path.rglob("*.onnx"))  # the export is cached for the next load
    x = real_windows()
    assert np.abs(m.predict(x) - torch_model.predict(x)).max() <= 1e-4
    w = np.concatenate(list(x))[None]  # a 3-patch window: patches batched through ORT
    assert np.abs(m.predict(w) - torch_model.predict(w)).max() <= 1e-4
    # a failure at run time falls back to torch for good, and the call still answers
    fwd = m.kernels["MTT_musicnn"]
    fwd.session = None
    assert np.abs(m.predict(x) - torch_model.predict(x)).max() <= 1e-4
    assert fwd.backend == "torch" and "failed" in fwd.reason


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime/onnx not installed")
def test_onnxruntime_sees_few_batch_sizes_and_rows_do_not_mix(monkeypatch, torch_model, tmp_path):
    # The arena stays on only because the session sees a handful of batch sizes (Forward.chunk):
    # any batch is cut into pieces of 1, 2 or 4 rows (zero-padded), and each row's result must
    # be the one it gets alone (padding trimmed, nothing shifted).
    monkeypatch.delenv("STREAM_BACKEND", raising=False)
    monkeypatch.setenv("STREAM_CACHE", str(tmp_path))
    m = load_bundled("musicnn-mtt", backend="onnxruntime")
    fwd = m.kernels["MTT_musicnn"]
    assert fwd.backend == "onnxruntime" and fwd.chunk == 4
    seen, run = [], fwd.session.run
    monkeypatch.setattr(fwd.session, "run", lambda out, feed: seen.append(len(feed["x"])) or run(out, feed),
                        raising=False)
    y, _ = sf.read(REAL, dtype="float32")
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(y) - 47616, size=11)
    x = np.stack([y[s:s + 47616] for s in starts])
    alone = np.concatenate([m.predict(x[i:i + 1]) for i in range(len(x))])
    for k in (3, 5, 7, 11):
        got = m.predict(x[:k])
        assert got.shape == (k, len(m.labels))
        assert np.abs(got - alone[:k]).max() <= 1e-5
    assert np.abs(alone - torch_model.predict(x)).max() <= 1e-4
    assert set(seen) <= {1, 2, 4} and seen.count(4) >= 2 + 2, seen  # 7 -> 4 + 4 (3 padded), 11 -> 4 + 4 + 4


def test_missing_onnxruntime_falls_back_or_fails_clearly(monkeypatch):
    monkeypatch.delenv("STREAM_BACKEND", raising=False)
    monkeypatch.setattr(accel, "cpu_flags", lambda: frozenset({"avx2"}))  # no bf16: OpenVINO is not tried
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    m = load_bundled("musicnn-mtt")
    assert m.backend == "torch" and "not installed" in m.kernels["MTT_musicnn"].reason
    with pytest.raises(ModelLoadError, match="onnxruntime"):
        load_bundled("musicnn-mtt", backend="onnxruntime")


def test_unknown_backend_is_a_clear_error(monkeypatch):
    with pytest.raises(ModelLoadError, match="unknown backend"):
        load_bundled("musicnn-mtt", backend="tensorrt")
    monkeypatch.setenv("STREAM_BACKEND", "fast")
    with pytest.raises(ModelLoadError, match="STREAM_BACKEND"):
        load_bundled("musicnn-mtt")


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime/onnx not installed")
def test_hf_float32_runs_onnxruntime_exactly(monkeypatch, tiny_ckpt, tmp_path):
    """Where bf16 autocast does not run (accel fp32, as on CPUs without bf16), a transformers
    checkpoint's float32 forward runs under ONNX Runtime, within 1e-4 of torch at every
    window length (the first windows grow); STREAM_BACKEND=torch and accel "off" keep torch."""
    from stream.models.hf import load_hf

    monkeypatch.delenv("STREAM_BACKEND", raising=False)
    monkeypatch.setenv("STREAM_CACHE", str(tmp_path))
    fast = load_hf(tiny_ckpt, accel="fp32")
    ref = load_hf(tiny_ckpt, accel="off")
    assert fast.backend == "onnxruntime" and fast.compute == "fp32, ONNX Runtime", fast.kernel
    assert ref.backend == "torch" and ref.compute == "off"
    rng = np.random.default_rng(1)
    for seconds in (0.5, 1.0, 2.5):
        x = (rng.standard_normal((2, int(seconds * fast.sample_rate))) * 0.1).astype(np.float32)
        got, want = fast.predict(x), ref.predict(x)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4, seconds
    monkeypatch.setenv("STREAM_BACKEND", "torch")
    assert load_hf(tiny_ckpt, accel="fp32").backend == "torch"


def test_hf_unknown_backend_is_a_clear_error(tiny_ckpt):
    from stream.models.hf import load_hf

    with pytest.raises(ModelLoadError, match="unknown backend"):
        load_hf(tiny_ckpt, accel="fp32", backend="tensorrt")
