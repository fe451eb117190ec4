"""One microphone, many screens: named streams and their watchers.

A stream opened with `/v1/listen?...&name=shop-floor` is the source of channel "shop-floor";
`GET /v1/watch?name=shop-floor` (WebSocket, the same token and origin rules) receives that
source's ready / result / summary events and sends nothing. Any number of watchers, up to
`max_watchers_per_name` per channel and `max_watchers` in all (then "watchers", 1013). One
that joins mid-stream gets the source's `ready` and latest `result` at once; when the source
ends (or its connection drops) the watchers get its summary and stay, waiting for the next
source of that name. A second source of a live name is refused ("name_in_use", 1008).
On SIGTERM (ServerOps.drain) watchers are drained like streams: the live sources finish first
(their watchers get the summary, reason "shutdown"), then every watcher is closed with 1001, and
new ones are refused ("draining", 1013).

Everything here runs on the server's event loop: the source's events arrive there already
(ui/net/api.py hands results over from the worker's results thread), so there are no locks. Each
watcher has its own bounded queue (`SendQueue`, the one a listening stream has too), so a slow
screen only loses its own oldest results.
Under Ray Serve each ingress replica has its own hub (`genre-serve --ray` runs one).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import re
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from ui.report import dumps

from .access import BAD_PARAMETER, DRAINING, WATCHERS, check_access, refuse
from .settings import ServerSettings

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
WATCH_PARAMS = ("name", "token")
SHARED_EVENTS = ("ready", "result", "summary")  # what a source's watchers receive
CLOSE_GOING_AWAY = 1001  # the server is shutting down (the code a drained stream gets too)


def check_stream_name(name: str | None) -> str:
    """The stream name, checked; ValueError saying what a name may be."""
    if name is None or name == "":
        raise ValueError(f"name is required: the name of a stream to watch ({NAME_RULE})")
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"name={name[:80]!r} is not a valid stream name; a name is {NAME_RULE}")
    return name


class SendQueue:
    """One connection's events waiting for its sender task, with at most `limit` results: a
    client that does not read loses its own oldest results (counted in `dropped`), never a
    control event (ready, error, summary). A listening stream (ui/net/api.py) and each watcher
    have one; on the event loop only. Put and get cost the same however full it is: they run
    for every result of every connection."""

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self.items: collections.deque = collections.deque()  # (kind, record: a dict, or its JSON text)
        self.results = 0  # how many of the items are results
        self.dropped = 0
        self.wakeup = asyncio.Event()

    def put(self, kind: str, record: Any) -> bool:
        """Queue an event of `kind` ("result", "ready", ...); True when the oldest waiting
        result was dropped to make room for it."""
        dropped = kind == "result" and self.results >= self.limit
        if dropped:
            for i, (k, _) in enumerate(self.items):  # (the first result: control events are few)
                if k == "result":
                    del self.items[i]
                    break
            self.dropped += 1
        elif kind == "result":
            self.results += 1
        self.items.append((kind, record))
        self.wakeup.set()
        return dropped

    async def get(self) -> tuple[str, Any]:
        """The oldest event, (kind, record), once there is one."""
        while not self.items:
            self.wakeup.clear()
            await self.wakeup.wait()
        kind, record = self.items.popleft()
        if kind == "result":
            self.results -= 1
        return kind, record


class Watcher:
    """One watching connection: its queue of events and the task that sends them."""

    def __init__(self, ws: WebSocket, limit: int):
        self.ws = ws
        self.out = SendQueue(limit)

    def push(self, record: dict, text: str | None = None) -> None:
        """Queue `record`; `text` is its JSON when the caller made it already (once for all watchers)."""
        self.out.put(record["event"], text if text is not None else dumps(record))

    def close(self, code: int, reason: str) -> None:
        """Close once everything queued before has been sent."""
        self.out.put("close", (code, reason))

    async def sender(self) -> None:
        while True:
            kind, text = await self.out.get()
            if kind == "close":
                code, reason = text
                return await self.ws.close(code=code, reason=reason)
            await self.ws.send_text(text)


class Channel:
    """A name: its live source (if any), what a joining watcher is shown, and its watchers."""

    def __init__(self, name: str):
        self.name = name
        self.source: object | None = None
        self.ready: dict | None = None
        self.latest: dict | None = None
        self.summary: dict | None = None  # of the last source that ended
        self.watchers: set[Watcher] = set()

    def publish(self, record: dict) -> None:
        event = record.get("event")
        if event not in SHARED_EVENTS:
            return
        if event == "ready":
            self.ready, self.latest = record, None
        elif event == "result":
            self.latest = record
        else:
            self.summary, self.ready, self.latest = record, None, None
        if self.watchers:
            text = dumps(record)  # once, however many watch
            for w in self.watchers:
                w.push(record, text)

    def greeting(self) -> list[dict]:
        """What a joining watcher gets at once."""
        live = self.source is not None
        out = [{"event": "watching", "name": self.name, "live": live}]
        if live:
            out += [r for r in (self.ready, self.latest) if r is not None]
        elif self.summary is not None:
            out.append(self.summary)
        return out


class WatchHub:
    """The channels of one app (create_app makes one)."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.channels: dict[str, Channel] = {}
        self.draining = False

    @property
    def watchers(self) -> int:
        return sum(len(c.watchers) for c in self.channels.values())

    def _channel(self, name: str) -> Channel:
        return self.channels.setdefault(name, Channel(name))

    def _forget_if_unused(self, ch: Channel) -> None:
        if ch.source is None and not ch.watchers:
            self.channels.pop(ch.name, None)

    def claim(self, name: str, source: object) -> Channel | None:
        """Make `source` the live source of `name`; None when another source has it."""
        ch = self._channel(name)
        if ch.source is not None:
            return None
        ch.source = source
        return ch

    def release(self, ch: Channel, source: object, summary=None) -> None:
        """`source` ended. summary: a callable giving its summary, used when the source did not
        publish one (its connection dropped), so watchers always see the end."""
        if ch.source is not source:
            return
        if ch.ready is not None and summary is not None:  # it was live and ended without a summary
            ch.publish(summary())
        ch.source = None
        ch.ready = ch.latest = None
        self._forget_if_unused(ch)

    def join(self, name: str, watcher: Watcher) -> str | None:
        """Add a watcher; the refusal message when a limit is reached, else None."""
        s = self.settings
        ch = self.channels.get(name)
        if ch is not None and len(ch.watchers) >= s.max_watchers_per_name:
            return f"stream {name!r} has {len(ch.watchers)} watchers, the limit (--max-watchers-per-name)"
        if self.watchers >= s.max_watchers:
            return f"the server has {self.watchers} watchers, its limit (--max-watchers); try again later"
        ch = self._channel(name)
        ch.watchers.add(watcher)
        for record in ch.greeting():
            watcher.push(record)
        return None

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> int:
        """Refuse new watchers and close every one after what is queued for it (a drain: the
        sources' summaries first); how many were asked to close."""
        self.draining = True
        n = 0
        for ch in self.channels.values():
            for w in ch.watchers:
                w.close(code, reason)
                n += 1
        return n

    def leave(self, name: str, watcher: Watcher) -> None:
        ch = self.channels.get(name)
        if ch is not None:
            ch.watchers.discard(watcher)
            self._forget_if_unused(ch)


