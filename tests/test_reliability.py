"""The server under churn and hostile input (issue 21): a real `python -m ui.net` process on a
loopback port, real WebSocket clients (the `websockets` library, and bare sockets for what a
library will not do), fixed seeds and bounded loops. Resource checks read the server process
with psutil and poll to a deadline; nothing here depends on how fast the machine is."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest

from support.music import TRACKS, music, needs_music
from support.polling import wait_for
from support.server import (RawClient, ServerProcess, events_until_close, http_get, metric, never_reads, pcm, run_async,
                            scrape, stream, wait_ready)

pytestmark = [needs_music, pytest.mark.server]

OUTCOMES = ("ended", "idle", "max_session", "shutdown", "error", "client_gone")


def _deltas(before, after, name, label, values):
    return {v: metric(after, name, **{label: v}) - metric(before, name, **{label: v}) for v in values}


async def _good_client(srv, seconds=7.0, track=TRACKS[1], start=80):
    """A well-behaved client streaming real music in real time alongside the others."""
    audio, sr = music(track, start, seconds)
    data = pcm(audio, sr, 44100, 2, "s16le")
    return await stream(srv.url(sample_rate=44100, channels=2, hop=1), data, 44100, 2, "s16le")


def _assert_every_readout(run, seconds):
    """Closed normally after `end`, no error, and every readout the server made was delivered."""
    s = run.summary
    assert run.close_code == 1000 and not run.errors and s["reason"] == "end of stream", (run.close_code, run.errors, s)
    assert s["seconds_received"] == pytest.approx(seconds, abs=1e-6) and s["dropped_results"] == 0, s
    assert len(run.results) == s["windows_classified"] + s["windows_silent"] and run.results, s
    assert abs(run.results[-1][1]["time_s"] - seconds) < 0.1, run.results[-1]


# ---------------------------------------------------------------- churn -------------------
def _resources(proc) -> tuple[int, int, int]:
    """(open fds, threads, RSS bytes) of the server process."""
    return proc.num_fds(), proc.num_threads(), proc.memory_info().rss


async def _churn(srv, plans, data: bytes, concurrency: int):
    """Connections that open, send `seconds` of audio (faster than real time) and go:
    0 abort (no close frame), 1 stop in the middle of a frame, 2 `end` then the close."""
    from websockets.asyncio.client import connect

    sem = asyncio.Semaphore(concurrency)
    bytes_per_s = 16000 * 2
    step = bytes_per_s // 10

    def mid_frame(n):
        c = RawClient(srv.port, "/v1/listen?sample_rate=16000")
        for i in range(0, n, step):
            c.send(data[i:min(i + step, n)])
        c.send_partial(data[:step])
        c.sock.close()

    async def one(seconds, ending):
        n = int(seconds * bytes_per_s) // 2 * 2
        async with sem:
            if ending == 1:
                return await asyncio.to_thread(mid_frame, n)
            for _ in range(100):  # a server still tearing down aborted streams may be full: retry, as told
                ws = await connect(srv.url(sample_rate=16000), open_timeout=60, close_timeout=30)
                first = json.loads(await ws.recv())
                if first["event"] == "ready" or not first.get("retry"):
                    break
                await ws.close()
                await asyncio.sleep(0.2)
            assert first["event"] == "ready", first
            async with ws:
                for i in range(0, n, step):
                    await ws.send(data[i:min(i + step, n)])
                if ending == 0:
                    ws.transport.abort()
                    return None
                await ws.send(json.dumps({"event": "end"}))
                events, code = await events_until_close(ws, timeout=120)
                assert code == 1000 and events[-1]["event"] == "summary", (code, events[-2:])
                return None

    await asyncio.gather(*(one(s, e) for s, e in plans))


def test_churn_leaves_no_streams_fds_threads_or_memory_behind():
    psutil = pytest.importorskip("psutil")
    srv = ServerProcess().wait_ready()
    try:
        wait_ready(srv)
        proc = psutil.Process(srv.proc.pid)
        audio, sr = music(TRACKS[2], 60, 3.0)
        data = pcm(audio, sr, 16000, 1, "s16le")
        rng = np.random.default_rng(21)
        # every path, length and batch shape a few times before the baseline (allocator pools, the
        # inference runtime's arena, the executor's threads settle)
        warm = [(float(rng.uniform(0.0, 3.0)), e) for e in (0, 1, 2) * 20]
        plans = [(float(rng.uniform(0.0, 3.0)), int(rng.integers(3))) for _ in range(300)]
        run_async(_churn(srv, warm, data, 8))
        assert wait_for(lambda: metric(scrape(srv), "genre_streams_active") == 0, 120, 0.1)
        time.sleep(1.0)
        before, (fds0, threads0, rss0) = scrape(srv), _resources(proc)
        run_async(_churn(srv, plans, data, 8))

        def settled():
            s = scrape(srv)
            fds, threads, rss = _resources(proc)
            ok = (metric(s, "genre_streams_active") == 0 and abs(fds - fds0) <= 5 and abs(threads - threads0) <= 5
                  and rss <= rss0 + 30e6)
            return (s, fds, threads, rss) if ok else None

        got = wait_for(settled, 120, 0.5)
        assert got, (_resources(proc), (fds0, threads0, rss0), scrape(srv))
        after = got[0]
        outcomes = _deltas(before, after, "genre_streams_total", "outcome", OUTCOMES)
        ends = [e for _, e in plans]
        # a connection that found the server full (1013: aborted streams still being torn down) is no
        # stream: the library clients retry, the bare-socket ones just go
        full = metric(after, "genre_rejected_total", reason="capacity") - metric(before, "genre_rejected_total",
                                                                                 reason="capacity")
        gone = outcomes.pop("client_gone")
        assert outcomes == {"ended": ends.count(2), "idle": 0, "max_session": 0, "shutdown": 0, "error": 0}, outcomes
        assert ends.count(0) + ends.count(1) - full <= gone <= ends.count(0) + ends.count(1), (gone, full)
        assert srv.alive() and "Traceback" not in srv.log and " ERROR " not in srv.log, srv.log
    finally:
        srv.stop()


def test_an_ended_stream_is_freed_by_reference_counting(monkeypatch):
    """A stream's objects (its engine with ~1 MB of audio, its connection) must go when it
    ends, not at CPython's next full garbage collection: on a busy server that can be hours,
    and the soak saw RSS climb by ~1 MB per replaced stream (bench/README.md, Soak). In this
    process (the server's object graph is the point), a real uvicorn, real clients, gc off."""
    import gc
    import weakref

    import uvicorn
    from support.models import BandModel

    from ui.net import api
    from ui.net.settings import ServerSettings

    alive: list = []

    class Engine(api.StreamEngine):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            alive.append(weakref.ref(self))

    class Stream(api._Stream):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            alive.append(weakref.ref(self))

    monkeypatch.setattr(api, "StreamEngine", Engine)
    monkeypatch.setattr(api, "_Stream", Stream)
    app = api.create_app(BandModel(), ServerSettings(port=0))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, timeout=60, step=0.1), "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        assert wait_for(lambda: http_get(port, "/readyz")[0] == 200, timeout=60, step=0.1)
        audio, sr = music(TRACKS[0], 40, 3.0)
        data = pcm(audio, sr, 16000, 1, "s16le")
        url = f"ws://127.0.0.1:{port}/v1/listen?sample_rate=16000&channels=1&format=s16le"
        gc.collect()
        gc.disable()
        for _ in range(3):
            run = run_async(stream(url, data, 16000, 1, "s16le", realtime=False))
            assert run.close_code == 1000 and run.summary and run.results, (run.close_code, run.errors)
        assert len(alive) == 6
        # the server's side of a close may finish just after the client's
        assert wait_for(lambda: not [r for r in alive if r() is not None], timeout=20, step=0.1), [r() for r in alive]
    finally:
        gc.enable()
        server.should_exit = True
        thread.join(30)


