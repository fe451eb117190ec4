"""Less CPU per hop, same numbers: the musicnn front end runs one thread, row by row (torch's
batched float64 STFT and its spinning intra-op threads cost several times more CPU), and gives
what the batched front end gives; torch's thread count is left as it was."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stream.models.musicnn.frontend import PATCH_SAMPLES, LogMel

REAL = Path(__file__).parent / "data" / "musicnn" / "real.wav"


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    y, _ = sf.read(REAL, dtype="float32")
    starts = np.linspace(0, len(y) - PATCH_SAMPLES, 5).astype(int)
    return torch.from_numpy(np.stack([y[s:s + PATCH_SAMPLES] for s in starts]))


def test_front_end_row_by_row_equals_the_batched_one(patches):
    lm = LogMel().eval()
    with torch.inference_mode():
        got = lm(patches)
        batched = lm._logmel(patches)  # torch's batched path, as before
        alone = torch.cat([lm(p[None]) for p in patches])
    assert got.shape == batched.shape == (len(patches), 187, 96)
    scale = float(batched.abs().max())
    assert float((got - batched).abs().max()) <= 1e-6 * scale
    assert torch.equal(got, alone)  # a row's log-mel does not depend on its batch


def test_front_end_leaves_torch_threads_as_they_were(patches):
    """The front end never changes torch's thread count (process state: unsafe beside other threads)."""
    lm = LogMel().eval()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.inference_mode():
            lm(patches[:2])
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), torch.inference_mode():
            lm(patches[:2, :100].reshape(2, 10, 10))  # 3-D audio: torch.stft refuses; threads restored anyway
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_64_streams_due_at_once_share_one_predict_call():
    """The worker gives every due stream's new patch to one predict call, up to 64 (max_batch):
    while one call runs, 64 streams reach a hop; the next call scores all 64 patches, and each
    stream gets its own readout."""
    import threading

    from stream import EngineConfig, StreamEngine
    from stream.models.musicnn import load_bundled

    m = load_bundled("musicnn-mtt")
    assert m.max_batch == 64
    calls, gate = [], threading.Event()
    predict = m.predict

    def gated(x, **kw):  # kw: the streams' frames (the streaming front end)
        calls.append(len(x))
        gate.wait(120)
        return predict(x, **kw)

    m.predict = gated
    y, _ = sf.read(REAL, dtype="float32")
    got = [[] for _ in range(65)]
    engines = [StreamEngine(m, EngineConfig(min_window_s=3.0), on_result=got[i].append) for i in range(65)]
    try:
        engines[0].feed(y[:48000], 16000)  # 3 s: one hop boundary with a full window; it holds the worker
        for _ in range(600):
            if calls:
                break
            threading.Event().wait(0.05)
        for i, e in enumerate(engines[1:], 1):
            e.feed(np.roll(y, 997 * i)[:48000], 16000)
        gate.set()
        assert all(e.drain(300) for e in engines)
    finally:
        gate.set()
        for e in engines:
            e.close()
    assert calls == [1, 64], calls
    assert all(len(r) == 1 and not r[0].silent for r in got)
    assert len({tuple(r[0].raw_scores.values()) for r in got[1:]}) > 1  # each its own window
