"""Live music-genre classifier: a Gradio page over the `stream` engine.

    python app.py [--model auto|musicnn|HUB_ID|DIR] [--host 127.0.0.1] [--port 7860] [--share]
                  [--window 9] [--hop 1] [--smoothing 4] [--top-k 5]

`demo` is built at import time, so the file also runs as a Hugging Face Space. This module
only translates Gradio events into engine calls: resampling, buffering, smoothing, silence
detection and scheduling all live in `stream/`.

Live tab: the microphone is streamed in short chunks. The stream handler decodes a chunk,
deletes the uploaded chunk file at once (Gradio writes every chunk to its cache), hands the
samples to this browser session's `StreamEngine` and returns: inference runs on the engine's
shared worker thread, never inside the handler. A second, long-running event (started by
"record") waits for the engine's results and pushes each new readout to the page as soon as
it exists, so the readout does not wait for the next chunk to arrive.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from html import escape
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import soundfile as sf
from gradio import processing_utils
from gradio.utils import get_upload_folder

from stream import AudioDecodeError, EngineClosedError, EngineConfig, StreamEngine, analyze_file, load_model

log = logging.getLogger("app")

STREAM_EVERY_S = 0.25  # microphone chunk length: shorter = fresher audio, more requests
PLOT_SPAN_S = 60.0  # the live plot shows the last minute
IDLE_STOP_S = 30.0  # a "recording" that sends nothing for this long is considered gone
FLUSH_WAIT_S = 2.0  # how long Stop waits for the last window's result
SESSION_TTL_S = 3600  # an idle session's engine is closed after this long

# The browser's speech processing (echo cancellation, noise suppression, automatic gain)
# is made for voices: it pumps levels and eats sustained tones, which damages music. Gradio
# 6 calls getUserMedia({audio: true}) and has no option for it, so this page asks for raw
# capture by wrapping getUserMedia before Gradio uses it (run by the status component's
# js_on_load, so it is part of `demo` however it is launched). The settings the browser
# actually granted are kept in window.__micSettings (read by the tests).
MUSIC_MIC_JS = """
(() => {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia || md.__musicFriendly) return;
  const original = md.getUserMedia.bind(md);
  const raw = {echoCancellation: false, noiseSuppression: false, autoGainControl: false};
  md.getUserMedia = async (constraints) => {
    if (constraints && constraints.audio) {
      const audio = constraints.audio === true ? {} : {...constraints.audio};
      constraints = {...constraints, audio: {...audio, ...raw}};
    }
    const stream = await original(constraints);
    const track = stream.getAudioTracks()[0];
    if (track) window.__micSettings = track.getSettings();
    return stream;
  };
  md.__musicFriendly = true;
})();
"""

CSS = """
#live-label .output-class, #file-label .output-class { font-size: 2rem; }
#live-status, #file-status { font-size: 0.85rem; opacity: 0.85; }
#live-status .warn, .file-error { color: var(--error-text-color, #b91c1c); font-weight: 600; }
footer { display: none !important; }
"""


# ---- command line / environment -------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="Live music-genre classifier (Gradio page).")
    p.add_argument("--model", default=env("GENRE_MODEL", "auto"),
                   help="auto (course model if reachable, else bundled MusiCNN), musicnn, a Hub id or a "
                        "checkpoint directory [env GENRE_MODEL; default auto]")
    # On a Space, Gradio's own environment variables say where to listen.
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on [default 127.0.0.1: this machine only]")
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="also open a public *.gradio.live link (opt-in)")
    p.add_argument("--window", type=float, default=None, help="seconds per classification [model default]")
    p.add_argument("--hop", type=float, default=None, help="seconds between readouts [model default]")
    p.add_argument("--smoothing", type=float, default=EngineConfig.smoothing_s, help="EMA time constant, s")
    p.add_argument("--top-k", type=int, default=EngineConfig.top_k, help="genres shown")
    p.add_argument("--silence-dbfs", type=float, default=EngineConfig.silence_dbfs,
                   help="windows quieter than this are reported as silence")
    p.add_argument("--max-file-mb", type=float, default=float(env("GENRE_MAX_FILE_MB", "50")),
                   help="upload size limit in MB")
    p.add_argument("--max-file-minutes", type=float, default=float(env("GENRE_MAX_FILE_MINUTES", "20")),
                   help="longest recording the File tab analyses")
    return p.parse_args(argv)


# ---- one browser session's live listener ----------------------------------------------
@dataclass(frozen=True)
class LiveSettings:
    window_s: float
    hop_s: float
    smoothing_s: float
    top_k: int
    silence_dbfs: float

    def engine_config(self) -> EngineConfig:
        return EngineConfig(window_s=self.window_s, hop_s=self.hop_s, smoothing_s=self.smoothing_s,
                            top_k=self.top_k, silence_dbfs=self.silence_dbfs)


class LiveSession:
    """Per-browser state: the engine, recent readouts for the plot, chunk arrival times.

    Gradio deep-copies state values; a session is shared by reference on purpose (it holds
    an engine and locks), hence `__deepcopy__` returning itself."""

    def __init__(self, model, settings: LiveSettings):
        self.model = model
        self.settings = settings
        self.engine: StreamEngine | None = None
        self.lock = threading.Lock()
        self.history: collections.deque = collections.deque()  # (time_s, scores)
        self.arrivals: collections.deque = collections.deque(maxlen=512)  # (seconds fed, wall time)
        self.fed_s = 0.0
        self.run = 0
        self.recording = False
        self.stopped = False
        self.closed = False
        self.last_feed = 0.0
        self.late_chunks = 0
        self.bad_chunks = 0
        self._waiters: set = set()  # (loop, asyncio.Event) of watchers
        self.ready = (None, 0.0)  # newest result and the wall time it was ready
        self.handler_ms: collections.deque = collections.deque(maxlen=256)  # stream handler durations
        self.chunk_header: bytes | None = None  # WAV header of this session's streamed chunks
        self.first_chunk_wall: float | None = None

    def __deepcopy__(self, memo):
        return self

    # engine callbacks come from the inference thread: only wake the waiters
    def _on_result(self, res) -> None:
        self.ready = (res, time.time())
        for loop, event in list(self._waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop closed
                self._waiters.discard((loop, event))

    def _new_engine(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = StreamEngine(self.model, self.settings.engine_config(), background=True,
                                   on_result=self._on_result)
        self._clear()

    def _clear(self) -> None:
        self.history.clear()
        self.arrivals.clear()
        self.fed_s = 0.0

    def start(self, settings: LiveSettings) -> int:
        """Record pressed: (re)configure, forget the previous recording, return a run id."""
        with self.lock:
            if self.closed:
                raise EngineClosedError("session closed")
            if self.engine is None or self.engine.closed or settings != self.settings:
                self.settings = settings
                self._new_engine()
            elif self.stopped:
                self.engine.reset()
                self._clear()
            self.stopped = False
            self.recording = True
            self.chunk_header = self.first_chunk_wall = None  # each recording has its own
            self.last_feed = time.monotonic()
            self.run += 1
            return self.run

    def feed(self, rate: int, samples: np.ndarray, arrival: float | None = None) -> None:
        now = time.time() if arrival is None else arrival
        with self.lock:
            if self.closed:
                return
            if self.stopped:  # the tail of a stopped recording
                self.late_chunks += 1
                return
            if self.engine is None or self.engine.closed:
                self._new_engine()
            self.engine.feed(samples, rate)
            self.fed_s += len(samples) / rate
            self.arrivals.append((self.fed_s, now))
            self.last_feed = time.monotonic()

    def stop(self):
        """Stop pressed: classify what is left, return the session summary."""
        with self.lock:
            self.recording = False
            self.stopped = True
            engine = self.engine
            if engine is None or engine.closed:
                return None
            engine.flush()
        engine.drain(FLUSH_WAIT_S)
        return engine.summary()

    def active(self, run: int) -> bool:
        return (self.recording and self.run == run and not self.closed
                and time.monotonic() - self.last_feed < IDLE_STOP_S)

    def arrival_of(self, res) -> float | None:
        """Wall time at which the chunk that completed `res`'s window reached the handler.

        The engine submits a window inside the `feed` call of the chunk that completes it,
        and reports `latency_ms` from that submission to the result, so the completing chunk
        is the newest one that arrived before `ready - latency`."""
        ready_res, ready = self.ready
        if ready_res is not res:
            return None
        submitted = ready - res.latency_ms / 1000.0
        best = None
        for _fed, wall in self.arrivals:
            if wall <= submitted + 1e-4:
                best = wall
        return best

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.recording = False
            if self.engine is not None:
                self.engine.close()
        for loop, event in list(self._waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass


_SESSIONS: "weakref.WeakValueDictionary[str, LiveSession]" = weakref.WeakValueDictionary()


def _close_session(session) -> None:  # gr.State delete callback
    if isinstance(session, LiveSession) and not session.closed:
        session.close()
        log.info("live session closed (expired); %d open", len(_SESSIONS))


_last_warning: dict = {}


def _warn_once(msg: str, every_s: float = 60.0) -> None:
    now = time.monotonic()
    if now - _last_warning.get(msg, -every_s) >= every_s:
        _last_warning[msg] = now
        log.warning(msg)


def _wav_header(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            head = f.read(44)
        return head if head[:4] == b"RIFF" and len(head) == 44 else None
    except OSError:
        return None


def _sweep_orphan_chunks(session: "LiveSession", delay_s: float = 5.0) -> None:
    """Delete this session's chunks that were uploaded but never reached the stream handler.

    Gradio's recorder uploads a chunk, then skips the stream event when recording stopped
    meanwhile: that chunk would stay in the cache. Every chunk of one recording starts with
    the same 44-byte WAV header (the browser's first chunk's), so after a short delay the
    files with this session's header written since it started streaming are removed."""
    header, since = session.chunk_header, session.first_chunk_wall
    if header is None or since is None:
        return

    def sweep():
        root = _upload_root()
        for p in root.glob("*/audio.wav"):
            try:
                if p.stat().st_mtime >= since - 1 and _wav_header(str(p)) == header:
                    _discard_upload(str(p))
            except OSError:
                pass

    t = threading.Timer(delay_s, sweep)
    t.daemon = True
    t.start()


