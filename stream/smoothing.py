"""Readout smoothing: an EMA over stream time with a sticky leader that re-anchors at once when
the newest seconds of music consistently disagree with it (a change of music)."""
from __future__ import annotations

import math

import numpy as np


class ScoreSmoother:
    """EMA with a time constant in seconds, a sticky leading label, and change re-anchoring.

    The weight of a new window is ``1 - exp(-dt / tau)`` where ``dt`` is the stream time since
    the previous update. Expressing the constant in seconds keeps the readout equally calm
    whatever the hop, and a skipped window (larger dt) simply weighs the new one more.
    Larger `tau` = steadier readout, slower reaction to a genre change (about tau seconds to
    move 63 % of the way). ``tau = 0`` disables smoothing.

    `switch_margin` (hysteresis, relative): the leader changes only when a challenger's
    smoothed score exceeds the leader's by this fraction of the leader's score (0.1 = 10 %),
    so two close genres don't flicker. Relative, so it means the same for a softmax whose
    leader holds 0.6 and for a sigmoid tagger whose leading tag holds 0.2.

    Change re-anchoring (`change_s` > 0). A long window and a long EMA keep a steady readout
    but drag the old music along for window + several tau after a change. So each update may
    also pass `recent`: the scores of only the newest few seconds. When they differ from the
    smoothed state by more than `NOVELTY` (total-variation distance between the two score
    profiles, normalised to sum 1 over the candidates, so it reads the same for a softmax and
    a tagger) in every update for `change_s` seconds, the music has changed: the state
    restarts from `recent` (the hysteresis still applies: a genre that leads the new music too
    keeps leading), and `changed_at` says when the new
    music began, so the caller can classify only audio from then on. "For `change_s` seconds"
    is stream time from the first differing update to the confirming one (1 s = two updates
    at a 1 s hop, three at 0.5 s): one odd window is not enough.
    """

    NOVELTY = 0.35
    ONSET = 0.5

    def __init__(self, tau_s: float, switch_margin: float = 0.0, change_s: float = 0.0, recent_s: float = 3.0):
        self.tau_s = float(tau_s)
        self.switch_margin = float(switch_margin)
        self.change_s = float(change_s)
        self.recent_s = float(recent_s)
        self.reset()

    def reset(self) -> None:
        self.state: np.ndarray | None = None
        self.leader: int | None = None
        self.changed_at: float | None = None  # stream time the newest detected change began
        self.changed = False  # the latest update re-anchored (a change detected, or `restart`)
        self.started_at: float | None = None  # stream time of the update the state (re)started from
        self._last_t: float | None = None
        self._novel_since: float | None = None

    def update(self, scores: np.ndarray, t: float, candidates: np.ndarray | None = None,
               recent: np.ndarray | None = None, restart: bool = False) -> np.ndarray:
        """Fold in `scores` observed at stream time `t`; returns the smoothed vector.

        `candidates` (indices) limits which labels may lead (e.g. the visible ones).
        `recent`: scores of only the newest seconds of the same audio (None: `scores` are
        recent themselves, e.g. a short window after a change).
        `restart`: a change of music was detected elsewhere (the genre level, for the styles
        under it): start over from `recent` now, as after a change detected here.
        """
        scores = np.asarray(scores, np.float64)
        recent = scores if recent is None else np.asarray(recent, np.float64)
        idx = np.arange(len(scores)) if candidates is None else np.asarray(candidates)
        changed = False
        self.changed = False
        if self.state is None or self.tau_s <= 0 or self._last_t is None:
            self.state = scores.copy()
            self._novel_since = None
            self.started_at = t
        elif restart:
            self.state = recent.copy()
            self._novel_since = None
            self.changed = True
            self.started_at = t
        else:
            nov = _novelty(recent, self.state, idx) if self.change_s > 0 else 0.0
            if nov > self.NOVELTY * self.ONSET:  # the new music may be starting
                if self._novel_since is None:
                    self._novel_since = t
                changed = nov > self.NOVELTY and t - self._novel_since >= self.change_s - 1e-6
            else:
                self._novel_since = None
            if changed:
                self.state = recent.copy()
                # the first novel `recent` span was about half new music
                self.changed_at = self._novel_since - self.recent_s / 2
                self._novel_since = None
                self.changed = True
                self.started_at = t
            else:
                dt = max(t - self._last_t, 0.0)
                w = 1.0 - math.exp(-dt / self.tau_s)
                self.state += w * (scores - self.state)
        self._last_t = t
        self._update_leader(idx)
        return self.state

    def _update_leader(self, idx) -> None:
        if idx.size == 0:
            self.leader = None
            return
        best = int(idx[np.argmax(self.state[idx])])
        if self.leader is None or self.leader not in idx:
            self.leader = best
        elif best != self.leader and self.state[best] > self.state[self.leader] * (1.0 + self.switch_margin):
            self.leader = best


def _novelty(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> float:
    """Cosine distance (0..1 for non-negative scores) between the score profiles a and b over
    idx: 0 = same proportions. Scale-free, so a tagger's ~0.2 and a softmax's ~0.6 read alike."""
    pa, pb = np.maximum(a[idx], 0.0), np.maximum(b[idx], 0.0)
    na, nb = float(np.linalg.norm(pa)), float(np.linalg.norm(pb))
    if na <= 0 or nb <= 0:
        return 0.0
    return 1.0 - float(pa @ pb) / (na * nb)
