"""One microphone, many screens (ui/net/watch.py) and the kiosk page's files (ui/net/kiosk.py),
against `python -m ui.net` as a real subprocess, with real WebSocket clients (`websockets`)
streaming real music in real time. The page itself in Chromium: tests/test_kiosk.py."""
from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from support.music import TRACKS, music, needs_music
from support.server import events_until_close, pcm, served, stream

TOKEN = "watch-token"
KIOSK = "http://kiosk.example"

pytestmark = [needs_music, pytest.mark.server]


@pytest.fixture(scope="module")
def server():
    with served("--hop", "1", "--max-watchers", "3", "--max-watchers-per-name", "2") as srv:
        yield srv


@pytest.fixture(scope="module")
def strict():
    with served("--token", TOKEN, "--allow-origin", KIOSK) as srv:
        yield srv


def watch_url(srv, **q) -> str:
    return f"{srv.ws_url}/v1/watch?{urlencode(q)}"


def get(srv, path) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=30) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read()


class Watching:
    """A watcher that records every event (arrival order) until cancelled."""

    def __init__(self, url, origin=None):
        self.url, self.origin, self.events = url, origin, []
        self.closed: tuple | None = None

    async def run(self):
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async with connect(self.url, origin=self.origin, open_timeout=60) as ws:
            try:
                async for text in ws:
                    self.events.append(json.loads(text))
            except ConnectionClosed:
                pass
            self.closed = (ws.close_code, ws.close_reason)

    def of(self, kind):
        return [e for e in self.events if e["event"] == kind]

    async def until(self, what, pred, timeout=120.0):
        """Poll until pred() holds (an event-driven wait with a generous deadline)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            assert asyncio.get_running_loop().time() < deadline, f"waited {timeout} s for {what}: {self.events[-5:]}"
            await asyncio.sleep(0.05)


async def refusal(url, origin=None):
    """(first event, close code, close reason) of a connection the server refuses after accepting."""
    from websockets.asyncio.client import connect

    async with connect(url, origin=origin, open_timeout=60) as ws:
        events, code = await events_until_close(ws)
        return events[0] if events else None, code, ws.close_reason


# ---------------------------------------------------------------- the page's files --------
def test_kiosk_page_is_served_with_its_files_and_no_internet(server, musicnn):
    status, kind, body = get(server, "/")
    html = body.decode()
    assert status == 200 and kind.startswith("text/html"), (status, kind)
    assert '<script type="module" src="kiosk/kiosk.js">' in html and "kiosk/kiosk.css" in html
    config = json.loads(re.search(r'<script id="kiosk-config" type="application/json">(.*?)</script>', html).group(1))
    from stream import EngineConfig, StreamEngine
    from ui.colours import genre_colour, genre_colours

    with StreamEngine(musicnn, EngineConfig(hop_s=1), background=False) as engine:
        order = engine.genres
    # the page's colours: Electronic is the same blue on the Gradio plot and on the kiosk
    assert config["colours"] == genre_colours(order, order) and config["colours"]["Electronic"] == \
        genre_colour("Electronic") == "#4e79a7", config
    for name, kind_ in (("kiosk.js", "text/javascript"), ("capture.js", "text/javascript"), ("kiosk.css", "text/css")):
        status, kind, body = get(server, f"/kiosk/{name}")
        assert status == 200 and kind.startswith(kind_), (name, status, kind)
        # no CDN, no font service: a kiosk without internet shows the same screen
        assert not re.search(rb"https?://", body), (name, re.findall(rb"https?://\S+", body))
        if name == "kiosk.js":
            assert b"getUserMedia" in body and b"AudioWorkletNode" in body and b"createScriptProcessor" not in body
    assert not re.search(r"https?://", html)
    for bad in ("/kiosk/index.html", "/kiosk/..%2Fapi.py", "/kiosk/nothing.js"):
        assert get(server, bad)[0] == 404, bad


def test_ready_carries_the_genres_and_their_colours(server):
    from ui.colours import genre_colours

    audio, sr = music(TRACKS[0], 30, 4.0)
    run = asyncio.run(stream(server.url(sample_rate=sr, channels=2, format="s16le"), pcm(audio, sr, sr, 2, "s16le"),
                             sr, 2, "s16le", realtime=False))
    genres = run.ready["genres"]
    assert genres and run.ready["colours"] == genre_colours(genres, genres)
    assert all(r["genre"] in genres for _, r in run.results if not r["silent"])


# ---------------------------------------------------------------- named streams ------------
def test_watchers_see_the_named_stream_join_late_and_wait_for_the_next_source(server):
    """Two watchers: one from the start, one that joins mid-stream and gets ready + the latest
    result at once. A second source of the same name is refused (1008, name_in_use). When the
    source ends both get its summary and stay; the next source of that name reaches them."""
    audio, sr = music(TRACKS[0], 40, 12.0)
    data = pcm(audio, sr, sr, 1, "s16le")
    name = "shop-floor"

    async def go():
        early = Watching(watch_url(server, name=name))
        t_early = asyncio.create_task(early.run())
        await early.until("the greeting", lambda: early.of("watching"))
        assert early.events[0] == {"event": "watching", "name": name, "live": False}
        # the source stays live until the late watcher joined and the second source was refused
        # (on a busy machine its 12 s of audio can be sent before 3 results came back)
        live = asyncio.Event()
        src = asyncio.create_task(stream(server.url(sample_rate=sr, channels=1, format="s16le", name=name, hop=1),
                                         data, sr, 1, "s16le", hold=live))
        await early.until("3 results", lambda: len(early.of("result")) >= 3)
        late = Watching(watch_url(server, name=name))
        t_late = asyncio.create_task(late.run())
        await late.until("ready and the latest result", lambda: len(late.events) >= 3)
        second = await refusal(server.url(sample_rate=16000, name=name))
        live.set()
        run = await src
        for w in (early, late):
            await w.until("the summary", lambda w=w: w.of("summary"))
        # still connected, waiting: the next source of that name reaches both
        audio2, sr2 = music(TRACKS[1], 60, 5.0)
        run2 = await stream(server.url(sample_rate=sr2, channels=2, format="f32le", name=name, hop=1),
                            pcm(audio2, sr2, sr2, 2, "f32le"), sr2, 2, "f32le", realtime=False)
        for w in (early, late):
            await w.until("the second source's summary", lambda w=w: len(w.of("summary")) == 2)
        t_early.cancel(), t_late.cancel()
        return early, late, second, run, run2

    early, late, second, run, run2 = asyncio.run(go())
    source = [r for _, r in run.results]
    assert len(source) >= 6 and run.close_code == 1000
    # the late watcher's first events: watching (live), the source's ready, the newest result then
    assert late.events[0] == {"event": "watching", "name": name, "live": True}, late.events[:3]
    assert late.events[1] == run.ready and late.events[2]["event"] == "result"
    first_late = late.events[2]["time_s"]
    assert first_late in [r["time_s"] for r in source][2:], (first_late, [r["time_s"] for r in source])
    # both see exactly the source's readouts (the early one all of them), and its summary
    n1 = len(source)
    assert early.of("result")[:n1] == source, "the early watcher's results differ from the source's"
    later = [r for r in source if r["time_s"] > first_late]
    assert late.of("result")[1:1 + len(later)] == later
    for w in (early, late):
        assert w.of("summary")[0] == run.summary and w.of("summary")[1] == run2.summary
        assert w.of("ready")[-1] == run2.ready and w.closed is None  # still open
    # the second source of the same name: refused, saying why, with the name
    first, code, reason = second
    assert code == 1008 and first["event"] == "error" and first["reason"] == "name_in_use", second
    assert name in first["message"] and reason.startswith("name_in_use: "), second


def test_a_source_that_vanishes_still_ends_for_its_watchers(server):
    from websockets.asyncio.client import connect

    audio, sr = music(TRACKS[2], 30, 6.0)
    data = pcm(audio, sr, sr, 1, "s16le")

    async def go():
        w = Watching(watch_url(server, name="vanishing"))
        task = asyncio.create_task(w.run())
        await w.until("the greeting", lambda: w.events)
        async with connect(server.url(sample_rate=sr, channels=1, format="s16le", name="vanishing")) as ws:
            for i in range(0, len(data), sr // 5):
                await ws.send(data[i:i + sr // 5])
                await asyncio.sleep(0.1)
            await w.until("a result", lambda: w.of("result"))
            ws.transport.abort()  # no end, no close frame: the connection just drops
        await w.until("the summary", lambda: w.of("summary"))
        # the name is free again at once
        again = await stream(server.url(sample_rate=sr, channels=1, format="s16le", name="vanishing"),
                             data[: sr * 2 * 4], sr, 1, "s16le", realtime=False)
        task.cancel()
        return w, again

    w, again = asyncio.run(go())
    summary = w.of("summary")[0]
    assert summary["reason"] == "source disconnected" and summary["windows_classified"] >= 1, summary
    assert again.ready is not None and again.close_code == 1000


def test_bad_names_and_watch_parameters_are_refused_with_a_reason(server):
    cases = [
        (server.url(sample_rate=16000, name="shop floor"), "not a valid stream name"),
        (server.url(sample_rate=16000, name="x" * 65), "not a valid stream name"),
        (server.url(sample_rate=16000, name="-dash-first"), "not a valid stream name"),
        (watch_url(server), "name is required"),
        (watch_url(server, name="ok", hop=1), "unknown query parameter"),
        (watch_url(server, name="über"), "not a valid stream name"),
    ]

    async def go():
        return [await refusal(url) for url, _ in cases]

    for (url, words), (first, code, reason) in zip(cases, asyncio.run(go())):
        assert code == 1008 and first["reason"] == "bad_parameter" and words in first["message"], (url, first)
        assert "1-64 characters" in first["message"] or "accepted" in first["message"] or "required" in first["message"]
        assert reason.startswith("bad_parameter: "), reason


def test_watchers_are_bounded_per_name_and_in_all(server):
    """--max-watchers-per-name 2, --max-watchers 3: one more is refused with 1013, "watchers"."""

    async def go():
        ws = [Watching(watch_url(server, name=n)) for n in ("a", "a", "b")]
        tasks = [asyncio.create_task(w.run()) for w in ws]
        for w in ws:
            await w.until("the greeting", lambda w=w: w.events)
        third_a = await refusal(watch_url(server, name="a"))
        fourth = await refusal(watch_url(server, name="c"))
        tasks[0].cancel()
        await asyncio.sleep(0)
        # a freed slot is usable again (the server notices the close)
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            w = Watching(watch_url(server, name="c"))
            t = asyncio.create_task(w.run())
            await asyncio.sleep(0.3)
            if w.events and w.events[0]["event"] == "watching":
                break
            t.cancel()
            assert asyncio.get_running_loop().time() < deadline, w.events
        for t in (*tasks, t):
            t.cancel()
        return third_a, fourth

    third_a, fourth = asyncio.run(go())
    for first, code, reason in (third_a, fourth):
        assert code == 1013 and first["reason"] == "watchers" and first["retry"] is True, first
        assert reason.startswith("watchers: ")
    assert "'a' has 2 watchers" in third_a[0]["message"] and "3 watchers" in fourth[0]["message"]


def test_watch_has_the_listen_access_rules(strict):
    """Token and origin as for /v1/listen: HTTP 401 for a client without Origin, close 4401 /
    4403 with the reason for a browser."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def go():
        try:
            async with connect(watch_url(strict, name="x")):
                raise AssertionError("no token: accepted")
        except InvalidStatus as exc:
            no_token = exc.response.status_code
        foreign = await refusal(watch_url(strict, name="x", token=TOKEN), origin="http://evil.example")
        wrong = await refusal(watch_url(strict, name="x", token="nope"), origin=KIOSK)
        async with connect(watch_url(strict, name="x", token=TOKEN), origin=KIOSK) as ws:
            ok = json.loads(await ws.recv())
        return no_token, foreign, wrong, ok

    no_token, foreign, wrong, ok = asyncio.run(go())
    assert no_token == 401
    assert foreign[1] == 4403 and foreign[0]["reason"] == "origin" and "--allow-origin" in foreign[2], foreign
    assert wrong[1] == 4401 and wrong[0]["reason"] == "token" and wrong[2].startswith("token: "), wrong
    assert ok == {"event": "watching", "name": "x", "live": False}


def test_a_close_reason_is_cut_to_the_bytes_a_close_frame_holds():
    from ui.net.access import NAME_IN_USE, close_reason, fit_close

    # 100 two-byte characters: cutting to 120 characters would leave 200 bytes, more than a frame holds
    assert len(fit_close("é" * 100).encode()) <= 123 and fit_close("é" * 100) == "é" * 61
    assert fit_close("short") == "short"
    assert close_reason(NAME_IN_USE, "x" * 500) == ("name_in_use: " + "x" * 500)[:123]
