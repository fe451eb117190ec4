"""The README's pictures of the four faces, each made by the face's own code from real music.

    python -m tools.doc_pictures all         # all four (about 10 minutes on 2 busy cores)
    python -m tools.doc_pictures kiosk       # docs/kiosk.png: genre-serve's screen in Chromium, 1920x1080
    python -m tools.doc_pictures page        # docs/page.png: app.py's Live tab in Chromium, 1280x800
    python -m tools.doc_pictures terminal    # docs/terminal.svg: the listener's panel (rich), --file in real time
    python -m tools.doc_pictures history     # docs/history.png: genre-history's day chart of a replayed day

The music is Debian's: asc-music (Michael Kievernagel, GPL-2+) and wesnoth-1.16-music (GPL-2+),
installed by `scripts/setup.sh --dev`. The browser pictures use headless Chromium with the music
as its fake microphone; they are stored with a 256-colour palette (the faces are flat colours:
small PNGs, nothing lost that the README needs). Re-run after changing how a face looks.
"""
from __future__ import annotations

import argparse
import io
import os
import queue
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright
from rich.console import Console

from harness.browser import browser_page
from harness.music import MUSIC_DIR, WESNOTH_DIR, at_level, loopable, music_excerpt, write_wav
from harness.proc import free_port, stop_process
from harness.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DAY = "2026-12-01"  # the history picture's day (UTC); any day works, it is the title's
# the history's day: (start HH:MM, tracks played back to back); asc-music is electronic, wesnoth orchestral
PLAYLIST = [("09:52", [MUSIC_DIR / "machine_wars.mp3", MUSIC_DIR / "frontiers.mp3", MUSIC_DIR / "time_to_strike.mp3"]),
            ("13:05", [WESNOTH_DIR / n for n in ("traveling_minstrels.ogg", "elvish-theme.ogg", "love_theme.ogg",
                                                 "knolls.ogg")]),
            ("17:30", [WESNOTH_DIR / "northerners.ogg", MUSIC_DIR / "time_to_strike.mp3",
                       WESNOTH_DIR / "loyalists.ogg"])]


def save_png(png: bytes, out: Path, scale: float = 1.0) -> None:
    """A screenshot stored with a 256-colour palette, resized by `scale`."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    if scale != 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=256).save(out, optimize=True)
    print(f"{out}: {img.width}x{img.height}, {out.stat().st_size // 1024} KiB")


def fake_mic(tmp: str, track: str, seconds: float) -> Path:
    """A WAV of an asc-music track for Chromium's fake microphone (it loops the file)."""
    music = at_level(loopable(music_excerpt(track, 0, max(seconds + 30, 60))), -20.0)
    return write_wav(Path(tmp) / "music.wav", music)


def kiosk(out: Path, seconds: float = 150.0) -> int:
    """genre-serve's kiosk screen after `seconds` of "Frontiers" (whose opening the model hears
    as Classical before Electronic, so the strip shows a change), stored at half size."""
    with tempfile.TemporaryDirectory(prefix="doc-kiosk-") as tmp:
        wav = fake_mic(tmp, "frontiers", seconds)
        srv = ServerProcess().wait_ready(300)
        try:
            with sync_playwright() as p, browser_page(p, wav, viewport=(1920, 1080)) as page:
                page.goto(f"http://127.0.0.1:{srv.port}/")
                page.wait_for_timeout(seconds * 1000)
                state = page.evaluate("kiosk.state")
                if state != "listening":
                    print(f"kiosk: the page is {state!r}, not listening: no picture", file=sys.stderr)
                    return 1
                png = page.screenshot()
        finally:
            srv.stop()
    save_png(png, out, 0.5)
    return 0


def start_page(tmp: str) -> tuple[subprocess.Popen, str]:
    """`python app.py --model musicnn` on a free port, offline; (process, URL) once it answers."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=tmp, GRADIO_ANALYTICS_ENABLED="False",
               PYTHONUNBUFFERED="1")
    log = open(Path(tmp) / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--model", "musicnn", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop_process(proc, 10)
    raise RuntimeError(f"app.py did not start:\n{(Path(tmp) / 'app.log').read_text()[-3000:]}")


def page(out: Path, seconds: float = 75.0) -> int:
    """app.py's Live tab after `seconds` of "Machine Wars" from the browser's microphone, at a
    laptop's 1280x800."""
    with tempfile.TemporaryDirectory(prefix="doc-page-") as tmp:
        wav = fake_mic(tmp, "machine_wars", seconds)
        proc, url = start_page(tmp)
        try:
            with sync_playwright() as p, browser_page(p, wav, viewport=(1280, 800)) as pg:
                pg.goto(url)
                record = pg.locator("#live-mic button", has_text="Record")
                record.wait_for(timeout=120_000)
                record.click()
                pg.wait_for_timeout(seconds * 1000)
                if not pg.locator("#live-status .live-status").get_attribute("data-leader"):
                    print("page: no leading genre after the recording: no picture", file=sys.stderr)
                    return 1
                png = pg.screenshot()
        finally:
            stop_process(proc, 10)
    save_png(png, out)
    return 0


