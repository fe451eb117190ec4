"""app.py in a real browser: headless Chromium (Playwright) with a fake microphone fed from WAV
files, against `python app.py` on a free localhost port, offline (bundled MusiCNN model).

Also a few in-process checks of the page's plumbing that need no browser.
Screenshots and the measured latencies go to test-artifacts/ (git-ignored).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.proc import free_port
from support.browser import ARTIFACTS, REPO, AppServer, app_server, arpeggio, browser_page, chord, needs_browser
from support.music import FAKE_RATE, MUSIC_DIR, at_level, loopable, music_excerpt, needs_music, write_wav

ELECTRONIC_TAGS = {"electronic", "techno", "electronica", "electro", "house", "dance", "experimental", "ambient",
                   "chillout", "trance", "industrial"}
MUSIC_DBFS = -20.0
CHORD_DBFS = -32.0
WINDOW_S = 9.0  # the bundled model's default window (what the live level is measured over)


browser = needs_browser


# ---- fixtures -------------------------------------------------------------------------------
def _bundled_model_loads() -> bool:
    try:
        from stream import load_model

        load_model("musicnn")
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def model_spec(tmp_path_factory):
    """The bundled offline model through "auto" (as a visitor gets it without network), else a
    tiny generated checkpoint (plumbing only: its scores are random). APP_TEST_MODEL=tiny forces
    the tiny one."""
    if os.environ.get("APP_TEST_MODEL") != "tiny" and _bundled_model_loads():
        return "auto"
    from support.models import make_tiny_checkpoint

    return str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt")))


def window_levels(x: np.ndarray, rate: int = FAKE_RATE, window_s: float = WINDOW_S) -> tuple[float, float]:
    """Lowest and highest RMS level of any `window_s` window of the looped signal."""
    n = int(window_s * rate)
    xx = np.concatenate([x, x[:n]]).astype(np.float64) ** 2
    c = np.concatenate([[0.0], np.cumsum(xx)])
    step = rate // 10
    levels = [10 * np.log10((c[i + n] - c[i]) / n + 1e-20) for i in range(0, len(x), step)]
    return float(min(levels)), float(max(levels))


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    a = {}
    if (MUSIC_DIR / "machine_wars.mp3").exists():
        music = at_level(loopable(music_excerpt("machine_wars", 30, 20)), MUSIC_DBFS)
        a["music"] = write_wav(d / "music.wav", music)
        a["music_range"] = window_levels(music)
        file_music = music_excerpt("time_to_strike", 60, 40, 44100)
        a["mp3"] = d / "time_to_strike_excerpt.mp3"
        sf.write(str(a["mp3"]), at_level(file_music, -18), 44100, format="MP3")
        long = music_excerpt("frontiers", 0, 70, 16000)
        a["long"] = write_wav(d / "too_long.wav", long, 16000)
        # piano arpeggio, then electronic music: two top-level genres. (Not the chord: the bundled model
        # hears it as ambient, a style of Electronic, on most hops, so the band could stay one genre.)
        a["switch"] = write_wav(d / "switch.wav", np.concatenate(
            [at_level(loopable(arpeggio(15)), CHORD_DBFS), at_level(loopable(music_excerpt("machine_wars", 30, 15)), MUSIC_DBFS)]))
        # 40 minutes of music (8 kHz keeps the upload small): long enough to close the tab mid-way
        loop = music_excerpt("frontiers", 0, 60, 8000)
        a["hour"] = write_wav(d / "forty_minutes.wav", np.tile(loop, 40), 8000)
    a["chord"] = write_wav(d / "chord.wav", at_level(loopable(chord(10)), CHORD_DBFS))
    rng = np.random.default_rng(0)
    a["silence"] = write_wav(d / "silence.wav", (rng.standard_normal(FAKE_RATE * 5) * 10 ** (-90 / 20)).astype(np.float32))
    a["corrupt"] = d / "corrupt.wav"
    a["corrupt"].write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 40)
    a["big"] = write_wav(d / "big.wav", np.zeros(16000 * 200, np.float32), 16000)  # 6.4 MB > 5 MB limit
    a["empty"] = d / "empty.flac"
    a["empty"].write_bytes(b"")
    a["text"] = d / "notes.ogg"
    a["text"].write_text("this is not audio\n" * 200)
    a["text_mp3"] = d / "notes.mp3"
    a["text_mp3"].write_text("this is not audio\n" * 200)
    return a


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_spec):
    with app_server(tmp_path_factory.mktemp("app"), model_spec, ["--max-file-minutes", "1", "--max-file-mb", "5"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# ---- page helpers -----------------------------------------------------------------------------
# Waits are generous: they only run out when the page misbehaves, not when the machine is busy
# (a loaded CPU makes readouts slow, not wrong). How fast the page is belongs to bench/.
PATIENCE_S = 150.0

# Records, for each new readout, when it appeared in the DOM next to the server's timestamps
# (same machine, same clock): chunk arrival at the server, result ready, update sent.
OBSERVER_JS = """
() => {
  if (window.__obs) window.__obs.disconnect();
  window.__readouts = [];
  const seen = new Set();
  const shown = document.querySelector('#live-status .live-status');
  if (shown && shown.dataset.resultS) seen.add(shown.dataset.resultS);  // (not a new readout)
  const obs = new MutationObserver(() => {
    const el = document.querySelector('#live-status .live-status');
    if (!el || !el.dataset.resultS || seen.has(el.dataset.resultS)) return;
    seen.add(el.dataset.resultS);
    const label = document.querySelector('#live-label');
    window.__readouts.push({dom: Date.now(), arrival: +el.dataset.arrivalMs || 0, ready: +el.dataset.readyMs || 0,
      render: +el.dataset.renderMs || 0, infer: +el.dataset.inferMs || 0, t: +el.dataset.resultS,
      handler_median: +el.dataset.handlerMedianMs, handler_max: +el.dataset.handlerMaxMs,
      leader: el.dataset.leader || '', status: el.innerText, label: label ? label.innerText : ''});
  });
  obs.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
  window.__obs = obs;
}
"""

# The live plot as drawn: lines, legend, band of the leading genre, score axis.
PLOT_STATE_JS = """() => {
  const root = document.querySelector('#live-plot .genre-plot');
  const svg = root && root.querySelector('svg');
  if (!svg) return null;
  const lines = [...root.querySelectorAll('g.genre-line')].map(g => {
    const path = g.querySelector('path');
    return {genre: g.dataset.genre, stroke: path.getAttribute('stroke'), d: path.getAttribute('d') || '',
            dots: g.querySelectorAll('circle').length, length: path.getTotalLength()};
  });
  const legend = [...root.querySelectorAll('.legend-item[data-genre]')].map(e => ({
    genre: e.dataset.genre, colour: e.dataset.colour, led: e.dataset.led === '1', now: e.classList.contains('now')}));
  const band = [...root.querySelectorAll('rect.lead')].map(r => ({
    genre: r.dataset.genre, fill: r.getAttribute('fill'), x: +r.getAttribute('x'), w: +r.getAttribute('width')}));
  const yticks = [...root.querySelectorAll('text.ytick')].map(t => +t.textContent);
  const box = svg.getBoundingClientRect();
  return {lines, legend, band, yticks, width: box.width, height: box.height};
}"""


def open_app(page, server):
    page.goto(server.url)
    page.locator("#live-mic button", has_text="Record").wait_for(timeout=PATIENCE_S * 1000)
    page.evaluate(OBSERVER_JS)


def record(page):
    page.locator("#live-mic button", has_text="Record").click()


def stop(page):
    page.locator("#live-mic button", has_text="Stop").click()


def label_rows(text: str) -> tuple[str, list[tuple[str, float]]]:
    """The live Label's text as (headline, [(genre, percent), ...] in the order shown)."""
    rows = [r.strip() for r in text.split("\n") if r.strip()]
    if rows and rows[0].startswith("Genre now"):
        rows = rows[1:]
    bars = []
    for name, val in zip(rows[1:], rows[2:]):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)%", val)
        if m:
            bars.append((name, float(m.group(1))))
    return (rows[0] if rows else ""), bars


def label_scores(page) -> dict:
    """The live Label's bars: {genre: percent}."""
    return dict(label_rows(page.locator("#live-label").inner_text())[1])


