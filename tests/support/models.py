"""Small real models and signals for engine tests: no network, deterministic, fast."""
from __future__ import annotations

import threading
import time

import numpy as np

from harness.checkpoint import GTZAN_LABELS, make_tiny_checkpoint  # noqa: F401
from stream.models.base import AudioModel


class CountingNet:
    """Wraps a network (or any callable on a batch): counts the rows it scores in `patches`."""

    def __init__(self, net):
        self.net, self.patches = net, 0

    def __call__(self, x):
        self.patches += len(x)
        return self.net(x)


class BandModel(AudioModel):
    """A real, deterministic classifier for engine tests: which third of the spectrum
    (low < 1 kHz, mid 1-3 kHz, high > 3 kHz) holds most energy. Optional delay emulates a
    slow model."""

    name = "band"
    sample_rate = 16000
    labels = ["low", "mid", "high"]
    default_window_s = 2.0
    default_hop_s = 0.5
    min_samples = 400

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.calls = 0
        self.batch_sizes = []
        self.lock = threading.Lock()

    def predict(self, windows):
        with self.lock:
            self.calls += 1
            self.batch_sizes.append(len(windows))
        if self.delay_s:
            time.sleep(self.delay_s)
        spec = np.abs(np.fft.rfft(windows, axis=1)) ** 2
        f = np.fft.rfftfreq(windows.shape[1], 1 / self.sample_rate)
        e = np.stack([spec[:, f < 1000].sum(1), spec[:, (f >= 1000) & (f < 3000)].sum(1), spec[:, f >= 3000].sum(1)], 1)
        return (e / e.sum(1, keepdims=True)).astype(np.float32)


def tone(freq, seconds, rate, amp=0.5, phase=0.0):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)
