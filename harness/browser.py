"""Debian's Chromium, headless, driven by Playwright (never `playwright install`), with a WAV
as its fake microphone."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


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
