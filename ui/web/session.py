"""One browser tab's live listener: its engine, the readouts of the current recording and the
counters its status line shows. No Gradio here.

The page calls `start` (Record), `feed` (each microphone chunk), `stop` (Stop) and `close`
(the tab went away), and waits on `updates` for something new to show; what it shows comes
from `latest`, `readouts` and `status`. Inference never runs inside `feed`: the engine hands
windows to its shared worker thread and calls back when a result is ready.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, replace
from typing import AsyncIterator, NamedTuple

import numpy as np

from stream import EngineClosedError, EngineConfig, EngineStats, Result, SessionSummary, StreamEngine
from stream.config import SETTINGS, configure
from ui.history.store import HistoryStore
from ui.report import NO_MUSIC

PLOT_SPAN_S = 60.0  # readouts kept for the live plot: the last minute
IDLE_STOP_S = 30.0  # a "recording" that sends nothing for this long is considered gone
FLUSH_WAIT_S = 2.0  # how long Stop waits for the last window's result
PAGE_SETTINGS = tuple(s for s in SETTINGS if s.control is not None)  # the settings' sliders, in order


@dataclass(frozen=True)
class LiveSettings:
    """One recording's settings: the sliders' values (`PAGE_SETTINGS`) and the silence gate."""

    window_s: float
    hop_s: float
    smoothing_s: float
    top_k: int
    silence_dbfs: float

    def engine_config(self) -> EngineConfig:
        # every genre's score (top_k=0): the plot keeps the lines of genres that left the top;
        # the page shows `top_k` of them
        return configure(window=self.window_s, hop=self.hop_s, smoothing=self.smoothing_s, top_k=0,
                         silence_dbfs=self.silence_dbfs)

    def with_controls(self, *values) -> LiveSettings:
        """These settings with the sliders' values, in `PAGE_SETTINGS` order."""
        return replace(self, **{s.field: s.kind(v) for s, v in zip(PAGE_SETTINGS, values, strict=True)})


class Readout(NamedTuple):
    """One readout as the plot draws it: genre scores and the leading genre (label scores and
    label for a model without a genre level); a silent window has no scores and no leader."""

    time_s: float
    scores: dict
    leader: str | None


class LiveStatus(NamedTuple):
    """What the status line shows about one readout (`LiveSession.status`)."""

    settings: LiveSettings
    stats: EngineStats | None  # None before the first recording
    bad_chunks: int  # undecodable microphone chunks
    late_chunks: int  # chunks that arrived after Stop
    arrival: float | None  # wall time the chunk that completed the readout's window arrived
    ready: float | None  # wall time the readout was ready
    handler_ms: tuple | None  # (median, max) time the page's chunk handler took


class LateStop(Exception):
    """A Stop for an earlier recording than the session's (it reached the server after the next Record)."""

    def __init__(self, take: int, current: int):
        super().__init__(f"Stop of take {take} came after Record of take {current}")
        self.take, self.current = take, current


