"""Live music-genre classifier: a Gradio page over the `stream` engine.

    python app.py [--model auto|musicnn|HUB_ID|DIR] [--host 127.0.0.1] [--port 7860] [--share]
                  [--window 9] [--hop 1] [--smoothing 4] [--top-k 5]

`demo` is built on first use when the module is imported (a Hugging Face Space, `gradio
app.py`); `python app.py` builds it from its command line. This module only translates
Gradio events into engine calls: resampling, buffering, smoothing, silence detection and
scheduling all live in `stream/`.

Live tab: the microphone is streamed in short chunks. The stream handler decodes a chunk,
deletes the uploaded chunk file at once (Gradio writes every chunk to its cache), hands the
samples to this browser session's `StreamEngine` and returns: inference runs on the engine's
shared worker thread, never inside the handler. A second, long-running event (started by
"record") waits for the engine's results and pushes each new readout to the page as soon as
it exists, so the readout does not wait for the next chunk to arrive.

Start-up: the command line is checked, and the port tried, before torch and Gradio are
imported and the model is loaded, so `--help` and mistakes answer at once. Exit codes:
2 bad arguments, 3 the port cannot be used, 4 the model could not be loaded (one line on
stderr each).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import errno
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from html import escape
from pathlib import Path

EXIT_USAGE, EXIT_PORT, EXIT_MODEL = 2, 3, 4

# The settings sliders' ranges: the page cannot record with values outside them, so the
# command line refuses them too.
WINDOW_RANGE = (3.0, 30.0)
HOP_RANGE = (0.25, 5.0)
SMOOTHING_RANGE = (0.0, 20.0)
TOP_K_RANGE = (1, 10)
# EngineConfig's defaults, repeated so that --help needs no torch import (a test compares them)
DEFAULT_SMOOTHING_S, DEFAULT_TOP_K, DEFAULT_SILENCE_DBFS = 4.0, 5, -55.0


# ---- command line / environment -------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None) -> argparse.Namespace:
    """The page's settings from the command line (and, on a Space, the environment).
    Values the page cannot use exit with status 2 and one line saying which and why."""
    env = os.environ.get
    p = _Parser(prog=_prog(), description="Live music-genre classifier (Gradio page).")
    p.add_argument("--model", default=env("GENRE_MODEL", "auto"),
                   help="auto (course model if reachable, else bundled MusiCNN), musicnn, a Hub id or a "
                        "checkpoint directory [env GENRE_MODEL; default auto]")
    # On a Space, Gradio's own environment variables say where to listen.
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on [default 127.0.0.1: this machine only]")
    p.add_argument("--port", type=int, default=env("GRADIO_SERVER_PORT", "7860"), help="[default 7860]")
    p.add_argument("--share", action="store_true", help="also open a public *.gradio.live link (opt-in)")
    p.add_argument("--window", type=float, default=None,
                   help=f"seconds per classification, {WINDOW_RANGE[0]:g}-{WINDOW_RANGE[1]:g} [model default]")
    p.add_argument("--hop", type=float, default=None,
                   help=f"seconds between readouts, {HOP_RANGE[0]:g}-{HOP_RANGE[1]:g} [model default]")
    p.add_argument("--smoothing", type=float, default=DEFAULT_SMOOTHING_S,
                   help=f"EMA time constant, {SMOOTHING_RANGE[0]:g}-{SMOOTHING_RANGE[1]:g} s (0 = off) "
                        f"[default {DEFAULT_SMOOTHING_S:g}]")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                   help=f"genres shown, {TOP_K_RANGE[0]}-{TOP_K_RANGE[1]} [default {DEFAULT_TOP_K}]")
    p.add_argument("--silence-dbfs", type=float, default=DEFAULT_SILENCE_DBFS,
                   help=f"windows quieter than this are reported as silence [default {DEFAULT_SILENCE_DBFS:g}]")
    p.add_argument("--max-file-mb", type=float, default=env("GENRE_MAX_FILE_MB", "50"),
                   help="upload size limit in MB [env GENRE_MAX_FILE_MB; default 50]")
    p.add_argument("--max-file-minutes", type=float, default=env("GENRE_MAX_FILE_MINUTES", "20"),
                   help="longest recording the File tab analyses [env GENRE_MAX_FILE_MINUTES; default 20]")
    args = p.parse_args(argv)
    ranges = [("--window", args.window, WINDOW_RANGE), ("--hop", args.hop, HOP_RANGE),
              ("--smoothing", args.smoothing, SMOOTHING_RANGE), ("--top-k", args.top_k, TOP_K_RANGE)]
    bad = [f"{name} {value:g} is outside {lo:g}..{hi:g}" for name, value, (lo, hi) in ranges
           if value is not None and not (lo <= value <= hi)]  # (also NaN)
    if not math.isfinite(args.silence_dbfs) or args.silence_dbfs > 0:
        bad.append(f"--silence-dbfs {args.silence_dbfs:g} must be a level below 0 dBFS")
    for name, value in (("--max-file-mb", args.max_file_mb), ("--max-file-minutes", args.max_file_minutes)):
        if not value > 0 or not math.isfinite(value):
            bad.append(f"{name} {value:g} must be a positive number")
    if not 0 < args.port < 65536:
        bad.append(f"--port {args.port} is not a TCP port (1..65535)")
    if bad:
        p.error("; ".join(bad))
    return args


def port_problem(host: str, port: int) -> str | None:
    """Why the page could not listen on host:port (None if it can): tried by binding it the
    way the web server will, so a busy port is found before the model is loaded."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot listen on --host {host}: {exc.strerror}"
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (another server, or this page running "
                        f"already); choose another with --port")
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _prog() -> str:  # "app.py", or the console script's name
    return Path(sys.argv[0]).name if __name__ == "__main__" and sys.argv and sys.argv[0] else "app.py"


