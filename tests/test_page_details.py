"""The Gradio page's details in a real headless Chromium against `python app.py` (bundled
model, offline): the upload's label clear of its icons, one progress text while a file is
analysed, scores as percentages everywhere, the File tab's score plot holding its lines, the
console's advice naming --share, and screen readers hearing words (not i18n keys).
Screenshots go to test-artifacts/page_details/."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from support.browser import ARTIFACTS, app_server, browser_page, needs_browser
from support.music import music_excerpt, needs_music, write_wav

pytestmark = [pytest.mark.browser, pytest.mark.server, needs_browser, needs_music]
LONG = Path("/usr/share/games/asc/music/machine_wars.mp3")  # 4:51 of electronic music (asc-music, GPL-2+)
PATIENCE_MS = 300_000
SHOTS = ARTIFACTS / "page_details"

# Every text Gradio's status tracker puts in its screen-reader live region, as it comes.
SR_OBSERVER_JS = """() => {
  window.__spoken = [];
  const seen = (el) => { const t = (el.textContent || '').trim(); if (t) window.__spoken.push(t); };
  new MutationObserver((ms) => { for (const m of ms) {
      const el = m.target.nodeType === 3 ? m.target.parentElement : m.target;
      if (el && el.closest && el.closest('.sr-only, [aria-live]')) seen(el.closest('.sr-only, [aria-live]'));
  } }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

# The visible texts naming the file while it is analysed (the status and Gradio's progress over it).
PROGRESS_TEXTS_JS = """(name) => [...document.querySelectorAll('#file-status, #file-status *')].filter(e => {
    if (e.closest('.sr-only')) return false;
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.includes(name))
      || (e.children.length === 0 && (e.textContent || '').includes(name));
    const r = e.getBoundingClientRect(), st = getComputedStyle(e);
    return own && r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && +st.opacity > 0.05;
  }).map(e => e.innerText.trim())"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with app_server(tmp_path_factory.mktemp("page-details"), extra_args=["--max-file-minutes", "10"]) as srv:
        yield srv


def test_console_names_the_share_flag_not_gradios_launch_argument(server):
    deadline = time.monotonic() + 120  # (the page answers a moment before launch returns and the line is printed)
    while "--share" not in server.log(None) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = server.log(None)
    assert "share=True" not in log and "launch()" not in log, log[-2000:]
    assert f"127.0.0.1:{server.port}" in log and "--share" in log, log[-2000:]


def test_file_tab_label_progress_percentages_plot_and_spoken_status(server, pw):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with browser_page(pw, None) as page:
        page.goto(server.url)
        page.evaluate(SR_OBSERVER_JS)
        page.get_by_role("tab", name="File").click()
        limits = page.locator("#file-limit").inner_text()
        assert "up to 10 min" in limits and "wav, mp3" in limits, limits
        page.locator("#file-in input[type=file]").set_input_files(str(LONG))
        # the upload's label: one line, clear of the download / share / clear icons now shown
        page.locator("#file-in button[aria-label=Clear]").wait_for(timeout=PATIENCE_MS)
        label = page.locator("#file-in [data-testid=block-label]").bounding_box()
        icons = [b.bounding_box() for b in page.locator("#file-in .icon-button-wrapper button").all()]
        icons = [b for b in icons if b and b["width"] > 0]
        assert icons, "no icon buttons found"
        line = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector("
                             "'#file-in [data-testid=block-label]')).lineHeight) || 24")
        assert label["height"] < 1.8 * line + 12, (label, line)  # one line of text (with its padding)
        assert label["x"] + label["width"] <= min(b["x"] for b in icons), (label, icons)
        # one progress text while it is analysed, and on screen
        seen, deadline = [], time.monotonic() + PATIENCE_MS / 1000
        while time.monotonic() < deadline:
            texts = page.evaluate(PROGRESS_TEXTS_JS, LONG.name)
            if any("analysed" in t for t in texts):
                seen.append(texts)
                if len(seen) >= 3:
                    break
            if "Top genre" in page.locator("#file-status").inner_text():
                break
            time.sleep(0.3)
        page.screenshot(path=str(SHOTS / "file_progress.png"))
        assert seen, "no progress text seen while the file was analysed"
        assert all(len(t) == 1 for t in seen), seen
        page.wait_for_function("document.querySelector('#file-status').innerText.includes('Top genre')",
                               timeout=PATIENCE_MS)
        page.wait_for_function("document.querySelectorAll('#file-timeline svg .role-mark.plot_marks path').length >= 3",
                               timeout=PATIENCE_MS)
        page.screenshot(path=str(SHOTS / "file_done.png"), full_page=True)
        md = page.locator("#file-status").inner_text()
        # scores as the bars give them: percentages, not 0.39
        assert re.search(r"mean score \d+%", md) and re.search(r"style \S+ \d+%", md), md
        assert not re.search(r"\b0\.\d\d\b", md), md
        # the score plot holds its lines: none reaches the plot's top edge (where it would be clamped flat)
        box = page.evaluate("""() => {
            const svg = document.querySelector('#file-timeline svg');
            const grid = [...svg.querySelectorAll('.role-axis-grid')].map(g => g.getBoundingClientRect());
            const top = Math.min(...grid.map(r => r.top));
            const lines = [...svg.querySelectorAll('.role-mark.plot_marks path')].map(p => p.getBoundingClientRect().top);
            return {top, lines};
        }""")
        assert box["lines"] and min(box["lines"]) > box["top"] + 2, box
        try:  # the tracker speaks at most every 5 s: the end comes a few seconds after the last milestone
            page.wait_for_function("window.__spoken.some(t => t === 'done' || t.startsWith('common.'))", timeout=30_000)
        except Exception:
            pass
        spoken = page.evaluate("window.__spoken")
        assert not [t for t in spoken if "common." in t or "status." in t], spoken
        assert "done" in spoken, spoken  # the end was announced, in words


def test_live_style_reads_as_a_percentage(server, pw, tmp_path):
    mic = write_wav(tmp_path / "music.wav", music_excerpt("time_to_strike", 30, 20) * 0.5)
    with browser_page(pw, mic) as page:
        page.goto(server.url)
        page.locator("#live-mic button", has_text="Record").wait_for(timeout=PATIENCE_MS)
        page.locator("#live-mic button", has_text="Record").click()
        page.wait_for_selector("#live-style [data-style]", timeout=PATIENCE_MS)
        style = page.locator("#live-style").inner_text()
        page.screenshot(path=str(SHOTS / "live_style.png"))
        page.locator("#live-mic button", has_text="Stop").click()
    assert re.fullmatch(r"style: \S.* \d{1,3}%( \(.+ or .+\?\))?", style.strip()), style


def test_plot_top_leaves_room_above_the_highest_score():
    from ui.web.page import plot_top

    for high in (0.0, 0.12, 0.45, 0.5, 0.94, 0.99, 1.0):
        top = plot_top([0.01, high])
        assert top >= high * 1.04 and top <= max(0.1, high * 1.2 + 0.05), (high, top)
