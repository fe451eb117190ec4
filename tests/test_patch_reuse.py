"""Patch reuse (issue 10): the engine scores one new MusiCNN patch per network per hop and
averages it with the patches earlier hops scored. Checked against recomputing every patch of
every window (same grid, no cache) on real recordings, through reset, rate changes, silence
and windows skipped under overload; and against whole-window scoring."""

import numpy as np
import pytest

from support.models import CountingNet
from support.music import MUSIC_DIR, needs_music
from stream import EngineConfig, StreamEngine, decode_blocks
from stream.models.musicnn import load_bundled

pytestmark = [needs_music, pytest.mark.slow]

# Cached and recomputed patches are the same audio through the same network; they differ only
# by float rounding of batches of different sizes (1 new patch vs a window's 3).
TOL = 1e-4


class Recompute(StreamEngine):
    """The same engine with its patch cache emptied before each window: every window's patches
    are scored anew, on the same grid (the engine itself has no switch for this)."""

    def _prepare(self, job):
        with self._result_lock:
            self._patch_scores.clear()
        super()._prepare(job)


@pytest.fixture(scope="module")
def musicnn():
    """One network is enough to check the engine's cache (and costs half of "musicnn"). The
    streaming front end is off: these tests wrap the whole-patch kernels and cut patches at hop
    boundaries (tests/test_streaming_front.py checks the front end on the same engine paths)."""
    return load_bundled("musicnn-mtt", streaming=False)


@pytest.fixture(scope="module")
def music():
    """20 s of each of two recordings at their own rate (44.1 kHz stereo MP3)."""
    out = []
    for name in ("machine_wars", "frontiers"):
        blocks = []
        for block, rate in decode_blocks(f"{MUSIC_DIR}/{name}.mp3", block_s=1):
            blocks.append(block)
            if len(blocks) >= 40:
                break
        out.append((np.concatenate(blocks[20:]), rate))  # skip the intros
    return out


class GatedNet(CountingNet):
    """Wraps a network: its first forward waits until `gate` is set (the test holds the shared
    worker busy while streams queue windows: overload and batching made to happen, not hoped
    for); records the rows of each forward."""

    def __init__(self, net, gate):
        super().__init__(net)
        self.gate, self.rows = gate, []

    def __call__(self, x):
        if not self.gate.wait(60):
            self.gate.set()  # fail once, not once per window (an engine that forwards inline never opens it)
            raise AssertionError("the gate was never opened: did the forward run inside feed()?")
        self.rows.append(len(x))
        return super().__call__(x)


class gated:
    """Context: `model`'s networks wrapped in GatedNet (restored on exit)."""

    def __init__(self, model):
        import threading

        self.model, self.gate = model, threading.Event()

    def __enter__(self):
        self.saved = self.model.kernels
        self.model.kernels = {k: GatedNet(n, self.gate) for k, n in self.saved.items()}
        return self

    def __exit__(self, *exc):
        self.gate.set()
        self.model.kernels = self.saved


def run(engine_cls, model, pieces, cfg=None, background=False, chunk_s=0.25, fed=None, stats=None):
    """Feed `pieces` ([(samples, rate) | "reset" | "flush"]) and return the results; `fed()` is
    called once all is fed (before waiting for the results); `stats` (a list) gets the engine's."""
    got = []
    cfg = cfg or EngineConfig(smoothing_s=0, allow=["*"], top_k=0)
    with engine_cls(model, cfg, background=background, on_result=got.append) as e:
        for piece in pieces:
            if piece == "reset":
                if background:
                    assert e.drain(120)
                e.reset()
                continue
            if piece == "flush":
                e.flush()
                continue
            x, rate = piece
            n = max(1, int(chunk_s * rate))
            for i in range(0, len(x), n):
                e.feed(x[i:i + n], rate)
        if fed is not None:
            fed()
        if background:
            assert e.drain(300)
        if stats is not None:
            stats.append(e.stats)
    return got


def assert_agree(a, b, tol=TOL):
    assert [r.time_s for r in a] == pytest.approx([r.time_s for r in b], abs=1e-9)
    assert [r.silent for r in a] == [r.silent for r in b]
    worst = 0.0
    for ra, rb in zip(a, b):
        if ra.silent:
            continue
        assert ra.raw_scores.keys() == rb.raw_scores.keys()
        pa = np.array([ra.raw_scores[k] for k in ra.raw_scores])
        pb = np.array([rb.raw_scores[k] for k in ra.raw_scores])
        worst = max(worst, float(np.abs(pa - pb).max()))
    assert worst <= tol, f"max |dp| {worst:.2e} > {tol}"
    return worst