def _upload_root() -> Path:
    return Path(get_upload_folder()).resolve()  # GRADIO_TEMP_DIR, else <tmp>/gradio


def _discard_upload(path: str) -> None:
    """Delete a streamed chunk from Gradio's upload cache (and its per-upload folder)."""
    try:
        p = Path(path).resolve()
        root = _upload_root()
        if root not in p.parents:
            return
        p.unlink(missing_ok=True)
        if p.parent != root:
            p.parent.rmdir()  # fails harmlessly when another upload shares the folder
    except OSError:
        pass


# ---- rendering ------------------------------------------------------------------------
def _fmt_s(s: float) -> str:
    s = max(0.0, float(s))
    return f"{int(s // 60)}:{s % 60:04.1f}" if s >= 60 else f"{s:.1f} s"


def _status_html(session: LiveSession, res, note: str = "") -> str:
    model = session.model
    st = session.settings
    engine = session.engine
    parts = [escape(model.notice or f"Model: {model.name}.")]
    parts.append(f"window {st.window_s:g} s · hop {st.hop_s:g} s · smoothing {st.smoothing_s:g} s")
    attrs = ""
    if engine is not None:
        s = engine.stats
        if res is not None:
            if res.silent:
                parts.append(f"<span class='warn'>silence</span> (level {res.level_dbfs:.1f} dBFS)")
            else:
                parts.append(f"level {res.level_dbfs:.1f} dBFS")
        if s.windows_classified:
            parts.append(f"inference {s.inference_ms_mean:.0f} ms (p95 {s.inference_ms_p95:.0f}) · "
                         f"real-time factor {s.real_time_factor:.2f}")
        parts.append(f"heard {_fmt_s(s.seconds_received)} · windows {s.windows_classified} · "
                     f"silent {s.windows_silent} · skipped {s.windows_skipped}")
        if session.bad_chunks or session.late_chunks:
            parts.append(f"undecodable chunks {session.bad_chunks} · chunks after stop {session.late_chunks}")
        if s.errors:
            parts.append(f"<span class='warn'>model errors {s.errors}: {escape(s.last_error or '')}</span>")
        if res is not None:
            arrival = session.arrival_of(res)
            if arrival is not None:
                ready = session.ready[1]
                attrs = (f" data-arrival-ms='{arrival * 1000:.1f}' data-ready-ms='{ready * 1000:.1f}'"
                         f" data-render-ms='{time.time() * 1000:.1f}' data-infer-ms='{res.inference_ms:.1f}'"
                         f" data-result-s='{res.time_s:.3f}'")
                if session.handler_ms:
                    h = np.array(session.handler_ms)
                    attrs += f" data-handler-median-ms='{np.median(h):.2f}' data-handler-max-ms='{h.max():.2f}'"
                if not res.silent:
                    parts.append(f"chunk→result {max(ready - arrival, 0) * 1000:.0f} ms")
    if note:
        parts.append(escape(note))
    return f"<div class='live-status'{attrs}>" + " · ".join(parts) + "</div>"


