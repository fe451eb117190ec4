"""The network API's settings: what `genre-serve`'s flags set and `create_app` (ui/net/api.py) serves by.

No FastAPI, numpy or engine here: the command line reads these before anything heavy is imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from stream.config import EngineConfig

TOKEN_ENV = "GENRE_SERVER_TOKEN"


@dataclass
class ServerSettings:
    """Server options.

    max_streams: open WebSocket streams at most; one more is refused with close code 1013.
        Each stream costs one forward per hop on the shared model, so the useful number is
        about (hop / inference time) x cores; beyond it the worker skips windows for everyone.
    idle_timeout_s: a stream that sends no audio for this long gets its summary and is
        closed (1000), so forgotten kiosks do not hold a slot forever.
    max_frame_bytes: the largest binary frame accepted (1 MiB = 2.7 s of 48 kHz stereo s32le).
    send_queue: results waiting for a slow client at most; older ones are dropped and counted.
        Readouts replace each other, so the newest matter; 64 is about a minute at a 1 s hop.
    token: if set, every request must carry it (Authorization: Bearer, or ?token=).
    allow_origins: browser origins allowed to connect ("*" = any). Requests without an
        Origin header (non-browser clients) are always allowed; a page on this same host is too.
    engine: defaults for every stream's EngineConfig; the query parameters override them.
    max_watchers / max_watchers_per_name: connections of /v1/watch at most, in all and per
        stream name (ui/net/watch.py); one more is refused with 1013, reason "watchers". A
        watcher costs no inference, only a copy of each event.
    max_session_s: a stream open this long gets its summary (reason "max_session") and close
        1000; None = no limit. Bounds what one kiosk can hold, and spreads long-lived streams
        over the instances behind a load balancer when they reconnect.
    kiosk_compute: what the kiosk page at / does by default: "server" (it streams its microphone
        here) or "device" (it classifies on the device and posts only readouts); ?compute= overrides.
    drain_timeout_s: on SIGTERM, how long open streams get to receive their last results and
        summary (close 1001) before the process exits anyway.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    max_streams: int = 16
    idle_timeout_s: float = 60.0
    max_frame_bytes: int = 1 << 20
    send_queue: int = 64
    token: str | None = None
    allow_origins: tuple[str, ...] = ()
    engine: EngineConfig = field(default_factory=EngineConfig)
    max_watchers: int = 64
    max_watchers_per_name: int = 16
    max_session_s: float | None = None
    drain_timeout_s: float = 10.0
    kiosk_compute: str = "server"