def test_one_patch_forward_per_network_per_hop(music):
    model = load_bundled("musicnn", streaming=False)
    model.kernels = {k: CountingNet(n) for k, n in model.kernels.items()}
    x, rate = music[0]
    counts = {}
    for cls, reuse in ((StreamEngine, True), (StreamEngine, False), (Recompute, True)):
        per_hop = []
        last = None
        # whole-window scoring also runs the change evidence (the newest 3 s) as its own forward;
        # patch reuse takes it from the cached newest patch. Count the window scoring alone there.
        config = EngineConfig(patch_reuse=reuse) if cls is StreamEngine and reuse else \
            EngineConfig(patch_reuse=reuse, change_s=0)
        with cls(model, config, background=False) as e:
            for i in range(0, 16 * rate, rate):  # 1 s chunks = 1 hop each
                e.feed(x[i:i + rate], rate)
                now = [n.patches for n in model.kernels.values()]
                if last is not None:
                    per_hop.append([b - a for a, b in zip(last, now)])
                last = now
            assert e.stats.windows_classified >= 13
        counts[(cls.__name__, reuse)] = per_hop
    steady = slice(10, None)  # the 9 s window is full from 9-10 s on
    assert all(h == [1, 1] for h in counts[("StreamEngine", True)][steady]), counts
    assert all(h == [3, 3] for h in counts[("StreamEngine", False)][steady]), counts
    assert all(h == [3, 3] for h in counts[("Recompute", True)][steady]), counts


def test_cached_matches_recomputed_on_real_music(musicnn, music):
    for x, rate in music:
        pieces = [(x, rate)]
        cached = run(StreamEngine, musicnn, pieces)
        assert len(cached) >= 15
        assert_agree(cached, run(Recompute, musicnn, pieces))


