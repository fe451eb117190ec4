"""Watchers on SIGTERM (ui/net/watch.py, ServerOps.drain): drained like the streams they watch,
against `python -m ui.net` as a real subprocess with real WebSocket clients and real music."""
from __future__ import annotations

import asyncio
import signal

import pytest

from support.music import TRACKS, music, needs_music
from support.server import ServerProcess, pcm
from test_watch import Watching, watch_url

pytestmark = [needs_music, pytest.mark.server]


def test_sigterm_gives_watchers_the_summary_then_1001_not_1012():
    """A named source streams, one watcher watches it and one waits on an idle name; SIGTERM:
    the source gets its summary (reason "shutdown") and 1001 as documented, its watcher the same
    summary then 1001, the idle watcher 1001 (uvicorn's own shutdown would have sent 1012); exit 0."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    srv = ServerProcess("--hop", "1").wait_ready()
    audio, sr = music(TRACKS[1], 30, 60.0)
    data = pcm(audio, sr, sr, 1, "s16le")

    async def go():
        live, idle = Watching(watch_url(srv, name="bar")), Watching(watch_url(srv, name="back-room"))
        tasks = [asyncio.create_task(w.run()) for w in (live, idle)]
        await live.until("the greeting", lambda: live.events)
        await idle.until("the greeting", lambda: idle.events)
        source = []
        async with connect(srv.url(sample_rate=sr, channels=1, format="s16le", name="bar", hop=1),
                           open_timeout=60, close_timeout=30) as ws:
            async def reader():
                try:
                    async for text in ws:
                        source.append(text)
                except ConnectionClosed:
                    pass

            rd = asyncio.create_task(reader())
            step = sr // 10 * 2
            try:
                for i in range(0, len(data), step):
                    await ws.send(data[i:i + step])
                    await asyncio.sleep(0.1)
                    if len(live.of("result")) >= 2 and srv.alive() and not getattr(go, "sent", False):
                        go.sent = True
                        srv.proc.send_signal(signal.SIGTERM)
            except ConnectionClosed:
                pass
            await asyncio.wait_for(rd, 60)
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            return live, idle, source, (ws.close_code, ws.close_reason)

    try:
        live, idle, source, src_close = asyncio.run(go())
        assert srv.proc.wait(60) == 0, srv.log
    finally:
        srv.stop()
    import json

    src_summary = json.loads(source[-1])
    assert src_close[0] == 1001 and src_summary["event"] == "summary" and src_summary["reason"] == "shutdown", src_close
    assert live.events[-1]["event"] == "summary" and live.events[-1]["reason"] == "shutdown", live.events[-2:]
    assert live.closed[0] == 1001 and idle.closed[0] == 1001, (live.closed, idle.closed)
    assert idle.events == [{"event": "watching", "name": "back-room", "live": False}], idle.events
    assert "Traceback" not in srv.log, srv.log
