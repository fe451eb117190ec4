"""The kiosk screen says "no music" in grey for a voice: a real Chromium (Playwright) whose fake
microphone plays a talking voice (espeak-ng), against `python -m ui.net` with the music detector on."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from support.browser import CHROMIUM, FAKE_RATE, at_level, browser_page, loopable, write_wav
from support.server import ServerProcess
from test_presence import _talk

pytestmark = [pytest.mark.browser, pytest.mark.server,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")]


def test_kiosk_shows_no_music_in_grey_for_a_voice(tmp_path):
    from playwright.sync_api import sync_playwright
    from stream.resample import StreamingResampler

    rs = StreamingResampler(16000, FAKE_RATE)
    talk = _talk(20.0)
    talk = np.concatenate([rs.process(talk), rs.flush()]).astype(np.float32)
    wav = write_wav(tmp_path / "talk.wav", at_level(loopable(talk), -20.0))
    srv = ServerProcess(env=dict(os.environ, STREAM_MUSIC_DETECTOR="on")).wait_ready(timeout=300)
    try:
        with sync_playwright() as pw, browser_page(pw, wav) as page:
            page.goto(f"http://127.0.0.1:{srv.port}/")
            page.wait_for_function("document.getElementById('genre').dataset.noMusic === '1'", timeout=150_000)
            genre = page.locator("#genre")
            assert genre.inner_text() == "no music" and genre.get_attribute("data-genre") == ""
            assert genre.evaluate("e => getComputedStyle(e).color") == "rgb(138, 143, 152)"
            last = page.evaluate("window.kiosk.lastResults.at(-1)")
            assert last["no_music"] is True and last["genre"] is None
    finally:
        srv.stop()
    assert "Traceback" not in srv.log, srv.log
