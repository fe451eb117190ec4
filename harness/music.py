"""Real recordings from Debian packages (installed by `scripts/setup.sh --dev`), decoded and
shaped for tests and benchmarks."""
from __future__ import annotations

from pathlib import Path

import numpy as np

MUSIC_DIR = Path("/usr/share/games/asc/music")  # Debian asc-music, GPL-2+, electronic (Michael Kievernagel)
TRACKS = ["machine_wars.mp3", "frontiers.mp3", "time_to_strike.mp3"]
MACHINE_WARS = MUSIC_DIR / TRACKS[0]
# Debian wesnoth-1.16-music, GPL-2+, orchestral/acoustic
WESNOTH_DIR = Path("/usr/share/games/wesnoth/1.16/data/core/music")
MINSTRELS = WESNOTH_DIR / "traveling_minstrels.ogg"
FAKE_RATE = 48000  # the rate of the WAVs Chromium's fake microphone plays

_decoded: dict = {}


def music(track: str, start_s: float, seconds: float) -> tuple[np.ndarray, int]:
    """float32 (n, 2) of a real recording (a file in MUSIC_DIR, or a path), and its rate."""
    import soundfile as sf

    key = (track, start_s, seconds)
    if key not in _decoded:
        with sf.SoundFile(str(MUSIC_DIR / track)) as f:
            f.seek(int(start_s * f.samplerate))
            _decoded[key] = (f.read(int(seconds * f.samplerate), dtype="float32", always_2d=True), f.samplerate)
    return _decoded[key]


def resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return x.astype(np.float32)
    import soxr

    return soxr.resample(x, rate, to).astype(np.float32)


def music_excerpt(name: str, start_s: float, dur_s: float, rate: int = FAKE_RATE) -> np.ndarray:
    """Mono float32 excerpt of an asc-music track (`name` without .mp3) at `rate`."""
    x, sr = music(f"{name}.mp3", start_s, dur_s)
    return resample(x.mean(axis=1), sr, rate)


def rms_dbfs(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    return float(10 * np.log10(np.mean(x ** 2) + 1e-20))


def at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale to an RMS level (dBFS), keeping clear of clipping."""
    y = x * 10 ** ((dbfs - rms_dbfs(x)) / 20)
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:
        raise ValueError(f"{dbfs} dBFS would clip (peak {peak:.2f})")
    return y.astype(np.float32)


def loopable(x: np.ndarray, rate: int = FAKE_RATE, fade_s: float = 0.02) -> np.ndarray:
    """Short fades at both ends so Chromium's looping of the file does not click."""
    n = int(fade_s * rate)
    y = x.copy()
    ramp = np.linspace(0, 1, n, dtype=np.float32)
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def write_wav(path: Path, x: np.ndarray, rate: int = FAKE_RATE) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype="PCM_16")
    return path
