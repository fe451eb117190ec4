"""Readouts of screens that classify on the device (the kiosk's ?compute=device): JSON, never audio.

    POST /v1/device/readouts?name=NAME[&token=...]   body: one result record, as /v1/listen sends them

A device screen may post each readout it draws, so that `/v1/watch?name=NAME` screens and the
history (--history) see it as they see a streaming source. Same token and origin rules as the
WebSocket endpoints. The first readout of a name starts a source (watchers get a `ready` event with
"compute": "device"); a source that posts nothing for the idle timeout ends (its summary, from the
readouts' own tally, goes to the watchers and the history). No audio reaches the server, so its
`genre_audio_seconds_total` does not move.
"""
from __future__ import annotations

import asyncio
import json
import math
import types

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from stream.engine import Result, ShareTally, StreamEngine
from ui.colours import genre_colours

from .access import origin_ok, token_ok
from .history import stream_recorder
from .settings import ServerSettings
from .watch import WatchHub, check_stream_name

MAX_BODY = 16 * 1024  # one readout is ~1 KB


def _bad(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def check_readout(rec) -> dict:
    """The readout, checked; ValueError saying what is wrong."""
    if not isinstance(rec, dict) or rec.get("event") != "result":
        raise ValueError('a readout is a JSON object with "event": "result" (as /v1/listen sends them)')
    t = rec.get("time_s")
    if not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
        raise ValueError("time_s must be a finite number of seconds >= 0")
    for key in ("scores", "genre_scores"):
        v = rec.get(key, {})
        if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, (int, float)) for k, x in v.items()):
            raise ValueError(f"{key} must map names to numbers")
    for key in ("genre", "label"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise ValueError(f"{key} must be a string or null")
    if not isinstance(rec.get("no_music", False), bool):
        raise ValueError("no_music must be true or false")
    return rec


class DeviceSource:
    """One device screen posting under a name: its channel, history session and tally."""

    def __init__(self, name: str, channel, recorder, hop_s: float):
        self.name, self.channel, self.recorder, self.hop_s = name, channel, recorder, hop_s
        self.tally = ShareTally()
        self.last_t: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    def add(self, rec: dict) -> None:
        t = float(rec["time_s"])
        dt = self.hop_s if self.last_t is None or t <= self.last_t else t - self.last_t
        self.last_t = t
        self.tally.add(dt, None if rec.get("silent") else rec.get("genre"), None if rec.get("silent") else rec.get("label"),
                       bool(rec.get("no_music")) and not rec.get("silent"))  # the page's "no music" (its presence head)
        self.channel.publish(rec)
        if self.recorder is not None:
            self.recorder.add(Result.from_json(rec))

    def summary(self, reason: str) -> dict:
        s = self.tally.summary()
        return {"event": "summary", "reason": reason, "duration_s": round(s.duration_s, 2),
                "silent_s": round(s.silent_s, 2), "no_music_s": round(s.no_music_s, 2), "dominant": s.dominant, "shares": s.shares,
                "dominant_genre": s.dominant_genre, "genre_shares": s.genre_shares, "styles": s.styles,
                "compute": "device"}


def device_readouts_router(model, settings: ServerSettings, hub: WatchHub, history=None) -> APIRouter:
    from .kiosk import genre_order  # inside: kiosk imports the device modules (no cycle at import)

    router = APIRouter()
    sources: dict[str, DeviceSource] = {}
    c = StreamEngine.resolve(settings.engine, model)  # what a device screen runs by default (model.json)
    genres = genre_order(model, settings)

    def end(src: DeviceSource, reason: str) -> None:
        if sources.get(src.name) is not src:
            return
        del sources[src.name]
        record = src.summary(reason)
        hub.release(src.channel, src, lambda: record)
        src.channel.publish(record)
        if src.recorder is not None:
            src.recorder.close(src.tally.summary(), reason)

    @router.post("/v1/device/readouts")
    async def post_readout(request: Request):
        if not token_ok(settings, request.headers, request.query_params):
            return _bad(401, "token: this server needs a valid token (Authorization: Bearer, or ?token=)")
        if not origin_ok(settings, request.headers):
            return _bad(403, "origin: this page's origin is not allowed; start the server with --allow-origin")
        try:
            name = check_stream_name(request.query_params.get("name"))
        except ValueError as exc:
            return _bad(400, str(exc))
        body = await request.body()
        if len(body) > MAX_BODY:
            return _bad(413, f"a readout is at most {MAX_BODY} bytes of JSON (audio is never accepted)")
        try:
            rec = check_readout(json.loads(body))
        except (ValueError, UnicodeDecodeError) as exc:
            return _bad(400, f"not a readout: {exc}")
        src = sources.get(name)
        if src is None:
            src = DeviceSource(name, None, None, c.hop_s)
            if (channel := hub.claim(name, src)) is None:
                return _bad(409, f"a stream named {name!r} is already streaming to this server; choose another name")
            src.channel = channel
            src.recorder = stream_recorder(history, {"name": name}, _EngineView(genres, src.hop_s))
            sources[name] = src
            channel.publish({"event": "ready", "model": model.name, "compute": "device", "window_s": c.window_s,
                             "hop_s": src.hop_s, "min_window_s": c.min_window_s, "smoothing_s": c.smoothing_s,
                             "top_k": c.top_k, "genres": genres, "colours": genre_colours(genres, genres),
                             "idle_timeout_s": settings.idle_timeout_s})
        src.add(rec)
        if src.timer is not None:
            src.timer.cancel()
        src.timer = asyncio.get_running_loop().call_later(settings.idle_timeout_s, end, src, "idle timeout")
        return {"ok": True}

    return router


class _EngineView:
    """What stream_recorder reads of an engine: its config's hop and its genres."""

    def __init__(self, genres, hop_s):
        self.config = types.SimpleNamespace(hop_s=hop_s)
        self.genres = list(genres)
