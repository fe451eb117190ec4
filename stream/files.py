"""Whole-file analysis: sliding windows over a recording, decoded and resampled in blocks."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from .audio import validate_rate, validate_samples
from .engine import EngineConfig, Result, StreamEngine
from .errors import AudioDecodeError

log = logging.getLogger(__name__)

BLOCK_S = 10  # decode this many seconds at a time: memory stays flat whatever the file length
FFMPEG_RATE = 48000
SUPPORTED = ("wav", "flac", "ogg", "opus", "mp3")
# Whole files need no live refresh: the default hop is a third of the window (3 s with MusiCNN's
# 9 s windows) instead of the live 1 s. bench/file_hop.py, 3 real recordings (17.6 min): 0.34x
# the time of hop 1, same top labels, file averages within 0.0043, every window's leader the same.
FILE_HOP_FRACTION = 1 / 3


@dataclass
class FileAnalysis:
    """Result of `analyze_file`.

    labels: the visible labels, in the column order of `timeline`.
    starts_s / ends_s: each window's span in the file.
    timeline: (n_windows, n_labels) per-window probabilities; rows of silent windows are NaN.
    scores: mean probability over non-silent windows, highest first.
    top_label: the highest mean score (None if the whole file is silent).
    segment: (start_s, end_s) of the window where `top_label` is most pronounced.
    genres / genre_timeline / genre_scores / top_genre: the same at the genre level (each
        window's genre scores pooled from its label scores as the live readout pools them).
    top_style: the best label inside `top_genre` (it may differ from `top_label` when another
        genre's styles add up to more), None when silent or without a style level.
    """

    path: str | None
    model: str
    duration_s: float
    labels: list
    starts_s: np.ndarray
    ends_s: np.ndarray
    timeline: np.ndarray
    silent: np.ndarray
    scores: dict
    top_label: str | None
    segment: tuple | None
    genres: list = field(default_factory=list)
    genre_timeline: np.ndarray | None = None
    genre_scores: dict = field(default_factory=dict)
    top_genre: str | None = None
    top_style: str | None = None

    @property
    def n_windows(self) -> int:
        return len(self.ends_s)

    @property
    def hop_s(self) -> float | None:
        """The spacing of the windows (None for a single window)."""
        return float(np.median(np.diff(self.ends_s))) if self.n_windows > 1 else None

    def timeline_rows(self, labels, genres: bool = False) -> list[tuple[float, float, str]]:
        """(window centre in s, score, label) for each non-silent window and each of `labels`
        (`genres=True`: of genres): the rows of a line plot of the timeline, one line each."""
        names, table = (self.genres, self.genre_timeline) if genres else (self.labels, self.timeline)
        cols = [names.index(label) for label in labels]
        mid = (self.starts_s + self.ends_s) / 2
        return [(float(mid[i]), float(table[i, c]), label)
                for i in range(self.n_windows) if not self.silent[i] for c, label in zip(cols, labels)]


def _ffmpeg_blocks(path: str, block_s: int, start_s: float = 0.0) -> Iterator[tuple[np.ndarray, int]]:
    seek = ["-ss", f"{start_s:.3f}"] if start_s > 0 else []  # (before -i: seeks the input, not decoding up to it)
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", *seek, "-i", path, "-f", "f32le", "-ac", "1", "-ar", str(FFMPEG_RATE),
         "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        want = FFMPEG_RATE * block_s * 4
        while True:
            data = proc.stdout.read(want)
            if not data:
                break
            yield np.frombuffer(data[: len(data) // 4 * 4], np.float32), FFMPEG_RATE
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise AudioDecodeError(f"ffmpeg could not decode {path!r}: {err.splitlines()[-1] if err else 'unknown error'}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class AudioInfo:
    """What `probe_file` learnt without decoding the whole file."""

    duration_s: float | None  # None: read through ffmpeg and longer than one block (length unknown)
    sample_rate: int
    channels: int


# libmpg123 (inside libsndfile) prints notes such as "Note: Illegal Audio-MPEG-Header ..." on
# file descriptor 2 itself, outside any log format; they are routed to this module's log.
_DECODER_LINE = re.compile(r"^(Note: |Warning: |Error: |\[[^\]]*\.c:[^\]]*\] )")
_fd2_lock = threading.Lock()
_fd2_users = 0
_fd2_saved: int | None = None
_fd2_file = None


@contextlib.contextmanager
def _quiet_decoder():
    """Catch what C decoders write to fd 2 during one libsndfile call and log it at DEBUG.

    fd 2 belongs to the whole process, so while it is redirected (the milliseconds of an open
    or a block read) another thread's stderr output is caught too: lines that do not look
    like decoder notes are written back to the real stderr afterwards, not lost. Concurrent
    decodes share one redirection (counted)."""
    global _fd2_users, _fd2_saved, _fd2_file
    with _fd2_lock:
        if _fd2_users == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to keep clean
                saved = None
            if saved is not None:
                _fd2_file = tempfile.TemporaryFile()
                os.dup2(_fd2_file.fileno(), 2)
                _fd2_saved = saved
        _fd2_users += 1
    try:
        yield
    finally:
        with _fd2_lock:
            _fd2_users -= 1
            if _fd2_users == 0 and _fd2_saved is not None:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError, AttributeError):
                    pass
                os.dup2(_fd2_saved, 2)
                os.close(_fd2_saved)
                _fd2_saved = None
                _fd2_file.seek(0)
                caught = _fd2_file.read()
                _fd2_file.close()
                _fd2_file = None
                _route_caught(caught)


def _route_caught(caught: bytes) -> None:
    other = []
    for line in caught.decode(errors="replace").splitlines(keepends=True):
        if _DECODER_LINE.match(line):
            log.debug("decoder: %s", line.rstrip())
        elif line.strip():
            other.append(line)
    if other:
        os.write(2, "".join(other).encode())


def _looks_like_text(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    text = head.decode("utf-8", errors="ignore")  # a cut multi-byte character is dropped
    return b"\0" not in head and bool(text) and all(c.isprintable() or c in "\r\n\t" for c in text)


def _unreadable(p: Path, sf_exc, ffmpeg_exc=None) -> AudioDecodeError:
    """One clear message for a file no decoder accepts (the decoders' own texts go to DEBUG:
    libsndfile says "File does not exist ... (possibly a pipe?)" for an mp3 that is not one)."""
    log.debug("%s: libsndfile: %s; ffmpeg: %s", p, sf_exc, ffmpeg_exc)
    fmt = p.suffix.lstrip(".").lower() or "unknown"
    why = "it contains text, not audio" if _looks_like_text(p) else "its format was not recognised, or it is damaged"
    if ffmpeg_exc is not None:
        return AudioDecodeError(
            f"{p.name!r} is not a readable audio file: {why} (neither libsndfile nor ffmpeg could decode it). "
            f"Use a complete wav, flac, ogg, opus or mp3 recording (or another format ffmpeg reads); "
            "if it should be one, export or download it again")
    if fmt in SUPPORTED:
        todo = "if it should be one, export or download it again"
    else:
        todo = f"for format {fmt!r} install ffmpeg (apt-get install ffmpeg)"
    return AudioDecodeError(
        f"{p.name!r} is not a readable audio file: {why} (format {fmt!r}; libsndfile could not decode it). "
        f"Supported without extra tools: {', '.join(SUPPORTED)}; {todo}")


def _checked_path(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise AudioDecodeError(f"{str(path)!r} does not exist or is not a file")
    if p.stat().st_size == 0:
        raise AudioDecodeError(f"{str(path)!r} is empty (0 bytes)")
    return p


def _open_sf(p: Path):
    """(SoundFile, None) or (None, the libsndfile error)."""
    try:
        with _quiet_decoder():
            return sf.SoundFile(str(p)), None
    except Exception as exc:
        return None, exc


def probe_file(path) -> AudioInfo:
    """Check that `path` is decodable audio without reading all of it (a front end calls this
    before loading a model, so a bad file fails in milliseconds, not after the model load).
    Raises AudioDecodeError saying what is wrong and what to do."""
    p = _checked_path(path)
    f, exc = _open_sf(p)
    if f is not None:
        with f:
            if f.frames == 0:
                raise AudioDecodeError(f"{p.name!r} contains no audio samples")
            return AudioInfo(f.frames / f.samplerate, int(f.samplerate), int(f.channels))
    if not shutil.which("ffmpeg"):
        raise _unreadable(p, exc)
    blocks = _checked_ffmpeg(p, BLOCK_S, exc)
    try:  # the first block proves it is audio; the length is known only if the file ends there
        block, rate = next(blocks)
        short = len(block) < rate * BLOCK_S
        return AudioInfo(len(block) / rate if short else None, rate, 1)
    finally:
        blocks.close()


def decode_blocks(path, block_s: int = BLOCK_S, start_s: float = 0.0) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(samples, rate)`` blocks of a file: float32 (n,) or (n, channels), from `start_s` on.

    wav/flac/ogg/opus/mp3 are read by libsndfile (bundled with `soundfile`); anything else
    is piped through ffmpeg when it is installed. Raises AudioDecodeError with the reason.
    What the C decoders print on stderr goes to this module's log (DEBUG), not the terminal.
    """
    p = _checked_path(path)
    f, exc = _open_sf(p)
    if f is None:
        if shutil.which("ffmpeg"):
            yield from _checked_ffmpeg(p, block_s, exc, start_s)
            return
        raise _unreadable(p, exc)
    with f:
        if f.frames == 0:
            raise AudioDecodeError(f"{p.name!r} contains no audio samples")
        rate = f.samplerate
        if start_s > 0:
            with _quiet_decoder():
                f.seek(min(int(start_s * rate), f.frames))
        step = rate * block_s
        while True:
            try:
                with _quiet_decoder():  # per read, never across a yield
                    block = f.read(step, dtype="float32", always_2d=False)
            except sf.LibsndfileError as exc:
                raise AudioDecodeError(f"{p.name!r} is corrupt: decoding stopped at {f.tell() / rate:.1f} s ({exc})") from None
            if len(block) == 0:
                return
            yield block, rate


def read_segment(path, start_s: float, end_s: float) -> tuple[np.ndarray, int]:
    """``(samples, rate)`` of `path` from `start_s` to `end_s` (float32 (n,) or (n, channels)),
    e.g. `FileAnalysis.segment` to play it. Decoded as `decode_blocks` does, starting at
    `start_s`: only the segment is read, not the file up to it. Raises AudioDecodeError."""
    if not 0 <= start_s < end_s:
        raise ValueError(f"segment {start_s:g}..{end_s:g} s is empty or negative")
    parts, got = [], 0
    with contextlib.closing(decode_blocks(path, start_s=start_s)) as blocks:  # (ends ffmpeg when done early)
        for block, rate in blocks:
            want = int(round((end_s - start_s) * rate))
            parts.append(block[:want - got])
            got += len(parts[-1])
            if got >= want:
                break
    if not got:
        raise AudioDecodeError(f"{Path(path).name!r} has no audio from {start_s:g} s on")
    return np.concatenate(parts), rate


def _checked_ffmpeg(p: Path, block_s, first_exc, start_s: float = 0.0):
    got = False
    try:
        for block, rate in _ffmpeg_blocks(str(p), block_s, start_s):
            got = got or len(block) > 0
            yield block, rate
    except AudioDecodeError as exc:
        raise _unreadable(p, first_exc, exc) from None
    if not got:
        raise AudioDecodeError(f"{p.name!r} contains no audio samples")


def _array_blocks(samples, sample_rate, block_s):
    arr = validate_samples(samples)
    rate = validate_rate(sample_rate)
    if arr.shape[0] == 0:
        raise AudioDecodeError("the audio array is empty")
    step = rate * block_s
    for i in range(0, arr.shape[0], step):
        yield arr[i:i + step], rate


def _span(seconds: float) -> str:
    """A length as a person says it: "45 s", "6 min 40 s", "120 min"."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{s} s" if not m else f"{m} min" + (f" {s} s" if s else "")


def analyze_file(path_or_array, model, *, window_s: float | None = None, hop_s: float | None = None,
                 sample_rate: int | None = None, progress: Callable[[float, str], None] | None = None,
                 max_duration_s: float | None = None, config: EngineConfig | None = None) -> FileAnalysis:
    """Classify a whole recording with sliding windows.

    window_s defaults to the model's. hop_s defaults to `config.hop_s` if set, else to a third
    of the window (3 s for MusiCNN's 9 s windows, 3.3 s for the 10 s DistilHuBERT window),
    not the live 1 s: compute is proportional to 1 / hop. On three real recordings with
    MusiCNN (bench/file_hop.py) hop 3 s took 0.34x the time of hop 1 s with the same top
    labels, file-average scores within 0.0043 and the same leading genre in every window;
    hop 4.5 s (0.24x) disagreed on up to 8 % of windows. Every moment of the file is still
    covered by three windows. Pass hop_s=1.0 for the finest timeline. A file shorter than one window is
    classified once as a whole. `progress(fraction, text)` is called after each decoded block.
    `config` supplies the other engine settings (label view, silence gate, genres); smoothing is off.
    For arrays pass `sample_rate`. Raises AudioDecodeError for unreadable/empty/too long input.
    """
    base = config or EngineConfig()
    ws = window_s if window_s is not None else (base.window_s or model.default_window_s)
    if hop_s is None:
        hop_s = base.hop_s if base.hop_s is not None else ws * FILE_HOP_FRACTION
    cfg = EngineConfig(window_s=ws, hop_s=hop_s, min_window_s=ws,
                       smoothing_s=0.0, top_k=0, allow=base.allow, deny=base.deny,
                       silence_dbfs=base.silence_dbfs, switch_margin=0.0, genres=base.genres)
    results: list[Result] = []
    engine = StreamEngine(model, cfg, background=False, on_result=results.append)
    if isinstance(path_or_array, (str, Path)):
        path = str(path_or_array)
        total = probe_file(path).duration_s  # a bad file fails here, before any window
        blocks = decode_blocks(path)
    else:
        if sample_rate is None:
            raise ValueError("analyze_file(array, ...) needs sample_rate=")
        path = None
        blocks = _array_blocks(path_or_array, sample_rate, BLOCK_S)
        total = np.asarray(path_or_array).shape[0] / sample_rate
    if max_duration_s is not None and total is not None and total > max_duration_s:
        raise AudioDecodeError(f"the recording is {_span(total)} long; the limit is {_span(max_duration_s)}")
    done = 0.0
    for block, rate in blocks:
        engine.feed(block, rate)
        done += len(block) / rate
        if max_duration_s is not None and done > max_duration_s:
            raise AudioDecodeError(f"the recording is longer than the limit of {_span(max_duration_s)}")
        if progress is not None:
            progress(min(done / total, 1.0) if total else 0.0, f"{done:.0f} s analysed")
    engine.flush()
    engine.close()
    st = engine.stats
    if not results and st.errors:
        raise RuntimeError(f"the model failed on every window ({st.errors}): {st.last_error}")
    if not results:
        raise AudioDecodeError(f"the recording is too short to classify ({done:.2f} s); {model.name} needs "
                               f"at least {model.min_samples / model.sample_rate:.2f} s of audio")
    if st.errors:
        log.warning("analyze_file: the model failed on %d of %d windows (%s)", st.errors,
                    st.errors + len(results), st.last_error)
    return _summarise(path, model, engine, results, done)


def _summarise(path, model, engine, results, duration) -> FileAnalysis:
    labels = engine.visible_labels
    ends = np.array([r.time_s for r in results])
    starts = np.maximum(ends - np.array([r.window_s for r in results]), 0.0)
    silent = np.array([r.silent for r in results])
    timeline = np.full((len(results), len(labels)), np.nan, np.float32)
    for i, r in enumerate(results):
        if not r.silent:
            timeline[i] = [r.raw_scores[l] for l in labels]
    scores, top, segment = {}, None, None
    if not silent.all():
        mean = np.nanmean(timeline, axis=0)
        order = np.argsort(-mean, kind="stable")
        scores = {labels[i]: float(mean[i]) for i in order}
        top = labels[order[0]]
        col = np.where(silent, -np.inf, np.nan_to_num(timeline[:, order[0]], nan=-np.inf))
        best = int(np.argmax(col))
        segment = (float(starts[best]), float(ends[best]))
    # the genre level, pooled per window like the live readout's
    level = engine.genre_level
    full = np.zeros((len(results), len(model.labels)), np.float64)
    full[:, [model.labels.index(l) for l in labels]] = np.nan_to_num(timeline, nan=0.0)
    g_timeline = np.array([level.scores(row) for row in full], np.float32).reshape(len(results), len(level.genres))
    g_timeline[silent] = np.nan
    g_scores, top_genre, top_style = {}, None, None
    if not silent.all():
        g_mean = np.nanmean(g_timeline, axis=0)
        g_order = np.argsort(-g_mean, kind="stable")
        g_scores = {level.genres[i]: float(g_mean[i]) for i in g_order}
        top_genre = level.genres[g_order[0]]
        inside = [l for l in scores if level.genre_of.get(l) == top_genre]  # (scores: highest first)
        top_style = inside[0] if inside and level.has_styles else None
    return FileAnalysis(path, model.name, duration, labels, starts, ends, timeline, silent, scores, top, segment,
                        list(level.genres), g_timeline, g_scores, top_genre, top_style)
