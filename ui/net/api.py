"""The network API: stream PCM over a WebSocket, get genre readouts back.

`create_app(model, settings)` builds the ASGI app (FastAPI), so the same app runs under
uvicorn (`genre-serve`, ui/net/cli.py) or as a Ray Serve ingress (ui/net/ray_ingress.py).
Protocol (also in README.md):

  GET /        -> the kiosk screen (ui/net/kiosk.py)
  GET /healthz -> {"status": "ok", "model", "streams", "max_streams"}
  WS  /v1/listen?sample_rate=48000&channels=2&format=s16le[&window=&hop=&smoothing=&top_k=&name=]
      client -> server: binary frames of interleaved little-endian PCM (any length, at most
                        `max_frame_bytes`; a frame may end mid-sample), text {"event": "end"}
      server -> client: text frames, one JSON object each: ready, result..., error, summary
      close codes: 1000 done (after `end` or the idle timeout), 1008 bad parameters,
                   1009 frame too large, 1013 server full (try again later); refusals: ui/net/access.py
  WS  /v1/watch?name=NAME -> the events of the stream named NAME (ui/net/watch.py)

Every connection has its own StreamEngine; all of them share the model's inference worker,
as the page's sessions do. The receive loop only converts bytes and calls `engine.feed`,
which never waits for the model; results come back on the worker thread and are handed to
the event loop, then to a per-connection sender task through a bounded queue that drops
the oldest results when a client does not read (counted in the summary), so a slow reader
only loses its own readouts.
"""

import asyncio
import collections
import json
import logging

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from stream.audio import MAX_CHANNELS, validate_rate
from stream.engine import EngineConfig, Result, StreamEngine
from stream.models import AudioModel, load_model
from ui.colours import genre_colours
from ui.report import dumps

from .access import BAD_PARAMETER, NAME_IN_USE, SERVER_FULL, check_access, origin_ok, refuse, token_ok  # noqa: F401
from .history import history_router, stream_recorder
from .kiosk import kiosk_router
from .settings import ServerSettings
from .watch import WatchHub, check_name, watch_router

log = logging.getLogger(__name__)

FORMATS = {"s16le": np.dtype("<i2"), "s32le": np.dtype("<i4"), "f32le": np.dtype("<f4")}
QUERY_PARAMS = ("sample_rate", "channels", "format", "window", "hop", "smoothing", "top_k", "token", "name")

# WebSocket close codes (RFC 6455 section 7.4.1)
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_TRY_LATER = 1000, 1008, 1009, 1013


class BadParameter(ValueError):
    pass


def parse_stream_params(query, base: EngineConfig) -> tuple[int, int, str, EngineConfig]:
    """(sample_rate, channels, format, EngineConfig) from the query string; BadParameter names
    the parameter and what is accepted."""
    unknown = sorted(set(query.keys()) - set(QUERY_PARAMS))
    if unknown:
        raise BadParameter(f"unknown query parameter(s) {unknown}; accepted: {', '.join(QUERY_PARAMS)}")

    def one(name):
        values = query.getlist(name)
        if len(values) > 1:
            raise BadParameter(f"{name} is given {len(values)} times; give it once")
        return values[0] if values else None

    def number(name, kind, what):
        text = one(name)
        if text is None:
            return None
        try:
            v = kind(text)
        except ValueError:
            raise BadParameter(f"{name}={text!r} is not {what}") from None
        if kind is float and not np.isfinite(v):
            raise BadParameter(f"{name}={text!r} is not {what}")
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
    fmt = one("format") or "s16le"
    if fmt not in FORMATS:
        raise BadParameter(f"format={fmt!r} is not supported; accepted: {', '.join(FORMATS)}")
    cfg = EngineConfig(**vars(base))
    window = number("window", float, "a number of seconds")
    if window is not None:
        cfg.window_s, cfg.min_window_s = window, min(cfg.min_window_s, window)
    hop = number("hop", float, "a number of seconds")
    if hop is not None:
        cfg.hop_s = hop
    smoothing = number("smoothing", float, "a number of seconds")
    if smoothing is not None:
        cfg.smoothing_s = smoothing
    top_k = number("top_k", int, "an integer")
    if top_k is not None:
        cfg.top_k = top_k
    # the ranges every front end accepts (the page, the listener): one refusal per value
    bad = EngineConfig.out_of_range(window_s=window, hop_s=hop, smoothing_s=smoothing, top_k=top_k)
    if bad:
        raise BadParameter("; ".join(f"{name.removesuffix('_s')}={v:g} is out of range; accepted: {lo:g}..{hi:g}"
                                     + (" (0 = all)" if name == "top_k" else " s") for name, v, (lo, hi) in bad))
    return rate, channels, fmt, cfg