def watch_router(hub: WatchHub, settings: ServerSettings) -> APIRouter:
    router = APIRouter()

    @router.websocket("/v1/watch")
    async def watch(ws: WebSocket):
        await _watch(ws, hub, settings)

    return router


async def _watch(ws: WebSocket, hub: WatchHub, settings: ServerSettings) -> None:
    """One watching connection, from the access checks to the client leaving."""
    if not await check_access(ws, settings):
        return
    q = ws.query_params
    unknown = sorted(set(q.keys()) - set(WATCH_PARAMS))
    try:
        if unknown:
            raise ValueError(f"unknown query parameter(s) {unknown}; accepted: {', '.join(WATCH_PARAMS)}")
        name = check_stream_name(q.get("name"))
    except ValueError as exc:
        return await refuse(ws, BAD_PARAMETER, str(exc))
    if hub.draining:
        return await refuse(ws, DRAINING, "the server is shutting down; connect to another instance or retry shortly")
    watcher = Watcher(ws, settings.send_queue)
    if (why := hub.join(name, watcher)) is not None:
        return await refuse(ws, WATCHERS, why)
    await ws.accept()
    sender = asyncio.create_task(watcher.sender())
    sender.add_done_callback(lambda t: t.cancelled() or t.exception())  # a send to a gone client: not an error
    try:
        while True:  # a watcher sends nothing; anything it does send is answered, not fed
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            watcher.push({"event": "error", "message": "a watcher sends nothing: audio goes to /v1/listen"})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.leave(name, watcher)
        sender.cancel()
