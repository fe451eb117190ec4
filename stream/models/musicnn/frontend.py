"""musicnn front end: 16 kHz audio -> log-compressed 96-band mel spectrogram, and patching.

Matches musicnn 0.1.0's ``extractor.batch_data`` run with librosa >= 0.9:

- STFT: periodic Hann window, n_fft 512, hop 256, ``center=True`` with **zero** padding
  (librosa < 0.9 padded by reflection; that only changes the first and last frame).
- power spectrum ``|X|**2`` -> Slaney mel bank (96 bands, 0-8000 Hz, Slaney-normalised).
- ``log10(10000 * mel + 1)`` in float32. Upstream casts the mel power to float16 first;
  under numpy 2 that overflows to inf, so it is deliberately not reproduced.

The network input is a "patch" of 187 frames (~3 s); see `patch_starts`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as upstream
# Fewest samples giving PATCH_FRAMES centred frames: n_frames = 1 + n // HOP.
PATCH_SAMPLES = (PATCH_FRAMES - 1) * HOP  # 47616 samples = 2.976 s


def n_frames(n_samples: int) -> int:
    """Number of centred STFT frames for `n_samples` samples."""
    return 1 + n_samples // HOP


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (f / (200/3)), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp  # 15
    logstep = math.log(6.4) / 27.0
    lin = f / f_sp
    with np.errstate(divide="ignore"):
        log = min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_basis(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
              fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-style triangular mel filter bank, shape (n_mels, 1 + n_fft // 2), float32.

    Computed in float64 and rounded once to float32 (what librosa's ``filters.mel`` with its
    defaults returns). Each triangle spans three consecutive of the ``n_mels + 2`` edges
    spaced evenly on the mel scale, and is scaled by ``2 / (f_right - f_left)`` so that
    every band has the same area in Hz.
    """
    fmax = sr / 2.0 if fmax is None else fmax
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, fft_freqs.size), dtype=np.float64)
    for i in range(n_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:n_mels + 2] - edges[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel(torch.nn.Module):
    """Batch of waveforms (B, N) float32 -> log-mel (B, 1 + N // 256, 96) float32.

    The windowed FFT runs in float64 and is rounded to complex64 before ``|X|**2``, as in
    librosa; it is a small share of the cost next to the network (measured in
    bench/musicnn.py), and it keeps the front end within ~1e-6 of the reference.
    """

    def __init__(self) -> None:
        super().__init__()
        n = torch.arange(N_FFT, dtype=torch.float64)
        # Periodic Hann (scipy get_window("hann", 512, fftbins=True)).
        self.register_buffer("window", 0.5 - 0.5 * torch.cos(2 * math.pi * n / N_FFT), persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(mel_basis()), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.device.type != "cpu":
            return self._logmel(audio)
        # Row by row: the same numbers for less CPU (torch's float64 STFT costs ~2x more per row
        # in a batch than alone). torch's thread count is left alone: set_num_threads is process
        # state, and changing it here while other threads run torch ops is not safe.
        if audio.shape[0] == 1:
            return self._logmel(audio)
        return torch.cat([self._logmel(audio[i:i + 1]) for i in range(audio.shape[0])])

    def _logmel(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio.to(torch.float64), n_fft=N_FFT, hop_length=HOP, win_length=N_FFT,
                          window=self.window, center=True, pad_mode="constant",
                          normalized=False, onesided=True, return_complex=True)
        spec = spec.to(torch.complex64)
        power = spec.real.square() + spec.imag.square()  # (B, 257, T) float32
        mel = torch.matmul(self.mel_basis, power)  # (B, 96, T)
        return torch.log10(10000.0 * mel + 1.0).transpose(1, 2)


def _mel_power(logmel: torch.Tensor) -> torch.Tensor:
    """`LogMel`'s output back to mel power (float64)."""
    return (torch.pow(10.0, logmel.double()) - 1.0) / 10000.0


def band_floor(logmel: torch.Tensor, smooth: int = 9) -> torch.Tensor:
    """Each band's floor in a log-mel (B, T, 96): the lowest level its mel power, smoothed over
    `smooth` frames, reaches in the input, as mel power (B, 96) float64."""
    sm = torch.nn.functional.avg_pool1d(_mel_power(logmel).transpose(1, 2), smooth, 1, smooth // 2,
                                        count_include_pad=False)
    return sm.amin(dim=2)


def minus_floor(logmel: torch.Tensor, floor: torch.Tensor, alpha: float, keep: float = 0.1) -> torch.Tensor:
    """A log-mel (B, T, 96) with `alpha` x `floor` (mel power, (B, 96)) taken off each band, never
    below `keep` of its power."""
    mel = _mel_power(logmel)
    mel = torch.maximum(mel - alpha * floor.to(mel).unsqueeze(1), keep * mel)
    return torch.log10(10000.0 * mel + 1.0).to(logmel.dtype)


def take_floor(logmel: torch.Tensor, alpha: float, smooth: int = 9, keep: float = 0.1) -> torch.Tensor:
    """Each band's stationary floor taken off a log-mel (B, T, 96), the floor from the input itself
    (`band_floor`; per patch, as tools/train_robust.py --floor trains): the band's mel power
    smoothed over `smooth` frames, its minimum over the input times `alpha` subtracted, never below
    `keep` of the power. Steady hiss and hum sit at that floor; music rarely stays there for a whole
    3 s patch (bench/README.md "Run 17 (track-front) and a floor off each band"). Live, the model's
    `floor` option keeps each stream's floor over a longer memory instead (floor.py)."""
    return minus_floor(logmel, band_floor(logmel, smooth), alpha, keep)


class FloorLogMel(LogMel):
    """`LogMel` then `take_floor(alpha)` per input (an experiment: tools/train_robust.py --floor)."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return take_floor(super().forward(audio), self.alpha)


def patch_starts(total_frames: int, align: str = "end") -> list[int]:
    """Start frames of the non-overlapping 187-frame patches cut from `total_frames` frames.

    ``align="start"`` is upstream musicnn: patches from frame 0, leftover frames at the end
    dropped. ``align="end"`` (the live default) anchors the last patch at the newest frame
    and drops leftover frames at the *start* instead, so the most recent audio in a
    streaming window is always scored. Fewer than 187 frames gives no patch; callers pad.
    """
    k = total_frames // PATCH_FRAMES
    if align == "start":
        return [i * PATCH_FRAMES for i in range(k)]
    if align == "end":
        first = total_frames - k * PATCH_FRAMES
        return [first + i * PATCH_FRAMES for i in range(k)]
    raise ValueError(f"align must be 'start' or 'end', got {align!r}")
