"""The network API's settings: what `genre-serve`'s flags set and `create_app` (ui/net/api.py) serves
by, and what a stream's query string may set (`parse_stream_params`: the engine settings come from
the one table, `stream.config.SETTINGS`, as every face's do).

No FastAPI, numpy or engine here: the command line reads these before anything heavy is imported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from stream.config import QUERY_SETTINGS, EngineConfig, configure

# the PCM a stream may send: format name -> its numpy dtype code (little-endian)
PCM_FORMATS = {"s16le": "<i2", "s32le": "<i4", "f32le": "<f4"}
QUERY_PARAMS = ("sample_rate", "channels", "format", *(s.key for s in QUERY_SETTINGS), "token", "name")

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


class BadParameter(ValueError):
    pass


def parse_stream_params(query, base: EngineConfig) -> tuple[int, int, str, EngineConfig]:
    """(sample_rate, channels, format, EngineConfig) from the query string (a mapping with
    `getlist`, e.g. Starlette's QueryParams); BadParameter names the parameter and what is accepted."""
    from stream.audio import MAX_CHANNELS, validate_rate  # inside: numpy stays off the command line's path

    unknown = sorted(set(query.keys()) - set(QUERY_PARAMS))
    if unknown:
        shown = [u if len(u) <= 40 else u[:40] + "..." for u in unknown[:5]]
        raise BadParameter(f"unknown query parameter(s) {shown}; accepted: {', '.join(QUERY_PARAMS)}")

    def one(name):
        values = query.getlist(name)
        if len(values) > 1:
            raise BadParameter(f"{name} is given {len(values)} times; give it once")
        return values[0] if values else None

    def number(name, kind, what):
        text = one(name)
        if text is None:
            return None
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + f"... ({len(text)} characters)"
        try:
            v = kind(text)
        except ValueError:
            raise BadParameter(f"{name}={shown} is not {what}") from None
        if kind is float and not math.isfinite(v):
            raise BadParameter(f"{name}={shown} is not {what}")
        return v

    rate = number("sample_rate", int, "an integer number of Hz")
    if rate is None:
        raise BadParameter("sample_rate is required: the rate of the PCM you send, e.g. sample_rate=48000")
    try:
        rate = validate_rate(rate)
    except ValueError as exc:
        raise BadParameter(f"sample_rate: {exc}") from None
    channels = number("channels", int, "an integer")
    channels = 1 if channels is None else channels
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadParameter(f"channels={channels} is out of range; accepted: 1..{MAX_CHANNELS}")
    fmt = one("format")
    fmt = "s16le" if fmt is None else fmt  # (an empty format= is an error, not the default)
    if fmt not in PCM_FORMATS:
        raise BadParameter(f"format={fmt!r} is not supported; accepted: {', '.join(PCM_FORMATS)}")
    values = {s.key: number(s.key, s.kind, s.noun) for s in QUERY_SETTINGS}
    # the ranges every face accepts: one refusal per value
    bad = [p for s in QUERY_SETTINGS if values[s.key] is not None
           and (p := s.problem(values[s.key], outside="is out of range; accepted:", span_first=True))]
    if bad:
        raise BadParameter("; ".join(bad))
    return rate, channels, fmt, configure(base, **values)