class LiveSession:
    """Per-tab state: the engine of the current recording, its readouts and chunk arrivals.

    One engine per recording, so every recording's counters start at zero. Gradio deep-copies
    state values; a session is shared by reference on purpose (it holds an engine and locks),
    hence `__deepcopy__` returning itself. Public attributes the page may set: `first_chunk`
    (the WAV header and arrival of this recording's first chunk file, to find its unhandled
    siblings in the upload cache later) and `styles` (the plot's colour per genre, kept for
    the tab). With a `history` store (--history), every recording is a session of the stream
    `history_name` there (tabs recording at once share its minutes)."""

    def __init__(self, model, settings: LiveSettings, history: HistoryStore | None = None,
                 history_name: str = "page"):
        self.model = model
        self.settings = settings
        self._history_store, self._history_name = history, history_name
        self._recorder = None  # the current recording's session in the history
        self.first_chunk: tuple[bytes, float] | None = None
        self.styles: dict = {}
        self._engine: StreamEngine | None = None
        self._lock = threading.Lock()
        self._history: collections.deque = collections.deque()  # Readouts, appended on the worker's results thread
        self._history_lock = threading.Lock()
        self._arrivals: collections.deque = collections.deque(maxlen=512)  # wall times chunks arrived
        self._handler_ms: collections.deque = collections.deque(maxlen=256)
        self._recent_paths: collections.deque = collections.deque(maxlen=64)  # chunk files handled lately
        self._recent_set: set = set()
        self._ready: tuple = (None, 0.0)  # newest result and the wall time it was ready
        self._waiters: set = set()  # (loop, asyncio.Event) of `updates` iterators
        self._run = 0
        self.take: int | None = None  # the page's number of the latest recording (Record pressed)
        self._recording = self._stopped = self._closed = False
        self._last_feed = 0.0
        self._late_chunks = self._bad_chunks = 0
        self._mic_problem: str | None = None
        self.stale_sweep_due = 0.0  # wall time the page next sweeps this tab's unhandled chunks

    def __deepcopy__(self, memo):
        return self

    # ---- what the page does ---------------------------------------------------------------
    def start(self, settings: LiveSettings, take: int | None = None) -> int:
        """Record pressed: (re)configure, forget the previous recording, return its run id.
        `take`: the page's own number for this recording, if the page counts them.
        Raises ValueError for settings the engine refuses, EngineClosedError once closed."""
        with self._lock:
            if self._closed:
                raise EngineClosedError("session closed")
            self.take = take
            self.settings = settings
            self._new_engine()
            self._late_chunks = self._bad_chunks = 0
            self._handler_ms.clear()
            self._stopped, self._recording = False, True
            self.first_chunk = None  # each recording has its own
            self._last_feed = time.monotonic()
            self._run += 1
            return self._run

    def feed(self, rate: int, samples: np.ndarray, arrival: float | None = None) -> None:
        """A decoded microphone chunk that reached the page at wall time `arrival`: returns at
        once (the engine queues the windows it completes). Chunks after Stop are only counted,
        and so are chunks the engine refuses."""
        now = time.time() if arrival is None else arrival
        with self._lock:
            if self._closed:
                return
            if self._stopped:  # the tail of a stopped recording
                self._late_chunks += 1
                return
            if self._engine is None or self._engine.closed:
                self._new_engine()
            try:
                self._engine.feed(samples, rate)
            except ValueError:
                self._bad_chunks += 1
                return
            self._mic_problem = None  # audio arrives: the microphone works
            self._arrivals.append(now)
            self._last_feed = time.monotonic()
            self._handler_ms.append((time.time() - now) * 1000.0)

    def repeated_chunk(self, path: str) -> bool:
        """Whether the chunk file `path` came before (the same upload, named twice): noted now."""
        with self._lock:
            if path in self._recent_set:
                return True
            if len(self._recent_paths) == self._recent_paths.maxlen:
                self._recent_set.discard(self._recent_paths[0])
            self._recent_paths.append(path)
            self._recent_set.add(path)
            return False

    def count_bad_chunk(self) -> None:
        """A chunk the page could not decode."""
        with self._lock:
            self._bad_chunks += 1

    def report_mic(self, outcome: str) -> None:
        """The browser's answer to the microphone request: "ok" or the DOMException's name."""
        self._mic_problem = None if outcome == "ok" else outcome
        self._wake()

    def stop(self, take: int | None = None) -> SessionSummary | None:
        """Stop pressed: classify what is left, wait briefly for it, return the session summary
        (None if nothing was recorded). `take`: the page's number of the recording Stop was
        pressed for; one earlier than Record last brought came late (after the next Record) and
        raises LateStop, changing nothing (checked under the lock Record takes)."""
        with self._lock:
            if take is not None and self.take is not None and take < self.take:
                raise LateStop(take, self.take)
            self._recording, self._stopped = False, True
            engine = self._engine
            if engine is None or engine.closed:
                return None
            engine.flush()
        engine.drain(FLUSH_WAIT_S)
        summary = engine.summary()
        self._end_recording(summary, "stopped")
        return summary

    def close(self) -> None:
        """The tab went away: the engine is closed, waiting `updates` end."""
        with self._lock:
            self._closed, self._recording = True, False
            if self._engine is not None:
                self._engine.close()
                self._end_recording(self._engine.summary(), "tab closed")
        self._wake()

    def active(self, run: int) -> bool:
        """Recording `run` is still going (not stopped, replaced, closed or silent for IDLE_STOP_S)."""
        return (self._recording and self._run == run and not self._closed
                and time.monotonic() - self._last_feed < IDLE_STOP_S)

    async def updates(self, run: int, every_s: float = 1.0) -> AsyncIterator[None]:
        """Yield after each new readout or microphone outcome, and at least every `every_s`
        (so a status can refresh), for as long as recording `run` is active."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        self._waiters.add((loop, event))
        try:
            while self.active(run):
                try:
                    await asyncio.wait_for(event.wait(), timeout=every_s)
                except asyncio.TimeoutError:
                    pass
                event.clear()
                if not self.active(run):  # stopped meanwhile: Stop's own status stays
                    return
                yield
        finally:
            self._waiters.discard((loop, event))

    # ---- what the page shows ----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def run(self) -> int:
        """The id of the latest recording (Record pressed `run` times)."""
        return self._run

    @property
    def recording(self) -> bool:
        """Between Record and Stop (or the tab's end), while audio comes (see `active`)."""
        return self._recording and not self._closed and time.monotonic() - self._last_feed < IDLE_STOP_S

    @property
    def mic_problem(self) -> str | None:
        """Why the browser gave no microphone (the DOMException's name), None if it did."""
        return self._mic_problem

    @property
    def latest(self) -> Result | None:
        """The newest readout of the current recording."""
        return self._engine.latest if self._engine is not None else None

    @property
    def stats(self) -> EngineStats | None:
        return self._engine.stats if self._engine is not None else None

    @property
    def genres(self) -> list[str]:
        """The model's genres in their fixed order (the plot's colours); [] before Record."""
        return self._engine.genres if self._engine is not None else []

    def readouts(self, until_s: float | None = None) -> list[Readout]:
        """This recording's readouts of the last `PLOT_SPAN_S` (up to `until_s`), oldest first,
        all of them as the engine delivered them (also those the page skipped rendering)."""
        with self._history_lock:
            return [r for r in self._history if until_s is None or r.time_s <= until_s]

    def status(self, res: Result | None) -> LiveStatus:
        """The status line's data about readout `res` (None: no readout yet)."""
        arrival = self._arrival_of(res) if res is not None else None
        h = np.array(self._handler_ms) if res is not None and self._handler_ms else None
        return LiveStatus(self.settings, self.stats, self._bad_chunks, self._late_chunks, arrival,
                          self._ready[1] if arrival is not None else None,
                          (float(np.median(h)), float(h.max())) if h is not None else None)

    # ---- inside ---------------------------------------------------------------------------------
    def _new_engine(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._end_recording(self._engine.summary(), "new recording")
        self._engine = StreamEngine(self.model, self.settings.engine_config(), background=True,
                                    on_result=self._on_result)
        if self._history_store is not None:
            self._recorder = self._history_store.recorder(self._history_name, self.settings.hop_s,
                                                          self._engine.genres)
        with self._history_lock:
            self._history.clear()
        self._arrivals.clear()

    def _end_recording(self, summary: SessionSummary, reason: str) -> None:
        rec, self._recorder = self._recorder, None
        if rec is not None:
            rec.close(summary, reason)

    def _on_result(self, res: Result) -> None:  # on the worker's results thread: record, wake the waiters
        if (rec := self._recorder) is not None:
            rec.add(res)
        with self._history_lock:
            if res.no_music and not res.silent:  # the band shows "no music", not silence
                self._history.append(Readout(res.time_s, dict(res.genre_scores or res.scores), NO_MUSIC))
            elif res.genre_scores or res.genre is not None:
                self._history.append(Readout(res.time_s, dict(res.genre_scores), res.genre))
            else:
                self._history.append(Readout(res.time_s, dict(res.scores), res.label))
            while self._history and self._history[0].time_s < res.time_s - PLOT_SPAN_S - 5:
                self._history.popleft()
        self._ready = (res, time.time())
        self._wake()

    def _arrival_of(self, res: Result) -> float | None:
        """Wall time at which the chunk that completed `res`'s window reached the page.

        The engine submits a window inside the `feed` call of the chunk that completes it, and
        reports `latency_ms` from that submission to the result, so the completing chunk is the
        newest one that arrived before `ready - latency`."""
        ready_res, ready = self._ready
        if ready_res is not res:
            return None
        submitted = ready - res.latency_ms / 1000.0
        best = None
        for wall in list(self._arrivals):
            if wall <= submitted + 1e-4:
                best = wall
        return best

    def _wake(self) -> None:
        for loop, event in list(self._waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop closed
                self._waiters.discard((loop, event))
