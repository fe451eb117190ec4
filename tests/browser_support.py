"""Helpers for the real-browser tests of app.py: test audio, the app server, headless Chromium."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
MUSIC_DIR = Path("/usr/share/games/asc/music")  # Debian asc-music, GPL-2+
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FAKE_RATE = 48000


# ---- audio ----------------------------------------------------------------------------
def rms_dbfs(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    return float(10 * np.log10(np.mean(x ** 2) + 1e-20))


def _resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return x.astype(np.float32)
    import soxr

    return soxr.resample(x, rate, to).astype(np.float32)


def music_excerpt(name: str, start_s: float, dur_s: float, rate: int = FAKE_RATE) -> np.ndarray:
    """Mono float32 excerpt of one of the asc-music tracks."""
    path = MUSIC_DIR / f"{name}.mp3"
    with sf.SoundFile(str(path)) as f:
        f.seek(int(start_s * f.samplerate))
        x = f.read(int(dur_s * f.samplerate), dtype="float32", always_2d=True).mean(axis=1)
        sr = f.samplerate
    return _resample(x, sr, rate)


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


def chord(dur_s: float, freqs=(220.0, 277.2, 329.6), rate: int = FAKE_RATE) -> np.ndarray:
    """A sustained chord (organ-like: each note with a few harmonics) with slow tremolo."""
    t = np.arange(int(dur_s * rate)) / rate
    y = np.zeros_like(t)
    for f in freqs:
        for h, a in ((1, 1.0), (2, 0.5), (3, 0.25), (4, 0.12)):
            y += a * np.sin(2 * np.pi * f * h * t)
    y *= 1 + 0.2 * np.sin(2 * np.pi * 0.5 * t)
    return y.astype(np.float32)


def arpeggio(dur_s: float, freqs=(220.0, 277.2, 329.6, 440.0), step_s: float = 0.5,
             rate: int = FAKE_RATE) -> np.ndarray:
    """Piano-like notes (struck, decaying, a few harmonics), one every `step_s`, cycling through `freqs`."""
    t = np.arange(int(dur_s * rate)) / rate
    y = np.zeros_like(t)
    for k in range(int(dur_s / step_s)):
        start = int(k * step_s * rate)
        tt = t[start:] - t[start]
        for h, a in ((1, 1.0), (2, 0.4), (3, 0.2), (4, 0.1)):
            y[start:] += a * np.exp(-3 * tt) * np.sin(2 * np.pi * freqs[k % len(freqs)] * h * tt)
    return y.astype(np.float32)


def write_wav(path: Path, x: np.ndarray, rate: int = FAKE_RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype="PCM_16")
    return path


# ---- the app server -----------------------------------------------------------------------
def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`python app.py` on a free port, offline, with its own Gradio cache directory."""

    def __init__(self, workdir: Path, model: str = "musicnn", extra_args=(), env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.cache = workdir / "gradio-cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "app.log"
        e = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(self.cache), GRADIO_ANALYTICS_ENABLED="False",
                 PYTHONUNBUFFERED="1", **(env or {}))
        e.pop("GRADIO_SERVER_NAME", None)
        e.pop("GRADIO_SERVER_PORT", None)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--model", model, "--port", str(self.port),
                                      *extra_args], cwd=str(REPO), env=e, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300.0) -> None:  # (a loaded machine imports torch slowly)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"app.py did not answer within {timeout} s:\n{self.log()}")

    def log(self, tail: int | None = 6000) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return text[-tail:] if tail else text

    def alive(self) -> bool:
        return self.proc.poll() is None

    def chunk_files(self) -> list[Path]:
        """Streamed microphone chunks left in Gradio's cache (they are all named audio.wav)."""
        # os.walk skips folders that vanish mid-walk (the app deletes chunk folders as it goes)
        return [Path(d) / "audio.wav" for d, _, files in os.walk(self.cache) if "audio.wav" in files]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---- the browser --------------------------------------------------------------------------
def chromium_args(fake_audio: Path | None, mic_allowed: bool = True) -> list[str]:
    """Chromium's flags. mic_allowed=False: the microphone request is refused (NotAllowedError)
    as when a visitor blocks it: headless Chromium without --use-fake-ui-for-media-stream and
    without the permission denies it."""
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
    if mic_allowed:
        args.append("--use-fake-ui-for-media-stream")
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    return args


@contextlib.contextmanager
def browser_page(playwright, fake_audio: Path | None, viewport=(1280, 900), mic_allowed: bool = True):
    """A fresh Chromium (own profile, own fake-microphone file) with one page."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        ctx = playwright.chromium.launch_persistent_context(
            user_data_dir=profile, executable_path=CHROMIUM, headless=True,
            args=chromium_args(fake_audio, mic_allowed), viewport={"width": viewport[0], "height": viewport[1]},
            permissions=["microphone"] if mic_allowed else [])
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            yield page
        finally:
            ctx.close()
