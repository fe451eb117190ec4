"""The Gradio page: a Live tab (microphone -> engine -> readout, plot, status) and a File tab.

Shaped like Gradio's stream_asr demo: first the handlers, at module level, with the state they
need passed in and out (the page's `Setup` and the tab's `LiveSession`, both gr.State); then
the layout, which wires them (`build_demo`); then `launch`. What they show is made by
`render`, the upload cache is kept clean by `uploads`.

Live tab: the microphone is streamed in short chunks. `on_chunk` decodes a chunk, deletes its
file at once (Gradio writes every chunk to its cache), feeds the tab's session and returns:
inference runs on the engine's shared worker thread, never inside the handler. `watch`, a
long-running event started by Record, waits for the session's readouts and pushes each new one
to the page as soon as it exists, so the readout does not wait for the next chunk to arrive.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from html import escape
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from gradio import processing_utils
from gradio.components.label import LabelConfidence, LabelData

from stream import AudioDecodeError, EngineClosedError, EngineConfig, analyze_file
from stream.files import read_segment
from stream import registry
from ui.report import model_line, summary_text

from . import render, uploads
from .session import PAGE_SETTINGS, LateStop, LiveSession, LiveSettings

log = logging.getLogger(__name__)

STREAM_EVERY_S = 0.25  # microphone chunk length: shorter = fresher audio, more requests
NO_AUDIO_S = 8.0  # Record pressed and no audio after this long: the page says so and how to retry
SESSION_TTL_S = 3600  # an idle session's engine is closed after this long
# Asks the browser for raw (music-friendly) capture and reports its answer: see the file.
MUSIC_MIC_JS = Path(__file__).with_name("music_mic.js").read_text()
# Refuses a file over the upload limit in the browser, in one sentence of ours (see the file).
FILE_LIMIT_JS = Path(__file__).with_name("file_limit.js").read_text()
# Record and Stop each carry the tab's recording number, counted in the browser when pressed: a Stop
# that reaches the server after the next Record (two requests, handled concurrently) must not end it.
TAKE_ON_RECORD_JS = "(...a) => { window.__genreTake = (window.__genreTake || 0) + 1; a[a.length - 1] = window.__genreTake; return a; }"
TAKE_ON_STOP_JS = "(...a) => { a[a.length - 1] = window.__genreTake || 0; return a; }"
CSS = Path(__file__).with_name("page.css").read_text()
EMPTY_PLOT = None  # (an empty DataFrame as a plot's first value breaks its colour legend in Gradio 6)
# Words Gradio's front end announces to screen readers (its status tracker's live region) but
# has no English text for: without these a screen reader says "common.complete".
I18N = gr.I18n(en={"common.complete": "done", "common.error": "error", "common.loading": "loading"})


class Setup:
    """What the handlers of one page share: the model, a new recording's settings, the file
    limit. A gr.State's value, shared by every tab (hence `__deepcopy__` returning itself; not
    a dataclass, which Gradio would copy into the page's config)."""

    def __init__(self, model, defaults: LiveSettings, max_file_s: float, history=None, history_name: str = "page",
                 max_file_mb: float | None = None):
        self.model, self.defaults, self.max_file_s, self.max_file_mb = model, defaults, max_file_s, max_file_mb
        self.history, self.history_name = history, history_name  # --history: the store, the stream's name

    def __deepcopy__(self, memo):
        return self

    @classmethod
    def from_args(cls, model, args, history=None) -> Setup:
        """From the command line (`app.parse_args`): unset window and hop are the model's;
        `history`: the store --history opened (None: not recording)."""
        window = float(args.window if args.window is not None else model.default_window_s)
        hop = float(args.hop if args.hop is not None else model.default_hop_s)
        return cls(model, LiveSettings(window, hop, float(args.smoothing), int(args.top_k), float(args.silence_dbfs)),
                   float(args.max_file_minutes) * 60.0, history, getattr(args, "history_name", None) or "page",
                   float(args.max_file_mb))

    def file_label(self) -> str:
        """The upload's label: one short word, clear of the component's icons at its right."""
        return "Recording"

    def file_limits(self) -> str:
        """What the upload takes, and both limits, before anyone uploads (a line under it)."""
        limits = [f"up to {self.max_file_s / 60:g} min"] + ([f"{self.max_file_mb:g} MB"] if self.max_file_mb else [])
        return f"wav, mp3, flac, ogg, opus; {' and '.join(limits)}"

    def settings(self, window, hop, smoothing, top_k) -> LiveSettings:
        """The sliders' values as the next recording's settings."""
        return self.defaults.with_controls(window, hop, smoothing, top_k)


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


