"""What the page shows, as pure functions of data: the live status line, the live readout's
label value (the genre) and the style under it, the live plot (inline SVG, a line per genre)
and the File tab's text. No Gradio here; durations, shares and the session summary come from
`ui.report`, like every other front end's."""
from __future__ import annotations

import math
import time
from html import escape

from ui.colours import NO_MUSIC_COLOUR, SILENCE_COLOUR, genre_colour
from ui.report import NO_MUSIC, confidence, duration

from .session import PLOT_SPAN_S, LiveStatus, Readout

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
    # (music_mic.js: Gradio's recorder failed to start, e.g. Record pressed before it had loaded)
    "RecorderNotReady": "The page's recorder was not ready when Record was pressed. Press Stop, then Record "
                        "again.",
}

# A genre's colour comes from ui.colours (one table for every front end): the same genre has
# the same colour in the live plot, its band and the File timeline, in every session. Two
# genres of one plot that share a colour (a table's spare colours run out) differ by dashes.
DASHES = ["", "6 3", "2 3"]
DEFAULT_COLOUR = "#4e79a7"
PLOT_CURRENT_K = 5  # the live plot draws the current top few (at most top_k) besides every leader
EMPTY_LIVE_PLOT = ("<div class='genre-plot'><div class='plot-title'>Genres over the last minute</div>"
                   "<div class='empty'>The plot starts with the first readout.</div></div>")


# ---- the live tab ------------------------------------------------------------------------
def status_html(st: LiveStatus, res=None, note: str = "") -> str:
    """The status line under the live readout: settings, level, timing and counters (the
    model has its own line at the top of the page). Data attributes say which readout it is
    and when its audio arrived (the tests follow readouts by them)."""
    s = st.settings
    parts = [f"window {s.window_s:g} s · hop {s.hop_s:g} s · smoothing {s.smoothing_s:g} s"]
    attrs = ""
    if st.stats is not None:
        stats = st.stats
        if res is not None:
            level = f"level {res.level_dbfs:.1f} dBFS"
            parts.append(f"<span class='warn'>silence</span> ({level})" if res.silent else level)
        if stats.windows_classified:
            parts.append(f"inference {stats.inference_ms_mean:.0f} ms (p95 {stats.inference_ms_p95:.0f}) · "
                         f"real-time factor {stats.real_time_factor:.2f}")
        parts.append(f"received {duration(stats.seconds_received)} · windows {stats.windows_classified} · "
                     f"silent {stats.windows_silent} · skipped {stats.windows_skipped}")
        if st.bad_chunks:  # (what went wrong with them is in the server's log)
            parts.append(f"<span class='warn'>{st.bad_chunks} piece{'s' if st.bad_chunks > 1 else ''} of audio "
                         "could not be read</span>")
        if stats.errors:
            parts.append(f"<span class='warn'>model errors {stats.errors}: {escape(stats.last_error or '')}</span>")
        if res is not None:
            lead, _ = headline_of(res)
            attrs = (f" data-result-s='{res.time_s:.3f}' data-leader='{escape(lead or '', quote=True)}'"
                     f" data-style='{escape(res.label or '', quote=True)}'")
            if st.arrival is not None:  # (timings for the tests and the curious: not on screen)
                attrs += (f" data-arrival-ms='{st.arrival * 1000:.1f}' data-ready-ms='{st.ready * 1000:.1f}'"
                          f" data-render-ms='{time.time() * 1000:.1f}' data-infer-ms='{res.inference_ms:.1f}'")
            if st.handler_ms is not None:
                attrs += f" data-handler-median-ms='{st.handler_ms[0]:.2f}' data-handler-max-ms='{st.handler_ms[1]:.2f}'"
    if note:
        parts.append(escape(note))
    attrs += f" data-bad-chunks='{st.bad_chunks}' data-late-chunks='{st.late_chunks}'"
    return f"<div class='live-status'{attrs}>" + " · ".join(parts) + "</div>"


def mic_problem_html(name: str | None) -> str:
    """The status line when the browser gave no microphone: what happened, what to do."""
    name = name or "Error"
    text = MIC_PROBLEMS.get(name, f"The browser could not open the microphone ({name}). Check that one is "
                                  "connected and allowed for this page, then press Record again.")
    return (f"<div class='live-status' data-mic-problem='{escape(name, quote=True)}'>"
            f"<span class='warn'>{escape(text)}</span></div>")


def mic_problem_label(name: str | None) -> str:
    """The readout's headline while the microphone is missing."""
    if name == "RecorderNotReady":
        return "not recording"
    return "microphone blocked" if MIC_PROBLEMS.get(name or "") is MIC_REFUSED else "no microphone"


