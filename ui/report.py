"""One vocabulary for readouts: durations, time shares, the model line, the session summary
and per-result lines, as text and markdown; `dumps` writes a JSON record as one line.

Two levels everywhere: the genre (`Result.genre`, "Electronic") is the headline, the style
(`Result.label`, the model's own label, "techno") stands beside or under it. A model whose
labels are genres (GTZAN) has no style level, and then only one name is said.

Every front end formats through here, so the page, the terminal and the network server say
the same thing the same way. The JSON records themselves are the engine's: `Result.to_json()`
and `SessionSummary.to_json()` (stream/engine.py). `cli_listen.py --json` prints them one a
line and the network API (ui/net) sends them as its `result` and `summary` events, so a kiosk
can switch between the two without changing its parser. Front ends add their own counters as
extra fields (the CLI: input overflows; the server: results dropped for a slow reader).
"""
from __future__ import annotations

import json


def duration(seconds: float) -> str:
    """"42.0 s" below a minute, "1:05.3" (m:ss.s) from one minute on."""
    s = max(0.0, float(seconds))
    return f"{int(s // 60)}:{s % 60:04.1f}" if s >= 60 else f"{s:.1f} s"


def shares(shares: dict, n: int = 5, sep: str = ", ") -> str:
    """The first `n` time shares (or scores) as "electronic 62 %, techno 20 %"."""
    return sep.join(f"{k} {100 * v:.0f} %" for k, v in list(shares.items())[:n])


def genre_shares(summary, n: int = 5, styles: int = 3, sep: str = ", ") -> str:
    """Time shares per genre, each followed by the styles within it (shares of the whole time,
    so they add up to their genre's): "Electronic 72 % (techno 40 %, electronic 32 %), Classical
    28 % (classical 28 %)". Per label, as before genres, for a summary without a genre level."""
    by_genre = getattr(summary, "genre_shares", None) or summary.shares
    within = getattr(summary, "styles", None) or {}
    parts = []
    for g, v in list(by_genre.items())[:n]:
        inner = within.get(g)
        parts.append(f"{g} {100 * v:.0f} %" + (f" ({shares(inner, styles)})" if inner else ""))
    return sep.join(parts)


def headline(genre: str | None, label: str | None) -> str:
    """"Electronic (techno)"; just the name when the genre is the label (no style level)."""
    if genre is None or label is None or genre == label:
        return genre or label or "-"
    return f"{genre} ({label})"


NO_MUSIC = "no music"


def shown(res) -> str:
    """What a face shows as the headline of a readout: "(silence)", "no music" (a voice, a
    crowd, a fan: the engine's music detector heard no music for a few seconds) or the genre."""
    if res.silent:
        return "(silence)"
    if getattr(res, "no_music", False):
        return NO_MUSIC
    return headline(res.genre, res.label)


def confidence(res, percent: bool = False) -> str:
    """The calibrated confidence under a headline: "sure", "likely", "unsure" (percent=True:
    "likely, 64%", as the page's bars), with a close runner-up as "Electronic or Rock?"; "" where there is none
    (no music, silence, a model without a calibration). Never the raw tag score."""
    c = getattr(res, "confidence", None)
    if c is None or res.silent or getattr(res, "no_music", False):
        return ""
    from stream.calibration import words  # inside: ui.report stays free of numpy (front ends' --help)
    text = words(c) + (f", {100 * c:.0f}%" if percent else "")  # the page: as its bars, "64%"
    alt = getattr(res, "alternative", None)
    return f"{text} ({res.genre} or {alt}?)" if alt else text


def model_line(model) -> str:
    """One line naming the model (and, for "auto", why): `load_model` always sets `notice`."""
    return getattr(model, "notice", None) or f"Model: {model.name}."