class AnalysisCancelled(Exception):
    """The tab that asked for a file analysis closed."""


_SESSIONS: weakref.WeakValueDictionary[str, LiveSession] = weakref.WeakValueDictionary()  # by session hash
_FILE_JOBS: dict = collections.defaultdict(set)  # running file analyses' cancel events, by session hash
_FILE_JOBS_LOCK = threading.Lock()
_SHOWN: dict = {}  # the file whose analysis the File tab shows, by session hash
_CLEARED: dict = collections.defaultdict(set)  # files Clear took off the File tab, by session hash
_last_warning: dict = {}


# ---- handlers: a tab's session ----------------------------------------------------------------
def _registered(request: gr.Request | None) -> LiveSession | None:
    """The tab's session as the load event registered it: for events whose session state came
    in empty because the load's output had not reached them yet (a busy machine)."""
    return _SESSIONS.get(request.session_hash) if request is not None and request.session_hash else None


def new_session(setup: Setup, request: gr.Request):
    """Page loaded: the tab's LiveSession (closed by `end_session`, or by the state's
    time-to-live when a tab vanishes without unloading)."""
    # Record may have come first (see `watch`) and made the tab's session already: keep that one
    existing = _registered(request)
    if existing is not None:
        return existing, render.status_html(existing.status(None), note="Press Record to start listening.")
    session = LiveSession(setup.model, setup.defaults, setup.history, setup.history_name)
    if request is not None and request.session_hash:
        _SESSIONS[request.session_hash] = session
        log.info("live session opened; %d open", len(_SESSIONS))
    return session, render.status_html(session.status(None), note="Press Record to start listening.")


def end_session(request: gr.Request):
    """Tab closed: its file analyses stop, its engine closes, its stray chunk files go."""
    if request is None:
        return
    cancel_file_jobs(request, "the tab closed")
    session = _SESSIONS.pop(request.session_hash, None)
    _SHOWN.pop(request.session_hash, None)
    with _FILE_JOBS_LOCK:
        _CLEARED.pop(request.session_hash, None)
    if session is not None:
        session.close()
        uploads.sweep_orphan_chunks(session.first_chunk, busy=_streaming_formats)
        log.info("live session closed (tab closed); %d open", len(_SESSIONS))


def close_expired_session(session) -> None:  # gr.State's delete callback
    if isinstance(session, LiveSession) and not session.closed:
        session.close()
        log.info("live session closed (expired); %d open", len(_SESSIONS))


# ---- handlers: the live tab -------------------------------------------------------------------
STALE_SWEEP_EVERY_S = 10.0  # how often a recording looks for its chunks that were never handled


def on_chunk(path, session: LiveSession | None, request: gr.Request = None):
    """Decode the chunk, drop its file, feed the session: a few ms, no inference here."""
    arrival = time.time()
    session = session or _registered(request)
    if session is None:
        _warn_once("microphone chunks without a session (page not loaded, or session expired)")
    if not path or session is None:
        if path:
            uploads.discard_upload(path)
        return
    if session.repeated_chunk(path) and not os.path.exists(path):
        # Gradio sometimes fires the stream event twice for one upload (same file: its name is
        # the content's hash): fed once, and its file is gone since; not an unreadable chunk.
        # (The file there again is a new chunk of the same bytes, digital silence say: handled.)
        log.debug("microphone chunk %s came twice; fed once", Path(path).parent.name[:12])
        return
    if not uploads.wait_for_upload(path):  # (Gradio may still be moving it into its cache)
        log.info("a microphone chunk never arrived in the upload cache: %s", Path(path).name)
        session.count_bad_chunk()
        uploads.discard_when_it_arrives(path)
        return
    if session.first_chunk is None and (header := uploads.wav_header(path)) is not None:
        session.first_chunk = (header, arrival)
    written = os.path.getmtime(path) if os.path.exists(path) else None
    try:
        rate, data = processing_utils.audio_from_file(path)
    except Exception as exc:  # whatever the browser sent, the recording goes on
        session.count_bad_chunk()
        log.info("a microphone chunk could not be decoded: %s: %s", type(exc).__name__, exc)
        return
    finally:
        uploads.discard_upload(path)
    session.feed(rate, data, arrival)
    if written is not None and session.first_chunk is not None and arrival >= session.stale_sweep_due:
        session.stale_sweep_due = arrival + STALE_SWEEP_EVERY_S
        header = session.first_chunk[0]  # (the sweep reads the cache off the handler's thread)
        threading.Thread(target=_sweep_stale, args=(header, written), daemon=True).start()


