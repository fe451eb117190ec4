"""The streaming front end (issue 38): a live stream's consecutive patches share their timbral
frames, so each hop computes only the newest ones. Checked on real recordings against scoring
every patch whole on the same frame grid: the model alone, the engine through reset, a rate
change, silence and flush, several streams sharing the worker under overload, and the check at
load that turns it off."""

import contextlib

import numpy as np
import pytest

import stream.models.musicnn.streaming as S
from support.models import CountingNet
from support.music import TRACKS, music, needs_music, resample
from stream import EngineConfig, StreamEngine
from stream.models.backends import BF16_TOLERANCE
from stream.models.musicnn import load_bundled

pytestmark = [needs_music, pytest.mark.slow]

N = 47616  # samples per patch
TOL = 1e-4  # float32: the parts are the whole network's operations on the same frames


@pytest.fixture(scope="module")
def fp32():
    return load_bundled("musicnn", backend="onnxruntime")


@pytest.fixture(scope="module")
def mono():
    """40 s of a real recording at the model's rate."""
    x, rate = music(TRACKS[1], 20, 40)
    return resample(x.mean(axis=1), rate, 16000).astype(np.float32)


@contextlib.contextmanager
def counted(model):
    """model's streaming parts wrapped in `CountingNet` (restored on exit): {"whole": [...], "step": [...]}."""
    saved = dict(model.streaming.parts)
    seen = {"whole": [], "step": []}
    for ck, (whole, step, rest) in saved.items():
        w, s = CountingNet(whole), CountingNet(step)
        seen["whole"].append(w)
        seen["step"].append(s)
        model.streaming.parts[ck] = (w, s, rest)
    try:
        yield seen
    finally:
        model.streaming.parts = saved


@pytest.mark.parametrize("backend", ["onnxruntime", "auto"])
def test_each_live_patch_scores_as_the_whole_patch_and_takes_the_step(backend, mono):
    model = load_bundled("musicnn", backend=backend)
    whole = load_bundled("musicnn", backend=backend, streaming=False)
    assert model.patch_grid == whole.patch_grid == 256 and whole.new_stream() is None
    tol = BF16_TOLERANCE if model.precision == "bf16" else TOL
    frames = model.new_stream()
    worst, same, n = 0.0, 0, 0
    with counted(model) as seen:
        for hop_end in range(N + 16000, len(mono), 16000):  # a 1 s hop: patches 62 or 63 frames apart
            end = hop_end - hop_end % 256
            got = model.predict(mono[None, end - N:end], context=[(frames, end)])[0]
            want = whole.predict(mono[None, end - N:end])[0]
            worst = max(worst, float(np.abs(got - want).max()))
            top = np.sort(want)[-2:]
            if top[1] - top[0] > 2 * tol:  # a near-tie is no property
                same += int(got.argmax() == want.argmax())
                n += 1
    assert worst <= tol, worst
    assert same == n and n >= 10, (same, n)
    # the first patch computes its timbral frames whole, every later one only its newest
    assert [w.patches for w in seen["whole"]] == [1, 1]
    assert [s.patches for s in seen["step"]] == [len(range(N + 16000, len(mono), 16000)) - 1] * 2


def test_a_patch_too_far_from_the_last_or_off_the_grid_is_computed_whole(fp32, mono):
    with counted(fp32) as seen:
        frames = fp32.new_stream()
        fp32.predict(mono[None, :N], context=[(frames, N)])
        fp32.predict(mono[None, 17000:17000 + N], context=[(frames, 17000 + N)])  # 17000 is off the grid
        far = N + 256 * (S.NEW + 1)  # one frame further than the step reaches
        fp32.predict(mono[None, far - N:far], context=[(frames, far)])
        near = far + 256 * S.NEW  # the furthest the step reaches
        got = fp32.predict(mono[None, near - N:near], context=[(frames, near)])
        assert [w.patches for w in seen["whole"]] == [3, 3] and [s.patches for s in seen["step"]] == [1, 1]
        want = load_bundled("musicnn", backend="onnxruntime", streaming=False).predict(mono[None, near - N:near])
        assert np.abs(got - want).max() <= TOL
        with pytest.raises(ValueError, match="2 context entries for 1 windows"):
            fp32.predict(mono[None, :N], context=[(frames, N), (frames, N)])


class Whole(StreamEngine):
    """The same engine with its stream's frames forgotten before each window: every patch is
    computed whole, on the same grid (the engine itself has no switch for this)."""

    def _prepare(self, job):
        self._frames = self.model.new_stream()
        job.context = [(self._frames, end) for _, end in job.context]
        super()._prepare(job)


def run(engine_cls, model, pieces, background=False, chunk_s=0.25, stats=None):
    got = []
    with engine_cls(model, EngineConfig(smoothing_s=0, allow=["*"], top_k=0), background=background,
                    on_result=got.append) as e:
        for piece in pieces:
            if piece == "reset":
                if background:
                    assert e.drain(120)
                e.reset()
            elif piece == "flush":
                e.flush()
            else:
                x, rate = piece
                n = max(1, int(chunk_s * rate))
                for i in range(0, len(x), n):
                    e.feed(x[i:i + n], rate)
        if background:
            assert e.drain(300)
        if stats is not None:
            stats.append(e.stats)
    return got


