"""Each live stream's band floor, for the model's `floor` option (an experiment, off by default).

Steady hiss and hum sit at the lowest level a mel band reaches; music rarely stays there long.
`frontend.take_floor` finds that floor in each 3 s patch itself; live, a stream keeps it over a
longer memory: the lowest level each band's smoothed power reached in the patches that ended in
the last `MEMORY_S` seconds (~13 s of audio), re-estimated every `EVERY_S` seconds. A longer
memory finds the noise's level rather than the music's quietest moment in the patch, so it takes
less off clean music; the fixed re-estimation keeps the streaming front end's frames valid between
changes (a patch floored otherwise than the one before it is computed whole: at most one in five
at a 1 s hop). Rows without a stream and whole windows take the floor of their own audio.
"""
from __future__ import annotations

import collections

import numpy as np

from .frontend import SAMPLE_RATE

MEMORY_S = 10.0  # patches that ended this long ago still count
EVERY_S = 5.0  # the floor a stream's patches are taken down by changes at most this often
MAX_ALPHA = 4.0  # the floor option's largest multiple of the floor


def alpha_error(alpha: float) -> str | None:
    """What is wrong with a floor option's value (None: nothing)."""
    return None if 0.0 <= alpha <= MAX_ALPHA else f"floor must be between 0 (off) and {MAX_ALPHA:g}, got {alpha!r}"


class StreamFloor:
    """One stream's band floor (mel power, 96 bands) and the patch floors it comes from."""

    __slots__ = ("minima", "floor", "since")

    def __init__(self) -> None:
        self.minima: collections.deque = collections.deque()  # (end sample, patch's band floor)
        self.floor: np.ndarray | None = None
        self.since = 0  # end sample of the patch that last re-estimated it

    def observe(self, end: int, patch_floor: np.ndarray, memory_s: float = MEMORY_S, every_s: float = EVERY_S) -> bool:
        """The stream's patch ending at sample `end`, with its own band floor (`band_floor`):
        True when the stream's floor changed with it (`floor` is the one to take it down by)."""
        if self.minima and end < self.minima[-1][0]:  # (the stream went back: start over)
            self.__init__()
        self.minima.append((end, np.asarray(patch_floor, np.float64)))
        while self.minima[0][0] <= end - memory_s * SAMPLE_RATE:
            self.minima.popleft()
        if self.floor is not None and end - self.since < every_s * SAMPLE_RATE:
            return False
        new = np.min(np.stack([m for _, m in self.minima]), axis=0)
        changed = self.floor is None or not np.array_equal(new, self.floor)
        self.floor, self.since = new, end
        return changed