def headline_of(res) -> tuple[str | None, dict]:
    """(leading genre, genre scores) of a readout; its label and scores when it has no genre
    level (a Result made without one)."""
    if res.genre_scores or res.genre is not None:
        return res.genre, res.genre_scores
    return res.label, res.scores


def label_value(res, top_k: int):
    """The live readout: the engine's leading genre (with hysteresis) as the headline and its
    bar first, then the highest of the others (`top_k` bars, 0 = all); "silence"; None before
    the first readout."""
    if res is None:
        return None
    top_k = top_k or 10 ** 6
    if res.silent:
        return "silence"
    if getattr(res, "no_music", False):  # a voice, a crowd, a fan: no genre named
        return NO_MUSIC
    lead, scores = headline_of(res)
    if lead is None:
        return dict(list(scores.items())[:top_k])
    rest = [(g, v) for g, v in scores.items() if g != lead][:top_k - 1]
    return {"label": lead, "confidences": {lead: scores.get(lead, 0.0), **dict(rest)}}


def style_html(res) -> str:
    """The line under the headline: the leading style inside the leading genre and its score
    (nothing for a model without a style level, whose genre is its label)."""
    if res is not None and getattr(res, "no_music", False) and not res.silent:
        talk = " (someone is talking)" if res.talk else ""
        return f"<div class='live-style no-music' data-no-music='1'>no music heard{talk}</div>"
    sure = confidence(res, percent=True) if res is not None else ""
    sure_html = (f" · <span class='confidence' data-confidence='{res.confidence:.3f}'>{escape(sure)}</span>"
                 if sure else "")
    if res is None or res.silent or res.label is None or headline_of(res)[0] in (None, res.label):
        return f"<div class='live-style'>{sure_html[3:]}</div>"
    score = res.scores.get(res.label) if not sure else None  # the raw tag score only without a calibration
    return (f"<div class='live-style' data-style='{escape(res.label, quote=True)}'>style: "
            f"<b>{escape(res.label)}</b>{f' {score:.0%}' if score is not None else ''}{sure_html}</div>")  # as the bars: 39%


# ---- the live plot -------------------------------------------------------------------------
def genre_styles(styles: dict, genres, order=()) -> dict:
    """{genre: (colour, dash)}: each genre in its colour (`ui.colours.genre_colour`, placed by
    `order`, the model's genre order, where the table does not name it), solid unless a genre
    drawn before it in this tab (`styles`, updated in place, one per browser tab) has that
    colour already."""
    for g in [*order, *genres]:
        if g not in styles:
            colour = genre_colour(g, order, taken=[c for c, _ in styles.values()])
            same = sum(c == colour for c, _ in styles.values())
            styles[g] = (colour, DASHES[same % len(DASHES)])
    return styles


def live_plot(readouts: list[Readout], res, top_k: int, hop_s: float, styles: dict, order=()) -> str:
    """The last minute as it was: a line for every genre that led in it and for the current
    top few, the leading genre as a band under the lines, on a score axis from 0.
    `readouts` up to `res` (None: all of them); `styles` keeps the tab's colours, `order` (the
    model's genres) fixes them."""
    if not readouts:
        return EMPTY_LIVE_PLOT
    now = readouts[-1].time_s
    hist = [r for r in readouts if r.time_s >= now - PLOT_SPAN_S]
    k = min(PLOT_CURRENT_K, top_k or PLOT_CURRENT_K)
    lead_now, scores_now = headline_of(res) if res is not None else (None, {})
    current = list(scores_now)[:k]
    if not current:  # silent now: the genres of the newest readout with scores
        current = next((list(r.scores)[:k] for r in reversed(hist) if r.scores), [])
    leaders = [r.leader for r in hist if r.leader and r.leader != NO_MUSIC]
    genres = list(dict.fromkeys(leaders + current))  # leaders in the order they first led
    return history_svg(hist, genres, genre_styles(styles, genres, order), hop_s, leader_now=lead_now)


