"""The engine's typed records: a readout (`Result`), the counters (`EngineStats`), a session's
summary (`SessionSummary`) and its tally (`ShareTally`), and their JSON form, the one every output
uses (`cli_listen.py --json`, the network API's events, the history). Plain Python: a front end or a
network client reads them without importing numpy, torch or the engine."""
from __future__ import annotations

import collections
import datetime
import math
import time
from dataclasses import dataclass, field

from .calibration import words as confidence_words


def _num(x, nd: int = 4):
    """Rounded float, or None for None/NaN/inf (JSON has no NaN)."""
    return round(float(x), nd) if x is not None and math.isfinite(x) else None


def iso_utc(unix_s: float) -> str:
    """A wall-clock instant as ISO-8601 UTC with milliseconds: "2026-12-02T13:45:01.123Z"."""
    t = datetime.datetime.fromtimestamp(unix_s, datetime.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unix(iso: str | None) -> float | None:
    """The inverse of `iso_utc` (None for a record without `at`, or one that does not parse)."""
    try:
        return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Result:
    """One readout.

    Two levels: `genre` is the headline (a top-level genre such as "Electronic", with its own
    hysteresis and change detection), `label` the model's own label (its style, "techno"):
    the best style inside the leading genre, so the two never contradict. A model whose
    labels are genres already (GTZAN) has no style level: `genre == label`.

    scores: smoothed probabilities of `top_k` visible labels: `label` first, then the others
        by smoothed score, highest first. The leader comes first even while a challenger's
        score is a little higher (within `switch_margin`), so every front end that shows
        "the first entry" shows the same label as `label`.
    raw_scores: this window's own probabilities of the visible labels, highest first.
    label: the leading style (with hysteresis) inside the leading genre; None when silent.
    time_s: stream time of the window's end (the hop boundary), counted from samples fed, not
        wall clock; the newest few ms may still have been inside the resampler's filter.
    silent: the window was below `silence_dbfs`; no inference ran and no genre is claimed.
    level_dbfs: RMS level of the window.
    window_s: duration of the classified window.
    inference_ms: model forward time (of the whole batch the window ran in); 0 when silent.
    latency_ms: window complete -> result ready (queueing + inference).
    genre: the leading genre (with hysteresis); None when silent. The session summary counts it.
    genre_scores: smoothed genre scores, pooled from the styles' (`GenreLevel.pool`: each genre
        scores as its best style), `genre` first, then the others, highest first; `top_k` of them.
    at: wall-clock time (Unix seconds) the readout was ready: `time_s` counts audio, so it
        cannot say what played when in a kiosk's day; records carry it as ISO-8601 UTC.
    music: smoothed presence of music, 0-1 (stream/presence.py); None without the detector.
    no_music: no music for ~3 s (a voice, a crowd, a fan): the headline is "no music", so
        `genre` and `label` are None; `scores`/`genre_scores` are still the model's.
    talk: speech heard in the newest hop, with or without music.
    confidence: calibrated chance that `genre` is the genre of the track as a whole
        (stream/calibration.py); None where no calibration exists for the model, or no genre.
    alternative: a genre close to `genre` ("X or Y"), else None.
    """

    scores: dict
    raw_scores: dict
    label: str | None
    time_s: float
    silent: bool
    level_dbfs: float
    window_s: float
    inference_ms: float
    latency_ms: float
    genre: str | None = None
    genre_scores: dict = field(default_factory=dict)
    at: float | None = None
    music: float | None = None
    no_music: bool = False
    talk: bool = False
    confidence: float | None = None
    alternative: str | None = None

    def to_json(self, **extra) -> dict:
        """This readout as a JSON-ready record (`"event": "result"`, numbers rounded, NaN as
        null, raw scores left out): the lines of `cli_listen.py --json` and the network API's
        `result` events. `at` is when it was ready (now, for a Result made without one), in
        ISO-8601 UTC. `extra` fields (a front end's own counters) are appended."""
        rec = {
            "event": "result",
            "time_s": _num(self.time_s, 3),
            "label": self.label,
            "scores": {k: _num(v) for k, v in self.scores.items()},
            "silent": self.silent,
            "level_dbfs": _num(self.level_dbfs, 1),
            "window_s": _num(self.window_s, 3),
            "inference_ms": _num(self.inference_ms, 1),
            "latency_ms": _num(self.latency_ms, 1),
            # after every field of the records before genres (`label`/`scores` are the style level)
            "genre": self.genre,
            "genre_scores": {k: _num(v) for k, v in self.genre_scores.items()},
            "at": iso_utc(time.time() if self.at is None else self.at),  # (fields are only ever added)
            "music": _num(self.music, 3),
            "no_music": self.no_music,
            "talk": self.talk,
            "confidence": _num(self.confidence, 3),
            "certainty": confidence_words(self.confidence),  # sure / likely / unsure
            "alternative": self.alternative,
        }
        rec.update(extra)
        return rec

    @classmethod
    def from_json(cls, rec: dict, offset_s: float = 0.0) -> Result:
        """The inverse of `to_json` (raw scores do not travel; null numbers come back as NaN);
        `offset_s` is added to `time_s`."""
        f = lambda k: float(rec[k]) if rec.get(k) is not None else float("nan")  # noqa: E731
        return cls(scores=dict(rec.get("scores") or {}), raw_scores={}, label=rec.get("label"),
                   time_s=f("time_s") + offset_s, silent=bool(rec.get("silent")), level_dbfs=f("level_dbfs"),
                   window_s=f("window_s"), inference_ms=f("inference_ms"), latency_ms=f("latency_ms"),
                   genre=rec.get("genre"), genre_scores=dict(rec.get("genre_scores") or {}), at=_unix(rec.get("at")),
                   music=rec.get("music"), no_music=bool(rec.get("no_music")), talk=bool(rec.get("talk")),
                   confidence=rec.get("confidence"), alternative=rec.get("alternative"))


@dataclass(frozen=True)
class EngineStats:
    windows_classified: int
    windows_skipped: int
    windows_silent: int
    errors: int
    last_error: str | None
    inference_ms_mean: float
    inference_ms_p95: float
    real_time_factor: float  # mean inference time / hop: < 1 keeps up
    samples_received: int  # input frames (per channel) accepted by feed
    seconds_received: float
    bad_samples_replaced: int
    lag_s: float  # newest audio fed minus the newest result's window end


@dataclass(frozen=True)
class SessionSummary:
    """Where the time went, as shares of the non-silent time, highest first.

    shares / dominant: per leading label (style), as before genres existed.
    genre_shares / dominant_genre: per leading genre (the headline).
    styles: per genre, the shares of its leading styles (of the whole non-silent time, so a
        genre's styles add up to its own share); empty for a model without a style level.
    no_music_s: time shown as "no music" (talk, noise): counted apart, like silence, so the
        shares are of the time music played.
    """

    duration_s: float
    silent_s: float
    shares: dict
    dominant: str | None
    genre_shares: dict = field(default_factory=dict)
    dominant_genre: str | None = None
    styles: dict = field(default_factory=dict)
    no_music_s: float = 0.0

    def to_json(self, stats: EngineStats, reason: str, **extra) -> dict:
        """This summary plus the engine's `stats` counters as a JSON-ready record
        (`"event": "summary"`): the last line of `cli_listen.py --json` and the network API's
        `summary` event. `reason` says why the session ended; `at` is now (the session's end),
        in ISO-8601 UTC; `extra` fields are appended."""
        rec = {
            "event": "summary",
            "reason": reason,
            "duration_s": _num(self.duration_s, 2),
            "silent_s": _num(self.silent_s, 2),
            "dominant": self.dominant,
            "shares": {k: _num(v) for k, v in self.shares.items()},
            "windows_classified": stats.windows_classified,
            "windows_silent": stats.windows_silent,
            "windows_skipped": stats.windows_skipped,
            "errors": stats.errors,
            "inference_ms_mean": _num(stats.inference_ms_mean, 1),
            "inference_ms_p95": _num(stats.inference_ms_p95, 1),
            "real_time_factor": _num(stats.real_time_factor),
            "seconds_received": _num(stats.seconds_received, 3),
            # per genre; `shares`/`dominant` above stay per label (style), as before genres
            "dominant_genre": self.dominant_genre,
            "genre_shares": {k: _num(v) for k, v in self.genre_shares.items()},
            "styles": {g: {k: _num(v) for k, v in inner.items()} for g, inner in self.styles.items()},
            "at": iso_utc(time.time()),
            "no_music_s": _num(self.no_music_s, 2),
        }
        rec.update(extra)
        return rec


class ShareTally:
    """Time per leading (genre, style), the session summary's source (the engine's, and a
    network client's); not thread-safe (the owner holds its lock). Styles are reported when
    there is a style level: some label differs from its genre."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.time: dict[tuple, float] = collections.defaultdict(float)
        self.silent_s = 0.0
        self.no_music_s = 0.0

    def add(self, dt: float, genre: str | None, label: str | None, no_music: bool = False) -> None:
        if no_music and label is None and genre is None:
            self.no_music_s += dt
        elif label is None and genre is None:
            self.silent_s += dt
        else:
            self.time[(genre if genre is not None else label, label)] += dt

    def summary(self) -> SessionSummary:
        total = sum(self.time.values())
        if not total:
            return SessionSummary(self.silent_s + self.no_music_s, self.silent_s, {}, None, no_music_s=self.no_music_s)
        by_label, by_genre = collections.defaultdict(float), collections.defaultdict(float)
        for (g, l), t in self.time.items():
            by_label[l] += t / total
            by_genre[g] += t / total
        first = lambda d: dict(sorted(d.items(), key=lambda kv: -kv[1]))  # noqa: E731 (stable: ties keep order)
        shares, genre_shares = first(by_label), first(by_genre)
        styles = {}
        if any(g != l for g, l in self.time):
            for g in genre_shares:
                styles[g] = first({l: t / total for (gg, l), t in self.time.items() if gg == g})
        return SessionSummary(total + self.silent_s + self.no_music_s, self.silent_s, shares, next(iter(shares)),
                              genre_shares, next(iter(genre_shares)), styles, self.no_music_s)