def _sweep_stale(header: bytes, written: float) -> None:
    if n := uploads.sweep_stale_chunks(header, written):
        log.info("deleted %d microphone chunk(s) whose stream event never came", n)


def on_mic_outcome(session, evt: gr.EventData):
    """The browser's answer to the microphone request ("ok" or the DOMException's name, sent
    by music_mic.js): the live watcher shows a refusal instead of "listening…"."""
    if isinstance(session, LiveSession):
        session.report_mic(str(getattr(evt, "mic", None) or "Error")[:40])


async def watch(setup: Setup, session: LiveSession | None, window, hop, smoothing, top_k, take=None,
                request: gr.Request = None):
    """Started by Record: push every new readout to the page until Stop. `take`: the tab's
    recording number, counted by the page (TAKE_ON_RECORD_JS).
    Outputs: label (the genre), style, plot, status, summary, session."""
    settings = setup.settings(window, hop, smoothing, top_k)
    if session is None and request is not None:  # Record came before the load event's output
        session = _registered(request) or new_session(setup, request)[0]
    run = _start(session, settings, take)
    log.info("Record: recording %d (take %s)", run, take)  # with Stop's line: the order the server saw them in
    waiting = f"Listening… the first readout comes after {EngineConfig.min_window_s:g} s of audio."
    yield ("listening…", render.style_html(None), render.EMPTY_LIVE_PLOT,
           render.status_html(session.status(None), note=waiting), "", session)
    last, last_status, problem, started, mute = None, time.monotonic(), None, time.monotonic(), False
    async with contextlib.aclosing(session.updates(run)) as updates:
        async for _ in updates:
            heard = bool(session.stats and session.stats.samples_received)
            if last is None and not problem and heard == mute:  # no audio yet, too long (or now it came)
                if not heard and time.monotonic() - started < NO_AUDIO_S:
                    pass
                else:
                    mute = not heard
                    if mute:
                        log.info("no audio %.0f s after Record", NO_AUDIO_S)
                        yield ("no audio", gr.skip(), gr.skip(), render.no_audio_html(NO_AUDIO_S), gr.skip(), session)
                    else:
                        yield ("listening…", gr.skip(), gr.skip(), render.status_html(session.status(None), note=waiting),
                               gr.skip(), session)
                    continue
            if last is None and session.mic_problem != problem:  # the browser gave no microphone (or now did)
                problem = session.mic_problem
                if problem:
                    yield (render.mic_problem_label(problem), gr.skip(), gr.skip(), render.mic_problem_html(problem),
                           gr.skip(), session)
                else:
                    yield ("listening…", gr.skip(), gr.skip(), render.status_html(session.status(None), note=waiting),
                           gr.skip(), session)
            elif problem or (mute and last is None):
                continue
            elif (res := session.latest) is not None and res is not last:
                last, last_status = res, time.monotonic()
                yield (render.label_value(res, settings.top_k), render.style_html(res), _plot_html(session, res),
                       render.status_html(session.status(res), res), gr.skip(), session)
            elif time.monotonic() - last_status > 1.0:
                last_status = time.monotonic()
                status = render.status_html(session.status(last), last, "" if last else waiting)
                yield gr.skip(), gr.skip(), gr.skip(), status, gr.skip(), session