def _label_value(res, top_k: int):
    if res is None:
        return None
    if res.silent:
        return "silence"
    return dict(list(res.scores.items())[:top_k])


EMPTY_PLOT = None  # (an empty DataFrame as a plot's first value breaks its colour legend in Gradio 6)
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _plot(df: pd.DataFrame, genres: list, labels: list):
    """A plot update with a colour per genre that stays the same from update to update.

    Gradio 6's plot fixes its colour domain when it (re)draws the chart, and redraws only
    when a setting such as `color_map` changes: so the map must follow the plotted genres,
    else genres that enter the top later are not drawn."""
    taken, cmap = set(), {}
    for g in genres:
        i = labels.index(g) if g in labels else len(taken)
        colour = next(PALETTE[(i + k) % len(PALETTE)] for k in range(len(PALETTE))
                      if PALETTE[(i + k) % len(PALETTE)] not in taken or k == len(PALETTE) - 1)
        taken.add(colour)
        cmap[g] = colour
    return gr.LinePlot(value=df, color_map=cmap)


def _live_plot(session: LiveSession, res):
    if not session.history:
        return EMPTY_PLOT
    now = session.history[-1][0]
    while session.history and session.history[0][0] < now - PLOT_SPAN_S:
        session.history.popleft()
    current = list(res.scores)[: min(5, session.settings.top_k)] if res is not None and res.scores else []
    if not current:  # silent now: keep the genres that led most recently
        current = next((list(sc)[:5] for _, sc in reversed(session.history) if sc), [])
    rows = [(t, sc[g], g) for t, sc in session.history for g in current if g in sc]
    if not rows:
        return EMPTY_PLOT
    return _plot(pd.DataFrame(rows, columns=["time (s)", "score", "genre"]), current, list(session.model.labels))


