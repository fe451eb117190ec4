"""Fixed-capacity ring buffer that hands out the newest samples as one contiguous view."""
from __future__ import annotations

import numpy as np


class RingBuffer:
    """float32 ring of `capacity` samples.

    Every sample is stored twice (at i and i + capacity), so the newest n samples are always
    one contiguous slice: reading a window costs no wrap-around copy. Writes are O(1)
    amortised per sample and memory never grows.
    """

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._data = np.zeros(2 * self.capacity, np.float32)
        self._pos = 0  # next write index in [0, capacity)
        self.total = 0  # samples ever written

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def clear(self) -> None:
        self._pos = 0
        self.total = 0

    def release(self) -> None:
        """Empty it and give its storage back now (its owner is done); views already handed out
        stay valid. Writing afterwards raises ValueError."""
        self.clear()
        self._data = np.zeros(0, np.float32)

    def write(self, x: np.ndarray) -> None:
        n = len(x)
        if n == 0:
            return
        self.total += n
        cap = self.capacity
        if n >= cap:  # only the newest `capacity` samples can survive
            x = x[n - cap:]
            self._data[:cap] = x
            self._data[cap:] = x
            self._pos = 0
            return
        p = self._pos
        first = min(n, cap - p)
        self._data[p:p + first] = x[:first]
        self._data[p + cap:p + cap + first] = x[:first]
        rest = n - first
        if rest:
            self._data[:rest] = x[first:]
            self._data[cap:cap + rest] = x[first:]
        self._pos = (p + n) % cap

    def newest(self, n: int) -> np.ndarray:
        """A read-only view of the newest `n` samples (n <= len(self)); copy it to keep it."""
        if n > len(self):
            raise ValueError(f"asked for {n} samples, buffer holds {len(self)}")
        end = self._pos + self.capacity
        view = self._data[end - n:end]
        view.flags.writeable = False
        return view
