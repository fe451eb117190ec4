"""The streaming engine: chunks in, smoothed genre readouts out."""
from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

import numpy as np

from .audio import rms_dbfs, to_float_mono, validate_rate, validate_samples
from .buffer import RingBuffer
from .calibration import load as load_calibration
from .config import SETTINGS, EngineConfig, music_detector_env
from .errors import EngineClosedError
from .genres import GenreLevel, genre_level, genre_mapping
from .presence import CONTEXT_S, PresenceTracker, shared_detector
from .records import EngineStats, Result, SessionSummary, ShareTally, iso_utc  # noqa: F401  (re-exported)
from .resample import StreamingResampler
from .smoothing import ScoreSmoother
from .worker import Job, get_worker, outcome, score

log = logging.getLogger(__name__)

ALL_LABELS = "*"


def _leader_first(idx: np.ndarray, smooth: np.ndarray, lead: int | None) -> np.ndarray:
    """`idx` by smoothed score, highest first, with the leader first: also while a challenger
    is within the margin, so "the first entry" always names the leader."""
    order = idx[np.argsort(-smooth[idx], kind="stable")]
    return order if lead is None else np.concatenate(([lead], order[order != lead]))


class _WindowMeta(NamedTuple):
    """What the engine knows about a window when it is cut (travels with the job)."""

    gen: int  # reset() generation: results of an older one are dropped
    seq: int  # order of cutting: an older window's late result is dropped
    t_end: float  # stream time of the hop boundary
    level_dbfs: float
    duration_s: float
    recent: np.ndarray | None  # the newest min_window_s, the change evidence (None: not needed)
    presence: np.ndarray | None = None  # the newest hop (+ context) for the music detector


@dataclass
class _PatchJob(Job):
    """The patches of one window: `keys` (the hop boundary each patch ends on, in stream
    samples, newest first) are what the readout averages, `todo` the ones whose rows are
    still in `window`."""

    keys: list = field(default_factory=list)
    todo: list = field(default_factory=list)
    floor: int = 0  # the oldest patch a later window of the stream still averages
    newest: np.ndarray | None = None  # the newest patch's scores (set once scored: the change evidence)

    def absorb(self, old: Job) -> None:
        """Take over the rows of `old`, this stream's window that this one superseded before it was
        scored, that later windows will still average: scored now, in order, rather than as older
        rows hops later (a streaming front end then steps through them instead of computing each
        whole). Called by the worker, under its lock."""
        if not isinstance(old, _PatchJob) or old.meta.gen != self.meta.gen or self.context is None:
            return
        take = [i for i, k in enumerate(old.todo) if k not in self.todo and k >= self.floor]
        if take:
            self.window = np.concatenate([self.window, old.window[take]])
            self.todo = self.todo + [old.todo[i] for i in take]
            self.context = self.context + [old.context[i] for i in take]


