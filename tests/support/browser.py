"""The real-browser tests' side: the page (app.py) as a subprocess on a free port, headless
Chromium (harness.browser) and test audio."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from harness.browser import CHROMIUM, browser_page, chromium_args  # noqa: F401
from harness.proc import free_port, stop_process
from support.music import (FAKE_RATE, MUSIC_DIR, at_level, loopable, music_excerpt, rms_dbfs,  # noqa: F401
                           write_wav)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


def _have_browser() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


needs_browser = pytest.mark.skipif(not _have_browser(), reason=f"needs playwright (pip) and Chromium at {CHROMIUM}")


# ---- synthetic audio -----------------------------------------------------------------------
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


# ---- the page ---------------------------------------------------------------------------
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

    def describe_chunks(self, paths) -> str:
        """What a chunk file left behind is (to tell why): its folder, bytes, silent or not, age;
        and the app's log lines about chunks."""
        out = []
        for p in paths:
            try:
                b, age = p.read_bytes(), time.time() - p.stat().st_mtime
            except OSError:
                continue
            out.append(f"{p.parent.name[:12]} {len(b)} B {'silent' if not any(b[44:]) else 'sound'} {age:.0f} s old")
        said = [line for line in self.log(None).splitlines() if "chunk" in line]
        return "; ".join(out) + "\n" + "\n".join(said[-10:])

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self._log.close()


@contextlib.contextmanager
def app_server(workdir: Path, model: str = "musicnn", extra_args=(), env=None):
    """The page from ready to stopped; its log must hold no traceback."""
    srv = AppServer(workdir, model=model, extra_args=extra_args, env=env)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
    log = srv.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


def poll_state(page, state_js: str, what: str, pred, timeout: float, every: float = 0.1) -> dict:
    """Evaluate `state_js` on the page until pred(state) holds; the state texts seen on failure."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        st = page.evaluate(state_js)
        if st and pred(st):
            return st
        if st and (not seen or seen[-1] != st["text"]):
            seen.append(st["text"])
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}; states seen: {seen[-12:]}"
        time.sleep(every)