def _summary_md(summary) -> str:
    if summary is None or summary.duration_s <= 0:
        return "**Session summary:** nothing was heard."
    heard = _fmt_s(summary.duration_s)
    if not summary.shares:
        return f"**Session summary:** {heard} listened, all of it silence."
    shares = " · ".join(f"{g} {100 * v:.0f} %" for g, v in list(summary.shares.items())[:5])
    silent = f" ({_fmt_s(summary.silent_s)} silent)" if summary.silent_s > 0 else ""
    return (f"**Session summary:** {heard} listened{silent}. Dominant genre: **{summary.dominant}**. "
            f"Share of the listening time per leading genre: {shares}.")


# ---- file analysis helpers ----------------------------------------------------------------
def _read_segment(path: str, start_s: float, end_s: float):
    """The segment as (rate, int16 array) for the player."""
    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            f.seek(min(int(start_s * rate), f.frames))
            data = f.read(int((end_s - start_s) * rate), dtype="int16")
        return rate, data
    except Exception:
        if not shutil.which("ffmpeg"):
            return None
        rate = 44100
        out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{start_s:.3f}", "-t", f"{end_s - start_s:.3f}",
                              "-i", path, "-f", "s16le", "-ac", "1", "-ar", str(rate), "-"],
                             capture_output=True, timeout=60)
        if out.returncode != 0 or not out.stdout:
            return None
        return rate, np.frombuffer(out.stdout, np.int16)