class StreamEngine:
    """Feed audio chunks of any format; read `latest` (or get `on_result` calls) every hop.
    (A `stream.protocol.Engine`, as the network API's client `stream.client.RemoteEngine` is.)

    One engine per listener (browser session, microphone). All engines of one model share a
    single inference thread (and its results thread); `feed` never waits for the model.

    background=False runs inference inline inside `feed` (every hop is classified, nothing
    skipped, deterministic): for tests and file replay. Live audio wants the default: a
    background engine fed faster than real time (a file read in a loop) skips most windows
    (logged once); for whole files see `analyze_file`.
    For patch-scoring models the engine keeps the scores of the stream's recent patches
    (bounded: the patches one window spans) and forgets them on `reset()`.
    on_result(result) is called from the model's results thread (stream/worker.py: in order,
    beside the next forward), or, for silent windows and in
    inline mode, by the thread that fed the audio just before `feed`/`flush` returns; keep it
    short. It may call the engine's own methods.
    """

    def __init__(self, model, config: EngineConfig | None = None, *, background: bool = True,
                 on_result: Callable[[Result], None] | None = None):
        self.model = model
        self.config = self.resolve(config or EngineConfig(), model)
        self.background = background
        self.on_result = on_result
        rate = self.rate = int(model.sample_rate)
        c = self.config
        self._win = max(int(round(c.window_s * rate)), int(model.min_samples))
        self._hop = max(1, int(round(c.hop_s * rate)))
        self._min = min(self._win, max(int(round(c.min_window_s * rate)), int(model.min_samples)))
        self._visible = self._visible_indices(c, model)
        self.genre_level = self._genre_level(c, model, self._visible)
        self._ring = RingBuffer(self._win)
        self._patch = self._patch_plan(c, model, self._win, self._hop)
        self._patch_scores: dict[int, np.ndarray] = {}  # hop boundary (stream sample) -> its patch's probabilities
        self._patch_ends: dict[int, int] = {}  # hop boundary -> where its patch's audio ends (feed thread)
        # the model's per-stream state (its streaming front end: hops short enough for its step), renewed on reset
        streaming = self._patch and hasattr(model, "new_stream") and self._hop <= getattr(model, "max_stream_step", 0)
        self._frames = model.new_stream() if streaming else None
        self._resampler: StreamingResampler | None = None
        self._worker = get_worker(model) if background else None
        self._feed_lock = threading.Lock()
        self._outbox: list | None = None  # results to announce once the feed lock is released
        self._feeder: int | None = None  # thread holding the feed lock
        self._result_lock = threading.Lock()
        # The genre (headline) has its own EMA, hysteresis and change detection; the styles'
        # EMA restarts with it, so pooled style scores and genre scores stay one picture.
        self._genre_smoother = ScoreSmoother(c.smoothing_s, c.switch_margin, c.change_s, self._min / rate)
        self._smoother = ScoreSmoother(c.smoothing_s, c.switch_margin, 0.0, self._min / rate)
        self._anchor: int | None = None  # stream sample where the current music began (a detected change)
        # is music playing? (None: the detector is off; then every sound gets a genre)
        self._detector = shared_detector() if c.music_detector else None
        self._presence = PresenceTracker() if c.music_detector else None
        self._calibrator = load_calibration(getattr(model, "name", ""), self.genre_level.genres)
        self._closed = False
        self._gen = 0  # bumped by reset(): results of older windows are dropped
        self._seq = 0
        self._delivered_seq = -1
        self._done_seq = 0  # newest window fully handled: result delivered and on_result returned
        self._in_callback = threading.local()  # drain() inside on_result would wait for itself
        self._warned_skip = False
        self._since_hop = 0
        self.latest: Result | None = None
        # stats
        self._infer_ms = collections.deque(maxlen=512)
        self._n_classified = self._n_skipped = self._n_silent = self._n_errors = 0
        self._last_error: str | None = None
        self._samples_in = 0
        self._seconds_in = 0.0
        self._bad = 0
        # session tally
        self._last_result_t: float | None = None
        self._tally_time = ShareTally()

    # ---- configuration -------------------------------------------------------------
    @staticmethod
    def resolve(c: EngineConfig, model) -> EngineConfig:
        """`c` with the model's default window and hop filled in, checked: what an engine of
        `model` would run with. ValueError naming each bad field. Servers call it at start so a
        bad default fails there, not on every stream."""
        c = replace(c,
                    window_s=float(model.default_window_s if c.window_s is None else c.window_s),
                    hop_s=float(model.default_hop_s if c.hop_s is None else c.hop_s),
                    music_detector=music_detector_env() if c.music_detector is None else bool(c.music_detector))
        problems = [p for s in SETTINGS if (p := s.engine_problem(getattr(c, s.field))) is not None]
        if problems:
            raise ValueError("invalid EngineConfig: " + "; ".join(problems))
        return c

    @staticmethod
    def _patch_plan(c: EngineConfig, model, win: int, hop: int) -> tuple[int, int, int] | None:
        """(patch samples, spacing, patches per window) when patches are reused, else None."""
        n = getattr(model, "patch_samples", None)
        if not c.patch_reuse or not n or win < n:
            return None
        spacing = hop * max(1, round(n / hop))  # patches end on hop boundaries
        return int(n), spacing, 1 + (win - n) // spacing

    @staticmethod
    def _visible_indices(c: EngineConfig, model) -> np.ndarray:
        labels = list(model.labels)
        index = {l.lower(): i for i, l in enumerate(labels)}

        def lookup(names, what):
            unknown = [n for n in names if n.lower() not in index]
            if unknown:
                raise ValueError(f"unknown label(s) in {what}: {unknown}; this model's labels are: {labels}")
            return {index[n.lower()] for n in names}

        if c.allow is None:
            base = model.default_labels
            allowed = set(range(len(labels))) if base is None else lookup(base, "the model's default view")
        elif ALL_LABELS in c.allow:
            allowed = set(range(len(labels)))
        else:
            allowed = lookup(c.allow, "allow")
        allowed -= lookup(c.deny, "deny")
        if not allowed:
            raise ValueError("allow/deny leave no label to show; remove some names from deny")
        return np.array(sorted(allowed), dtype=np.int64)

    @staticmethod
    def _genre_level(c: EngineConfig, model, visible: np.ndarray) -> GenreLevel:
        """The config's override (checked strictly: an unknown label is an error), else the
        model's own mapping (`AudioModel.genres`), else every label is its own genre. A genre
        scores as its best style: a sum lets genres with many weak tags outvote the model's
        strongest tag (bench/README.md). `genre_level` is the engine's to read; a benchmark that
        compares pools replaces it with `dataclasses.replace(engine.genre_level, pool="sum")`
        before the first feed."""
        if c.genres is not None:
            return genre_level(model.labels, visible, genre_mapping(c.genres), strict=True)
        return genre_level(model.labels, visible, getattr(model, "genres", None))

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def min_audio_s(self) -> float:
        """The least audio that gives a readout (the model's minimum input)."""
        return self.model.min_samples / self.model.sample_rate

    def failed(self) -> str | None:
        """None: an engine in this process has no connection to lose (`stream.protocol.Engine`)."""
        return None

    disconnects = 0  # (no connection to lose: no outage, no audio lost to one)
    lost_s = 0.0

    @property
    def visible_labels(self) -> list[str]:
        return [self.model.labels[i] for i in self._visible]

    @property
    def genres(self) -> list[str]:
        """The genres this engine ranks, in the mapping's order (fixed per model: the page
        colours them by it)."""
        return list(self.genre_level.genres)

    # ---- feeding -------------------------------------------------------------------
    def feed(self, samples, sample_rate) -> None:
        """Add a chunk: shape (n,) or (n, channels), int16/int32/uint8/float32/float64, any
        rate 4-192 kHz. Returns at once in background mode. Raises ValueError for malformed
        input (nothing of the chunk is used) and EngineClosedError after close()."""
        if self._closed:
            raise EngineClosedError("feed() called after close(); create a new StreamEngine")
        arr = validate_samples(samples)
        rate = validate_rate(sample_rate)
        if arr.shape[0] == 0:
            return
        with self._feeding():
            if self._closed:  # close() may have run while we waited for the lock
                raise EngineClosedError("feed() called after close(); create a new StreamEngine")
            if self._resampler is None or self._resampler.in_rate != rate:
                if self._resampler is not None:  # rate changed: finish the old stream first
                    self._push(self._resampler.flush())
                self._resampler = StreamingResampler(rate, self.rate)
            block = rate  # 1 s blocks keep temporary memory bounded for huge chunks
            for start in range(0, arr.shape[0], block):
                mono, bad = to_float_mono(arr[start:start + block])
                self._bad += bad
                self._push(self._resampler.process(mono))
            self._emit_early()
            self._samples_in += arr.shape[0]
            self._seconds_in += arr.shape[0] / rate

    def _push(self, y: np.ndarray) -> None:
        while len(y):
            n = min(len(y), self._hop - self._since_hop)
            self._ring.write(y[:n])
            y = y[n:]
            self._since_hop += n
            if self._since_hop >= self._hop:
                self._since_hop = 0
                if len(self._ring) >= self._min:
                    self._emit()

    def _emit_early(self) -> None:
        """The resampler holds back a few ms of audio. When the input already covers a hop
        boundary but only that held-back tail is missing, classify now instead of one chunk
        later (with 0.25 s browser chunks that would add 250 ms to every readout). The held-back
        samples then count towards the same hop, so the hop grid does not move."""
        missing = self._hop - self._since_hop
        slack = int(self._resampler.delay()) + 1
        if 0 < missing <= slack and len(self._ring) + missing >= self._min:
            self._since_hop -= self._hop
            self._emit(missing)

    def _emit(self, early: int = 0) -> None:
        n = len(self._ring)
        if self._anchor is not None:  # after a change of music classify only the new music
            n = min(n, max(self._ring.total - self._anchor, self._min))
        window = self._ring.newest(n)
        # stream time of the hop boundary: an early window lacks only the resampler's tail
        t_end = (self._ring.total + early) / self.rate
        level = rms_dbfs(window)
        # the newest seconds on their own: the evidence for a change of music
        recent = None
        c = self.config
        if c.change_s > 0 and c.smoothing_s > 0 and n >= 2 * self._min and level >= c.silence_dbfs:
            recent = self._ring.newest(self._min).copy()
        presence = None
        if self._detector is not None and level >= c.silence_dbfs:
            presence = self._ring.newest(min(len(self._ring), self._hop + int(CONTEXT_S * self.rate))).copy()
        self._seq += 1
        meta = _WindowMeta(self._gen, self._seq, t_end, level, len(window) / self.rate, recent, presence)
        if level < self.config.silence_dbfs:
            if self._worker is not None and self._worker.cancel(self):
                self._skipped()
            self._deliver_silent(meta)
            return
        if self._patch is not None and len(window) >= self._patch[0]:
            job = self._patch_job(window, self._ring.total + early, meta)
        else:
            job = Job(window=window.copy(), deliver=self._deliver, meta=meta)
        if self._worker is not None:
            if self._worker.submit(self, job):
                self._skipped()
        else:
            t0 = time.perf_counter()
            try:
                if job.prepare is not None:
                    job.prepare(job)
                probs = score(self.model, [job])
                probs, err = (probs[0] if job.window.ndim == 1 else probs), None
            except Exception as exc:
                probs, err = None, exc
            probs, err = outcome(job, probs, err)
            self._deliver(job, probs, (time.perf_counter() - t0) * 1000.0, err)

    def _patch_job(self, window: np.ndarray, end: int, meta: _WindowMeta) -> _PatchJob:
        """The window's grid patches: the newest ends at this hop boundary (`end`, in stream
        samples; an early window lacks only the resampler's last few samples), each other one
        `spacing` earlier, as far back as the window reaches. The worker drops those already
        scored just before the forward (`_prepare`), so normally one patch is computed."""
        n, spacing, count = self._patch
        have = self._ring.total
        grid = getattr(self.model, "patch_grid", None)
        # Where each hop's patch ends (stream samples), fixed when it is first cut: an early hop's
        # where its audio did; on the model's frame grid where the window holds it (every face then
        # cuts the same audio, and a stream's patches share their frames).
        at = have - have % grid if grid and len(window) - have % grid >= n else have
        ends = self._patch_ends
        ends[end] = at
        for key in [k for k in ends if k < end - (count - 1) * spacing]:
            del ends[key]
        keys, rows, context = [], [], []
        for i in range(count):
            key = end - i * spacing
            at = ends.get(key)
            if at is None:  # a hop that cut no window (silence)
                at = key - key % grid if grid else key
            stop = len(window) - (have - at)
            if stop < n:
                break
            keys.append(key)
            rows.append(window[stop - n:stop])
            context.append((self._frames, at))
        return _PatchJob(window=np.stack(rows), deliver=self._deliver, meta=meta, prepare=self._prepare,
                         scored=self._combine, keys=keys, todo=list(keys),
                         context=context if self._frames is not None else None, floor=end - (count - 1) * spacing)

    def _prepare(self, job: _PatchJob) -> None:
        with self._result_lock:
            if job.meta.gen != self._gen or self._closed:
                keep = []
            else:
                keep = [i for i, k in enumerate(job.todo) if k not in self._patch_scores]
        job.todo = [job.todo[i] for i in keep]
        job.window = job.window[keep]
        if job.context is not None:
            job.context = [job.context[i] for i in keep]

    def _combine(self, job: _PatchJob, rows: np.ndarray) -> np.ndarray | None:
        """Cache the job's new patch scores (right after the forward, so the next job's `_prepare`
        sees them, also for a stale window); the window's probabilities = mean of its patches."""
        with self._result_lock:
            if job.meta.gen != self._gen or self._closed:
                return None
            cache = self._patch_scores
            for key, p in zip(job.todo, rows):
                cache[key] = p
            _, spacing, count = self._patch
            oldest = job.keys[0] - (count - 1) * spacing  # no later window reaches further back
            for key in [k for k in cache if k < oldest]:
                del cache[key]
            got = [cache[k] for k in job.keys if k in cache]
            job.newest = cache.get(job.keys[0])
        return np.mean(got, axis=0, dtype=np.float64).astype(np.float32) if got else None

    def _skipped(self) -> None:
        self._n_skipped += 1
        if not self._warned_skip:  # once per engine: the count is in stats.windows_skipped
            self._warned_skip = True
            log.warning(
                "StreamEngine: the model is slower than the hop (%g s), so windows are being skipped: a "
                "newer window replaced one still waiting for the model (count: stats.windows_skipped). "
                "Live this only lowers the update rate. For a file or other recorded audio use "
                "background=False or analyze_file() so that every window is classified; live, use a "
                "larger hop_s or a faster model.", self.config.hop_s)

    def flush(self) -> None:
        """End of input (a file, a recording that stopped): pass the resampler's tail through
        and classify the audio that arrived since the last window, even when it is shorter
        than `min_window_s` (it must reach the model's minimum)."""
        if self._closed:
            raise EngineClosedError("flush() called after close(); create a new StreamEngine")
        with self._feeding():
            if self._closed:
                raise EngineClosedError("flush() called after close(); create a new StreamEngine")
            if self._resampler is not None:
                self._push(self._resampler.flush())
            # a tail shorter than a quarter hop (e.g. the resampler's few ms) adds nothing new
            fresh = self._since_hop >= self._hop / 4 or self.latest is None
            if self._since_hop > 0 and fresh and len(self._ring) >= self.model.min_samples:
                self._since_hop = 0
                self._emit()

    @contextlib.contextmanager
    def _feeding(self):
        """Hold the feed lock; results produced meanwhile on this thread (silent windows,
        inline inference) reach `on_result` only after it is released, so a callback may
        itself call feed/flush/reset without deadlocking."""
        outbox: list[tuple[Result, int]] = []
        try:
            with self._feed_lock:
                self._outbox, self._feeder = outbox, threading.get_ident()
                try:
                    yield
                finally:
                    self._outbox, self._feeder = None, None
        finally:  # also after an error: drain() waits for these callbacks
            for res, seq in outbox:
                self._notify(res, seq)

    def _post(self, res: Result, seq: int) -> None:
        if self._feeder == threading.get_ident():
            self._outbox.append((res, seq))
        else:  # the worker's results thread
            self._notify(res, seq)

    def _done(self, seq: int) -> None:
        """Window `seq` needs nothing more (its callback returned, or it gets none)."""
        with self._result_lock:
            self._done_seq = max(self._done_seq, seq)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until the newest window emitted so far has been classified and its `on_result`
        callback has returned (e.g. after `flush()` at the end of a file, before reading the final
        `latest` or `summary()`). Returns False if that took longer than `timeout` seconds.
        Raises RuntimeError when called from inside `on_result` (it would wait for itself)."""
        if getattr(self._in_callback, "active", False):
            raise RuntimeError("drain() called from inside on_result would wait for its own callback; "
                               "call it from the thread that feeds the engine")
        target = self._seq
        deadline = time.monotonic() + timeout
        while self._done_seq < target and not self._closed:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # ---- results -------------------------------------------------------------------
    def _accept(self, meta: _WindowMeta) -> bool:
        if self._closed or meta.gen != self._gen or meta.seq <= self._delivered_seq:
            return False
        self._delivered_seq = meta.seq
        return True

    def _tally(self, t_end: float, genre: str | None, label: str | None, no_music: bool = False) -> None:
        dt = self.config.hop_s if self._last_result_t is None else max(t_end - self._last_result_t, 0.0)
        self._last_result_t = t_end
        self._tally_time.add(dt, genre, label, no_music)

    def _deliver_silent(self, meta: _WindowMeta) -> None:
        _, seq, t_end, level, dur, _, _ = meta
        with self._result_lock:
            if not self._accept(meta):
                self._done_seq = max(self._done_seq, seq)
                return
            self._smoother.reset()
            self._genre_smoother.reset()
            self._n_silent += 1
            self._tally(t_end, None, None)
            pr = self._presence.silent(t_end, self.config.hop_s) if self._presence is not None else None
            res = Result({}, {}, None, t_end, True, level, dur, 0.0, 0.0, at=time.time(),
                         music=None if pr is None else pr.music, no_music=bool(pr and pr.no_music))
            self.latest = res
        self._post(res, seq)

    def _deliver(self, job: Job, probs, infer_ms: float, err) -> None:
        _, seq, t_end, level, dur, recent, presence = job.meta
        recent_probs = None
        heard = None  # the detector's frames of the newest hop: it runs where readouts are built
        if presence is not None and err is None and job.meta.gen == self._gen and not self._closed:
            try:
                heard = self._detector.hop_frames(presence, self.rate,
                                                  min(self.config.hop_s, len(presence) / self.rate))
            except Exception as exc:
                err = exc
        # patch models already scored the newest patch (the newest ~3 s): no extra forward for them
        if (recent is not None and not isinstance(job, _PatchJob) and err is None and job.meta.gen == self._gen
                and not self._closed):
            t0 = time.perf_counter()
            try:
                recent_probs = self.model.predict(recent[None])[0]
            except Exception as exc:
                err = exc
            infer_ms += (time.perf_counter() - t0) * 1000.0
        with self._result_lock:
            if err is None and isinstance(job, _PatchJob) and recent is not None and probs is not None:
                recent_probs = job.newest  # `_combine` kept it when the patches were scored
            if err is not None or probs is None or not self._accept(job.meta):
                self._done_seq = max(self._done_seq, seq)  # no callback for this window
                if err is not None and job.meta.gen == self._gen and not self._closed:  # not for audio reset() discarded
                    self._n_errors += 1
                    self._last_error = f"{type(err).__name__}: {err}"
                return
            labels = self.model.labels
            vis = self._visible
            gl = self.genre_level
            gs = self._genre_smoother
            pr = None
            if self._presence is not None:
                was_off = self._presence.no_music
                pr = (self._presence.update(0.0, 0.0, t_end, self.config.hop_s) if heard is None
                      else self._presence.update_frames(heard, t_end, self.config.hop_s))
                if was_off and not pr.no_music:
                    # music is back: start the readout from it, not from what the voice scored
                    self._smoother.reset()
                    gs.reset()
                    since = self._presence.music_since
                    if since is not None:
                        self._anchor = max(int(round(since * self.rate)), 0)
                    recent_probs = None
            g_smooth = gs.update(gl.scores(probs), t_end, None,
                                 None if recent_probs is None else gl.scores(recent_probs))
            if gs.changed_at is not None:
                self._anchor = int(round(gs.changed_at * self.rate))
            # the style leads among the leading genre's styles only: the two never contradict
            smooth = self._smoother.update(probs, t_end, gl.members[gs.leader], recent_probs, restart=gs.changed)
            k = self.config.top_k or len(vis)
            scores = {labels[i]: float(smooth[i]) for i in _leader_first(vis, smooth, self._smoother.leader)[:k]}
            g_order = _leader_first(np.arange(len(gl.genres)), g_smooth, gs.leader)
            genre_scores = {gl.genres[i]: float(g_smooth[i]) for i in g_order[:k]}
            raw_order = vis[np.argsort(-probs[vis], kind="stable")]
            raw = {labels[i]: float(probs[i]) for i in raw_order}
            leader = labels[self._smoother.leader]
            genre = gl.genres[gs.leader]
            conf = alt = None
            if pr is not None and pr.no_music:
                leader = genre = None  # the headline is "no music"; the scores stay in the record
            elif self._calibrator is not None:
                cf = self._calibrator(g_smooth, gs.leader, gl.genres, t_end - gs.started_at)
                conf, alt = cf.value, cf.alternative
            self._infer_ms.append(infer_ms)
            self._n_classified += 1
            self._tally(t_end, genre, leader, bool(pr and pr.no_music))
            latency = (time.perf_counter() - job.submitted) * 1000.0
            res = Result(scores, raw, leader, t_end, False, level, dur, infer_ms, latency, genre, genre_scores,
                         time.time(), music=None if pr is None else pr.music, no_music=bool(pr and pr.no_music),
                         talk=bool(pr and pr.talk), confidence=conf, alternative=alt)
            self.latest = res
        self._post(res, seq)

    def _notify(self, res: Result, seq: int) -> None:
        callback = self.on_result  # (once: close() may drop it meanwhile)
        if callback is not None:
            self._in_callback.active = True
            try:
                callback(res)
            except Exception:  # a broken callback must not break the stream
                log.exception("on_result callback failed")
            finally:
                self._in_callback.active = False
        self._done(seq)

    # ---- state ---------------------------------------------------------------------
    @property
    def windows_skipped(self) -> int:
        """`stats.windows_skipped` without building the stats (which copies and sorts the
        inference times under the result lock): cheap enough to read per result."""
        return self._n_skipped

    @property
    def stats(self) -> EngineStats:
        with self._result_lock:
            ms = np.array(self._infer_ms) if self._infer_ms else np.zeros(1)
            latest_t = self.latest.time_s if self.latest else 0.0
            return EngineStats(
                windows_classified=self._n_classified,
                windows_skipped=self._n_skipped,
                windows_silent=self._n_silent,
                errors=self._n_errors,
                last_error=self._last_error,
                inference_ms_mean=float(ms.mean()),
                inference_ms_p95=float(np.percentile(ms, 95)),
                real_time_factor=float(ms.mean()) / (self.config.hop_s * 1000.0),
                samples_received=self._samples_in,
                seconds_received=self._seconds_in,
                bad_samples_replaced=self._bad,
                lag_s=max(self._ring.total / self.rate - latest_t, 0.0) if self.latest else 0.0,
            )

    def summary(self) -> SessionSummary:
        """Dominant genres (and the styles within them) of the session so far, as shares of
        the non-silent time."""
        with self._result_lock:
            return self._tally_time.summary()

    def reset(self) -> None:
        """Forget the audio and the readout (a new song, a new visitor); stats are kept."""
        with self._feed_lock, self._result_lock:
            if self._worker is not None:
                self._worker.cancel(self)
            self._gen += 1
            self._done_seq = self._seq  # nothing older is worth waiting for
            self._ring.clear()
            self._patch_scores.clear()
            self._patch_ends.clear()
            if self._frames is not None:
                self._frames = self.model.new_stream()
            self._since_hop = 0
            if self._resampler is not None:
                self._resampler.reset()
            self._smoother.reset()
            self._genre_smoother.reset()
            self._anchor = None
            if self._presence is not None:
                self._presence.reset()
            self.latest = None
            self._last_result_t = None
            self._tally_time.clear()

    def close(self) -> None:
        """Stop: drop any pending window; further `feed` raises; `stats`, `summary()` and
        `latest` stay readable. Idempotent. The audio it holds (~1 MB: the window's ring, the
        patch scores) and `on_result` are let go at once: a callback that refers back to the
        engine (an owner holding it) makes a reference cycle, which CPython frees only at a full
        garbage collection, and a busy server may not run one for hours."""
        with self._result_lock:
            self._closed = True
            self._patch_scores.clear()
        with self._feed_lock:
            self._resampler = None
            self._ring.release()
            self._patch_ends.clear()
            self._frames = None
        if self._worker is not None:
            self._worker.cancel(self)
        self.on_result = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