class _Stream:
    """One WebSocket connection: its engine, its outgoing queue and its counters."""

    def __init__(self, ws, loop: asyncio.AbstractEventLoop, send_queue: int):
        self.ws, self.loop = ws, loop
        self.out: collections.deque = collections.deque()
        self.limit = max(1, send_queue)
        self.wakeup = asyncio.Event()
        self.dropped = 0  # results dropped because the client did not read them
        self.engine: StreamEngine | None = None
        self.results_seen = 0  # results handed to this stream by the engine (sent or dropped)
        self.recorder = None  # --history: this stream's session there (ui/net/history.py)
        self.tee = None  # a named stream's watchers (ui/net/watch.py: Channel.publish)

    # called on the event loop (via call_soon_threadsafe from the inference thread)
    def push_result(self, res: Result) -> None:
        results = sum(1 for kind, _ in self.out if kind == "result")
        if results >= self.limit:  # drop the oldest result, never a control event
            for i, (kind, _) in enumerate(self.out):
                if kind == "result":
                    del self.out[i]
                    break
            self.dropped += 1
        self.results_seen += 1
        record = res.to_json()
        self.out.append(("result", record))
        self.wakeup.set()
        if self.tee is not None:
            self.tee(record)

    def push(self, record: dict) -> None:
        self.out.append((record["event"], record))
        self.wakeup.set()
        if self.tee is not None:
            self.tee(record)

    def on_result(self, res: Result) -> None:  # any thread
        if self.recorder is not None:
            self.recorder.add(res)  # (in memory; the history's writer thread does the disk)
        try:
            self.loop.call_soon_threadsafe(self.push_result, res)
        except RuntimeError:  # the loop is closed: the server is shutting down
            pass

    async def sender(self) -> None:
        while True:
            while not self.out:
                self.wakeup.clear()
                await self.wakeup.wait()
            kind, record = self.out.popleft()
            if kind == "stop":
                return
            await self.ws.send_text(dumps(record))


def _error(message: str, **extra) -> dict:
    return {"event": "error", "message": message, **extra}


