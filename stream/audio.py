"""Input validation and conversion: any supported chunk -> float32 mono in [-1, 1].

Fails fast with a ValueError that says what was expected (silero-vad style), so a bad
chunk from one caller never reaches the shared model.
"""
from __future__ import annotations

import numbers

import numpy as np

MIN_RATE = 4_000
MAX_RATE = 192_000
MAX_CHANNELS = 8

# Integer formats are scaled to [-1, 1) by their full-scale value; uint8 is offset binary.
_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
SUPPORTED_DTYPES = "int16, int32, uint8, float32 or float64"


def validate_rate(sample_rate) -> int:
    """Return `sample_rate` as int, or raise ValueError if it is not an integer in range."""
    if type(sample_rate) is int and MIN_RATE <= sample_rate <= MAX_RATE:  # fast path, every chunk
        return sample_rate
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise ValueError(
            f"sample_rate must be an integer number of Hz, got {type(sample_rate).__name__} {sample_rate!r}"
        )
    if isinstance(sample_rate, numbers.Integral):
        rate = int(sample_rate)
    elif float(sample_rate).is_integer():
        rate = int(sample_rate)
    else:
        raise ValueError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(
            f"sample_rate {rate} Hz is out of range: expected {MIN_RATE}..{MAX_RATE} Hz "
            "(pass the rate the audio was recorded at)"
        )
    return rate


def validate_samples(samples) -> np.ndarray:
    """Check dtype and shape; return the array (not yet converted). Raises ValueError."""
    arr = np.asarray(samples)
    if arr.dtype not in _FLOATS and arr.dtype != np.uint8 and arr.dtype not in _INT_SCALE:
        raise ValueError(
            f"samples have dtype {arr.dtype}; expected {SUPPORTED_DTYPES} "
            "(convert with np.asarray(x, dtype=np.float32) first)"
        )
    if arr.ndim == 2:
        n, ch = arr.shape
        if ch > MAX_CHANNELS:
            hint = " (it looks channels-first: pass samples.T)" if n <= MAX_CHANNELS else ""
            raise ValueError(
                f"samples have shape {arr.shape}: expected (n,) or (n, channels) with at most "
                f"{MAX_CHANNELS} channels{hint}"
            )
        if ch == 0:
            raise ValueError(f"samples have shape {arr.shape}: zero channels")
    elif arr.ndim != 1:
        raise ValueError(
            f"samples have {arr.ndim} dimensions (shape {arr.shape}): expected (n,) mono "
            f"or (n, channels) with up to {MAX_CHANNELS} channels"
        )
    return arr


def to_float_mono(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Convert a validated array to float32 mono.

    Returns ``(mono, n_bad)`` where non-finite samples were replaced by 0 and counted, so one
    NaN never poisons later windows (a NaN inside the resampler's state would).
    """
    # Downmix by summing columns (much faster than a reduce over a short axis), then scale once.
    if arr.ndim == 2:
        x = arr[:, 0].astype(np.float32)
        for c in range(1, arr.shape[1]):
            x += arr[:, c]
    else:
        x = arr.astype(np.float32, copy=False)
    ch = arr.shape[1] if arr.ndim == 2 else 1
    if arr.dtype == np.uint8:
        x -= np.float32(128.0 * ch)
        x *= np.float32(1.0 / (128.0 * ch))
    elif arr.dtype in _INT_SCALE:
        x *= np.float32(1.0 / (_INT_SCALE[arr.dtype] * ch))
    elif ch > 1:
        x *= np.float32(1.0 / ch)
    n_bad = 0
    if arr.dtype in _FLOATS:
        finite = np.isfinite(x)
        if not finite.all():
            n_bad = int(x.size - np.count_nonzero(finite))
            x = np.where(finite, x, np.float32(0.0)).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32), n_bad


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3 dBFS); -inf for digital silence."""
    if x.size == 0:
        return float("-inf")
    ms = float(np.dot(x, x)) / x.size
    return 10.0 * np.log10(ms) if ms > 0 else float("-inf")