# ---------------------------------------------------------------- protocol fuzz -----------
LIMIT = 65536  # --max-frame-bytes here: "exactly the limit" stays cheap

QUERIES = [  # raw query strings: NaN, inf, negative, huge, repeated, unknown, broken percent-encoding
    "", "sample_rate=nan", "sample_rate=inf", "sample_rate=-inf", "sample_rate=-16000", "sample_rate=0",
    "sample_rate=1e9", "sample_rate=99999999999999999999999999", "sample_rate=16000&sample_rate=16000",
    "sample_rate=16000&channels=0", "sample_rate=16000&channels=-1", "sample_rate=16000&channels=99999999999",
    "sample_rate=16000&window=nan", "sample_rate=16000&window=inf", "sample_rate=16000&window=-1",
    "sample_rate=16000&window=1e308", "sample_rate=16000&hop=0", "sample_rate=16000&hop=1e-300",
    "sample_rate=16000&hop=-inf", "sample_rate=16000&smoothing=-1", "sample_rate=16000&top_k=-5",
    "sample_rate=16000&top_k=1.5", "sample_rate=16000&format=", "sample_rate=16000&format=s16le&format=f32le",
    "sample_rate=16000&rate=1", "sample_rate=16000&x=%ZZ", "sample_rate=%ZZ", "sample_rate=16%00",
    "sample_rate=%E2%82", "sample_rate=16000&%E2%82=1", "sample_rate=16000&window=%", "sample_rate=%%%",
    "sample_rate", "=16000", "sample_rate=16000&window=" + "9" * 5000,
    "sample_rate=16000&" + "k=v&" * 300, "sample_rate=16000&top_k=99999999999999999999",
    "sample_rate=16000&smoothing=1e308",  # (outside the settings table's span, refused by every face)
] + ["sample_rate=+16000", "sample_rate=16000&&&"]
# accepted (a lenient number, empty pairs): ready, then a summary
ACCEPTED = set(QUERIES[-2:])