def _readable(exc: Exception, path: str) -> str:
    """The error without server paths."""
    msg = str(exc)
    for p in sorted({str(path), str(Path(path).resolve())}, key=len, reverse=True):
        msg = msg.replace(p, Path(path).name)
    return msg


# ---- the page ---------------------------------------------------------------------------
def build_demo(model, args) -> gr.Blocks:
    window0 = float(args.window if args.window is not None else model.default_window_s)
    hop0 = float(args.hop if args.hop is not None else model.default_hop_s)
    max_file_s = args.max_file_minutes * 60.0

    def settings_of(window, hop, smoothing, top_k) -> LiveSettings:
        return LiveSettings(float(window), float(hop), float(smoothing), int(top_k), float(args.silence_dbfs))

    defaults = settings_of(window0, hop0, args.smoothing, args.top_k)

    def new_session(request: gr.Request):
        session = LiveSession(model, defaults)
        if request is not None and request.session_hash:
            _SESSIONS[request.session_hash] = session
            log.info("live session opened; %d open", len(_SESSIONS))
        return session, _status_html(session, None, "Press Record to start listening.")

    def end_session(request: gr.Request):
        session = _SESSIONS.pop(request.session_hash, None) if request is not None else None
        if session is not None:
            session.close()
            _sweep_orphan_chunks(session)
            log.info("live session closed (tab closed); %d open", len(_SESSIONS))

    # -- live handlers --
    def on_chunk(path, session: LiveSession):
        """Decode the chunk, drop its file, feed the engine: a few ms, no inference here."""
        arrival = time.time()
        if session is None:
            _warn_once("microphone chunks without a session (page not loaded, or session expired)")
        if not path or session is None:
            if path:
                _discard_upload(path)
            return
        if session.chunk_header is None:
            session.chunk_header = _wav_header(path)
            session.first_chunk_wall = arrival
        try:
            rate, data = processing_utils.audio_from_file(path)
        except Exception:
            session.bad_chunks += 1
            return
        finally:
            _discard_upload(path)
        try:
            session.feed(rate, data, arrival)
        except ValueError:
            session.bad_chunks += 1
        session.handler_ms.append((time.time() - arrival) * 1000.0)

    async def watch(session: LiveSession, window, hop, smoothing, top_k):
        """Started by Record: push every new readout to the page until Stop."""
        if session is None:
            raise gr.Error("This page's session expired; reload the page.")
        try:
            settings = settings_of(window, hop, smoothing, top_k)
            run = session.start(settings)
        except ValueError as exc:
            raise gr.Error(f"Invalid settings: {exc}") from None
        except EngineClosedError:
            raise gr.Error("This page's session ended; reload the page.") from None
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        session._waiters.add((loop, event))
        first_wait = f"Listening… the first readout comes after {EngineConfig.min_window_s:g} s of audio."
        try:
            yield "listening…", EMPTY_PLOT, _status_html(session, None, first_wait), "", session
            last, last_status = None, time.monotonic()
            while session.active(run):
                try:
                    await asyncio.wait_for(event.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
                event.clear()
                engine = session.engine
                res = engine.latest if engine is not None else None
                if res is not None and res is not last:
                    last, last_status = res, time.monotonic()
                    if res.scores:
                        session.history.append((res.time_s, dict(res.scores)))
                    yield (_label_value(res, settings.top_k), _live_plot(session, res), _status_html(session, res),
                           gr.skip(), session)
                elif time.monotonic() - last_status > 1.0:
                    last_status = time.monotonic()
                    yield gr.skip(), gr.skip(), _status_html(session, last, "" if last else first_wait), gr.skip(), session
        finally:
            session._waiters.discard((loop, event))

    def finish(session: LiveSession):
        if session is None:
            return gr.skip(), gr.skip()
        summary = session.stop()
        _sweep_orphan_chunks(session)
        res = session.engine.latest if session.engine is not None else None
        return _summary_md(summary), _status_html(session, res, "stopped")

    # -- file handler --
    def analyse(path, window, hop, top_k, progress=gr.Progress()):
        if not path:
            return None, EMPTY_PLOT, None, "Upload or record a file first."
        name = Path(path).name
        progress(0.0, desc="decoding…")
        try:
            fa = analyze_file(path, model, window_s=float(window), hop_s=float(hop), max_duration_s=max_file_s,
                              progress=lambda f, text: progress(f, desc=text),
                              config=EngineConfig(silence_dbfs=args.silence_dbfs))
        except (AudioDecodeError, ValueError, MemoryError) as exc:
            # shown in the page (and as a toast); the results of the previous file are cleared
            msg = f"Cannot analyse {name}: {_readable(exc, path)}"
            log.info("file analysis refused: %s", msg)
            gr.Warning(msg, title="Unreadable file" if isinstance(exc, AudioDecodeError) else "Analysis failed")
            return None, EMPTY_PLOT, None, f"<div class='file-error'>{escape(msg)}</div>"
        k = int(top_k)
        if not fa.scores:
            return ("silence", EMPTY_PLOT, None,
                    f"**{escape(name)}**: {_fmt_s(fa.duration_s)}, silent throughout ({fa.n_windows} windows).")
        top = list(fa.scores)[:k]
        cols = [fa.labels.index(g) for g in top]
        mid = (fa.starts_s + fa.ends_s) / 2
        rows = [(float(mid[i]), float(fa.timeline[i, c]), g)
                for i in range(fa.n_windows) if not fa.silent[i] for c, g in zip(cols, top)]
        timeline = _plot(pd.DataFrame(rows, columns=["time (s)", "score", "genre"]), top, list(model.labels))
        segment = _read_segment(path, *fa.segment) if fa.segment else None
        seg_txt = (f" The most **{fa.top_label}** part is {_fmt_s(fa.segment[0])} – {_fmt_s(fa.segment[1])} (play it below)."
                   if fa.segment else "")
        silent = int(fa.silent.sum())
        md = (f"**{escape(name)}**: {_fmt_s(fa.duration_s)}, {fa.n_windows} windows of {float(window):g} s every "
              f"{float(hop):g} s{f' ({silent} silent)' if silent else ''}. Top genre: **{fa.top_label}** "
              f"(mean score {fa.scores[fa.top_label]:.2f}).{seg_txt}")
        return {g: fa.scores[g] for g in top}, timeline, segment, md

    with gr.Blocks(title="Live music-genre classifier", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# Live music-genre classifier\n"
                    f"{escape(model.notice or f'Model: {model.name}.')} Hold your microphone near the music, "
                    "or analyse a recording in the **File** tab.")
        # one LiveSession per browser tab: set by demo.load, closed by demo.unload when the tab
        # goes, or by the time-to-live (refreshed by every live readout) when a tab vanishes
        session = gr.State(None, delete_callback=_close_session, time_to_live=SESSION_TTL_S)
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                window = gr.Slider(3, 30, value=window0, step=0.5, label="Window (s)",
                                   info="audio per classification; longer is steadier but reacts later", elem_id="set-window")
                hop = gr.Slider(0.25, 5, value=hop0, step=0.25, label="Hop (s)",
                                info="time between readouts; compute grows as hop shrinks", elem_id="set-hop")
                smoothing = gr.Slider(0, 20, value=args.smoothing, step=0.5, label="Smoothing (s)",
                                      info="time constant of the live readout (0 = off)", elem_id="set-smoothing")
                top_k = gr.Slider(1, 10, value=args.top_k, step=1, label="Genres shown (top-k)", elem_id="set-topk")
            gr.Markdown("Live settings apply from the next **Record**.")
        with gr.Tabs():
            with gr.Tab("Live", id="live"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2):
                        mic = gr.Audio(sources=["microphone"], streaming=True, type="filepath",
                                       label="Microphone", elem_id="live-mic",
                                       waveform_options=gr.WaveformOptions(show_recording_waveform=False))
                        live_label = gr.Label(label="Genre now (smoothed)", num_top_classes=10, elem_id="live-label")
                    with gr.Column(scale=3):
                        live_plot = gr.LinePlot(EMPTY_PLOT, x="time (s)", y="score", color="genre",
                                                label="Top genres over the last minute", elem_id="live-plot")
                        summary = gr.Markdown(elem_id="live-summary")
                live_status = gr.HTML(elem_id="live-status", js_on_load=MUSIC_MIC_JS)
            with gr.Tab("File", id="file"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2):
                        file_in = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                           label="Recording (wav, mp3, flac, ogg, opus)", elem_id="file-in")
                        analyse_btn = gr.Button("Analyse", variant="primary", elem_id="analyse")
                        file_label = gr.Label(label="Average genre scores", num_top_classes=10, elem_id="file-label")
                    with gr.Column(scale=3):
                        file_md = gr.Markdown(elem_id="file-status")
                        timeline = gr.LinePlot(EMPTY_PLOT, x="time (s)", y="score", color="genre",
                                               label="Scores per window", elem_id="file-timeline")
                        segment = gr.Audio(label="Most characteristic segment", type="numpy", interactive=False,
                                           elem_id="file-segment")

        demo.load(new_session, outputs=[session, live_status], show_progress="hidden")
        demo.unload(end_session)
        mic.stream(on_chunk, inputs=[mic, session], outputs=None, stream_every=STREAM_EVERY_S,
                   concurrency_limit=None, time_limit=None, show_progress="hidden", queue=True)
        mic.start_recording(watch, inputs=[session, window, hop, smoothing, top_k],
                            outputs=[live_label, live_plot, live_status, summary, session],
                            concurrency_limit=None, show_progress="hidden", trigger_mode="multiple")
        mic.stop_recording(finish, inputs=[session], outputs=[summary, live_status],
                           concurrency_limit=None, show_progress="hidden")
        file_outputs = [file_label, timeline, segment, file_md]
        analyse_btn.click(analyse, inputs=[file_in, window, hop, top_k], outputs=file_outputs,
                          concurrency_limit=2, show_progress_on=[file_md])
        file_in.upload(analyse, inputs=[file_in, window, hop, top_k], outputs=file_outputs,
                       concurrency_limit=2, show_progress_on=[file_md])
        file_in.stop_recording(analyse, inputs=[file_in, window, hop, top_k], outputs=file_outputs,
                               concurrency_limit=2, show_progress_on=[file_md])
    return demo


ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
MODEL = load_model(ARGS.model)
demo = build_demo(MODEL, ARGS)
LAUNCH_KWARGS = dict(css=CSS, theme=gr.themes.Soft())


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("%s", MODEL.notice or f"Model: {MODEL.name}")
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share,
                max_file_size=int(ARGS.max_file_mb * 1024 * 1024), show_error=True, **LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