class _Axes:
    """The plot's geometry: time `t0..t1` across, scores `0..ymax` up."""

    # room for tick labels at the phone size of the text too (page.css: 24 units on a phone's
    # 640 units across ~350 px is 13 px on screen)
    W, H, L, R, T = 640, 260, 56, 12, 14
    BAND_H, GAP, BOTTOM = 14, 12, 30

    def __init__(self, t1: float, span_s: float, ymax: float):
        self.t0, self.t1, self.span_s, self.ymax = t1 - span_s, t1, span_s, ymax
        self.pw = self.W - self.L - self.R
        self.ph = self.H - self.T - self.BAND_H - self.GAP - self.BOTTOM - 4
        self.band_y = self.T + self.ph + self.GAP

    def x(self, t: float) -> float:
        return self.L + (min(max(t, self.t0), self.t1) - self.t0) / self.span_s * self.pw

    def y(self, v: float) -> float:
        return self.T + (1 - min(max(v, 0.0), self.ymax) / self.ymax) * self.ph


def history_svg(hist: list, genres: list, styles: dict, hop_s: float, leader_now: str | None = None,
                span_s: float = PLOT_SPAN_S) -> str:
    """Inline SVG of (time_s, {genre: score}, leader) readouts, with its legend. Drawn here
    rather than with gr.LinePlot: its colour domain and y range follow the data, so genres that
    left the top lost their line (or their colour) and small differences filled the height."""
    top = max((sc.get(g, 0.0) for _, sc, _ in hist for g in genres), default=0.0)
    ax = _Axes(max(hist[-1][0], span_s), span_s, 0.5 if top <= 0.5 else 1.0)  # from 0, a fixed scale
    out = [f"<svg viewBox='0 0 {ax.W} {ax.H}' role='img' aria-label='genre scores over the last minute'>"]
    out += _axes_svg(ax)
    out += [_genre_line_svg(ax, hist, g, styles, g == leader_now) for g in genres]
    out += _lead_band_svg(ax, hist, hop_s, styles)
    out.append("</svg>")
    return ("<div class='genre-plot'><div class='plot-title'>Genres over the last minute "
            "<small>(band: the leading genre)</small></div>" + "".join(out)
            + "<div class='legend'>" + "".join(_legend(hist, genres, styles, leader_now)) + "</div></div>")


def _axes_svg(ax: _Axes) -> list[str]:
    out = []
    step = 0.1 if ax.ymax == 0.5 else 0.2  # (labels of 3 characters at most: they fit at phone size)
    for i in range(int(round(ax.ymax / step)) + 1):  # score grid
        v = round(i * step, 2)
        out.append(f"<line class='grid' x1='{ax.L}' x2='{ax.L + ax.pw}' y1='{ax.y(v):.1f}' y2='{ax.y(v):.1f}' "
                   f"stroke='currentColor' stroke-opacity='{0.35 if i == 0 else 0.12}'/>"
                   f"<text class='ytick' x='{ax.L - 5}' y='{ax.y(v):.1f}' text-anchor='end' "
                   f"dominant-baseline='central'>{v:.2g}</text>")
    for tick in range(int(math.ceil(ax.t0 / 10)) * 10, int(ax.t1) + 1, 10):  # time axis, every 10 s
        out.append(f"<text class='xtick' x='{ax.x(tick):.1f}' y='{ax.band_y + ax.BAND_H + 4}' "
                   f"text-anchor='middle' dominant-baseline='hanging'>{tick // 60}:{tick % 60:02d}</text>")
    return out


def _genre_line_svg(ax: _Axes, hist: list, g: str, styles: dict, leading: bool) -> str:
    """One genre's path; silence and gaps break it (a lone point is a dot)."""
    colour, dash = styles.get(g, (DEFAULT_COLOUR, ""))
    runs, run = [], []
    for t, sc, _ in hist:
        if g in sc and t >= ax.t0:
            run.append(f"{ax.x(t):.1f},{ax.y(sc[g]):.1f}")
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    d = " ".join("M" + " L".join(r) for r in runs if len(r) > 1)
    dots = "".join(f"<circle cx='{r[0].split(',')[0]}' cy='{r[0].split(',')[1]}' r='2' fill='{colour}'/>"
                   for r in runs if len(r) == 1)
    return (f"<g class='genre-line' data-genre='{escape(g, quote=True)}' data-colour='{colour}'>"
            f"<path d='{d}' fill='none' stroke='{colour}' stroke-width='{3 if leading else 2}' "
            f"stroke-dasharray='{dash}' stroke-linejoin='round'/>{dots}</g>")


