"""The network-API tests' side of the server: a running server per fixture (`served`), real
WebSocket clients (the `websockets` library, and a bare-socket one for what a library will not
do) that stream real music in real time and record what comes back."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import numpy as np

from harness.server import (FORMAT_DTYPES, ROOT, ServerProcess, http_get, metric, metric_samples, pcm,  # noqa: F401
                            scrape)
from support.music import TRACKS, music
from support.polling import wait_for


@contextlib.contextmanager
def served(*args, timeout: float = 120.0, clean_log: bool = True, **kw):
    """A server (`ServerProcess(*args, **kw)`) from ready to stopped; with clean_log its log
    must hold no traceback. A fixture is then `with served(...) as srv: yield srv`."""
    srv = ServerProcess(*args, **kw).wait_ready(timeout)
    try:
        yield srv
    finally:
        srv.stop()
    if clean_log:
        assert "Traceback" not in srv.log, srv.log


def run_async(coro):
    return asyncio.run(coro)


def parse_json_lines(stdout: str) -> tuple[list[dict], list[dict]]:
    """(results, summaries) of a client's --json output."""
    objs = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [o for o in objs if o["event"] == "result"], [o for o in objs if o["event"] == "summary"]


@dataclass
class StreamRun:
    ready: dict | None = None
    results: list = field(default_factory=list)  # (arrival monotonic time, record)
    errors: list = field(default_factory=list)
    summary: dict | None = None
    close_code: int | None = None
    close_reason: str = ""
    sent_at: list = field(default_factory=list)  # (monotonic time, stream seconds sent so far)