def terminal(out: Path, seconds: float = 75.0) -> int:
    """The listener's panel (ui.terminal.view.LiveView, as `genre-listen --file TRACK` draws it)
    at `seconds` into "Time to Strike", replayed in real time, exported as SVG by rich."""
    # inside: the engine's imports (torch) stay off `--help` and the browser pictures
    from cli_listen import parse_args
    from ui.terminal.listener import load_engine, open_source
    from ui.terminal.view import LiveView

    args = parse_args(["--model", "musicnn", "--file", str(MUSIC_DIR / "time_to_strike.mp3")])
    source = open_source(args)
    results: queue.Queue = queue.Queue()
    engine = load_engine(args, source, results.put)
    # a terminal of 80x24 that the panel is drawn into (rich draws nothing until it renders)
    view = LiveView(engine, source, console=Console(file=io.StringIO(), width=80, height=24, force_terminal=True))
    source.start(engine.feed)
    try:
        while source.seconds < seconds and not source.done.is_set():
            try:
                view.show(results.get(timeout=0.1))
            except queue.Empty:
                pass
        view.render()
    finally:
        source.stop()
        engine.close()
    if view.latest is None or view.latest.silent or getattr(view.latest, "no_music", False):
        print("terminal: no genre in the last readout: no picture", file=sys.stderr)
        return 1
    shot = Console(file=io.StringIO(), width=LiveView.WIDTH, record=True, force_terminal=True)
    shot.print(view.live.renderable)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(shot.export_svg(title="genre-listen --file time_to_strike.mp3"))
    print(f"{out}: {out.stat().st_size // 1024} KiB")
    return 0


def history(out: Path, hop_s: float = 2.0) -> int:
    """genre-history's day chart of a shop's day: PLAYLIST's sessions replayed through the engine
    as fast as it goes, each readout recorded at the wall-clock time it would have had live (the
    store's clock is the session's start plus the audio fed), then `genre-history --png`."""
    # inside: the engine's imports (torch) stay off `--help` and the browser pictures
    from stream import StreamEngine, decode_blocks, load_model
    from stream.config import configure
    from ui.history import cli
    from ui.history.flags import finish, record
    from ui.history.store import HistoryStore, parse_time

    model = load_model("musicnn")
    with tempfile.TemporaryDirectory(prefix="doc-history-") as tmp:
        db = str(Path(tmp) / "history.sqlite")
        for start, tracks in PLAYLIST:
            t0, fed = parse_time(f"{DAY}T{start}:00Z"), [0.0]
            store = HistoryStore(db, clock=lambda: t0 + fed[0])
            engine = StreamEngine(model, configure(hop=hop_s), background=False)
            recorder = record(store, engine, "shop")
            for track in tracks:
                for block, rate in decode_blocks(track):
                    for i in range(0, len(block), rate):  # 1 s chunks, as a microphone's blocks add up
                        engine.feed(block[i:i + rate], rate)
                        fed[0] += len(block[i:i + rate]) / rate
            engine.flush()
            print(f"history: {start} {len(tracks)} tracks, {fed[0] / 60:.1f} min, mostly "
                  f"{engine.summary().dominant_genre}")
            finish(store, recorder, engine, "end of playlist")
            engine.close()
        return cli.main([db, "--name", "shop", "--day", DAY, "--png", str(out)])


PICTURES = {"kiosk": (kiosk, "kiosk.png"), "page": (page, "page.png"), "terminal": (terminal, "terminal.svg"),
            "history": (history, "history.png")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", nargs="?", default="all", choices=[*PICTURES, "all"], help="which picture (default all)")
    ap.add_argument("--out", type=Path, default=DOCS, help="folder to write them to (default docs/)")
    args = ap.parse_args(argv)
    code = 0
    for name in PICTURES if args.which == "all" else [args.which]:
        make, file = PICTURES[name]
        code = make(args.out / file) or code
    return code


if __name__ == "__main__":
    sys.exit(main())