def test_reset_rate_change_silence_and_flush_keep_the_cache_consistent(musicnn, music):
    (a, ra), (b, rb) = music
    silence = np.zeros((int(11.5 * ra), 2), np.float32)  # > one window
    pieces = [(a[: 10 * ra], ra),
              (b[: 4 * rb], rb // 2),           # rate change mid-stream (played at half rate)
              (silence, ra),                    # silent windows: no inference, cache gap
              (a[10 * ra: 20 * ra], ra),
              "reset",                           # new song: cache forgotten
              (b[4 * rb: 14 * rb], rb),
              "flush",                           # an off-grid final window
              (b[14 * rb: 18 * rb], rb)]
    cached = run(StreamEngine, musicnn, pieces)
    assert sum(r.silent for r in cached) >= 2 and sum(not r.silent for r in cached) >= 20
    assert_agree(cached, run(Recompute, musicnn, pieces))


def test_windows_skipped_under_overload_are_still_exact(musicnn, music):
    """Fed faster than real time, the shared worker drops superseded windows (their patches
    are never scored then); each readout that does arrive must still equal its window
    scored in full on the same grid."""
    x, rate = music[0]
    # same chunks: where a chunk ends decides how much of the resampler's tail a window lacks
    ref = {round(r.time_s, 6): r for r in run(Recompute, musicnn, [(x, rate)], chunk_s=0.5)}
    stats = []
    with gated(musicnn) as g:  # the first forward waits until all 20 s are fed: windows are superseded
        got = run(StreamEngine, musicnn, [(x, rate)], background=True, chunk_s=0.5, fed=g.gate.set, stats=stats)
    assert stats[0].windows_skipped > 0, stats[0]  # the case this test is named after happened
    assert got and all(not r.silent for r in got)
    assert_agree(got, [ref[round(r.time_s, 6)] for r in got])


def test_engines_sharing_the_worker_get_their_own_patches(musicnn, music):
    """Several streams' new patches are batched into one forward; each stream's readouts must
    still be its own (compared with each stream run alone, inline)."""
    import threading

    from stream.worker import get_worker

    rate = music[0][1]
    streams = [(music[i % 2][0][(i // 2) * 4 * rate:][: 14 * rate], rate) for i in range(4)]
    results = [None] * len(streams)
    worker = get_worker(musicnn)
    jobs_per_forward = []
    forward = worker._forward
    worker._forward = lambda jobs: (jobs_per_forward.append(len(jobs)), forward(jobs))[1]
    fed = threading.Barrier(len(streams) + 1)

    def go(i):
        results[i] = run(StreamEngine, musicnn, [streams[i]], background=True, chunk_s=1.0,
                         fed=lambda: fed.wait(120))

    try:
        # the first forward waits until every stream has fed all its audio: the others' windows
        # queue meanwhile and must then share forwards
        with gated(musicnn) as g:
            threads = [threading.Thread(target=go, args=(i,)) for i in range(len(streams))]
            for t in threads:
                t.start()
            fed.wait(120)
            g.gate.set()
            for t in threads:
                t.join(600)
    finally:
        del worker._forward
    assert max(jobs_per_forward) > 1, jobs_per_forward  # streams did share a forward
    for s, got in zip(streams, results):
        ref = {round(r.time_s, 6): r for r in run(StreamEngine, musicnn, [s], chunk_s=1.0)}
        assert got
        assert_agree(got, [ref[round(r.time_s, 6)] for r in got])


def test_patch_scores_agree_with_whole_window_scoring(musicnn, music):
    """The grid's older patches sit 8 ms from where whole-window scoring cuts them; the
    network moves by up to ~0.1 in probability under such a shift (bench/streams.py
    --quality measures both), so the readouts must agree to that order, and on the leading
    genre in most windows."""
    worst, same, n = 0.0, 0, 0
    for x, rate in music:
        cfg = dict(smoothing_s=0, top_k=0)
        patch = run(StreamEngine, musicnn, [(x, rate)], EngineConfig(**cfg))
        whole = run(StreamEngine, musicnn, [(x, rate)], EngineConfig(patch_reuse=False, **cfg))
        assert [r.time_s for r in patch] == [r.time_s for r in whole]
        for a, b in zip(patch, whole):
            worst = max(worst, max(abs(a.raw_scores[k] - b.raw_scores[k]) for k in a.raw_scores))
            same += next(iter(a.raw_scores)) == next(iter(b.raw_scores))
            n += 1
    assert worst <= 0.2, worst
    assert same >= 0.7 * n, (same, n)


def test_patch_memory_is_bounded(musicnn, music):
    x, rate = music[0]
    with StreamEngine(musicnn, EngineConfig(), background=False) as e:
        e.feed(x[: 20 * rate], rate)
        # the 9 s window spans patches ending 0, 3 and 6 s back: at most 7 hop boundaries
        assert 3 <= len(e._patch_scores) <= 7
        e.reset()
        assert not e._patch_scores


def test_models_without_patches_score_whole_windows(band_model):
    seen = []
    predict = band_model.predict
    band_model.predict = lambda w: (seen.append(w.shape), predict(w))[1]
    with StreamEngine(band_model, EngineConfig(window_s=2.0, hop_s=0.5, min_window_s=2.0), background=False) as e:
        e.feed(np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1, 16000)
    assert seen and all(s == (1, 32000) for s in seen)


def test_newest_patch_equals_its_audio_scored_whole(musicnn, music):
    """The newest patch of each window ends where the window ends, on the model's frame grid (at
    most 255 samples earlier), so its cached score must be the model's own score of those samples
    (tight: a patch-grid error shifts it by far more than float rounding), not only close to the
    reference, which uses the same grid code."""
    import soxr

    x, rate = music[0]
    rate_m, n = musicnn.sample_rate, musicnn.patch_samples
    mono = soxr.resample(x.mean(axis=1), rate, rate_m).astype(np.float32)  # the model's own rate: no resampler
    checked = 0
    with StreamEngine(musicnn, EngineConfig(smoothing_s=0, top_k=0), background=False) as e:
        for i in range(0, 16 * rate_m, rate_m):  # 1 s chunks = 1 hop each
            e.feed(mono[i:i + rate_m], rate_m)
            if not e._patch_scores:
                continue
            key = max(e._patch_scores)
            assert key == i + rate_m  # the newest patch belongs to the newest hop
            end = key - key % musicnn.patch_grid
            want = musicnn.predict(mono[end - n:end][None])[0]
            assert np.abs(e._patch_scores[key] - want).max() <= TOL, (key, np.abs(e._patch_scores[key] - want).max())
            checked += 1
    assert checked >= 12, checked