def finish(session: LiveSession | None, take=None):
    """Stop: the last window is classified; the summary, final status, readout and plot. `take`:
    the recording the page stopped (TAKE_ON_STOP_JS); a Stop of an earlier one than the session
    records now came late, after the next Record, and changes nothing.
    Outputs: summary, status, label, style, plot."""
    if session is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    try:
        summary = session.stop(take)
    except LateStop as late:
        log.info("%s: the recording goes on", late)
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    uploads.sweep_orphan_chunks(session.first_chunk, busy=_streaming_formats)
    res, stats = session.latest, session.stats
    log.info("Stop: recording %d, %.1f s received", session.run, stats.seconds_received if stats else 0.0)
    text = summary_text(summary, received_s=stats.seconds_received if stats else None, markdown=True)
    if res is None:
        return text, render.status_html(session.status(None), note="stopped"), gr.skip(), gr.skip(), gr.skip()
    # the last window (classified at Stop) is in the summary: show it in the readout and plot too
    return (text, render.status_html(session.status(res), res, "stopped"),
            render.label_value(res, session.settings.top_k), render.style_html(res), _plot_html(session, res))


def _start(session: LiveSession | None, settings: LiveSettings, take=None) -> int:
    if session is None:
        raise gr.Error("This page's session expired; reload the page.")
    try:
        return session.start(settings, take)
    except ValueError as exc:
        raise gr.Error(f"Invalid settings: {exc}") from None
    except EngineClosedError:
        raise gr.Error("This page's session ended; reload the page.") from None


def _plot_html(session: LiveSession, res) -> str:
    return render.live_plot(session.readouts(res.time_s if res is not None else None), res,
                            session.settings.top_k, session.settings.hop_s, session.styles, session.genres)


def _streaming_formats() -> set | None:
    """The WAV headers of the recordings streaming now (None while one has not sent its first
    chunk: its format is unknown), so a sweep of one tab's leftover chunks spares them."""
    heads = set()
    for s in list(_SESSIONS.values()):
        if s.recording:
            if s.first_chunk is None:
                return None
            heads.add(s.first_chunk[0])
    return heads


def _warn_once(msg: str, every_s: float = 60.0) -> None:
    now = time.monotonic()
    if now - _last_warning.get(msg, -every_s) >= every_s:
        _last_warning[msg] = now
        log.warning(msg)


# ---- handlers: the file tab -----------------------------------------------------------------------
def analyse(setup: Setup, path, window, top_k, request: gr.Request, progress=gr.Progress()):
    """A new file (upload or recording): whole-file analysis at the library's hop for files
    (coarser than the live hop). The tab's running analysis of another file stops (so does
    this one when the next file comes, Clear is pressed or the tab closes): the results on
    screen are always the newest file's, and name it. Gradio may announce one upload twice:
    a file whose results are on screen already is not analysed again.
    Outputs: scores, timeline, segment, text."""
    if not path or _SHOWN.get(_tab(request)) == path or _cleared_since(request, path):
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return
    yield from analyse_again(setup, path, window, top_k, request, progress)


def analyse_again(setup: Setup, path, window, top_k, request: gr.Request, progress=gr.Progress()):
    """The Analyse button: the file on the page, with the settings now (see `analyse`)."""
    if not path:
        yield None, EMPTY_PLOT, None, "Upload or record a file first."
        return
    name = Path(path).name
    cancel_file_jobs(request, "a new file came", keep=path)
    # the previous file's results (or error) go at once: nothing on screen describes another file
    _SHOWN.pop(_tab(request), None)
    yield None, EMPTY_PLOT, None, render.file_busy_html(name)
    progress(0.0, desc=f"decoding {name}…")
    outputs = _analysis(setup, path, float(window), int(top_k), request, progress)
    if outputs is None:  # cancelled: whatever replaced it stays (no output, not even the first)
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return
    _SHOWN[_tab(request)] = path
    yield outputs