def model_error(exc, flag: str = "--model") -> str:
    """A `ModelLoadError` phrased for a command line: its flag, not Python calls."""
    advice = exc.advice
    if advice == type(exc).DEFAULT_ADVICE:
        advice = (f"Give {flag} a local checkpoint directory (a folder with config.json and model weights) "
                  "or a Hugging Face Hub id that is cached or reachable")
    fallback = f", or use the bundled offline model: {flag} {exc.fallback}" if exc.fallback else ""
    return f"Could not load model {exc.spec!r}: {exc.cause}. {advice}{fallback}."


def summary_text(summary, stats=None, reason: str | None = None, *, received_s: float | None = None,
                 too_short: str | None = None, markdown: bool = False, **counters) -> str:
    """The session summary as one paragraph (markdown=True: with bold, for the page).

    received_s: audio the front end received; the readouts cover less (the first one needs a
    few seconds, the last hop may be incomplete). too_short: why there was no readout (e.g.
    "musicnn needs at least 2.98 s"). stats (`EngineStats`) adds a line of window and
    inference counters, `counters` (e.g. overflows=0) are appended to it."""
    strong = (lambda t: f"**{t}**") if markdown else (lambda t: t)
    head = strong(f"Session summary{f' ({reason})' if reason else ''}:")
    received = f"{duration(received_s)} of audio received" if received_s else ""
    if summary is None or summary.duration_s <= 0:
        if not received:
            body = "nothing was heard."
        else:
            body = f"{received}, too little for a readout" + (f" ({too_short})." if too_short else ".")
    else:
        covered = f"{duration(summary.duration_s)} classified"
        heard = f"{received}, {covered}" if received else covered
        no_music_s = getattr(summary, "no_music_s", 0.0) or 0.0
        if not summary.shares and no_music_s > 0:
            body = f"{heard}, no music ({duration(no_music_s)} without music" + (
                f", {duration(summary.silent_s)} silent)." if summary.silent_s > 0 else ").")
        elif not summary.shares:
            body = f"{heard}, all of it silence."
        else:
            quiet = [f"{duration(summary.silent_s)} of it silent"] if summary.silent_s > 0 else []
            quiet += [f"{duration(no_music_s)} without music"] if no_music_s > 0 else []
            silent = f" ({', '.join(quiet)})" if quiet else ""
            dominant = getattr(summary, "dominant_genre", None) or summary.dominant
            body = (f"{heard}{silent}. Dominant genre: {strong(dominant)}. "
                    f"Share of the classified time per leading genre: {genre_shares(summary)}.")
    text = f"{head} {body}"
    if stats is not None:
        extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in counters.items())
        text += (f"\nWindows: {stats.windows_classified} classified, {stats.windows_silent} silent, "
                 f"{stats.windows_skipped} skipped; inference {stats.inference_ms_mean:.0f} ms mean "
                 f"(p95 {stats.inference_ms_p95:.0f} ms), real-time factor {stats.real_time_factor:.2f}{extra}.")
    return text


def result_line(res, stats=None, **counters) -> str:
    """One result as a plain text line (time, genre (style), genre scores, level, inference,
    counters); the style scores without a genre level (an old server's records)."""
    if res.silent:
        what = "(silence)"
    else:
        ranked = res.genre_scores or res.scores
        sure = confidence(res)
        what = (f"{shown(res):<14}  " + (f"[{sure}]  " if sure else "")
                + "  ".join(f"{k} {v:.2f}" for k, v in ranked.items()))
    line = f"{res.time_s:7.1f}s  {what}  | level {res.level_dbfs:6.1f} dBFS  infer {res.inference_ms:4.0f} ms"
    if stats is not None:
        line += f"  rtf {stats.real_time_factor:.2f}  silent {stats.windows_silent}"
    return line + "".join(f"  {k.replace('_', ' ')} {v}" for k, v in counters.items())


def dumps(record: dict) -> str:
    """One JSON line of a record (`Result.to_json`, `SessionSummary.to_json`, the server's events;
    no NaN: the records map non-finite numbers to null)."""
    return json.dumps(record, allow_nan=False)