def _lead_band_svg(ax: _Axes, hist: list, hop_s: float, styles: dict) -> list[str]:
    """The leading genre (with hysteresis) over time: the readout at t covers the hop before t."""
    segments: list = []  # [start, end, leader]
    prev = None
    for t, _, leader in hist:
        start = prev if prev is not None else t - hop_s  # (skipped windows: as the session tally)
        prev = t
        if t <= ax.t0:
            continue
        if segments and segments[-1][2] == leader and abs(segments[-1][1] - start) < 1e-6:
            segments[-1][1] = t
        else:
            segments.append([max(start, ax.t0), t, leader])
    out = [f"<text class='band-label' x='{ax.L - 5}' y='{ax.band_y + ax.BAND_H / 2}' text-anchor='end' "
           f"dominant-baseline='central'>lead</text>"]
    for start, end, leader in segments:
        fill = (NO_MUSIC_COLOUR if leader == NO_MUSIC else styles.get(leader, (DEFAULT_COLOUR, ""))[0]) if leader \
            else SILENCE_COLOUR
        what = escape(leader) if leader else "silence"
        out.append(f"<rect class='lead' data-genre='{escape(leader or '', quote=True)}' x='{ax.x(start):.1f}' "
                   f"y='{ax.band_y}' width='{max(ax.x(end) - ax.x(start), 0.5):.1f}' height='{ax.BAND_H}' "
                   f"fill='{fill}'{'' if leader else ' fill-opacity=0.5'}>"
                   f"<title>{duration(start)}–{duration(end)}: {what}</title></rect>")
    return out


def _legend(hist: list, genres: list, styles: dict, leader_now: str | None) -> list[str]:
    out = []
    for g in genres:
        colour, dash = styles.get(g, (DEFAULT_COLOUR, ""))
        led = any(leader == g for _, _, leader in hist)
        cls = "legend-item" + (" now" if g == leader_now else "")
        out.append(f"<span class='{cls}' data-genre='{escape(g, quote=True)}' data-colour='{colour}' "
                   f"data-led='{int(led)}'><svg width='22' height='10' style='display:inline;width:22px'>"
                   f"<line x1='1' x2='21' y1='5' y2='5' stroke='{colour}' stroke-width='3' "
                   f"stroke-dasharray='{dash}'/></svg> {escape(g)}{' (leading)' if g == leader_now else ''}</span>")
    if any(leader == NO_MUSIC for _, _, leader in hist):
        out.append(f"<span class='legend-item no-music'><svg width='22' height='10' style='display:inline;"
                   f"width:22px'><rect width='22' height='10' fill='{NO_MUSIC_COLOUR}'/></svg> {NO_MUSIC}</span>")
    if any(leader is None for _, _, leader in hist):
        out.append(f"<span class='legend-item silence'><svg width='22' height='10' style='display:inline;"
                   f"width:22px'><rect width='22' height='10' fill='{SILENCE_COLOUR}'/></svg> silence</span>")
    return out


# ---- the file tab ----------------------------------------------------------------------------
def file_markdown(fa, name: str, window_s: float) -> str:
    """What the File tab says about an analysed recording (`stream.FileAnalysis`)."""
    if not fa.scores:
        return f"**{escape(name)}**: {duration(fa.duration_s)}, silent throughout ({fa.n_windows} windows)."
    silent = int(fa.silent.sum())
    every = f" every {fa.hop_s:.2g} s" if fa.hop_s is not None else ""
    segment = (f" The most **{fa.top_label}** part is {duration(fa.segment[0])} – {duration(fa.segment[1])} "
               "(play it below)." if fa.segment else "")
    genre = fa.top_genre or fa.top_label
    score = fa.genre_scores.get(genre, fa.scores.get(genre, 0.0))
    style = f", style **{fa.top_style}** {fa.scores[fa.top_style]:.0%}" if fa.top_style else ""  # (% as the bars)
    return (f"**{escape(name)}**: {duration(fa.duration_s)}, {fa.n_windows} windows of {window_s:g} s{every}"
            f"{f' ({silent} silent)' if silent else ''}. Top genre: **{genre}** "
            f"(mean score {score:.0%}{style}).{segment}")


def file_error_html(message: str) -> str:
    return f"<div class='file-error'>{escape(message)}</div>"


def file_busy_html(name: str) -> str:
    """The File tab's text while `name` is analysed (the previous file's results are gone):
    empty, a marker only, since Gradio's progress over it names the file and how far it is
    (one progress text, not two)."""
    return f"<div class='file-busy' data-file='{escape(name, quote=True)}'></div>"


def no_audio_html(after_s: float) -> str:
    """The status line when Record was pressed and no audio came: what to do."""
    return ("<div class='live-status' data-no-audio='1'><span class='warn'>No sound has reached the page "
            f"{after_s:g} s after Record. Press Stop, then Record again; if that does not help, reload the page "
            "(and check that the browser may use the microphone).</span></div>")