def _analysis(setup: Setup, path: str, window: float, top_k: int, request, progress) -> tuple | None:
    """The File tab's outputs for `path`: scores, timeline, segment, text (None: cancelled)."""
    name = Path(path).name
    try:
        with _file_job(request, path) as cancel:
            def report(fraction, text):  # called after each decoded block
                if cancel.is_set():
                    raise AnalysisCancelled(f"{100 * fraction:.0f} % done")
                progress(fraction, desc=f"{name}: {text}")

            fa = analyze_file(path, setup.model, window_s=window, max_duration_s=setup.max_file_s,
                              progress=report, config=EngineConfig(silence_dbfs=setup.defaults.silence_dbfs))
            if cancel.is_set():  # (finished as the next file came)
                raise AnalysisCancelled("100 % done")
    except AnalysisCancelled as exc:
        log.info("file analysis of %s cancelled, %s (%s)", name, cancel.why, exc)
        return None
    except (AudioDecodeError, ValueError, MemoryError) as exc:
        # shown in the page (and as a toast); the results of the previous file are cleared
        msg = f"Cannot analyse {name}: {_readable(exc, path)}"
        log.info("file analysis refused: %s", msg)
        gr.Warning(msg, title="Unreadable file" if isinstance(exc, AudioDecodeError) else "Analysis failed")
        return None, EMPTY_PLOT, None, render.file_error_html(msg)
    md = render.file_markdown(fa, name, window)
    if not fa.scores:
        return "silence", EMPTY_PLOT, None, md
    top = list(fa.genre_scores)[:top_k or None]  # (0 = all)
    rows = pd.DataFrame(fa.timeline_rows(top, genres=True), columns=["time (s)", "score", "genre"])
    # Gradio 6's plot fixes its colour domain when it (re)draws, and redraws only when a setting
    # such as `color_map` changes: so the map holds exactly the plotted genres, each in the
    # colour the live plot gives it
    colours = render.genre_styles({}, top, fa.genres)
    timeline = gr.LinePlot(value=rows, color_map={g: colours[g][0] for g in top}, y_lim=[0, plot_top(rows["score"])])
    return {g: fa.genre_scores[g] for g in top}, timeline, _segment(path, fa.segment), md


def plot_top(scores) -> float:
    """The score plot's upper bound: above the highest score by a margin (the plot clamps a
    line at its top edge, where peaks flatten), on a 0.05 step, 1.05 at most."""
    high = float(np.nanmax(scores)) if len(scores) else 0.0
    return float(min(1.05, np.ceil((high * 1.05 + 0.01) / 0.05) * 0.05))


def _tab(request: gr.Request | None):
    return request.session_hash if request is not None else None


def cancel_file_jobs(request: gr.Request | None, why: str, keep: str | None = None) -> None:
    """Stop the tab's running file analyses (a new file came, Clear, the tab closed), but
    those of the file `keep`."""
    with _FILE_JOBS_LOCK:
        for cancel in _FILE_JOBS.get(_tab(request), ()):
            if keep is None or cancel.path != keep:
                cancel.why = why
                cancel.set()


def new_file(path, request: gr.Request = None):
    """A file was uploaded: the tab's analysis of another file stops now (its own analysis
    may have to wait for that one's end: Gradio runs one event of a kind per tab at a time)."""
    if path:
        with _FILE_JOBS_LOCK:
            _CLEARED.get(_tab(request), set()).discard(path)  # (uploaded again after a Clear)
        cancel_file_jobs(request, "a new file came", keep=path)


def clear_file(request: gr.Request = None):
    """Clear pressed on the File tab: its analysis stops, its results go, and an analysis of the
    same file asked for before the Clear but handled after it (Gradio may announce one upload
    twice; on a busy machine the second comes late) is dropped (`_cleared_since`).
    Outputs: scores, timeline, segment, text."""
    key = _tab(request)
    with _FILE_JOBS_LOCK:
        gone = {c.path for c in _FILE_JOBS.get(key, ())} | ({_SHOWN[key]} if key in _SHOWN else set())
        if gone:
            _CLEARED[key] |= gone
    cancel_file_jobs(request, "Clear was pressed")
    _SHOWN.pop(key, None)
    return None, EMPTY_PLOT, None, ""


def _cleared_since(request: gr.Request | None, path: str) -> bool:
    """True when Clear took `path` off the tab and it has not been uploaded again: an analysis
    event for it is then a late one from before the Clear. (A new upload of the same file lifts
    the mark in `new_file`, which the page runs before the upload's analysis event.)"""
    if path not in _CLEARED.get(_tab(request), ()):
        return False
    log.info("file analysis of %s dropped: Clear was pressed after it was asked for", Path(path).name)
    return True