async def stream(url: str, data: bytes, rate: int, channels: int, fmt: str, *, chunk_s=0.1, realtime=True,
                 end=True, read=True, frame_bytes=None, headers=None, origin=None, hold=None,
                 **connect_kw) -> StreamRun:
    """Send `data` as binary frames (chunk_s of audio each, paced to real time unless not
    `realtime`), then {"event": "end"}; collect every event until the server closes. `hold`
    (an asyncio.Event): keep the stream open after the audio until it is set, then end."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    run = StreamRun()
    bytes_per_s = rate * channels * int(FORMAT_DTYPES[fmt][0][-1])
    step = frame_bytes or max(1, int(chunk_s * bytes_per_s))
    async with connect(url, additional_headers=headers, origin=origin, open_timeout=60, close_timeout=30,
                       max_size=None, **connect_kw) as ws:

        async def reader():
            try:
                async for text in ws:
                    msg = json.loads(text)
                    ev = msg["event"]
                    if ev == "ready":
                        run.ready = msg
                    elif ev == "result":
                        run.results.append((time.monotonic(), msg))
                    elif ev == "error":
                        run.errors.append(msg)
                    elif ev == "summary":
                        run.summary = msg
            except ConnectionClosed:
                pass

        task = asyncio.create_task(reader()) if read else None
        t0 = time.monotonic()
        for i in range(0, len(data), step):
            if realtime:
                ahead = t0 + i / bytes_per_s - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await ws.send(data[i:i + step])
            run.sent_at.append((time.monotonic(), (i + step) / bytes_per_s))
        if hold is not None:
            await asyncio.wait_for(hold.wait(), timeout=120)
        if end:
            await ws.send(json.dumps({"event": "end"}))
        if task is None:
            task = asyncio.create_task(reader())
        await asyncio.wait_for(task, timeout=120)
        await ws.wait_closed()
        run.close_code, run.close_reason = ws.close_code, ws.close_reason or ""
    return run


async def events_until_close(ws, timeout=60) -> tuple[list, int | None]:
    """Every JSON event of an open connection until the server closes it, and the close code."""
    from websockets.exceptions import ConnectionClosed

    events = []

    async def collect():
        try:
            async for text in ws:
                events.append(json.loads(text))
        except ConnectionClosed:
            pass

    await asyncio.wait_for(collect(), timeout)
    await ws.wait_closed()
    return events, ws.close_code


# (track, start s, seconds, rate, channels, format): different music, rates, formats, lengths
CLIENTS = [
    (TRACKS[0], 18, 6.0, 48000, 2, "s16le"),
    (TRACKS[1], 30, 6.5, 44100, 1, "f32le"),
    (TRACKS[2], 20, 7.0, 16000, 1, "s32le"),
    (TRACKS[0], 90, 7.5, 22050, 2, "f32le"),
    (TRACKS[1], 120, 8.0, 8000, 1, "s16le"),
    (TRACKS[2], 100, 6.0, 96000, 2, "s32le"),
    (TRACKS[0], 150, 6.5, 32000, 1, "s16le"),
    (TRACKS[1], 200, 7.0, 24000, 2, "f32le"),
]


_local_model: dict = {}


def local_scores(data: bytes, rate, ch, fmt, chunk_bytes, streaming: bool = True) -> dict:
    """time_s -> every visible label's probability, from an in-process engine fed the same
    bytes in the same pieces (smoothing off, so a readout depends on its own window only).
    streaming: as an in-process server computes (the streaming front end); False as Ray replicas
    do (whole patches: under bf16 the two differ by rounding, up to ~2e-3)."""
    from stream import EngineConfig, StreamEngine
    from stream.models.musicnn import load_bundled

    model = _local_model.get(streaming) or _local_model.setdefault(streaming, load_bundled("musicnn", streaming=streaming))
    dtype = np.dtype(FORMAT_DTYPES[fmt][0])
    out = {}
    engine = StreamEngine(model, EngineConfig(hop_s=1, smoothing_s=0, top_k=0), background=False,
                          on_result=lambda r: out.__setitem__(round(r.time_s, 3), r.scores))
    for i in range(0, len(data), chunk_bytes):
        engine.feed(np.frombuffer(data[i:i + chunk_bytes], dtype=dtype).reshape(-1, ch), rate)
    engine.flush()
    return out


def eight_clients(server, streaming: bool = True) -> tuple[list[StreamRun], dict]:
    """The CLIENTS streaming to `server` at once in real time (smoothing off, 1 s hop); checks
    what every such run must show and returns (runs, /healthz while all eight stream).

    Each run: the server echoed its format, closed normally, received every byte, and its
    results end at its own stream time and are the readouts of its own audio: the same as an
    in-process engine fed the same bytes (batching with other streams changes float rounding
    only). streaming: whether the server's model streams its front end (False behind Ray)."""
    chunks = {}

    async def one(track, start, seconds, rate, ch, fmt):
        audio, sr = music(track, start, seconds)
        data = pcm(audio, sr, rate, ch, fmt)
        chunks[(track, start)] = data
        return await stream(server.url(sample_rate=rate, channels=ch, format=fmt, hop=1, smoothing=0), data,
                            rate, ch, fmt, chunk_s=0.1)

    async def all_clients():
        tasks = [asyncio.create_task(one(*c)) for c in CLIENTS]
        # /healthz polled until all 8 stream at once (or every client has finished): an event,
        # not a fixed pause a slow start under load can outlast
        mid = {"streams": 0}  # the reply with the most streams
        while mid.get("streams") != len(CLIENTS) and not all(t.done() for t in tasks):
            h = await asyncio.to_thread(server.healthz)
            mid = h if h.get("streams", 0) >= mid.get("streams", 0) else mid
            await asyncio.sleep(0.05)
        return await asyncio.gather(*tasks), mid

    runs, mid = asyncio.run(all_clients())
    for (track, start, seconds, rate, ch, fmt), run in zip(CLIENTS, runs):
        what = f"{track}@{start}s {rate} Hz {ch} ch {fmt}"
        assert run.ready and run.ready["sample_rate"] == rate and run.ready["format"] == fmt, (what, run.ready)
        assert run.close_code == 1000 and not run.errors, (what, run.close_code, run.errors)
        s = run.summary
        assert s and s["reason"] == "end of stream" and abs(s["seconds_received"] - seconds) < 1e-3, (what, s)
        times = [r["time_s"] for _, r in run.results]
        assert times and times == sorted(times) and abs(times[-1] - seconds) < 0.1, (what, times)
        assert s["windows_classified"] == len(times), (what, s)
        step = int(0.1 * rate * ch * int(fmt[1:3]) // 8)
        local = local_scores(chunks[(track, start)], rate, ch, fmt, step, streaming)
        for _, r in run.results:
            ref = local[r["time_s"]]
            assert all(abs(v - ref[k]) < 2e-3 for k, v in r["scores"].items()), (what, r, ref)
    return runs, mid


# ---------------------------------------------------------------- operations (issue 21) -
def wait_ready(server, timeout=120.0) -> None:
    """Until /readyz says 200 (the model is warmed up)."""
    assert wait_for(lambda: http_get(server.port, "/readyz")[0] == 200, timeout, 0.1), http_get(server.port, "/readyz")


class RawClient:
    """A WebSocket client written on a bare socket, for what a library client will not do:
    never read a byte (a small receive buffer, so the server's sends back up at once), stop
    in the middle of a frame, or vanish without a close frame."""

    def __init__(self, port: int, path: str, rcvbuf: int = 4096):
        import base64

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window stays small
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        # RFC 6455 4.1: no frame before the server's handshake reply. A frame that arrives while
        # the server is still accepting closes the connection at once (seen under load: the
        # never-reading client was gone before its first readout). Byte by byte: nothing after it
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = self.sock.recv(1)
            if not byte:
                break
            head += byte
        if not head.startswith(b"HTTP/1.1 101 "):
            self.sock.close()
            raise ConnectionError(f"the server refused the WebSocket handshake: {head[:200]!r}")

    @staticmethod
    def frame(payload: bytes, opcode: int = 2, seed: int = 0) -> bytes:
        """One masked client frame (RFC 6455 5.2)."""
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = np.random.default_rng(seed).bytes(4)
        body = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        return head + mask + body

    def send(self, payload: bytes, opcode: int = 2) -> None:
        self.sock.sendall(self.frame(payload, opcode))

    def send_partial(self, payload: bytes) -> None:
        """The header and half the body of a frame, and no more."""
        f = self.frame(payload)
        self.sock.sendall(f[: len(f) - len(payload) // 2])

    def abort(self) -> None:
        """Gone without a close frame (RST rather than FIN where the kernel can)."""
        import struct

        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


def never_reads(port: int, path: str, stop: threading.Event, chunk: bytes, every_s: float = 0.1) -> threading.Thread:
    """A RawClient on `path` that sends `chunk` every `every_s` until `stop` (or the server cuts
    it), reading nothing; runs on a daemon thread. Its `frames` and `error` (why it stopped
    sending, if not `stop`) say what happened, for a failing test's message."""

    def run():
        try:
            c = RawClient(port, path)
        except OSError as exc:
            t.error = f"connecting: {exc!r}"
            return
        try:
            while not stop.is_set():
                c.send(chunk)
                t.frames += 1
                time.sleep(every_s)
        except OSError as exc:  # the server closed it
            t.error = f"after {t.frames} frames: {exc!r}"
        finally:
            c.abort()

    t = threading.Thread(target=run, daemon=True)
    t.frames, t.error = 0, None
    t.start()
    return t


def json_request(url: str, body: bytes | None = None, token: str | None = None, timeout: float = 60.0) -> tuple[int, dict]:
    """(status, JSON body) of a GET, or of a POST of `body`, with `token` as its bearer token."""
    req = urllib.request.Request(url, data=body, method="GET" if body is None else "POST",
                                 headers={} if body is None else {"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