async def _query_outcome(srv, query):
    from websockets.asyncio.client import connect

    async with connect(f"{srv.ws_url}/v1/listen?{query}", open_timeout=60) as ws:
        first = json.loads(await ws.recv())
        if first["event"] == "ready":
            await ws.send(json.dumps({"event": "end"}))
        events, code = await events_until_close(ws)
        return [first, *events], code


async def _frames(srv, fmt, channels, payloads):
    """Send `payloads` (bytes or str) on one stream, then `end` unless the server closed it."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(srv.url(sample_rate=16000, format=fmt, channels=channels, hop=1), max_size=None,
                       open_timeout=60) as ws:
        assert json.loads(await ws.recv())["event"] == "ready"
        try:
            for p in payloads:
                await ws.send(p)
            await ws.send(json.dumps({"event": "end"}))
        except ConnectionClosed:
            pass
        return await events_until_close(ws)


def test_protocol_fuzz_gets_named_errors_and_documented_close_codes_only():
    srv = ServerProcess("--max-frame-bytes", str(LIMIT), "--log-level", "info").wait_ready()
    rng = np.random.default_rng(1234)
    try:
        wait_ready(srv)
        before = scrape(srv)
        binary = [b"", b"\x01", b"\x01\x02\x03"] + [rng.bytes(int(n)) for n in rng.integers(1, LIMIT, 12) | 1]
        binary.append(rng.bytes(LIMIT))  # exactly the limit: accepted
        texts = ["{", "nul", "\x00", "[1, 2]", "5", "null", '"end"', "{}", '{"event": 5}', '{"event": null}',
                 '{"event": "start"}', '{"event": "END"}', '{"event": ["end"]}', "[" * 60000, '{"a":' * 12000,
                 json.dumps({"event": "x" * 60000}), "\u00e9\u20ac" * 1000]

        async def everything():
            good = asyncio.create_task(_good_client(srv))
            queries = [await _query_outcome(srv, q) for q in QUERIES]
            bins = await _frames(srv, "s16le", 1, binary)
            floats = await _frames(srv, "f32le", 2, binary[:-1])  # NaN/inf patterns in random floats
            txt = await _frames(srv, "s16le", 1, texts)
            over = await _frames(srv, "s16le", 1, [rng.bytes(LIMIT + 1)])
            over_text = await _frames(srv, "s16le", 1, ["x" * (LIMIT + 1)])
            way_over = await _frames(srv, "s16le", 1, [rng.bytes(4 * LIMIT + 1)])  # past uvicorn's own limit
            return await good, queries, bins, floats, txt, over, over_text, way_over

        good, queries, bins, floats, txt, over, over_text, way_over = run_async(everything())
        http = {path: http_get(srv.port, path)[0] for path in (
            "/metrics?%ZZ=1", "/readyz?%", "/healthz?token=%FF%FE", "/livez?x=%%%", "/v1/listen", "/nope%ZZ")}
        after = wait_for(lambda: (lambda s: s if metric(s, "genre_streams_active") == 0 else None)(scrape(srv)),
                         60, 0.1)
    finally:
        srv.stop()
    # each bad query: one `error` naming the problem, then 1008; the lenient ones stream normally
    for q, (events, code) in zip(QUERIES, queries):
        if q in ACCEPTED:
            assert events[0]["event"] == "ready" and code == 1000 and events[-1]["event"] == "summary", (q, events)
        else:
            assert code == 1008 and [e["event"] for e in events] == ["error"] and events[0]["message"], (q, events)
            assert len(events[0]["message"]) < 400, events  # a huge value is not echoed whole
    assert len(set(QUERIES)) == len(QUERIES)
    rejected = _deltas(before, after, "genre_rejected_total", "reason", ("bad_parameter", "frame_too_big"))
    assert rejected == {"bad_parameter": len(QUERIES) - len(ACCEPTED), "frame_too_big": 2}, rejected
    # frames up to the limit are audio (odd lengths carry over), no error; every text frame is named
    for events, code in (bins, floats):
        assert code == 1000 and events[-1]["event"] == "summary" and not [e for e in events if e["event"] == "error"]
    assert bins[0][-1]["seconds_received"] == pytest.approx(sum(map(len, binary)) // 2 / 16000, abs=1e-3)
    errors = [e["message"] for e in txt[0] if e["event"] == "error"]
    assert txt[1] == 1000 and txt[0][-1]["event"] == "summary" and len(errors) == len(texts), (txt[1], errors)
    assert all("JSON object" in m or "unknown message" in m for m in errors), errors
    for events, code in (over, over_text):
        assert code == 1009 and events[-1]["event"] == "error" and f"limit of {LIMIT} bytes" in events[-1]["message"]
    # past uvicorn's frame limit (4x ours) the WebSocket layer cuts it before the app sees it: 1009, or a
    # dropped connection (1006) when the close frame meets a client still sending (README: close codes)
    assert way_over[1] in (1009, 1006) and not way_over[0], way_over
    assert all(status < 500 for status in http.values()), http
    # the client streaming alongside noticed nothing
    _assert_every_readout(good, 7.0)
    assert "Traceback" not in srv.log and " ERROR " not in srv.log, srv.log


# ---------------------------------------------------------------- idle, trickle, no reads -
def test_silent_trickling_and_non_reading_clients_end_as_documented_and_others_are_unaffected():
    """--idle-timeout 3, --max-session 14, --send-queue 4: a client that sends nothing gets the
    idle summary; one that sends a byte a second keeps its stream (every frame counts as activity)
    until --max-session; one streaming music past --max-session gets its results and the
    max_session summary; one that never reads loses only its own readouts (counted); a client
    streaming alongside gets every readout."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    srv = ServerProcess("--idle-timeout", "3", "--max-session", "14", "--send-queue", "4", "--hop", "1").wait_ready()

    async def silent():
        async with connect(srv.url(sample_rate=16000), open_timeout=60) as ws:
            return await events_until_close(ws)

    async def trickle():
        async with connect(srv.url(sample_rate=16000), open_timeout=60) as ws:
            reader = asyncio.create_task(events_until_close(ws, timeout=120))
            sent = 0
            try:
                while not reader.done():
                    await ws.send(b"\x00")
                    sent += 1
                    await asyncio.sleep(1.0)
            except ConnectionClosed:
                pass
            events, code = await reader
            return events, code, sent

    async def long_stream():
        audio, sr = music(TRACKS[0], 100, 40.0)
        data = pcm(audio, sr, 22050, 1, "s16le")
        async with connect(srv.url(sample_rate=22050, hop=1), open_timeout=60) as ws:
            reader = asyncio.create_task(events_until_close(ws, timeout=120))
            t0 = time.monotonic()
            try:
                for i in range(0, len(data), 4410):
                    if reader.done():
                        break
                    await asyncio.sleep(max(t0 + i / 44100 - time.monotonic(), 0))
                    await ws.send(data[i:i + 4410])
            except ConnectionClosed:
                pass
            return await reader

    try:
        wait_ready(srv)
        before = scrape(srv)
        stop = threading.Event()
        slow = never_reads(srv.port, "/v1/listen?sample_rate=16000&hop=0.25&top_k=0", stop,
                           np.zeros(5 * 16000, dtype="<i2").tobytes(), every_s=0.02)

        async def everything():
            tasks = [asyncio.create_task(c) for c in (silent(), trickle(), long_stream(), _good_client(srv, 6.0))]
            return await asyncio.gather(*tasks)

        (silent_r, trickle_r, long_r, good) = run_async(everything())
        after = wait_for(lambda: (lambda s: s if metric(s, "genre_results_dropped_total") > metric(
            before, "genre_results_dropped_total") else None)(scrape(srv)), 60, 0.1)
        stop.set()
        slow.join(60)
        final = wait_for(lambda: (lambda s: s if metric(s, "genre_streams_active") == 0 else None)(scrape(srv)),
                         120, 0.1)
    finally:
        srv.stop()
    events, code = silent_r
    assert code == 1000 and [e["event"] for e in events] == ["ready", "summary"], events
    assert events[-1]["reason"] == "idle timeout" and events[-1]["seconds_received"] == 0
    events, code, sent = trickle_r
    assert code == 1000 and events[-1]["event"] == "summary" and events[-1]["reason"] == "max_session", events[-1]
    assert sent >= 5 and events[-1]["seconds_received"] == pytest.approx((sent // 2) / 16000, abs=1e-3)
    events, code = long_r
    results = [e for e in events if e["event"] == "result"]
    s = events[-1]
    assert code == 1000 and s["event"] == "summary" and s["reason"] == "max_session", s
    assert results and len(results) == s["windows_classified"] + s["windows_silent"], s
    assert s["seconds_received"] < 40.0  # cut short by the limit, not the end of its audio
    _assert_every_readout(good, 6.0)
    assert after, ("the client that never reads lost none of its readouts", slow.frames, slow.error)
    outcomes = _deltas(before, final, "genre_streams_total", "outcome", OUTCOMES)
    assert outcomes["idle"] == 1 and outcomes["ended"] == 1 and outcomes["max_session"] >= 2, outcomes
    assert outcomes["error"] == 0, outcomes
    assert "Traceback" not in srv.log and " ERROR " not in srv.log, srv.log