def refuse_file(setup: Setup, evt: gr.EventData):
    """The browser refused a file over the upload limit before sending it (file_limit.js):
    one sentence in the File tab's status. Outputs: scores, timeline, segment, text."""
    name, mb = str(getattr(evt, "name", "") or "the file")[:200], float(getattr(evt, "mb", 0) or 0)
    msg = (f"Cannot analyse {name}: it is {mb:.0f} MB and files up to {setup.max_file_mb:g} MB can be uploaded "
           "here; save it as mp3, ogg or flac, or cut it shorter.")
    log.info("file refused in the browser: %s", msg)
    return None, EMPTY_PLOT, None, render.file_error_html(msg)


@contextlib.contextmanager
def _file_job(request: gr.Request | None, path: str):
    """A cancel event for one analysis of `path` (`cancel_file_jobs` sets it)."""
    key = _tab(request)
    cancel = threading.Event()
    cancel.why, cancel.path = "the tab closed", path  # (why: set by whoever cancels it)
    with _FILE_JOBS_LOCK:
        _FILE_JOBS[key].add(cancel)
    try:
        yield cancel
    finally:
        with _FILE_JOBS_LOCK:
            jobs = _FILE_JOBS.get(key)
            if jobs is not None:
                jobs.discard(cancel)
                if not jobs:
                    del _FILE_JOBS[key]


def _segment(path: str, span: tuple | None):
    """The most characteristic segment as the player takes it: (rate, int16 samples)."""
    if span is None:
        return None
    try:
        samples, rate = read_segment(path, *span)
    except (AudioDecodeError, ValueError) as exc:  # (the analysis read it: unlikely)
        log.info("no segment to play: %s", exc)
        return None
    return rate, (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)  # (float would be normalised)


def _readable(exc: Exception, path: str) -> str:
    """The error without server paths."""
    msg = str(exc)
    for p in sorted({str(path), str(Path(path).resolve())}, key=len, reverse=True):
        msg = msg.replace(p, Path(path).name)
    return msg


# ---- the layout ---------------------------------------------------------------------------------------
def _sliders(d: LiveSettings):
    """The settings accordion: a slider per setting the table gives a page control (window, hop,
    smoothing, top-k; a model default outside the usual range widens it), and the models this
    page could run (chosen with -m when it starts)."""
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            sliders = [_slider(s, getattr(d, s.field)) for s in PAGE_SETTINGS]
        gr.Markdown("Live settings apply from the next **Record**.")
        gr.Markdown(models_text(), elem_id="set-models")
    return sliders


def _slider(s, value) -> gr.Slider:
    lo, hi = s.span
    return gr.Slider(min(lo, value), max(hi, value), value=value, step=s.control.step, label=s.control.label,
                     info=s.help, elem_id=s.control.elem_id)


def models_text() -> str:
    """The models the page can run (`genre-app -m NAME`), one line each, and which to pick."""
    lines = "\n".join(f"- {name}: {line}" for name, line in registry.listed())
    return f"Models (start the page with `-m NAME`):\n{lines}\n\n{registry.ADVICE}"