def worst_diff(a, b):
    assert [r.time_s for r in a] == pytest.approx([r.time_s for r in b], abs=1e-9)
    worst = 0.0
    for ra, rb in zip(a, b):
        assert ra.silent == rb.silent
        if not ra.silent:
            worst = max(worst, max(abs(ra.raw_scores[k] - rb.raw_scores[k]) for k in ra.raw_scores))
    return worst


def test_the_engine_streams_through_reset_rate_change_silence_and_flush(fp32):
    a, ra = music(TRACKS[0], 20, 20)
    b, rb = music(TRACKS[1], 20, 18)
    pieces = [(a[: 10 * ra], ra),
              (b[: 4 * rb], rb // 2),  # rate change mid-stream
              (np.zeros((int(11.5 * ra), 2), np.float32), ra),  # silent windows: no patches scored
              (a[10 * ra:], ra),
              "reset",
              (b[4 * rb: 14 * rb], rb),
              "flush",  # an off-grid final window
              (b[14 * rb:], rb)]
    with counted(fp32) as seen:
        streamed = run(StreamEngine, fp32, pieces)
    steps = sum(s.patches for s in seen["step"])
    assert sum(r.silent for r in streamed) >= 2 and sum(not r.silent for r in streamed) >= 20
    assert steps >= 2 * 20  # most patches took the step, on both networks
    assert worst_diff(streamed, run(Whole, fp32, pieces)) <= TOL


def test_streams_sharing_the_worker_under_overload_keep_their_own_frames(fp32):
    """Three streams fed faster than real time: windows are superseded (their patches then go
    with the window that replaced them) and the streams' patches share forwards; every readout
    must still be its own stream's, scored whole."""
    import threading

    streams = [music(TRACKS[i], 20, 16) for i in range(3)]
    results = [None] * 3
    stats = []

    def go(i):
        results[i] = run(StreamEngine, fp32, [streams[i]], background=True, chunk_s=0.5, stats=stats)

    with counted(fp32) as seen:
        threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
    assert sum(st.windows_skipped for st in stats) > 0  # the case this test is named after happened
    # a superseded window's patches go with the next one, so the stream steps through them; only
    # each stream's first patches are computed whole
    whole, steps = seen["whole"][0].patches, seen["step"][0].patches
    assert 3 <= whole <= 2 * 3 and steps >= 2 * whole, (whole, steps)
    for s, got in zip(streams, results):
        assert got
        ref = {round(r.time_s, 6): r for r in run(Whole, fp32, [s], chunk_s=0.5)}
        assert worst_diff(got, [ref[round(r.time_s, 6)] for r in got]) <= TOL


def test_the_newest_patch_ends_on_the_frame_grid_at_most_a_frame_before_the_hop(fp32, mono):
    whole = load_bundled("musicnn", backend="onnxruntime", streaming=False)
    checked = 0
    with StreamEngine(fp32, EngineConfig(smoothing_s=0, top_k=0), background=False) as e:
        for i in range(0, 16 * 16000, 16000):  # 1 s chunks at the model's rate = 1 hop each
            e.feed(mono[i:i + 16000], 16000)
            if not e._patch_scores:
                continue
            key = max(e._patch_scores)
            end = key - key % 256
            assert key - end < 256
            want = whole.predict(mono[None, end - N:end])[0]
            assert np.abs(e._patch_scores[key] - want).max() <= TOL
            checked += 1
    assert checked >= 12


def test_parts_that_disagree_with_the_whole_network_turn_the_front_end_off(monkeypatch, caplog):
    """The check at load: a streaming front end that would change the readout is not used; the
    engine then keeps no frames and scores every patch whole (on the same grid)."""
    forward = S._Rest.forward
    monkeypatch.setattr(S._Rest, "forward", lambda self, packed: forward(self, packed) + 1.0)
    model = load_bundled("musicnn", backend="torch")  # torch: nothing exported, nothing cached
    assert model.streaming is None and model.new_stream() is None
    assert "streaming front end off: it differed from whole patches" in caplog.text
    x = np.random.default_rng(0).standard_normal(5 * 16000).astype(np.float32) * 0.1
    with StreamEngine(model, EngineConfig(), background=False) as e:
        assert e._frames is None
        e.feed(x, 16000)
        end = 5 * 16000 - 5 * 16000 % 256
        assert np.abs(e._patch_scores[5 * 16000] - model.predict(x[None, end - N:end])[0]).max() <= TOL


def test_hops_longer_than_the_step_keep_no_frames_and_cut_patches_at_the_hop(fp32, mono):
    with StreamEngine(fp32, EngineConfig(hop_s=2.0, window_s=9.0), background=False) as e:
        assert e._frames is None
        e.feed(mono[: 8 * 16000], 16000)
        assert len(e._patch_scores) >= 2
    with StreamEngine(fp32, EngineConfig(hop_s=0.5, window_s=9.0), background=False) as e:
        assert e._frames is not None
