"""The network API's side of the genre history (`genre-serve --history FILE`): every stream recorded
under its `name=` (or a generated id), and GET /v1/history to read it back.

    GET /v1/history                                   -> {"names": [...], "writer": {...}}
    GET /v1/history?name=shop&from=2026-12-01&to=2026-12-02&step=hour[&tz=Europe/Berlin]
        -> {"name", "step", "from", "to", "rows": [{"t", "unix", "classified_s", "silent_s",
            "genre_shares", "dominant_genre"}...], "sessions": [...], "writer": {...}}

`from`/`to`: ISO 8601 (a date, a time with or without a zone: `tz`, default UTC) or Unix
seconds; default the last 24 hours. `step`: minute (the rows as stored), hour or day (added up,
in `tz`). Access: the WebSocket's token rules (`authorized`, from ui/net/api.py). The store
is queried on a worker thread, so a slow disk never holds the event loop (the readouts).
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ui.history.store import STEPS, HistoryStore, Recorder, iso, parse_time, zone

from .access import TOKEN_REQUIRED

HISTORY_PARAMS = ("name", "from", "to", "step", "tz", "token")
MAX_ROWS = 20160  # two weeks of minutes per request; longer ranges by hour or day


def stream_recorder(store: HistoryStore | None, query, engine) -> Recorder | None:
    """The stream's session in the history (None without --history): under `name=`, or a
    generated id for a stream without one."""
    if store is None:
        return None
    return store.recorder(query.get("name"), engine.config.hop_s, engine.genres)


def _bad(status: int, message: str, **headers) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _tz(name: str | None):
    try:
        return zone(name)
    except ValueError as exc:
        raise ValueError(f"tz={exc}") from None


def _range(q, tz) -> tuple[float, float, str]:
    """(from, to, step) of a request; ValueError names the parameter."""
    step = q.get("step") or "minute"
    if step not in STEPS:
        raise ValueError(f"step={step!r} is not one of {', '.join(STEPS)}")
    end = parse_time(q["to"], tz) if q.get("to") else time.time()
    start = parse_time(q["from"], tz) if q.get("from") else end - 86400.0
    if end <= start:
        raise ValueError(f"to={q.get('to')} is not after from={q.get('from')}")
    if step == "minute" and (end - start) / 60 > MAX_ROWS:
        raise ValueError(f"from..to holds more than {MAX_ROWS} minutes; ask with step=hour or step=day, "
                         "or for a shorter range")
    return start, end, step


def history_router(store: HistoryStore, authorized: Callable[[Request], bool]) -> APIRouter:
    """GET /v1/history over `store`; `authorized(request)`: the server's token check."""
    router = APIRouter()

    @router.get("/v1/history")
    async def history(request: Request):
        if not authorized(request):
            return _bad(401, TOKEN_REQUIRED, **{"WWW-Authenticate": "Bearer"})
        q = request.query_params
        unknown = sorted(set(q.keys()) - set(HISTORY_PARAMS))
        if unknown:
            return _bad(400, f"unknown query parameter(s) {unknown}; accepted: {', '.join(HISTORY_PARAMS)}")
        reader = store.reader
        name = q.get("name")
        if name is None:
            names = await asyncio.to_thread(reader.names)
            return JSONResponse({"names": names, "writer": store.stats.to_json()})
        try:
            tz = _tz(q.get("tz"))
            start, end, step = _range(q, tz)
        except ValueError as exc:
            return _bad(400, str(exc))
        names = await asyncio.to_thread(reader.names)
        if name not in names:
            return _bad(404, f"no history for stream {name!r}; streams recorded: {', '.join(names) or 'none'}")
        rows = await asyncio.to_thread(reader.buckets, name, start, end, step, tz)
        sessions = await asyncio.to_thread(reader.sessions, name, start, end)
        return JSONResponse({"name": name, "step": step, "from": iso(start), "to": iso(end),
                             "tz": q.get("tz") or "UTC", "rows": [b.to_json() for b in rows],
                             "sessions": [s.to_json() for s in sessions], "writer": store.stats.to_json()})

    return router