def build_demo(model, args, history=None) -> gr.Blocks:
    """The page for `model` with the command line's settings (`app.parse_args`); `history`: the
    store every recording is written to (--history), or None."""
    setup = Setup.from_args(model, args, history)
    with gr.Blocks(title="Live music-genre classifier", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# Live music-genre classifier\nHold your microphone near the music, or analyse a recording "
                    "in the **File** tab.")
        gr.Markdown(escape(model_line(model)), elem_id="model-notice")  # said once: which model and why
        # one LiveSession per browser tab: set by demo.load, closed by demo.unload when the tab
        # goes, or by the time-to-live (refreshed by every live readout) when a tab vanishes
        session = gr.State(None, delete_callback=close_expired_session, time_to_live=SESSION_TTL_S)
        page = gr.State(setup)
        take = gr.Number(value=0, precision=0, visible=False)  # (filled in by the page's Record/Stop js)
        window, hop, smoothing, top_k = _sliders(setup.defaults)
        with gr.Tabs():
            with gr.Tab("Live", id="live"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2):
                        mic = gr.Audio(sources=["microphone"], streaming=True, type="filepath",
                                       label="Microphone", elem_id="live-mic",
                                       waveform_options=gr.WaveformOptions(show_recording_waveform=False))
                        live_label = LeaderLabel(label="Genre now (smoothed)", num_top_classes=10,
                                                 elem_id="live-label")
                        live_style = gr.HTML(render.style_html(None), elem_id="live-style")
                    with gr.Column(scale=3):
                        live_plot = gr.HTML(render.EMPTY_LIVE_PLOT, elem_id="live-plot")
                        summary = gr.Markdown(elem_id="live-summary")
                live_status = gr.HTML(elem_id="live-status", js_on_load=MUSIC_MIC_JS)
            with gr.Tab("File", id="file"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2):
                        file_in = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                           label=setup.file_label(), elem_id="file-in")
                        file_limit = gr.HTML(f"<div class='file-limits'>{escape(setup.file_limits())}</div>",
                                             elem_id="file-limit", js_on_load=FILE_LIMIT_JS.replace(
                            "__MAX_MB__", repr(float(setup.max_file_mb or 0))))
                        analyse_btn = gr.Button("Analyse", variant="primary", elem_id="analyse")
                        file_label = gr.Label(label="Average genre scores", num_top_classes=10, elem_id="file-label")
                    with gr.Column(scale=3):
                        file_md = gr.Markdown(elem_id="file-status")
                        timeline = gr.LinePlot(EMPTY_PLOT, x="time (s)", y="score", color="genre",
                                               label="Scores per window", y_lim=[0, None], elem_id="file-timeline")
                        segment = gr.Audio(label="Most characteristic segment", type="numpy", interactive=False,
                                           elem_id="file-segment")

        demo.load(new_session, inputs=[page], outputs=[session, live_status], show_progress="hidden")
        demo.unload(end_session)
        mic.stream(on_chunk, inputs=[mic, session], outputs=None, stream_every=STREAM_EVERY_S,
                   concurrency_limit=None, time_limit=None, show_progress="hidden", queue=True)
        mic.start_recording(watch, inputs=[page, session, window, hop, smoothing, top_k, take],
                            outputs=[live_label, live_style, live_plot, live_status, summary, session],
                            concurrency_limit=None, show_progress="hidden", trigger_mode="multiple",
                            js=TAKE_ON_RECORD_JS)
        mic.stop_recording(finish, inputs=[session, take],
                           outputs=[summary, live_status, live_label, live_style, live_plot],
                           concurrency_limit=None, show_progress="hidden", js=TAKE_ON_STOP_JS)
        live_status.submit(on_mic_outcome, inputs=[session], outputs=None, concurrency_limit=None,
                           show_progress="hidden")
        file_out = [file_label, timeline, segment, file_md]
        # "always_last": a file that comes while another is analysed is kept and analysed as
        # soon as that one stops (Gradio's default would drop it); Clear and the new file
        # itself (`new_file`) stop the running one at its next decoded block
        # (first: the page runs one event's handlers in the order they were added, each to its end)
        file_in.upload(new_file, inputs=[file_in], outputs=None, concurrency_limit=None, show_progress="hidden",
                       trigger_mode="multiple")
        for event, fn in ((analyse_btn.click, analyse_again), (file_in.upload, analyse),
                          (file_in.stop_recording, analyse)):
            event(fn, inputs=[page, file_in, window, top_k], outputs=file_out, concurrency_limit=2,
                  concurrency_id="file-analysis", show_progress_on=[file_md], trigger_mode="always_last")
        file_in.clear(clear_file, outputs=file_out, concurrency_limit=None, show_progress="hidden")
        file_limit.submit(refuse_file, inputs=[page], outputs=file_out, concurrency_limit=None, show_progress="hidden")
    return demo


def launch(demo: gr.Blocks, args) -> None:
    """Serve the page until interrupted (`args`: app.parse_args' host, port, share, max_file_mb).
    Raises OSError when the port cannot be used."""
    logging.getLogger("uvicorn.error").addFilter(uploads.BrowserGone())
    demo.queue(default_concurrency_limit=1)
    # quiet: Gradio's own lines would advise `share=True` in `launch()`; this page's flag is --share
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, quiet=True, prevent_thread_lock=True,
                max_file_size=int(args.max_file_mb * 1024 * 1024), show_error=True, css=CSS, theme=gr.themes.Soft(),
                i18n=I18N)
    print(f"Page: {demo.local_url}" + (f"  public link: {demo.share_url}" if demo.share_url else
                                      "  (--share for a temporary public link)"), flush=True)
    demo.block_thread()