def _fail(code: int, message: str):
    print(f"{_prog()}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


_CLI_ARGS = None
if __name__ == "__main__":  # before the heavy imports below: --help and mistakes answer at once
    _CLI_ARGS = parse_args(sys.argv[1:])
    if (_problem := port_problem(_CLI_ARGS.host, _CLI_ARGS.port)) is not None:
        _fail(EXIT_PORT, _problem)

import gradio as gr  # noqa: E402  (torch and gradio take seconds to import)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import soundfile as sf  # noqa: E402
from gradio import processing_utils  # noqa: E402
from gradio.components.label import LabelConfidence, LabelData  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402

from stream import (AudioDecodeError, EngineClosedError, EngineConfig, ModelLoadError, StreamEngine,  # noqa: E402
                    analyze_file, load_model)

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
# The browser's answer (granted, or the error's name) goes to the server as this component's
# "submit" event: Gradio only shows a brief toast when the microphone is refused, while the
# page would go on saying "listening…".
MUSIC_MIC_JS = """
(() => {
  window.__micReport = (outcome) => trigger('submit', {mic: outcome});  // this mount's trigger
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia || md.__musicFriendly) return;
  const original = md.getUserMedia.bind(md);
  const raw = {echoCancellation: false, noiseSuppression: false, autoGainControl: false};
  md.getUserMedia = async (constraints) => {
    const wantsAudio = !!(constraints && constraints.audio);
    if (wantsAudio) {
      const audio = constraints.audio === true ? {} : {...constraints.audio};
      constraints = {...constraints, audio: {...audio, ...raw}};
    }
    let stream;
    try {
      stream = await original(constraints);
    } catch (e) {
      if (wantsAudio) { window.__micError = e.name; window.__micReport(e.name || 'Error'); }
      throw e;
    }
    const track = stream.getAudioTracks()[0];
    if (track) { window.__micSettings = track.getSettings(); window.__micReport('ok'); }
    return stream;
  };
  md.__musicFriendly = true;
})();
"""

# What the status line says when the browser did not give the page a microphone, by the
# DOMException name getUserMedia rejected with.
MIC_REFUSED = ("The browser refused the microphone. Allow it for this page (click the lock or microphone icon in "
               "the address bar and set Microphone to Allow; reload if the browser asks), then press Record again. "
               "Browsers offer the microphone only to pages served over HTTPS or from localhost.")
MIC_PROBLEMS = {
    "NotAllowedError": MIC_REFUSED,
    "SecurityError": MIC_REFUSED,
    "NotFoundError": "The browser found no microphone. Connect one (or enable it in the system's sound "
                     "settings), then press Record again.",
    "OverconstrainedError": "The browser found no microphone that can record. Connect one, then press Record again.",
    "NotReadableError": "The microphone could not be opened: another program may be using it. Close that "
                        "program, then press Record again.",
}

CSS = """
#live-label .output-class, #file-label .output-class { font-size: 2rem; }
#live-status, #file-status { font-size: 0.85rem; opacity: 0.85; }
#live-status .warn, .file-error { color: var(--error-text-color, #b91c1c); font-weight: 600; }
#live-plot .genre-plot svg { width: 100%; height: auto; display: block; }
#live-plot .genre-plot text { fill: currentColor; font-size: 11px; }
#live-plot .plot-title { font-weight: 600; margin-bottom: 4px; }
#live-plot .legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 0.85rem; margin-top: 4px; }
#live-plot .legend .now { font-weight: 700; }
#live-plot .empty { opacity: 0.7; padding: 2rem 0; text-align: center; }
#model-notice { font-size: 0.9rem; opacity: 0.85; }
footer { display: none !important; }
"""


# ---- one browser session's live listener ----------------------------------------------
@dataclass(frozen=True)
class LiveSettings:
    window_s: float
    hop_s: float
    smoothing_s: float
    top_k: int
    silence_dbfs: float

    def engine_config(self) -> EngineConfig:
        # every genre's score (top_k=0): the plot keeps the lines of genres that left the top;
        # the page shows `top_k` of them
        return EngineConfig(window_s=self.window_s, hop_s=self.hop_s, smoothing_s=self.smoothing_s,
                            top_k=0, silence_dbfs=self.silence_dbfs)


class LiveSession:
    """Per-browser state: the engine, recent readouts for the plot, chunk arrival times.

    Gradio deep-copies state values; a session is shared by reference on purpose (it holds
    an engine and locks), hence `__deepcopy__` returning itself."""

    def __init__(self, model, settings: LiveSettings):
        self.model = model
        self.settings = settings
        self.engine: StreamEngine | None = None
        self.lock = threading.Lock()
        # every readout of this recording, as the engine delivered it (the plot's band then
        # agrees with the session summary, also when the page skipped some renders)
        self.history: collections.deque = collections.deque()  # (time_s, scores, leader); silent: ({}, None)
        self.history_lock = threading.Lock()  # (appended on the inference thread)
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
        self.mic_problem: str | None = None  # why the browser gave no microphone (DOMException name)
        self.styles: dict = {}  # the live plot's colour of each genre, kept for this tab

    def __deepcopy__(self, memo):
        return self

    # engine callbacks come from the inference thread: only wake the waiters
    def _on_result(self, res) -> None:
        with self.history_lock:
            self.history.append((res.time_s, dict(res.scores), res.label))
            while self.history and self.history[0][0] < res.time_s - PLOT_SPAN_S - 5:
                self.history.popleft()
        self.ready = (res, time.time())
        self.wake()

    def _new_engine(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = StreamEngine(self.model, self.settings.engine_config(), background=True,
                                   on_result=self._on_result)
        self._clear()

    def _clear(self) -> None:
        with self.history_lock:
            self.history.clear()
        self.arrivals.clear()
        self.fed_s = 0.0

    def start(self, settings: LiveSettings) -> int:
        """Record pressed: (re)configure, forget the previous recording, return a run id.
        Each recording gets a fresh engine, so its counters start at zero."""
        with self.lock:
            if self.closed:
                raise EngineClosedError("session closed")
            self.settings = settings
            self._new_engine()
            self.late_chunks = self.bad_chunks = 0
            self.handler_ms.clear()
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
            self.mic_problem = None  # audio arrives: the microphone works
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

    def wake(self) -> None:
        """Wake the watchers (from any thread)."""
        for loop, event in list(self._waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop closed
                self._waiters.discard((loop, event))

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.recording = False
            if self.engine is not None:
                self.engine.close()
        self.wake()


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
    # (the model notice has its own line at the top of the page)
    st = session.settings
    engine = session.engine
    parts = [f"window {st.window_s:g} s · hop {st.hop_s:g} s · smoothing {st.smoothing_s:g} s"]
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
        parts.append(f"received {_fmt_s(s.seconds_received)} · windows {s.windows_classified} · "
                     f"silent {s.windows_silent} · skipped {s.windows_skipped}")
        if session.bad_chunks or session.late_chunks:
            parts.append(f"undecodable chunks {session.bad_chunks} · chunks after stop {session.late_chunks}")
        if s.errors:
            parts.append(f"<span class='warn'>model errors {s.errors}: {escape(s.last_error or '')}</span>")
        if res is not None:  # which readout this is (the tests follow readouts by it)
            attrs = f" data-result-s='{res.time_s:.3f}' data-leader='{escape(res.label or '', quote=True)}'"
            arrival = session.arrival_of(res)
            if arrival is not None:
                ready = session.ready[1]
                attrs += (f" data-arrival-ms='{arrival * 1000:.1f}' data-ready-ms='{ready * 1000:.1f}'"
                          f" data-render-ms='{time.time() * 1000:.1f}' data-infer-ms='{res.inference_ms:.1f}'")
                if not res.silent:
                    parts.append(f"chunk→result {max(ready - arrival, 0) * 1000:.0f} ms")
            if session.handler_ms:
                h = np.array(session.handler_ms)
                attrs += f" data-handler-median-ms='{np.median(h):.2f}' data-handler-max-ms='{h.max():.2f}'"
    if note:
        parts.append(escape(note))
    return f"<div class='live-status'{attrs}>" + " · ".join(parts) + "</div>"


def _mic_problem_html(session: LiveSession) -> str:
    name = session.mic_problem or "Error"
    text = MIC_PROBLEMS.get(name, f"The browser could not open the microphone ({name}). Check that one is "
                                  "connected and allowed for this page, then press Record again.")
    return (f"<div class='live-status' data-mic-problem='{escape(name, quote=True)}'>"
            f"<span class='warn'>{escape(text)}</span></div>")


class LeaderLabel(gr.Label):
    """gr.Label whose headline is given, not the highest confidence: the live readout's
    headline is the engine's leading genre (`Result.label`, with hysteresis), which the
    summary, the plot's band and the session shares use too. Takes {"label": str,
    "confidences": {genre: score}} (bars in the given order) or anything gr.Label takes."""

    is_template = True  # rendered by gr.Label's front end

    def postprocess(self, value):
        if isinstance(value, dict) and isinstance(value.get("confidences"), dict) and "label" in value:
            return LabelData(label=value["label"], confidences=[
                LabelConfidence(label=g, confidence=float(c)) for g, c in value["confidences"].items()])
        return super().postprocess(value)


def _label_value(res, top_k: int):
    if res is None:
        return None
    if res.silent:
        return "silence"
    if res.label is None:
        return dict(list(res.scores.items())[:top_k])
    # the leader's bar first, then the highest of the others
    rest = [(g, v) for g, v in res.scores.items() if g != res.label][:top_k - 1]
    return {"label": res.label, "confidences": {res.label: res.scores.get(res.label, 0.0), **dict(rest)}}


EMPTY_PLOT = None  # (an empty DataFrame as a plot's first value breaks its colour legend in Gradio 6)
# Distinct colours, most distinct first (Tableau 10, then ten more); beyond 20 genres they
# repeat with another dash pattern.
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#17becf", "#bcbd22", "#e7298a", "#6a3d9a", "#8c1c13", "#404040", "#a6761d", "#1b9e77",
           "#fdbf6f", "#1f3a93"]
DASHES = ["", "6 3", "2 3"]
PLOT_CURRENT_K = 5  # the live plot draws the current top few (at most top_k) besides every leader
SILENCE_COLOUR = "#b8b8b8"


def _style(i: int) -> tuple:
    n = len(PALETTE)
    return PALETTE[i % n], DASHES[(i // n) % len(DASHES)]


def genre_styles(styles: dict, genres) -> dict:
    """{genre: (colour, dash)}: a genre keeps the style it got first (`styles`, updated in
    place, one per browser tab); a new genre gets the next unused one."""
    for g in genres:
        if g not in styles:
            styles[g] = _style(len(styles))
    return styles


def _plot(df: pd.DataFrame, genres: list):
    """A LinePlot update with a distinct colour per genre. Gradio 6's plot fixes its colour
    domain when it (re)draws the chart, and redraws only when a setting such as `color_map`
    changes: so the map holds exactly the plotted genres."""
    return gr.LinePlot(value=df, color_map={g: _style(i)[0] for i, g in enumerate(genres)})


EMPTY_LIVE_PLOT = ("<div class='genre-plot'><div class='plot-title'>Genres over the last minute</div>"
                   "<div class='empty'>The plot starts with the first readout.</div></div>")


def _live_plot(session: LiveSession, res) -> str:
    """The last minute as it was: a line for every genre that led in it and for the current
    top few, the leading genre as a band under the lines, on a score axis from 0."""
    with session.history_lock:
        hist = [h for h in session.history if h[0] <= res.time_s] if res is not None else list(session.history)
    if not hist:
        return EMPTY_LIVE_PLOT
    now = hist[-1][0]
    hist = [h for h in hist if h[0] >= now - PLOT_SPAN_S]
    k = min(PLOT_CURRENT_K, session.settings.top_k)
    current = list(res.scores)[:k] if res is not None and res.scores else []
    if not current:  # silent now: the genres of the newest readout with scores
        current = next((list(sc)[:k] for _, sc, _ in reversed(hist) if sc), [])
    leaders = [g for _, _, g in hist if g]
    genres = list(dict.fromkeys(leaders + current))  # leaders in the order they first led
    return history_svg(hist, genres, genre_styles(session.styles, genres), session.settings.hop_s,
                       leader_now=res.label if res is not None else None)


def history_svg(hist: list, genres: list, styles: dict, hop_s: float, leader_now: str | None = None,
                span_s: float = PLOT_SPAN_S) -> str:
    """Inline SVG of (time_s, {genre: score}, leader) readouts. Drawn here rather than with
    gr.LinePlot: its colour domain and y range follow the data, so genres that left the top
    lost their line (or their colour) and small differences filled the whole height."""
    W, H, L, R, T = 640, 250, 38, 10, 8
    band_h, gap, bottom = 14, 6, 18
    pw, ph = W - L - R, H - T - band_h - gap - bottom - 4
    t1 = max(hist[-1][0], span_s)
    t0 = t1 - span_s
    top = max((sc.get(g, 0.0) for _, sc, _ in hist for g in genres), default=0.0)
    ymax = 0.5 if top <= 0.5 else 1.0  # from 0, and a fixed scale: heights compare honestly

    def x(t):
        return L + (min(max(t, t0), t1) - t0) / span_s * pw

    def y(v):
        return T + (1 - min(max(v, 0.0), ymax) / ymax) * ph

    out = [f"<svg viewBox='0 0 {W} {H}' role='img' aria-label='genre scores over the last minute'>"]
    step = 0.1 if ymax == 0.5 else 0.25
    for i in range(int(round(ymax / step)) + 1):  # score grid
        v = i * step
        out.append(f"<line class='grid' x1='{L}' x2='{L + pw}' y1='{y(v):.1f}' y2='{y(v):.1f}' "
                   f"stroke='currentColor' stroke-opacity='{0.35 if i == 0 else 0.12}'/>"
                   f"<text class='ytick' x='{L - 4}' y='{y(v) + 4:.1f}' text-anchor='end'>{v:.2g}</text>")
    band_y = T + ph + gap
    for tick in range(int(math.ceil(t0 / 10)) * 10, int(t1) + 1, 10):  # time axis, every 10 s
        label = f"{tick // 60}:{tick % 60:02d}"
        out.append(f"<text class='xtick' x='{x(tick):.1f}' y='{band_y + band_h + 14}' text-anchor='middle'>"
                   f"{label}</text>")
    for g in genres:  # one path per genre; silence and gaps break it
        colour, dash = styles.get(g, (PALETTE[0], ""))
        runs, run = [], []
        for t, sc, _ in hist:
            if g in sc and t >= t0:
                run.append(f"{x(t):.1f},{y(sc[g]):.1f}")
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
        d = " ".join("M" + " L".join(r) for r in runs if len(r) > 1)
        dots = "".join(f"<circle cx='{r[0].split(',')[0]}' cy='{r[0].split(',')[1]}' r='2' fill='{colour}'/>"
                       for r in runs if len(r) == 1)
        width = 3 if g == leader_now else 2
        out.append(f"<g class='genre-line' data-genre='{escape(g, quote=True)}' data-colour='{colour}'>"
                   f"<path d='{d}' fill='none' stroke='{colour}' stroke-width='{width}' "
                   f"stroke-dasharray='{dash}' stroke-linejoin='round'/>{dots}</g>")
    # the leading genre (with hysteresis) over time: the readout at t covers the hop before t
    segments: list = []  # [start, end, leader]
    prev = None
    for t, _, leader in hist:
        start = prev if prev is not None else t - hop_s  # (skipped windows: as the session tally)
        prev = t
        if t <= t0:
            continue
        if segments and segments[-1][2] == leader and abs(segments[-1][1] - start) < 1e-6:
            segments[-1][1] = t
        else:
            segments.append([max(start, t0), t, leader])
    out.append(f"<text class='band-label' x='{L - 4}' y='{band_y + band_h - 3}' text-anchor='end'>lead</text>")
    for start, end, leader in segments:
        fill = styles.get(leader, (PALETTE[0], ""))[0] if leader else SILENCE_COLOUR
        what = escape(leader) if leader else "silence"
        out.append(f"<rect class='lead' data-genre='{escape(leader or '', quote=True)}' x='{x(start):.1f}' "
                   f"y='{band_y}' width='{max(x(end) - x(start), 0.5):.1f}' height='{band_h}' fill='{fill}'"
                   f"{'' if leader else ' fill-opacity=0.5'}><title>{_fmt_s(start)}–{_fmt_s(end)}: {what}</title></rect>")
    out.append("</svg>")
    legend = []
    for g in genres:
        colour, dash = styles.get(g, (PALETTE[0], ""))
        led = any(leader == g for _, _, leader in hist)
        cls = "legend-item" + (" now" if g == leader_now else "")
        legend.append(f"<span class='{cls}' data-genre='{escape(g, quote=True)}' data-colour='{colour}' "
                      f"data-led='{int(led)}'><svg width='22' height='10' style='display:inline;width:22px'>"
                      f"<line x1='1' x2='21' y1='5' y2='5' stroke='{colour}' stroke-width='3' "
                      f"stroke-dasharray='{dash}'/></svg> {escape(g)}{' (leading)' if g == leader_now else ''}"
                      f"</span>")
    if any(leader is None for _, _, leader in hist):
        legend.append(f"<span class='legend-item silence'><svg width='22' height='10' style='display:inline;"
                      f"width:22px'><rect width='22' height='10' fill='{SILENCE_COLOUR}'/></svg> silence</span>")
    return ("<div class='genre-plot'><div class='plot-title'>Genres over the last minute "
            "<small>(band: the leading genre)</small></div>" + "".join(out)
            + "<div class='legend'>" + "".join(legend) + "</div></div>")


def _summary_md(summary, received_s: float | None = None) -> str:
    """The session summary. `received_s`: audio the page received; the readouts cover less
    (the first one needs a few seconds of audio, the last hop may be incomplete)."""
    received = f"{_fmt_s(received_s)} of audio received" if received_s else ""
    if summary is None or summary.duration_s <= 0:
        return f"**Session summary:** {received or 'nothing was heard'}" + (
            ", too little for a readout." if received else ".")
    covered = f"{_fmt_s(summary.duration_s)} classified"
    heard = f"{received}, {covered}" if received else covered
    if not summary.shares:
        return f"**Session summary:** {heard}, all of it silence."
    shares = " · ".join(f"{g} {100 * v:.0f} %" for g, v in list(summary.shares.items())[:5])
    silent = f" ({_fmt_s(summary.silent_s)} of it silent)" if summary.silent_s > 0 else ""
    return (f"**Session summary:** {heard}{silent}. Dominant genre: **{summary.dominant}**. "
            f"Share of the classified time per leading genre: {shares}.")


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


class AnalysisCancelled(Exception):
    """The tab that asked for a file analysis closed."""


# running file analyses per browser session (session hash): cancelled when its tab closes
_FILE_JOBS: dict = collections.defaultdict(set)
_FILE_JOBS_LOCK = threading.Lock()


def _cancel_file_jobs(session_hash: str | None) -> None:
    with _FILE_JOBS_LOCK:
        for cancel in _FILE_JOBS.pop(session_hash, ()):
            cancel.set()


def on_mic_outcome(session, evt: gr.EventData):
    """The browser's answer to the page's microphone request ("ok" or the DOMException name;
    sent by MUSIC_MIC_JS). The live watcher shows a refusal instead of "listening…"."""
    if not isinstance(session, LiveSession):
        return
    outcome = str(getattr(evt, "mic", None) or "Error")[:40]
    session.mic_problem = None if outcome == "ok" else outcome
    session.wake()


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
        if request is not None:
            _cancel_file_jobs(request.session_hash)
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
            yield "listening…", EMPTY_LIVE_PLOT, _status_html(session, None, first_wait), "", session
            last, last_status, problem = None, time.monotonic(), None
            while session.active(run):
                try:
                    await asyncio.wait_for(event.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
                event.clear()
                if not session.active(run):  # stopped while we waited: Stop's status stays
                    break
                if last is None and session.mic_problem != problem:  # the browser gave no microphone
                    problem = session.mic_problem
                    if problem:
                        blocked = "microphone blocked" if MIC_PROBLEMS.get(problem) is MIC_REFUSED else "no microphone"
                        yield blocked, gr.skip(), _mic_problem_html(session), gr.skip(), session
                    else:  # it did after all (an older refusal)
                        yield "listening…", gr.skip(), _status_html(session, None, first_wait), gr.skip(), session
                    continue
                if problem:
                    continue
                engine = session.engine
                res = engine.latest if engine is not None else None
                if res is not None and res is not last:
                    last, last_status = res, time.monotonic()
                    yield (_label_value(res, settings.top_k), _live_plot(session, res), _status_html(session, res),
                           gr.skip(), session)
                elif time.monotonic() - last_status > 1.0:
                    last_status = time.monotonic()
                    yield gr.skip(), gr.skip(), _status_html(session, last, "" if last else first_wait), gr.skip(), session
        finally:
            session._waiters.discard((loop, event))

    def finish(session: LiveSession):
        if session is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        summary = session.stop()
        _sweep_orphan_chunks(session)
        engine = session.engine
        res = engine.latest if engine is not None else None
        received = engine.stats.seconds_received if engine is not None else None
        # the last window (classified at Stop) is in the summary: show it in the readout and plot too
        label = _label_value(res, session.settings.top_k) if res is not None else gr.skip()
        return (_summary_md(summary, received), _status_html(session, res, "stopped"), label,
                _live_plot(session, res) if res is not None else gr.skip())

    # -- file handler --
    def analyse(path, window, top_k, request: gr.Request, progress=gr.Progress()):
        """Whole-file analysis at the library's hop for files (coarser than the live hop);
        stops when the tab that asked for it closes."""
        if not path:
            return None, EMPTY_PLOT, None, "Upload or record a file first."
        name = Path(path).name
        key = request.session_hash if request is not None else None
        cancel = threading.Event()
        with _FILE_JOBS_LOCK:
            _FILE_JOBS[key].add(cancel)

        def report(fraction, text):  # called after each decoded block
            if cancel.is_set():
                raise AnalysisCancelled(f"{100 * fraction:.0f} % done")
            progress(fraction, desc=text)

        progress(0.0, desc="decoding…")
        try:
            fa = analyze_file(path, model, window_s=float(window), max_duration_s=max_file_s, progress=report,
                              config=EngineConfig(silence_dbfs=args.silence_dbfs))
        except AnalysisCancelled as exc:
            log.info("file analysis of %s cancelled, the tab closed (%s)", name, exc)
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        except (AudioDecodeError, ValueError, MemoryError) as exc:
            # shown in the page (and as a toast); the results of the previous file are cleared
            msg = f"Cannot analyse {name}: {_readable(exc, path)}"
            log.info("file analysis refused: %s", msg)
            gr.Warning(msg, title="Unreadable file" if isinstance(exc, AudioDecodeError) else "Analysis failed")
            return None, EMPTY_PLOT, None, f"<div class='file-error'>{escape(msg)}</div>"
        finally:
            with _FILE_JOBS_LOCK:
                jobs = _FILE_JOBS.get(key)
                if jobs is not None:
                    jobs.discard(cancel)
                    if not jobs:
                        del _FILE_JOBS[key]
        k = int(top_k)
        if not fa.scores:
            return ("silence", EMPTY_PLOT, None,
                    f"**{escape(name)}**: {_fmt_s(fa.duration_s)}, silent throughout ({fa.n_windows} windows).")
        top = list(fa.scores)[:k]
        cols = [fa.labels.index(g) for g in top]
        mid = (fa.starts_s + fa.ends_s) / 2
        rows = [(float(mid[i]), float(fa.timeline[i, c]), g)
                for i in range(fa.n_windows) if not fa.silent[i] for c, g in zip(cols, top)]
        timeline = _plot(pd.DataFrame(rows, columns=["time (s)", "score", "genre"]), top)
        segment = _read_segment(path, *fa.segment) if fa.segment else None
        seg_txt = (f" The most **{fa.top_label}** part is {_fmt_s(fa.segment[0])} – {_fmt_s(fa.segment[1])} (play it below)."
                   if fa.segment else "")
        silent = int(fa.silent.sum())
        every = f" every {float(np.median(np.diff(fa.ends_s))):.2g} s" if fa.n_windows > 1 else ""
        md = (f"**{escape(name)}**: {_fmt_s(fa.duration_s)}, {fa.n_windows} windows of {float(window):g} s{every}"
              f"{f' ({silent} silent)' if silent else ''}. Top genre: **{fa.top_label}** "
              f"(mean score {fa.scores[fa.top_label]:.2f}).{seg_txt}")
        return {g: fa.scores[g] for g in top}, timeline, segment, md

    with gr.Blocks(title="Live music-genre classifier", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# Live music-genre classifier\nHold your microphone near the music, or analyse a recording "
                    "in the **File** tab.")
        # said once, here: which model and why (the status line stays about the recording)
        gr.Markdown(escape(model.notice or f"Model: {model.name}."), elem_id="model-notice")
        # one LiveSession per browser tab: set by demo.load, closed by demo.unload when the tab
        # goes, or by the time-to-live (refreshed by every live readout) when a tab vanishes
        session = gr.State(None, delete_callback=_close_session, time_to_live=SESSION_TTL_S)
        with gr.Accordion("Settings", open=False):
            with gr.Row():
                window = gr.Slider(min(WINDOW_RANGE[0], window0), max(WINDOW_RANGE[1], window0), value=window0,
                                   step=0.5, label="Window (s)",
                                   info="audio per classification; longer is steadier but reacts later", elem_id="set-window")
                hop = gr.Slider(min(HOP_RANGE[0], hop0), max(HOP_RANGE[1], hop0), value=hop0, step=0.25,
                                label="Hop (s)",
                                info="time between readouts; compute grows as hop shrinks", elem_id="set-hop")
                smoothing = gr.Slider(*SMOOTHING_RANGE, value=args.smoothing, step=0.5, label="Smoothing (s)",
                                      info="time constant of the live readout (0 = off)", elem_id="set-smoothing")
                top_k = gr.Slider(*TOP_K_RANGE, value=args.top_k, step=1, label="Genres shown (top-k)",
                                  elem_id="set-topk")
            gr.Markdown("Live settings apply from the next **Record**.")
        with gr.Tabs():
            with gr.Tab("Live", id="live"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2):
                        mic = gr.Audio(sources=["microphone"], streaming=True, type="filepath",
                                       label="Microphone", elem_id="live-mic",
                                       waveform_options=gr.WaveformOptions(show_recording_waveform=False))
                        live_label = LeaderLabel(label="Genre now (smoothed)", num_top_classes=10,
                                                 elem_id="live-label")
                    with gr.Column(scale=3):
                        live_plot = gr.HTML(EMPTY_LIVE_PLOT, elem_id="live-plot")
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
                                               label="Scores per window", y_lim=[0, None], elem_id="file-timeline")
                        segment = gr.Audio(label="Most characteristic segment", type="numpy", interactive=False,
                                           elem_id="file-segment")

        demo.load(new_session, outputs=[session, live_status], show_progress="hidden")
        demo.unload(end_session)
        mic.stream(on_chunk, inputs=[mic, session], outputs=None, stream_every=STREAM_EVERY_S,
                   concurrency_limit=None, time_limit=None, show_progress="hidden", queue=True)
        mic.start_recording(watch, inputs=[session, window, hop, smoothing, top_k],
                            outputs=[live_label, live_plot, live_status, summary, session],
                            concurrency_limit=None, show_progress="hidden", trigger_mode="multiple")
        mic.stop_recording(finish, inputs=[session], outputs=[summary, live_status, live_label, live_plot],
                           concurrency_limit=None, show_progress="hidden")
        live_status.submit(on_mic_outcome, inputs=[session], outputs=None, concurrency_limit=None,
                           show_progress="hidden")
        file_outputs = [file_label, timeline, segment, file_md]
        analyse_btn.click(analyse, inputs=[file_in, window, top_k], outputs=file_outputs,
                          concurrency_limit=2, show_progress_on=[file_md])
        file_in.upload(analyse, inputs=[file_in, window, top_k], outputs=file_outputs,
                       concurrency_limit=2, show_progress_on=[file_md])
        file_in.stop_recording(analyse, inputs=[file_in, window, top_k], outputs=file_outputs,
                               concurrency_limit=2, show_progress_on=[file_md])
    return demo


LAUNCH_KWARGS = dict(css=CSS, theme=gr.themes.Soft())


class _BrowserGone(logging.Filter):
    """A browser that goes away in the middle of an upload (a closed tab's last microphone
    chunk) is not a server error: one INFO line instead of uvicorn's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if type(exc).__name__ == "ClientDisconnect":
                log.info("a browser went away during an upload")
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def __getattr__(name):
    """Imported (a Space, `gradio app.py`): `demo` (and ARGS, MODEL) are built on first use,
    from the environment's settings; `python app.py` and main() build them from their own."""
    if name in ("demo", "ARGS", "MODEL"):
        global ARGS, MODEL, demo
        ARGS = parse_args([])
        MODEL = load_model(ARGS.model)
        demo = build_demo(MODEL, ARGS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv=None) -> None:
    """Start the page: settings and port are checked before the model loads; each start-up
    failure is one line on stderr and an exit code (see the module docstring)."""
    global ARGS, MODEL, demo
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("uvicorn.error").addFilter(_BrowserGone())
    if argv is None and _CLI_ARGS is not None:  # `python app.py`: checked before the imports
        args = _CLI_ARGS
    else:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if (problem := port_problem(args.host, args.port)) is not None:
            _fail(EXIT_PORT, problem)
    try:
        model = load_model(args.model)
    except ModelLoadError as exc:
        if hasattr(exc, "advice"):  # phrased for this command line, not the Python API
            fallback = f", or use the bundled offline model: --model {exc.fallback}" if exc.fallback else ""
            _fail(EXIT_MODEL, f"cannot load model {exc.spec!r}: {exc.cause}. {exc.advice}{fallback}.")
        _fail(EXIT_MODEL, str(exc))
    except (OSError, ValueError) as exc:
        _fail(EXIT_MODEL, f"cannot load model {args.model!r}: {exc}")
    log.info("%s", model.notice or f"Model: {model.name}")
    ARGS, MODEL, demo = args, model, build_demo(model, args)
    demo.queue(default_concurrency_limit=1)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                    max_file_size=int(args.max_file_mb * 1024 * 1024), show_error=True, **LAUNCH_KWARGS)
    except OSError as exc:  # the port was taken while the model loaded
        _fail(EXIT_PORT, f"cannot listen on {args.host}:{args.port}: {exc}")


if __name__ == "__main__":
    main()
