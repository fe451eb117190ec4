"""Exponential smoothing of score vectors over stream time, with hysteresis on the leader."""
from __future__ import annotations

import math

import numpy as np


class ScoreSmoother:
    """EMA with a time constant in seconds, plus a sticky leading label.

    The weight of a new window is ``1 - exp(-dt / tau)`` where ``dt`` is the stream time since
    the previous update. Expressing the constant in seconds keeps the readout equally calm
    whatever the hop, and a skipped window (larger dt) simply weighs the new one more.
    Larger `tau` = steadier readout, slower reaction to a genre change (about tau seconds to
    move 63 % of the way). ``tau = 0`` disables smoothing.

    `switch_margin` (hysteresis): the leader changes only when a challenger's smoothed score
    exceeds the leader's by this margin, so two close genres don't flicker.
    """

    def __init__(self, tau_s: float, switch_margin: float = 0.0):
        self.tau_s = float(tau_s)
        self.switch_margin = float(switch_margin)
        self.reset()

    def reset(self) -> None:
        self.state: np.ndarray | None = None
        self.leader: int | None = None
        self._last_t: float | None = None

    def update(self, scores: np.ndarray, t: float, candidates: np.ndarray | None = None) -> np.ndarray:
        """Fold in `scores` observed at stream time `t`; returns the smoothed vector.

        `candidates` (indices) limits which labels may lead (e.g. the visible ones).
        """
        scores = np.asarray(scores, np.float64)
        if self.state is None or self.tau_s <= 0 or self._last_t is None:
            self.state = scores.copy()
        else:
            dt = max(t - self._last_t, 0.0)
            w = 1.0 - math.exp(-dt / self.tau_s)
            self.state += w * (scores - self.state)
        self._last_t = t
        self._update_leader(candidates)
        return self.state

    def _update_leader(self, candidates) -> None:
        idx = np.arange(len(self.state)) if candidates is None else np.asarray(candidates)
        if idx.size == 0:
            self.leader = None
            return
        best = int(idx[np.argmax(self.state[idx])])
        if self.leader is None or self.leader not in idx:
            self.leader = best
        elif best != self.leader and self.state[best] >= self.state[self.leader] + self.switch_margin:
            self.leader = best
