#!/usr/bin/env python3
"""The README's picture of the kiosk screen, made from real music.

    python -m tools.kiosk_screenshot                     # -> docs/kiosk.png (about 2.5 min)
    python -m tools.kiosk_screenshot --seconds 300 --out /tmp/kiosk.png

Starts `genre-serve` (bundled MusiCNN, offline) on a free port and headless Chromium at 1920x1080
with a fake microphone playing asc-music (Debian package asc-music: "Frontiers", whose opening
the model hears as Classical before Electronic, so the strip shows a change), waits --seconds,
takes the screenshot and stores it at half size with a 256-colour palette (the page is flat
colours: a small PNG, nothing lost that the README needs).
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from harness.browser import browser_page
from harness.music import at_level, loopable, music_excerpt, write_wav
from harness.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=150.0, help="music heard before the screenshot (default 150)")
    ap.add_argument("--out", default=str(ROOT / "docs/kiosk.png"))
    ap.add_argument("--scale", type=float, default=0.5, help="stored size relative to 1920x1080 (default 0.5)")
    args = ap.parse_args()
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kiosk-shot-") as tmp:
        music = at_level(loopable(music_excerpt("frontiers", 0, max(args.seconds + 30, 60))), -20.0)
        wav = write_wav(Path(tmp) / "music.wav", music)
        srv = ServerProcess().wait_ready(300)
        try:
            with sync_playwright() as p, browser_page(p, wav, viewport=(1920, 1080)) as page:
                page.goto(f"http://127.0.0.1:{srv.port}/")
                t0 = time.monotonic()
                while time.monotonic() - t0 < args.seconds:
                    page.wait_for_timeout(1000)
                state = page.evaluate("kiosk.state")
                if state != "listening":
                    print(f"the page is {state!r}, not listening: no screenshot", file=sys.stderr)
                    return 1
                png = page.screenshot()
        finally:
            srv.stop()
    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.resize((round(img.width * args.scale), round(img.height * args.scale)), Image.LANCZOS)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=256).save(out, optimize=True)
    print(f"{out}: {img.width}x{img.height}, {out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