def status(page) -> str:
    return page.locator("#live-status").inner_text()


def status_level(page) -> float:
    m = re.search(r"level (-?\d+(?:\.\d+)?) dBFS", status(page))
    assert m, status(page)
    return float(m.group(1))


def seconds(text: str) -> float:
    """A duration as the page writes it: "15.0 s" or "1:13.2"."""
    m = re.fullmatch(r"(?:(\d+):)?(\d+(?:\.\d+)?)(?: s)?", text.strip())
    assert m, text
    return int(m.group(1) or 0) * 60 + float(m.group(2))


def counters(text: str) -> tuple[float, int]:
    """(seconds received, windows classified) from a status line."""
    m = re.search(r"received (\S+(?: s)?) · windows (\d+)", text)
    assert m, text
    return seconds(m.group(1)), int(m.group(2))


def readouts(page) -> list[dict]:
    return page.evaluate("window.__readouts")


def wait_for_readouts(page, n: int, timeout_s: float = PATIENCE_S) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = readouts(page)
        if len(r) >= n:
            return r
        page.wait_for_timeout(200)
    raise AssertionError(f"only {len(readouts(page))} readouts after {timeout_s} s; status: {status(page)}")


def wait_until(page, what: str, check, timeout_s: float = PATIENCE_S):
    """Poll `check()` until it returns something truthy (returned); fail saying `what`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        page.wait_for_timeout(250)
    raise AssertionError(f"{what} (within {timeout_s} s); last: {last!r}; status: {status(page)}")


def check_plot(ps: dict) -> None:
    """What any render of the live plot must hold."""
    assert ps is not None and ps["width"] > 200 and ps["height"] > 80, ps
    genres = [l["genre"] for l in ps["lines"]]
    assert len(genres) == len(set(genres)) and genres, ps
    # a legend entry per line, in the line's own colour; every line is drawn
    assert [(e["genre"], e["colour"]) for e in ps["legend"]] == [(l["genre"], l["stroke"]) for l in ps["lines"]], ps
    assert all(l["length"] > 0 or l["dots"] for l in ps["lines"]), ps
    assert len({l["stroke"] for l in ps["lines"]}) == len(genres) or len(genres) > 20, ps  # distinct colours
    # the band: every genre that led has its line, in the same colour
    colour = {l["genre"]: l["stroke"] for l in ps["lines"]}
    for seg in ps["band"]:
        if seg["genre"]:
            assert colour.get(seg["genre"]) == seg["fill"], (seg, colour)
    assert {s["genre"] for s in ps["band"] if s["genre"]} == {e["genre"] for e in ps["legend"] if e["led"]}, ps
    # scores from 0, on a scale that does not blow small differences up to the full height
    assert min(ps["yticks"]) == 0 and max(ps["yticks"]) >= 0.5, ps["yticks"]


def plot_state(page) -> dict | None:
    return page.evaluate(PLOT_STATE_JS)


# ---- browser tests -----------------------------------------------------------------------------
@browser
@needs_music
def test_live_readout_updates_with_true_level_and_summary(server, pw, audio, artifacts, model_spec):
    with browser_page(pw, audio["music"]) as page:
        open_app(page, server)
        t0 = time.monotonic()
        record(page)
        first = wait_for_readouts(page, 1)[0]
        first_s = time.monotonic() - t0
        assert "%" in first["label"], first  # scores, not "listening…"
        # keeps updating, once per hop
        rs = wait_for_readouts(page, 8)
        times = [r["t"] for r in rs]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert len({r["label"] for r in rs}) > 1, "the Label never changed"
        # the headline is the engine's leading genre, and the bars start with it
        for r in rs:
            headline, bars = label_rows(r["label"])
            if r["leader"] and bars:
                assert headline == bars[0][0], r["label"]
        wait_until(page, "the headline shows the status's leading genre", lambda: (
            label_rows(page.locator("#live-label").inner_text())[0] ==
            page.locator("#live-status .live-status").get_attribute("data-leader") != ""))
        scores = label_scores(page)
        assert 3 <= len(scores) <= 5, scores
        # the status line: settings and timing; the model notice is said once, on its own line
        st = status(page)
        assert re.search(r"window \d+(\.\d+)? s", st) and re.search(r"hop \d+(\.\d+)? s", st), st
        assert re.search(r"inference \d+ ms", st) and re.search(r"real-time factor \d+\.\d\d", st), st
        notice = page.locator("#model-notice").inner_text().strip()
        assert notice.startswith("Model: "), notice
        assert "Model:" not in st and page.locator("body").inner_text().count(notice) == 1
        # music-friendly capture: the level the engine measures is the source file's level
        lo, hi = audio["music_range"]
        level = status_level(page)
        assert lo - 2.0 <= level <= hi + 2.0, f"captured {level} dBFS, source windows {lo:.1f}..{hi:.1f} dBFS"
        mic = page.evaluate("window.__micSettings")
        assert mic and mic["echoCancellation"] is False and mic["noiseSuppression"] is False \
            and mic["autoGainControl"] is False, mic
        # privacy: streamed chunks are deleted as they are handled. The microphone keeps streaming, and
        # a busy machine (other tests' browsers beside this one) may hold a backlog for a while, so the
        # property is that every chunk present now is gone later, not a count at one moment
        seen = set(server.chunk_files())
        try:
            wait_until(page, "the chunk files in Gradio's cache deleted once handled",
                       lambda: not seen & set(server.chunk_files()))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nleft: {server.describe_chunks(seen & set(server.chunk_files()))}") from None
        # the plot: a line per current top genre and per leader, the leader's band, one legend
        ps = plot_state(page)
        check_plot(ps)
        assert len(ps["lines"]) >= 3 and ps["band"], ps
        if model_spec == "auto":  # the bundled model hears electronic game music as such
            assert "Electronic" in list(scores)[:2], scores
            style = page.locator("#live-style .live-style").get_attribute("data-style")
            assert style in ELECTRONIC_TAGS, style  # the style under the headline, inside its genre
        page.screenshot(path=str(artifacts / "live_tab.png"), full_page=True)
        # timings, for information only (bench/ measures speed)
        lat = [r["dom"] - r["arrival"] for r in rs if r["arrival"]]
        report = {"first_readout_after_record_s": round(first_s, 2),
                  "chunk_to_label_ms": {"median": statistics.median(lat), "max": max(lat)} if lat else None,
                  "inference_ms": {"median": statistics.median(r["infer"] for r in rs)},
                  "samples": rs}
        (artifacts / "live_latency.json").write_text(json.dumps(report, indent=1))
        print("\nlatency:", json.dumps({k: v for k, v in report.items() if k != "samples"}))
        # stop -> summary of the session, in the same numbers as the status line
        last_run1 = readouts(page)[-1]
        stop(page)
        page.wait_for_function("document.querySelector('#live-summary').innerText.includes('Dominant genre')",
                               timeout=PATIENCE_S * 1000)
        summary = page.locator("#live-summary").inner_text()
        assert re.search(r"Dominant genre: \S+", summary) and re.search(r"\d+ %", summary), summary
        top = re.search(r"Dominant genre: (.+?)\.", summary).group(1)
        assert top in {label_rows(r["label"])[0] for r in readouts(page)}, (top, readouts(page))
        page.wait_for_function("document.querySelector('#live-status').innerText.includes('stopped')",
                               timeout=PATIENCE_S * 1000)
        received, windows1 = counters(status(page))
        m = re.search(r"(\S+(?: s)?) of audio received, (\S+(?: s)?) classified", summary)
        assert m and seconds(m.group(1)) == received, (summary, status(page))
        assert 0 < seconds(m.group(2)) <= received, summary
        # the headline, the plot's band and the summary tell the same story of the session
        per_genre = re.sub(r" \([^)]*\)", "", summary.split("leading genre:")[1])  # (the styles within)
        shares = {g.strip(): int(v) for g, v in re.findall(r"([^,:]+?) (\d+) %", per_genre)}
        headline = label_rows(page.locator("#live-label").inner_text())[0]
        assert headline == page.locator("#live-status .live-status").get_attribute("data-leader"), headline
        ps = plot_state(page)
        check_plot(ps)
        widths: dict = {}
        for seg in ps["band"]:
            widths[seg["genre"]] = widths.get(seg["genre"], 0.0) + seg["w"]
        band_shares = {g: 100 * w / sum(widths.values()) for g, w in widths.items()}
        assert set(band_shares) == set(shares) or len(shares) == 5, (band_shares, shares)
        assert all(abs(band_shares.get(g, 0) - v) <= 3 for g, v in shares.items()), (band_shares, shares)
        assert ps["band"][-1]["genre"] == headline, (ps["band"], headline)
        page.screenshot(path=str(artifacts / "live_tab_stopped.png"), full_page=True)
        # a second recording starts from zero: its own counters, plot and summary
        page.evaluate(OBSERVER_JS)
        record(page)
        page.wait_for_function("!document.querySelector('#live-summary').innerText.includes('Dominant')",
                               timeout=PATIENCE_S * 1000)
        again = wait_for_readouts(page, 1)[0]
        received2, windows2 = counters(again["status"])
        assert again["t"] < last_run1["t"] and windows2 < windows1 and received2 < received, (again, last_run1)
        band = plot_state(page)["band"]
        assert band and band[0]["x"] > 0 and sum(b["w"] for b in band) < 200, band  # a new history
        stop(page)
    # the tab is gone: its engine is closed, and no chunk is left behind
    deadline = time.monotonic() + PATIENCE_S
    while (server.chunk_files() or "live session closed (tab closed)" not in server.log(None)) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.chunk_files() == []
    assert "live session closed (tab closed)" in server.log(None)


@browser
@needs_music
def test_plot_keeps_the_history_of_an_acoustic_then_electronic_session(server, pw, audio, artifacts, model_spec):
    """A piano arpeggio (the bundled model hears jazz), then electronic music: the genre that led
    first keeps its line and its stretch of the band after it stops leading."""
    with browser_page(pw, audio["switch"]) as page:
        open_app(page, server)
        record(page)
        wait_for_readouts(page, 4)
        if model_spec == "auto":
            def two_leaders():
                ps = plot_state(page)
                return ps if ps and len({s["genre"] for s in ps["band"] if s["genre"]}) >= 2 else None

            ps = wait_until(page, "a second leading genre in the band", two_leaders)
        else:  # (the tiny random checkpoint has no reason to change its mind)
            ps = plot_state(page)
        check_plot(ps)
        first_leader = ps["band"][0]["genre"]
        colours = {l["genre"]: l["stroke"] for l in ps["lines"]}
        n = len(readouts(page))
        wait_for_readouts(page, n + 5)
        later = plot_state(page)
        check_plot(later)
        page.screenshot(path=str(artifacts / "live_plot_switch.png"), full_page=True)
        stop(page)
    # the first leader is still drawn, from the start of the plot, in the colour it had
    line = next(l for l in later["lines"] if l["genre"] == first_leader)
    assert line["length"] > 0 and later["band"][0]["genre"] == first_leader, later
    assert all(colours[l["genre"]] == l["stroke"] for l in later["lines"] if l["genre"] in colours), (colours, later)


@browser
def test_microphone_refused_says_so(server, pw, audio, artifacts):
    with browser_page(pw, audio["chord"], mic_allowed=False) as page:
        open_app(page, server)
        record(page)
        page.wait_for_function("document.querySelector('#live-status').innerText.includes('refused the microphone')",
                               timeout=PATIENCE_S * 1000)
        st = status(page)
        assert "Allow" in st and "Record again" in st, st
        assert page.evaluate("window.__micError") == "NotAllowedError"
        page.wait_for_function("document.querySelector('#live-label').innerText.includes('microphone blocked')",
                               timeout=PATIENCE_S * 1000)
        page.wait_for_timeout(2500)  # the watcher's periodic status refresh must not bring "listening…" back
        assert "refused the microphone" in status(page)
        assert "listening" not in page.locator("#live-label").inner_text()
        page.screenshot(path=str(artifacts / "live_tab_mic_refused.png"), full_page=True)


@browser
@needs_music
def test_two_sessions_get_their_own_readouts(server, pw, audio, artifacts, model_spec):
    with browser_page(pw, audio["music"]) as a, browser_page(pw, audio["chord"]) as b:
        open_app(a, server)
        open_app(b, server)
        record(a)
        record(b)
        ra = wait_for_readouts(a, 4)
        rb = wait_for_readouts(b, 4)
        la, lb = status_level(a), status_level(b)
        lo, hi = audio["music_range"]
        assert lo - 2.0 <= la <= hi + 2.0, (la, lo, hi)
        # the sustained chord is what noise suppression would eat: it must arrive at its true level
        assert abs(lb - CHORD_DBFS) < 2.0, lb
        sa, sb = label_scores(a), label_scores(b)
        assert sa and sb
        if model_spec == "auto":  # (the tiny random checkpoint gives ~uniform scores to everything)
            assert sa != sb and ra[-1]["label"] != rb[-1]["label"], (sa, sb)
        b.screenshot(path=str(artifacts / "live_tab_second_session.png"), full_page=True)
        # one colour per genre, in both tabs, from the table every front end shares
        from ui.colours import genre_colour

        for page in (a, b):
            ps = plot_state(page)
            check_plot(ps)
            assert all(l["stroke"] == genre_colour(l["genre"]) for l in ps["lines"]), ps["lines"]
        # plain words on screen: no chunk counters or timings
        for page in (a, b):
            assert "chunk" not in status(page) and "→" not in status(page), status(page)
        # A stops: nothing of A's (the sweep of its leftover chunks) reaches B, whose audio keeps coming
        stop(a)
        n = len(readouts(b))
        rb = wait_for_readouts(b, n + 6)
        st = b.locator("#live-status .live-status")
        assert st.get_attribute("data-bad-chunks") == "0" and "could not be read" not in status(b), status(b)
        stop(b)


@browser
def test_silence_reads_silence_not_a_genre(server, pw, audio, artifacts):
    with browser_page(pw, audio["silence"]) as page:
        open_app(page, server)
        record(page)
        rs = wait_for_readouts(page, 2)
        label = page.locator("#live-label").inner_text()
        assert "silence" in label and "%" not in label, label
        assert all("%" not in r["label"] for r in rs), rs
        assert "silence" in status(page)
        assert status_level(page) < -60
        page.screenshot(path=str(artifacts / "live_tab_silence.png"), full_page=True)
        stop(page)
        page.wait_for_function("document.querySelector('#live-summary').innerText.includes('silence')",
                               timeout=PATIENCE_S * 1000)


@browser
@needs_music
def test_file_tab_scores_timeline_segment_and_bad_files(server, pw, audio, artifacts, model_spec):
    with browser_page(pw, None) as page:
        page.goto(server.url)
        page.get_by_role("tab", name="File").click()
        file_input = page.locator("#file-in input[type=file]")
        file_input.set_input_files(str(audio["mp3"]))
        page.wait_for_function("document.querySelector('#file-status').innerText.includes('Top genre')",
                               timeout=PATIENCE_S * 1000)
        md = page.locator("#file-status").inner_text()
        assert "time_to_strike_excerpt.mp3" in md and re.search(r"\d+ windows", md), md
        scores = page.locator("#file-label").inner_text()
        assert scores.count("%") >= 3, scores
        # the timeline draws one line per top genre
        page.wait_for_function(
            "document.querySelectorAll(\"#file-timeline svg [aria-roledescription='line mark']\").length >= 3",
            timeout=PATIENCE_S * 1000)
        legend = page.locator("#file-timeline svg .role-legend-label").evaluate_all("els => els.map(e => e.textContent)")
        assert set(legend) <= set(re.findall(r"^(\S[^\n]*)\n\d+%$", scores, re.M)) and len(legend) >= 3, (legend, scores)
        # each genre's line in its colour: the live plot's (ui.colours), whatever the session
        from ui.colours import genre_colour

        symbols = page.locator("#file-timeline svg .role-legend-symbol path").evaluate_all(
            "els => els.map(e => e.getAttribute('stroke') || e.getAttribute('fill') || e.style.stroke || e.style.fill)")
        assert len(symbols) == len(legend), (symbols, legend)
        assert [c.lower() for c in symbols] == [genre_colour(g) for g in legend], (legend, symbols)
        # the limits, before anyone uploads: in minutes and MB
        label = page.locator("#file-limit").inner_text()  # (under the upload: its own label stays short)
        assert "up to 1 min and 5 MB" in label, label
        # the most characteristic segment is playable: one window of audio
        window = float(re.search(r"windows of (\d+(?:\.\d+)?) s", md).group(1))
        page.locator("#file-segment").get_by_text(f"0:{int(window):02d}").wait_for(timeout=PATIENCE_S * 1000)
        # whole files use the library's own default hop for files (not the live hop)
        from stream import analyze_file, load_model

        n_windows = int(re.search(r"(\d+) windows", md).group(1))
        spec = model_spec if model_spec != "auto" else "musicnn"
        assert n_windows == analyze_file(str(audio["mp3"]), load_model(spec), window_s=window).n_windows, md
        if model_spec == "auto":
            top = re.search(r"Top genre: (\S+)", md).group(1)
            style = re.search(r"style (\S+)", md).group(1)
            assert top == "Electronic" and style in ELECTRONIC_TAGS, md
        page.screenshot(path=str(artifacts / "file_tab.png"), full_page=True)

        def upload_bad(path: Path, expect: str):
            upload(page, path)  # (Clear's late reply would blank the quick error)
            page.wait_for_function(
                f"document.querySelector('#file-status').innerText.includes({json.dumps('Cannot analyse ' + path.name)})",
                timeout=PATIENCE_S * 1000)
            text = page.locator("#file-status").inner_text()
            assert "Cannot analyse" in text and re.search(expect, text), text
            assert "/tmp" not in text and str(server.cache) not in text, text  # no server paths
            assert "%" not in page.locator("#file-label").inner_text()  # previous results cleared
            return text

        upload_bad(audio["corrupt"], r"corrupt|not a readable")
        page.screenshot(path=str(artifacts / "file_tab_error.png"), full_page=True)
        upload_bad(audio["empty"], r"empty|no audio")
        upload_bad(audio["text"], r"not a readable|cannot decode|corrupt")
        # a text file named .mp3: one clean message, no decoder chatter
        text = upload_bad(audio["text_mp3"], r"not a readable audio file")
        assert not re.search(r"pipe|Error opening|Invalid argument|Illegal|resync", text), text
        upload_bad(audio["long"], r"1 min 10 s long; the limit is 1 min")
        # over the upload size limit: refused before it is sent, in one sentence where errors go
        text = upload_bad(audio["big"], r"it is 6 MB and files up to 5 MB can be uploaded here; save it as mp3")
        assert not re.search(r"[.!?]\s+\S", text.strip()), text  # (one sentence)
        assert "Error" not in page.locator("#file-in").inner_text()  # no bare red "Error" on the component
        assert not list(server.cache.rglob("big.wav"))
        # the page and the server keep working (the refused file never reached the player: no Clear)
        assert page.locator("#file-in button[aria-label=Clear]").count() == 0
        file_input.set_input_files(str(audio["mp3"]))
        page.wait_for_function("document.querySelector('#file-status').innerText.includes('Top genre')",
                               timeout=PATIENCE_S * 1000)
    assert server.alive()


@browser
@needs_music
@pytest.mark.server
def test_closing_the_tab_cancels_a_file_analysis(tmp_path_factory, model_spec, pw, audio):
    """A long recording is being analysed when its tab closes: the analysis stops (it would
    otherwise keep a core busy, and hold one of the File tab's two slots, for minutes)."""
    srv = AppServer(tmp_path_factory.mktemp("app-cancel"), model=model_spec,
                    extra_args=["--max-file-minutes", "60", "--max-file-mb", "60"])
    try:
        srv.wait_ready()
        with browser_page(pw, None) as page:
            page.goto(srv.url)
            page.get_by_role("tab", name="File").click()
            page.locator("#file-in input[type=file]").set_input_files(str(audio["hour"]))
            page.get_by_text(re.compile(r"\d+ s analysed")).first.wait_for(timeout=PATIENCE_S * 1000)
        deadline = time.monotonic() + PATIENCE_S
        while "file analysis of" not in srv.log(None) and time.monotonic() < deadline:
            time.sleep(0.5)
        log = srv.log(None)
        m = re.search(r"file analysis of forty_minutes.wav cancelled, the tab closed \((\d+) % done\)", log)
        assert m, log[-3000:]
        assert int(m.group(1)) < 100, m.group(0)  # stopped part-way through the 40 minutes
        assert "Top genre" not in log
        assert srv.alive()
    finally:
        srv.stop()
    assert "Traceback" not in srv.log(None), srv.log()


@pytest.fixture(scope="module")
def roomy_server(tmp_path_factory, model_spec):
    """A page that takes long files (60 minutes, 60 MB): an analysis that runs for a while."""
    with app_server(tmp_path_factory.mktemp("app-roomy"), model_spec, ["--max-file-minutes", "60", "--max-file-mb", "60"]) as srv:
        yield srv


def file_status(page) -> str:
    return page.locator("#file-status").inner_text()


def upload(page, path: Path, clear: bool = True):
    if clear:
        page.locator("#file-in button[aria-label=Clear]").dispatch_event("click")
        # as a person would, upload once Clear's reply has emptied the results: handled after the
        # new file's analysis began (a loaded CI run), Clear stops that one too and blanks the tab
        page.wait_for_function("document.querySelector('#file-status').innerText.trim() === ''",
                               timeout=PATIENCE_S * 1000)
    page.locator("#file-in input[type=file]").set_input_files(str(path))


@browser
@needs_music
def test_a_new_file_replaces_the_one_being_analysed(roomy_server, pw, audio):
    """A long file is being analysed; Clear, then another file: the first analysis stops, the
    second is analysed, and the results name the file they describe."""
    srv = roomy_server
    with browser_page(pw, None) as page:
        page.goto(srv.url)
        page.get_by_role("tab", name="File").click()
        upload(page, audio["hour"], clear=False)
        page.get_by_text(re.compile(r"\d+ s analysed")).first.wait_for(timeout=PATIENCE_S * 1000)
        upload(page, audio["mp3"])
        wait_until(page, "the second file's results", lambda: ("Top genre" in file_status(page)
                   and "time_to_strike_excerpt.mp3" in file_status(page)) or print(file_status(page)))
        deadline = time.monotonic() + PATIENCE_S
        while "file analysis of forty_minutes.wav cancelled" not in srv.log(None) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert re.search(r"file analysis of forty_minutes.wav cancelled, (Clear was pressed|a new file came)",
                         srv.log(None)), srv.log()
        md = file_status(page)
        assert "forty_minutes" not in md and "Top genre" in md, md
        assert page.locator("#file-label").inner_text().count("%") >= 3
    assert srv.alive()


@browser
@needs_music
def test_an_error_goes_when_the_next_file_comes_and_clear_stops_an_analysis(roomy_server, pw, audio):
    """The error about one file does not stay while the next is analysed; Clear stops the
    running analysis and empties the results."""
    srv = roomy_server
    with browser_page(pw, None) as page:
        page.goto(srv.url)
        page.get_by_role("tab", name="File").click()
        upload(page, audio["corrupt"], clear=False)
        wait_until(page, "the error about corrupt.wav", lambda: "Cannot analyse corrupt.wav" in file_status(page))
        upload(page, audio["hour"])
        # at once, the new file's name and no stale error (long before its results)
        wait_until(page, "the new file named while it is analysed",
                   lambda: "forty_minutes.wav" in file_status(page) and "Cannot analyse" not in file_status(page))
        page.get_by_text(re.compile(r"\d+ s analysed")).first.wait_for(timeout=PATIENCE_S * 1000)
        page.locator("#file-in button[aria-label=Clear]").dispatch_event("click")
        deadline = time.monotonic() + PATIENCE_S
        while "forty_minutes.wav cancelled, Clear was pressed" not in srv.log(None) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "forty_minutes.wav cancelled, Clear was pressed" in srv.log(None), srv.log()
        wait_until(page, "empty results after Clear", lambda: "forty_minutes" not in file_status(page))
    assert srv.alive()


def test_an_analysis_asked_for_before_clear_is_dropped_and_a_new_upload_of_the_file_is_not():
    """Gradio may announce one upload twice; on a busy machine the second analysis event can be
    handled after Clear and used to write the cleared file's results (or error) back. Such a late
    event is dropped; the same file uploaded again after the Clear is analysed (its upload handler,
    which runs first, lifts the mark)."""
    from types import SimpleNamespace

    import gradio as gr

    from ui.web import page as P

    tab, path = SimpleNamespace(session_hash="clear-test"), "/tmp/gradio/abc/corrupt.wav"
    P._SHOWN[tab.session_hash] = path  # its error is on screen
    try:
        assert P.clear_file(tab)[3] == ""
        skip = type(gr.skip())
        late = list(P.analyse(None, path, 9.0, 3, tab))  # (returns before it needs the page's setup)
        assert len(late) == 1 and all(isinstance(o, skip) for o in late[0]), late
        assert not P._cleared_since(SimpleNamespace(session_hash="another-tab"), path)
        P.new_file(path, tab)  # uploaded again
        assert not P._cleared_since(tab, path)
    finally:
        P.end_session(tab)
    assert tab.session_hash not in P._CLEARED


@browser
def test_no_audio_after_record_says_so_and_how_to_retry(server, pw, audio, artifacts):
    """Record pressed, and no audio reaches the server (here: the chunk uploads are blocked):
    within seconds the page says so and what to do; doing it works."""
    with browser_page(pw, audio["chord"]) as page:
        open_app(page, server)
        page.route("**/gradio_api/upload*", lambda route: route.abort())
        record(page)
        wait_until(page, "the no-audio message", lambda: "No sound has reached the page" in status(page))
        st = status(page)
        assert "Stop" in st and "Record again" in st and "reload" in st, st
        assert "no audio" in page.locator("#live-label").inner_text()
        page.screenshot(path=str(artifacts / "live_tab_no_audio.png"), full_page=True)
        page.wait_for_timeout(2500)  # the watcher's periodic status refresh must not bring "listening…" back
        assert "No sound has reached the page" in status(page)
        # the advice: Stop, then Record again (the uploads get through now)
        page.unroute("**/gradio_api/upload*")
        stop(page)
        page.evaluate(OBSERVER_JS)
        record(page)
        try:
            wait_for_readouts(page, 1)
        except AssertionError as e:  # (seen once, -n 4 at load ~7: no audio after Record again; the log says in which order)
            raise AssertionError(f"{e}\napp log:\n{server.log(4000)}") from None
        assert "No sound" not in status(page)
        stop(page)


@browser
def test_a_stop_that_reaches_the_server_after_the_next_record_does_not_end_it(server, pw, audio):
    """Stop, then Record at once: the two events are separate requests, handled concurrently, and
    under load Stop's came second (CI, -n 4); it ended the new recording, which then heard nothing.
    Here Stop's request is held until Record's has gone: the new recording goes on."""
    with browser_page(pw, audio["chord"]) as page:
        open_app(page, server)
        deps = page.evaluate("() => fetch('config').then(r => r.json()).then(c => c.dependencies)")
        ids = {d.get("api_name"): d.get("id") for d in deps}
        held = []

        def reorder(route):
            try:
                fn = json.loads(route.request.post_data or "{}").get("fn_index")
            except ValueError:
                fn = None
            if fn == ids["finish"] and not held:
                held.append(route)  # Stop's request: held back
                return
            route.continue_()
            if fn == ids["watch"] and held:
                time.sleep(1.0)  # Record's is in; now Stop's
                held.pop().continue_()

        page.route("**/gradio_api/queue/join*", reorder)
        page.evaluate(OBSERVER_JS)
        record(page)
        wait_for_readouts(page, 1)
        stop(page)
        page.wait_for_timeout(500)
        page.evaluate(OBSERVER_JS)
        record(page)
        wait_until(page, "Record's request sent, then Stop's", lambda: not held)
        try:
            wait_for_readouts(page, 1)
        except AssertionError as e:
            raise AssertionError(f"{e}\napp log:\n{server.log(3000)}") from None
        page.wait_for_timeout(1500)
        assert "stopped" not in status(page).lower(), status(page)
        stop(page)


@browser
def test_record_pressed_while_the_recorder_still_loads_records(server, pw, audio):
    """Gradio loads its recorder's WAV encoder in the background; Record pressed before it is
    there used to fail inside Gradio ("... is not a constructor") and record nothing. Here the
    encoder's module is held back until after the click: the recording starts once it is in."""
    held, errors = [], []
    with browser_page(pw, audio["chord"]) as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/module-*.js", lambda route: held.append(route))
        open_app(page, server)
        wait_until(page, "the encoder's module requested", lambda: held)
        record(page)
        page.wait_for_timeout(1500)  # (clicked while the module is still on its way)
        for route in held:
            route.continue_()
        page.unroute("**/module-*.js")
        wait_for_readouts(page, 1)
        assert not [e for e in errors if "constructor" in e], errors
        assert page.evaluate("window.__recordWaited") == 1  # (the click did come before the encoder)
        stop(page)


@browser
def test_plot_text_is_readable_on_a_phone(server, pw, audio, artifacts):
    """At 390 px wide (a phone) the plot's axis text is at least 11 px on screen."""
    with browser_page(pw, audio["chord"], viewport=(390, 844)) as page:
        open_app(page, server)
        record(page)
        wait_for_readouts(page, 2)
        sizes = page.evaluate("""() => [...document.querySelectorAll('#live-plot svg text')].map(t => {
            const px = parseFloat(getComputedStyle(t).fontSize), m = t.getScreenCTM();
            return {text: t.textContent, px: px * Math.hypot(m.a, m.b)}; })""")
        page.screenshot(path=str(artifacts / "live_tab_phone.png"), full_page=True)
        stop(page)
    assert len(sizes) >= 4, sizes
    assert all(s["px"] >= 11 for s in sizes), sizes


@browser
def test_settings_apply_to_the_next_recording(server, pw, audio):
    with browser_page(pw, audio["chord"]) as page:
        open_app(page, server)
        page.get_by_text("Settings").first.click()
        page.locator("#set-window input[type=number]").wait_for(state="visible")
        wanted = {"set-window": "4", "set-hop": "0.5", "set-topk": "3"}
        for _ in range(3):  # (a value typed while the accordion is still mounting can be lost)
            for eid, value in wanted.items():
                box = page.locator(f"#{eid} input[type=number]")
                box.fill(value)
                box.press("Enter")
            page.wait_for_timeout(300)
            if all(page.locator(f"#{eid} input[type=range]").input_value() == v for eid, v in wanted.items()):
                break
        record(page)
        rs = wait_for_readouts(page, 6)
        st = status(page)
        assert "window 4 s" in st and "hop 0.5 s" in st, st
        steps = [round(b["t"] - a["t"], 2) for a, b in zip(rs, rs[1:])]
        # readouts on a 0.5 s grid of audio (a busy CPU may skip windows, never shift the grid)
        assert min(steps) == 0.5 and all(abs(x / 0.5 - round(x / 0.5)) < 1e-6 for x in steps), steps
        assert len(label_scores(page)) == 3, page.locator("#live-label").inner_text()
        stop(page)


def test_browser_going_away_mid_upload_is_not_a_traceback(server):
    """A tab closed while a microphone chunk was being uploaded: one INFO line, no traceback
    (the server fixture also checks the whole log for tracebacks)."""
    before = server.log(None).count("a browser went away during an upload")
    head = (b"--xx\r\nContent-Disposition: form-data; name=\"files\"; filename=\"audio.wav\"\r\n"
            b"Content-Type: audio/wav\r\n\r\n" + bytes(1000))
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /gradio_api/upload?upload_id=gone HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: multipart/form-data; boundary=xx\r\nContent-Length: 100000\r\n\r\n" + head)
        time.sleep(0.5)
    deadline = time.monotonic() + PATIENCE_S
    while server.log(None).count("a browser went away during an upload") == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.log(None).count("a browser went away during an upload") > before, server.log()
    assert "Traceback" not in server.log(None) and server.alive()


# ---- start-up, as a user runs it -------------------------------------------------------------------
def _run_app(args, tmp_path, block_heavy_imports=False, timeout=PATIENCE_S):
    """`python app.py ARGS` to its end: (exit status, stderr lines). block_heavy_imports: torch
    and gradio cannot be imported (proves an answer came before them)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    env.pop("GRADIO_SERVER_PORT", None)
    env.pop("GRADIO_SERVER_NAME", None)
    if block_heavy_imports:
        for name in ("torch", "gradio"):
            (tmp_path / "blocked" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "blocked" / name / "__init__.py").write_text(f"raise ImportError('{name} blocked by the test')\n")
        env["PYTHONPATH"] = str(tmp_path / "blocked")
    r = subprocess.run([sys.executable, str(REPO / "app.py"), *args], env=env, cwd=str(REPO), capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout, [l for l in r.stderr.splitlines() if l.strip()]


def test_help_answers_before_torch_and_gradio_load(tmp_path):
    rc, out, err = _run_app(["--help"], tmp_path, block_heavy_imports=True)
    assert rc == 0 and "--window" in out and "--top-k" in out, (rc, out, err)


def test_out_of_range_settings_exit_2_with_one_line(tmp_path):
    rc, _, err = _run_app(["--window", "100", "--hop", "-1", "--top-k", "11"], tmp_path, block_heavy_imports=True)
    assert rc == 2 and len(err) == 1, (rc, err)
    assert "--window 100 is outside 3..30 s" in err[0] and "--hop -1" in err[0] and "--top-k 11" in err[0], err
    rc, _, err = _run_app(["--smoothing", "nan"], tmp_path, block_heavy_imports=True)
    assert rc == 2 and len(err) == 1 and "--smoothing" in err[0], (rc, err)


def test_busy_port_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, _, err = _run_app(["--port", str(port)], tmp_path, block_heavy_imports=True)
    assert rc == 3 and len(err) == 1 and f"port {port}" in err[0] and "in use" in err[0], (rc, err)


def test_unknown_model_is_one_line(tmp_path):
    rc, _, err = _run_app(["--model", str(tmp_path / "no-such-model"), "--port", str(free_port())], tmp_path)
    errors = [l for l in err if "error" in l.lower()]
    assert rc == 4 and len(errors) == 1 and "Traceback" not in "\n".join(err), (rc, err)
    assert "no-such-model" in errors[0], errors
    from stream import ModelLoadError

    if hasattr(ModelLoadError("x", "y"), "advice"):  # advice in this command line's terms
        assert "load_model(" not in errors[0] and "--model musicnn" in errors[0], errors


# ---- in-process checks (no browser) --------------------------------------------------------------
@pytest.fixture(scope="module")
def app_module(model_spec):
    """app.py imported in-process (`demo` is built only on first use, with the model from GENRE_MODEL)."""
    import importlib

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("GENRE_MODEL", model_spec)
        mp.syspath_prepend(str(Path(__file__).resolve().parents[1]))
        return importlib.import_module("app")


def test_imported_app_builds_demo_on_first_use(app_module, model_spec, monkeypatch):
    """A Space imports app.py and takes `demo`: built from the environment's settings."""
    import gradio as gr

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GENRE_MODEL", model_spec)
    assert "demo" not in vars(app_module)  # importing alone loads no model
    assert isinstance(app_module.demo, gr.Blocks)
    assert app_module.ARGS.model == model_spec and app_module.MODEL is not None


def test_command_line_defaults_are_private(app_module, monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    a = app_module.parse_args([])
    assert a.host == "127.0.0.1" and a.share is False
    b = app_module.parse_args(["--model", "musicnn", "--host", "0.0.0.0", "--port", "8000", "--share", "--window", "5",
                               "--hop", "0.5", "--smoothing", "0", "--top-k", "3"])
    assert (b.model, b.host, b.port, b.share, b.window, b.hop, b.smoothing, b.top_k) == \
        ("musicnn", "0.0.0.0", 8000, True, 5.0, 0.5, 0.0, 3)


def test_page_defaults_are_the_engines(app_module):
    from stream import EngineConfig

    a = app_module.parse_args([])
    c = EngineConfig()
    assert (a.smoothing, a.top_k, a.silence_dbfs) == (c.smoothing_s, c.top_k, c.silence_dbfs)


def test_the_live_session_needs_no_gradio():
    """ui/web/session.py is the engine side of a tab: usable (and testable) without Gradio."""
    code = "import sys, ui.web.session, ui.web.render, ui.web.flags; print(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'ui')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=PATIENCE_S)
    assert out.returncode == 0, out.stderr
    assert "gradio" not in out.stdout and "ui.terminal" not in out.stdout, out.stdout


def test_feeding_never_waits_for_a_slow_model():
    from support.models import BandModel

    from ui.web.session import LiveSession, LiveSettings

    slow = BandModel(delay_s=0.5)
    s = LiveSession(slow, LiveSettings(2.0, 0.25, 0.0, 3, -55.0))
    s.start(s.settings)
    chunk = (np.sin(np.arange(12000) / 48000 * 2 * np.pi * 440) * 10000).astype(np.int16)
    worst = 0.0
    for _ in range(40):  # 10 s of audio, a window every 0.25 s, each forward 0.5 s
        t = time.perf_counter()
        s.feed(48000, chunk)
        worst = max(worst, time.perf_counter() - t)
    assert worst < 0.25, worst  # (a forward takes 0.5 s: feed did not wait for one, even on a busy CPU)
    summary = s.stop()
    assert summary.dominant == "low"
    assert s.stats.windows_skipped > 0  # the slow model could not keep up, and nothing waited
    s.close()
    assert s.closed and s._engine.closed


def test_chunk_files_are_deleted_only_inside_gradios_cache(tmp_path, monkeypatch):
    from ui.web import uploads

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    inside = cache / "abc123" / "audio.wav"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"x")
    outside = tmp_path / "mine.wav"
    outside.write_bytes(b"x")
    uploads.discard_upload(str(inside))
    uploads.discard_upload(str(outside))
    assert not inside.exists() and not inside.parent.exists()
    assert outside.exists()


def test_orphan_chunks_are_swept_by_their_wav_header(tmp_path, monkeypatch):
    """Chunks of this recording left in the cache go; another recording's chunks and other
    uploads stay."""
    from ui.web import uploads

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    tone = (np.sin(np.arange(4800) / 48000 * 2 * np.pi * 440) * 0.1).astype(np.float32)
    mine, other, upload = cache / "a1" / "audio.wav", cache / "b2" / "audio.wav", cache / "c3" / "song.wav"
    write_wav(mine, tone)
    write_wav(other, tone, 16000)  # another browser's recording: another header
    write_wav(upload, tone)
    header = uploads.wav_header(str(mine))
    assert header is not None and uploads.wav_header(str(other)) != header
    assert uploads.wav_header(str(tmp_path / "missing.wav")) is None
    uploads.sweep_orphan_chunks((header, time.time() - 10), delay_s=0.0)
    deadline = time.monotonic() + PATIENCE_S
    # the sweep deletes the file, then its folder: wait for the folder
    while mine.parent.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not mine.exists() and not mine.parent.exists()
    assert other.exists() and upload.exists()
    uploads.sweep_orphan_chunks(None)  # a recording that never sent a chunk: nothing to do


def test_a_chunk_named_before_gradio_moved_it_into_its_cache_is_waited_for(tmp_path):
    """Gradio answers an upload with the file's path and moves the file there in a background
    task: the stream event can come first (a busy machine). The handler waits for the file
    instead of counting the chunk as unreadable."""
    import threading

    from ui.web import uploads

    late = tmp_path / "late" / "audio.wav"
    tone = (np.sin(np.arange(4800) / 48000 * 2 * np.pi * 440) * 0.1).astype(np.float32)
    staged = write_wav(tmp_path / "staged.wav", tone)
    started = threading.Event()

    def move_later():
        started.set()
        time.sleep(0.3)
        late.parent.mkdir()
        staged.rename(late)

    t = threading.Thread(target=move_later)
    t.start()
    started.wait()
    assert uploads.wait_for_upload(str(late), timeout_s=PATIENCE_S) and late.exists()
    t.join()
    assert not uploads.wait_for_upload(str(tmp_path / "never.wav"), timeout_s=0.2)


def test_a_chunk_given_up_on_is_deleted_when_it_arrives(tmp_path, monkeypatch):
    """A chunk later than wait_for_upload's patience is not fed, and still does not stay in the
    cache while the recording goes on (privacy: no audio left behind)."""
    from ui.web import uploads

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    late = tmp_path / "cache" / "late" / "audio.wav"
    uploads.discard_when_it_arrives(str(late), every_s=0.05)
    time.sleep(0.2)
    write_wav(late, np.zeros(4800, np.float32))
    deadline = time.monotonic() + PATIENCE_S
    while late.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not late.exists() and not late.parent.exists()


def test_a_chunk_named_twice_is_fed_once_and_not_called_unreadable():
    """Gradio sometimes fires the stream event twice for one upload (its file is named by the
    content's hash, and gone after the first): the second is skipped, not counted as a chunk
    that could not be read (it showed as "undecodable chunks 1", in whichever tab it hit)."""
    from support.models import BandModel

    from ui.web.session import LiveSession, LiveSettings

    s = LiveSession(BandModel(), LiveSettings(3.0, 1.0, 0.0, 3, -55.0))
    assert not s.repeated_chunk("/cache/abc/audio.wav") and s.repeated_chunk("/cache/abc/audio.wav")
    for i in range(64):  # (only the recent ones are remembered)
        assert not s.repeated_chunk(f"/cache/{i}/audio.wav")
    assert not s.repeated_chunk("/cache/abc/audio.wav")
    s.close()


def test_a_chunk_whose_event_never_came_is_deleted_during_the_recording(tmp_path, monkeypatch):
    """A recording's chunk written well before one the page just handled will never be handled
    (the queue takes them in order): deleted while the recording goes on, not at its end. Newer
    chunks and another format's are kept."""
    import os

    from ui.web import uploads

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    tone = (np.sin(np.arange(4800) / 48000 * 2 * np.pi * 440) * 0.1).astype(np.float32)
    old, recent = (write_wav(tmp_path / "cache" / n / "audio.wav", tone) for n in ("old", "recent"))
    other = write_wav(tmp_path / "cache" / "other" / "audio.wav", tone, rate=16000)  # another format
    header = uploads.wav_header(str(old))
    now = time.time()
    for p, age in ((old, 100), (recent, 5), (other, 100)):
        os.utime(p, (now - age, now - age))
    assert uploads.sweep_stale_chunks(header, now) == 1
    assert not old.exists() and recent.exists() and other.exists()


def test_a_new_chunk_with_the_bytes_of_an_earlier_one_is_fed_and_deleted(tmp_path, monkeypatch):
    """Gradio names a chunk by its content's hash: two chunks of the same bytes (digital silence)
    share a path. The second is no repeated event while its file is there: fed and deleted,
    not left in the cache for the rest of the recording."""
    from support.models import BandModel

    from ui.web import page, uploads
    from ui.web.session import LiveSession, LiveSettings

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    chunk = tmp_path / "cache" / "same" / "audio.wav"
    s = LiveSession(BandModel(), LiveSettings(3.0, 1.0, 0.0, 3, -55.0))
    s.start(s.settings)
    for _ in range(2):
        write_wav(chunk, np.zeros(4800, np.float32))
        page.on_chunk(str(chunk), s)
        assert not chunk.exists() and uploads.upload_root() == (tmp_path / "cache").resolve()
    page.on_chunk(str(chunk), s)  # the same upload named twice: its file is gone, skipped
    assert len(s._arrivals) == 2 and s.status(None).bad_chunks == 0  # (arrivals: the chunks fed)
    s.close()


def test_sweeping_one_tabs_chunks_spares_a_recording_in_the_same_format(tmp_path, monkeypatch):
    """Two tabs (or two recordings of one tab) record in the same format, so their chunks have
    the same WAV header: after one stops, the sweep of its leftovers must not delete chunks of
    the other that wait for their turn (they came out "undecodable" in the other tab). It
    waits while that format is streaming (or a recording's format is not known yet)."""
    import threading

    from ui.web import uploads

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    tone = (np.sin(np.arange(4800) / 48000 * 2 * np.pi * 440) * 0.1).astype(np.float32)
    waiting = cache / "b1" / "audio.wav"  # the other recording's chunk, not handled yet
    write_wav(waiting, tone)
    header = uploads.wav_header(str(waiting))
    state = {"streaming": None, "asked": 0}  # None: a recording whose first chunk has not come
    asked = threading.Event()

    def busy():
        state["asked"] += 1
        if state["asked"] >= 3:
            asked.set()
        return state["streaming"]

    uploads.sweep_orphan_chunks((header, time.time() - 10), delay_s=0.02, busy=busy)
    assert asked.wait(PATIENCE_S) and waiting.exists()  # (format unknown: nothing touched)
    state["streaming"], state["asked"] = {header}, 0
    asked.clear()
    assert asked.wait(PATIENCE_S) and waiting.exists()  # (the same format streams: nothing touched)
    state["streaming"] = {b"another header"}  # it stopped; only another format streams
    deadline = time.monotonic() + PATIENCE_S
    while waiting.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not waiting.exists()


def _result(scores: dict, label, t=10.0, silent=False):
    from stream import Result

    return Result(scores=scores, raw_scores=dict(scores), label=label, time_s=t, silent=silent, level_dbfs=-20.0,
                  window_s=9.0, inference_ms=50.0, latency_ms=60.0)


def test_headline_is_the_engines_leader_not_the_highest_score():
    from ui.web.page import LeaderLabel
    from ui.web.render import label_value

    # the hysteresis keeps "ambient" leading although "classical" scores a little higher now
    res = _result({"classical": 0.21, "ambient": 0.20, "indie": 0.14, "rock": 0.05}, "ambient")
    data = LeaderLabel(num_top_classes=10).postprocess(label_value(res, 3))
    assert data.label == "ambient"
    assert [c.label for c in data.confidences] == ["ambient", "classical", "indie"]  # the leader's bar first
    assert abs(data.confidences[1].confidence - 0.21) < 1e-9
    # a leader outside the top_k still heads the readout
    res = _result({"classical": 0.3, "indie": 0.2, "ambient": 0.1}, "ambient")
    data = LeaderLabel().postprocess(label_value(res, 2))
    assert data.label == "ambient" and [c.label for c in data.confidences] == ["ambient", "classical"]
    assert LeaderLabel().postprocess(label_value(_result({}, None, silent=True), 3)).label == "silence"
    assert LeaderLabel().postprocess({"a": 0.2, "b": 0.7}).label == "b"  # plain dicts as gr.Label


def test_headline_is_the_genre_with_the_style_under_it():
    from stream import Result
    from ui.web.page import LeaderLabel
    from ui.web.render import label_value, style_html

    res = Result({"techno": 0.3, "electronic": 0.32, "pop": 0.2}, {}, "techno", 10.0, False, -20.0, 9.0, 50.0, 60.0,
                 "Electronic", {"Electronic": 0.32, "Pop": 0.2, "Rock": 0.1})
    data = LeaderLabel().postprocess(label_value(res, 2))
    assert data.label == "Electronic" and [c.label for c in data.confidences] == ["Electronic", "Pop"]
    assert "data-style='techno'" in style_html(res) and "<b>techno</b> 30%" in style_html(res)
    # no style level (GTZAN: the genre is the label): nothing under the headline
    gtzan = Result({"rock": 0.6}, {}, "rock", 10.0, False, -20.0, 9.0, 50.0, 60.0, "rock", {"rock": 0.6})
    assert "data-style" not in style_html(gtzan) and "data-style" not in style_html(None)


def test_genre_colours_are_fixed_by_the_models_genre_order():
    """Two tabs whose genres appear in different orders draw each genre in the same colour."""
    from ui.web.render import genre_styles

    order = ["Electronic", "Rock", "Pop", "Classical"]
    one = genre_styles({}, ["Classical", "Electronic"], order)
    two = genre_styles({}, ["Pop", "Classical"], order)
    assert one["Classical"] == two["Classical"] and one["Electronic"] != one["Classical"]
    assert len({v for v in genre_styles({}, [], order).values()}) == len(order)


def test_live_plot_keeps_every_leader_of_the_last_minute():
    """72 s: folk leads for 37 s, then techno; at the end folk is not in the top 5 any more."""
    from ui.web.render import live_plot
    from ui.web.session import Readout

    others = {g: 0.05 + 0.01 * i for i, g in enumerate(["rock", "pop", "jazz", "house", "metal", "indie"])}
    hist, styles = [], {}
    for t in range(3, 73):
        if t < 37:
            sc = {"folk": 0.30, "ambient": 0.12, **others}
        else:
            sc = {"techno": 0.26, "electronic": 0.2, "house": 0.18, "dance": 0.16, "electro": 0.15,
                  "folk": 0.01, **{g: v for g, v in others.items() if g != "house"}}
        sc = dict(sorted(sc.items(), key=lambda kv: -kv[1]))
        hist.append(Readout(float(t), sc, "folk" if t < 39 else "techno"))
    res = _result(sc, "techno", t=72.0)
    assert "folk" not in list(res.scores)[:5]
    html = live_plot(hist, res, 5, 1.0, styles)
    before = dict(styles)
    lines = {g: d for g, _, d in re.findall(
        r"<g class='genre-line' data-genre='([^']+)' data-colour='([^']+)'><path d='([^']*)'", html)}
    assert "folk" in lines and "techno" in lines, lines.keys()
    assert set(lines) >= {"techno", "electronic", "house", "dance", "electro"}  # and the current top 5
    # folk's line covers the whole shown minute (12..72 s): it starts at the left edge
    first_x = float(lines["folk"].split()[0][1:].split(",")[0])
    left = float(re.search(r"<line class='grid' x1='([\d.]+)'", html).group(1))  # the plot's left edge
    assert first_x == left, lines["folk"][:40]
    # the band: folk until 38 s, techno after
    band = re.findall(r"<rect class='lead' data-genre='([^']*)' x='([\d.]+)' y='[\d.]+' width='([\d.]+)'", html)
    assert [g for g, _, _ in band] == ["folk", "techno"], band
    w_folk, w_techno = float(band[0][2]), float(band[1][2])
    assert abs(w_folk / (w_folk + w_techno) - 26 / 60) < 0.03, band  # 12..38 s of 12..72 s
    # the score axis starts at 0 and is not stretched to 0.01..0.30
    ticks = [float(v) for v in re.findall(r"<text class='ytick'[^>]*>([\d.]+)</text>", html)]
    assert min(ticks) == 0 and max(ticks) >= 0.5, ticks
    # every legend entry has its line's colour; colours stay put in the next render
    legend = re.findall(r"class='legend-item[^']*' data-genre='([^']+)' data-colour='([^']+)'", html)
    line_styles = dict(re.findall(r"<g class='genre-line' data-genre='([^']+)' data-colour='([^']+)'", html))
    assert dict(legend) == line_styles and len(set(line_styles.values())) == len(line_styles)
    hist.append(Readout(73.0, {"techno": 0.3, "classical": 0.2, **others}, "techno"))
    live_plot(hist, _result({"techno": 0.3, "classical": 0.2, **others}, "techno", t=73.0), 5, 1.0, styles)
    assert {g: styles[g] for g in before} == before


def test_second_recording_starts_with_fresh_counters():
    from support.models import BandModel, tone

    from ui.report import summary_text
    from ui.web.render import status_html
    from ui.web.session import LiveSession, LiveSettings

    s = LiveSession(BandModel(), LiveSettings(2.0, 0.5, 0.0, 3, -55.0))
    s.start(s.settings)
    for _ in range(12):
        s.feed(16000, tone(440, 0.5, 16000))
    summary = s.stop()
    st = s.stats
    assert st.windows_classified > 0 and st.seconds_received == 6.0
    assert s.readouts() and s.latest is not None
    md = summary_text(summary, received_s=st.seconds_received, markdown=True)
    assert md.startswith("**Session summary:** 6.0 s of audio received, ") and "classified" in md, md
    s.feed(16000, tone(440, 0.5, 16000))  # a chunk after Stop is counted, not fed
    assert s.status(None).late_chunks == 1 and s.stats.seconds_received == 6.0
    assert "data-late-chunks='1'" in status_html(s.status(None))  # (the tail of a recording: not on screen)
    assert "chunk" not in re.sub(r"<[^>]+>", "", status_html(s.status(None)))
    s.start(s.settings)
    st2 = s.stats
    assert (st2.windows_classified, st2.seconds_received, st2.windows_skipped, s.status(None).late_chunks) == (0, 0.0, 0, 0)
    assert "received 0.0 s · windows 0" in status_html(s.status(None))
    assert not s.readouts() and s.latest is None
    s.close()


def test_watchers_wake_on_readouts_and_end_with_the_recording():
    """`updates` yields when a readout arrives (from the inference thread) and ends at Stop."""
    import asyncio

    from support.models import BandModel, tone

    from ui.web.session import LiveSession, LiveSettings

    async def scenario():
        s = LiveSession(BandModel(), LiveSettings(2.0, 0.5, 0.0, 3, -55.0))
        run = s.start(s.settings)
        seen = []

        async def watcher():
            async for _ in s.updates(run, every_s=PATIENCE_S):  # (no periodic wake-ups: only readouts)
                seen.append(s.latest)
                if len(seen) == 2:
                    s.stop()

        task = asyncio.create_task(watcher())
        for _ in range(12):
            s.feed(16000, tone(440, 0.5, 16000))
            await asyncio.sleep(0.05)
        await asyncio.wait_for(task, PATIENCE_S)
        s.close()
        return seen, run, s

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # a loop of its own (Playwright's may be running in this thread)
        seen, run, s = pool.submit(lambda: asyncio.run(scenario())).result()
    assert len(seen) == 2 and all(r is not None for r in seen), seen
    assert not s.active(run)


def test_microphone_problems_are_explained():
    from ui.web.render import mic_problem_html, mic_problem_label

    html = mic_problem_html("NotAllowedError")
    assert "refused the microphone" in html and "Allow" in html and "Record again" in html
    assert mic_problem_label("NotAllowedError") == "microphone blocked"
    assert "found no microphone" in mic_problem_html("NotFoundError")
    assert mic_problem_label("NotFoundError") == "no microphone"
    assert "WeirdError" in mic_problem_html("WeirdError")


@pytest.mark.parametrize("fmt", ["wav", "m4a"])
def test_read_segment_plays_the_part_the_analysis_found(tmp_path, fmt):
    """stream.files.read_segment: only the asked span, from libsndfile or (m4a) ffmpeg."""
    from stream import AudioDecodeError
    from stream.files import read_segment

    rate = 16000
    t = np.arange(6 * rate) / rate
    x = (0.1 * np.sin(2 * np.pi * 440 * t) * (t >= 3)).astype(np.float32)  # silent 0..3 s, a tone after
    path = write_wav(tmp_path / "x.wav", x, rate)
    if fmt == "m4a":
        if not shutil.which("ffmpeg"):
            pytest.skip("ffmpeg not installed")
        path = tmp_path / "x.m4a"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "x.wav"), str(path)], check=True, timeout=60)
    seg, got_rate = read_segment(str(path), 3.5, 5.5)
    assert abs(len(seg) / got_rate - 2.0) < 0.01, (len(seg), got_rate)
    assert 0.05 < float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) < 0.09  # the tone (0.1 peak), not silence
    quiet, r = read_segment(str(path), 0.5, 2.5)
    assert abs(len(quiet) / r - 2.0) < 0.01 and float(np.abs(quiet).max()) < 0.01
    with pytest.raises(AudioDecodeError, match="no audio"):
        read_segment(str(path), 60.0, 61.0)
    with pytest.raises(ValueError):
        read_segment(str(path), 2.0, 1.0)


def test_file_timeline_rows_are_the_plotted_lines():
    """FileAnalysis.timeline_rows: one row per non-silent window and genre, at the window's centre."""
    from support.models import BandModel

    from stream import analyze_file

    rate = 16000
    t = np.arange(12 * rate) / rate
    x = np.where(t < 6, 0.2 * np.sin(2 * np.pi * 200 * t), 0.0).astype(np.float32)  # music, then silence
    fa = analyze_file(x, BandModel(), window_s=2.0, hop_s=1.0, sample_rate=rate)
    top = list(fa.scores)[:2]
    rows = fa.timeline_rows(top)
    loud = int((~fa.silent).sum())
    assert 0 < loud < fa.n_windows and len(rows) == 2 * loud
    assert {g for _, _, g in rows} == set(top) and fa.hop_s == 1.0
    first = [r for r in rows if r[2] == top[0]][0]
    assert first[0] == (fa.starts_s[0] + fa.ends_s[0]) / 2 and first[1] == pytest.approx(float(fa.timeline[0, fa.labels.index(top[0])]))