def create_app(model_or_factory, settings: ServerSettings | None = None, history=None):
    """The ASGI app (FastAPI) serving the protocol above for one model.

    model_or_factory: an AudioModel, a `load_model` spec string, or a callable returning an
    AudioModel (called once, here: under Ray Serve the ingress builds its own model or a
    remote handle to one). history: a HistoryStore (--history) every stream is recorded in,
    also served as GET /v1/history (ui/net/history.py); None: no history.
    """
    settings = settings or ServerSettings()
    if isinstance(model_or_factory, AudioModel):
        model = model_or_factory
    elif isinstance(model_or_factory, str):
        model = load_model(model_or_factory)
    elif callable(model_or_factory):
        model = model_or_factory()
    else:
        raise TypeError(f"create_app needs an AudioModel, a model spec or a factory, got {type(model_or_factory).__name__}")
    # the server's engine defaults must be valid for this model: fail at start, not per stream
    StreamEngine._resolve(settings.engine, model)

    app = FastAPI(title="Live music-genre classifier", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.model = model
    app.state.settings = settings
    streams: set[_Stream] = set()
    app.state.streams = streams
    app.state.watch = hub = WatchHub(settings)
    app.include_router(kiosk_router(model, settings))
    app.include_router(watch_router(hub, settings))

    @app.get("/healthz")
    async def healthz(request: Request):
        if not token_ok(settings, request.headers, request.query_params):
            return JSONResponse({"status": "ok"})  # nothing about streams or model for strangers
        return JSONResponse({"status": "ok", "model": model.name, "streams": len(streams),
                             "max_streams": settings.max_streams})

    @app.websocket("/v1/listen")
    async def listen(ws: WebSocket):
        await _listen(ws, model, settings, streams, hub, history)

    if history is not None:
        app.include_router(history_router(history, lambda r: token_ok(settings, r.headers, r.query_params)))

    return app


async def _close(ws: WebSocket, code: int, reason: str = "") -> None:
    if ws.application_state == WebSocketState.CONNECTED:
        try:
            await ws.close(code=code, reason=reason[:120])
        except Exception:  # the client is gone already
            pass


async def _listen(ws: WebSocket, model, settings: ServerSettings, streams: set, hub: WatchHub,
                  history=None) -> None:
    """One WebSocket connection of /v1/listen, from the access checks to the close."""
    if not await check_access(ws, settings):
        return
    await ws.accept()
    try:
        rate, channels, fmt, cfg = parse_stream_params(ws.query_params, settings.engine)
        name = ws.query_params.get("name")
        name = None if name is None else check_name(name)
    except ValueError as exc:  # BadParameter, or a bad stream name
        return await refuse(ws, BAD_PARAMETER, str(exc))
    if len(streams) >= settings.max_streams:
        return await refuse(ws, SERVER_FULL, f"the server is at its limit of {settings.max_streams} streams; "
                                             "try again later")
    loop = asyncio.get_running_loop()
    st = _Stream(ws, loop, settings.send_queue)
    try:
        st.engine = StreamEngine(model, cfg, on_result=st.on_result)
    except ValueError as exc:
        return await refuse(ws, BAD_PARAMETER, f"engine settings: {exc}")
    channel = None
    if name is not None:
        if (channel := hub.claim(name, st)) is None:
            st.engine.close()
            return await refuse(ws, NAME_IN_USE, f"a stream named {name!r} is already streaming to this server; "
                                                 "choose another name, or stop that source")
        st.tee = channel.publish
    st.recorder = stream_recorder(history, ws.query_params, st.engine)
    streams.add(st)
    sender = asyncio.create_task(st.sender())
    try:
        code, reason = await _serve_stream(st, ws, rate, channels, fmt, settings, model)
    except WebSocketDisconnect:
        code, reason = None, None
    except Exception:  # a bug must end only this stream, with a log
        log.exception("stream failed")
        st.push(_error("internal server error; the stream is closed"))
        code, reason = 1011, "internal error"
    finally:
        streams.discard(st)
        if channel is not None:  # its watchers see the end even when the source just vanished
            channel_end = lambda: st.engine.summary().to_json(st.engine.stats, "source disconnected",  # noqa: E731
                                                              dropped_results=st.dropped)
            hub.release(channel, st, channel_end)
        st.engine.close()
    if st.recorder is not None:
        st.recorder.close(st.engine.summary(), reason or "client went away")
    if code is None:  # the client went away
        sender.cancel()
        return
    st.out.append(("stop", None))
    st.wakeup.set()
    try:  # deliver what is queued; a client that does not read cannot hold us
        await asyncio.wait_for(sender, timeout=10.0)
    except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
        sender.cancel()
    await _close(ws, code, reason)


async def _serve_stream(st: _Stream, ws, rate, channels, fmt, settings: ServerSettings, model):
    """The receive loop of one stream; returns (close code, reason)."""
    engine = st.engine
    dtype = FORMATS[fmt]
    frame = dtype.itemsize * channels  # bytes per sample frame (all channels)
    pending = b""  # a partial sample frame carried over to the next message
    c = engine.config
    st.push({"event": "ready", "model": model.name, "labels": engine.visible_labels,
             "window_s": c.window_s, "hop_s": c.hop_s, "min_window_s": c.min_window_s,
             "smoothing_s": c.smoothing_s, "top_k": c.top_k, "sample_rate": rate, "channels": channels,
             "format": fmt, "max_frame_bytes": settings.max_frame_bytes,
             "idle_timeout_s": settings.idle_timeout_s, "genres": engine.genres,
             "colours": genre_colours(engine.genres, engine.genres)})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.idle_timeout_s

    async def finish(reason):
        engine.flush()
        # the worker thread classifies the last window; wait for it off the event loop
        await asyncio.to_thread(engine.drain, 30.0)
        # drain() returns once the last window is done, but its result may still be on its way
        # (worker thread -> call_soon_threadsafe): wait until every result the engine counted
        # (stats takes the engine's result lock, so the counts are complete) reached our queue
        st_ = engine.stats
        expected = st_.windows_classified + st_.windows_silent
        for _ in range(1000):
            if st.results_seen >= expected:
                break
            await asyncio.sleep(0.005)
        st.push(engine.summary().to_json(engine.stats, reason, dropped_results=st.dropped))
        return CLOSE_NORMAL, reason

    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), timeout=max(deadline - loop.time(), 0.0))
        except asyncio.TimeoutError:
            return await finish("idle timeout")
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        data, text = msg.get("bytes"), msg.get("text")
        if data is not None:
            if len(data) > settings.max_frame_bytes:
                st.push(_error(f"a binary frame of {len(data)} bytes is over the limit of "
                               f"{settings.max_frame_bytes} bytes; send smaller frames"))
                return CLOSE_TOO_BIG, "frame too large"
            deadline = loop.time() + settings.idle_timeout_s
            if pending:
                data = pending + data
            usable = len(data) - len(data) % frame
            pending = data[usable:]
            if usable:
                samples = np.frombuffer(data, dtype=dtype, count=usable // dtype.itemsize).reshape(-1, channels)
                try:
                    engine.feed(samples, rate)  # returns at once: inference is on the worker thread
                except ValueError as exc:  # not expected after our own checks; the stream survives
                    st.push(_error(f"audio rejected: {exc}"))
        elif text is not None:
            try:
                event = json.loads(text)
            except ValueError:
                st.push(_error(f"a text frame must be a JSON object such as {{\"event\": \"end\"}}; got {text[:80]!r}"))
                continue
            if isinstance(event, dict) and event.get("event") == "end":
                return await finish("end of stream")
            st.push(_error(f"unknown message {text[:80]!r}; the only text message is {{\"event\": \"end\"}} "
                           "(audio goes in binary frames)"))
