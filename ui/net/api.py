"""The network API: stream PCM over a WebSocket, get genre readouts back.

`create_app(model, settings)` builds the ASGI app (FastAPI), so the same app runs under
uvicorn (`genre-serve`, ui/net/cli.py) or as a Ray Serve ingress (ui/net/ray_ingress.py).
Protocol (also in README.md):

  GET /healthz, /livez, /readyz, /metrics (ui/net/ops.py: probes, Prometheus)
  GET / the kiosk screen (ui/net/kiosk.py); GET /v1/history (ui/net/history.py, --history)
  WS  /v1/listen?sample_rate=48000&channels=2&format=s16le[&window=&hop=&smoothing=&top_k=&name=]
  WS  /v1/watch?name=NAME: a named stream's events, for screens (ui/net/watch.py)
  POST /v1/device/readouts?name=NAME: a device screen's readouts, JSON only (ui/net/device_readouts.py)
      client -> server: binary frames of interleaved little-endian PCM (any length, at most
                        `max_frame_bytes`; a frame may end mid-sample), text {"event": "end"}
      server -> client: text frames, one JSON object each: ready, result..., error, summary
      close codes: 1000 done (after `end`, the idle timeout or --max-session), 1001 the
                   server is shutting down (after the last results and the summary),
                   1008 bad parameters, 1009 frame too large, 1011 internal error,
                   1013 server full (capacity), draining or watcher limits (try again later / elsewhere),
                   4401 / 4403 token / origin refused (browsers: ui/net/access.py)

Every connection has its own StreamEngine; all of them share the model's inference worker,
as the page's sessions do. The receive loop only converts bytes and calls `engine.feed`,
which never waits for the model; results come back on the worker thread and are handed to
the event loop, then to a per-connection sender task through a bounded queue that drops
the oldest results when a client does not read (counted in the summary), so a slow reader
only loses its own readouts.

Operations (probes, metrics, drain) live in ui/net/ops.py, access checks and every refusal in ui/net/access.py,
log records in ui/net/logs.py; this module counts and logs each stream's life through them.
"""

import asyncio
import collections
import json
import logging
import time

import numpy as np
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from stream.engine import Result, StreamEngine
from stream.models import AudioModel, load_model
from ui.colours import genre_colours
from ui.report import dumps

from .access import BAD_PARAMETER, NAME_IN_USE, REFUSALS, check_access, client_of, fit_close, refuse, token_ok
from .device_readouts import device_readouts_router
from .history import history_router, stream_recorder
from .kiosk import kiosk_router
from .logs import event, stream_id
from .ops import ServerOps
from .ops import router as ops_router
from .settings import (PCM_FORMATS, QUERY_PARAMS, BadParameter, ServerSettings,  # noqa: F401  (QUERY_PARAMS and
                       parse_stream_params)  # BadParameter: the protocol's, re-exported here where it is served)
from .watch import SendQueue, WatchHub, check_stream_name, watch_router

log = logging.getLogger("ui.net.server")

FORMATS = {name: np.dtype(code) for name, code in PCM_FORMATS.items()}

# WebSocket close codes (RFC 6455 section 7.4.1)
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_TRY_LATER = (
    1000, 1001, 1008, 1009, 1011, 1013)
# why a stream finished -> (close code, metrics outcome); the reason is also the summary's
FINISH = {"end of stream": (CLOSE_NORMAL, "ended"), "idle timeout": (CLOSE_NORMAL, "idle"),
          "max_session": (CLOSE_NORMAL, "max_session"), "shutdown": (CLOSE_GOING_AWAY, "shutdown")}
FINISH_DRAIN_S = 30.0  # the last window's result is awaited this long at most (less when draining)
SEND_DRAIN_S = 10.0  # queued events are delivered this long at most: a client that does not read cannot hold us


class _Stream:
    """One WebSocket connection: its engine, its outgoing queue and its counters."""

    def __init__(self, ws, loop: asyncio.AbstractEventLoop, send_queue: int, metrics, client: str):
        self.ws, self.loop, self.metrics = ws, loop, metrics
        self.id, self.client, self.opened = stream_id(), client, time.monotonic()
        self.out = SendQueue(send_queue)  # its `dropped`: results the client did not read in time
        self.sent = 0  # results sent
        self.engine: StreamEngine | None = None
        self.results_seen = 0  # results handed to this stream by the engine (sent or dropped)
        self.skipped_counted = 0  # the engine's skipped windows already added to the metric
        # (stream seconds received, loop time) per audio frame, for the result latency
        self.arrivals: collections.deque = collections.deque(maxlen=100_000)
        self.received_s = 0.0
        self.stopping = asyncio.Event()  # set by request_stop: finish with stop_reason
        self.stop_reason: str | None = None
        self.stop_deadline: float | None = None  # time.monotonic() by which a drain wants it closed
        self.recorder = None  # --history: this stream's session there (ui/net/history.py)
        self.tee = None  # a named stream's watchers (ui/net/watch.py: Channel.publish)
        self.name: str | None = None  # ?name=: its own metrics series (last readout, last music)

    def request_stop(self, reason: str, deadline: float | None = None) -> None:
        """Finish this stream soon (last results, summary with `reason`); on the event loop."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_deadline = reason, deadline
            self.stopping.set()

    def time_left(self, default: float) -> float:
        """`default`, or less when a drain wants the stream closed sooner."""
        if self.stop_deadline is None:
            return default
        return max(min(default, self.stop_deadline - time.monotonic()), 0.5)

    def audio_received(self, seconds: float) -> None:
        self.received_s += seconds
        self.arrivals.append((self.received_s, self.loop.time()))
        self.metrics.audio_seconds_total.inc(seconds)

    def _latency(self, time_s) -> float | None:
        """Loop time since the audio at stream time `time_s` (a window's end) arrived."""
        if time_s is None:
            return None
        while self.arrivals and self.arrivals[0][0] < time_s - 1e-3:
            self.arrivals.popleft()  # later results end later: never needed again
        return self.loop.time() - self.arrivals[0][1] if self.arrivals else None

    @property
    def dropped(self) -> int:
        """Results dropped because the client did not read them."""
        return self.out.dropped

    # called on the event loop (via call_soon_threadsafe from the worker's results thread)
    def push_result(self, res: Result) -> None:
        self.results_seen += 1
        if not res.silent:
            self.metrics.inference_seconds.observe(res.inference_ms / 1000.0)
        self.count_skipped()
        if self.name is not None:
            self.metrics.named_result(self.name, res)
        record = res.to_json()
        if self.out.put("result", record):  # the oldest waiting result made room
            self.metrics.results_dropped_total.inc()
        if self.tee is not None:
            self.tee(record)

    def count_skipped(self) -> None:
        skipped = self.engine.windows_skipped if self.engine is not None else 0  # (per result: not .stats)
        if skipped > self.skipped_counted:
            self.metrics.windows_skipped_total.inc(skipped - self.skipped_counted)
            self.skipped_counted = skipped

    def push(self, record: dict) -> None:
        self.out.put(record["event"], record)
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
            kind, record = await self.out.get()
            if kind == "stop":
                return
            await self.ws.send_text(dumps(record))
            if kind == "result":
                self.sent += 1
                self.metrics.results_total.inc()
                latency = self._latency(record.get("time_s"))
                if latency is not None:
                    self.metrics.result_latency_seconds.observe(latency)


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
    StreamEngine.resolve(settings.engine, model)

    app = FastAPI(title="Live music-genre classifier", docs_url=None, redoc_url=None, openapi_url=None)
    ops = ServerOps(model, settings)
    app.state.model = model
    app.state.settings = settings
    app.state.ops = ops
    app.state.streams = ops.streams
    app.include_router(ops_router)  # /livez, /readyz, /healthz, /metrics
    app.state.watch = ops.hub = hub = WatchHub(settings)
    app.include_router(kiosk_router(model, settings))
    app.include_router(watch_router(hub, settings))
    app.include_router(device_readouts_router(model, settings, hub, history))  # device screens: readouts, no audio

    @app.websocket("/v1/listen")
    async def listen(ws: WebSocket):
        await _listen(ws, model, settings, ops, hub, history)

    if history is not None:
        app.include_router(history_router(history, lambda r: token_ok(settings, r.headers, r.query_params)))

    ops.start_warm_up()
    return app


async def _close(ws: WebSocket, code: int, reason: str = "") -> None:
    if ws.application_state == WebSocketState.CONNECTED:
        try:
            await ws.close(code=code, reason=fit_close(reason))
        except Exception:  # the client is gone already
            pass


async def _listen(ws: WebSocket, model, settings: ServerSettings, ops: ServerOps, hub: WatchHub,
                  history=None) -> None:
    """One WebSocket connection of /v1/listen, from the access checks to the close."""
    if not await check_access(ws, settings):
        return
    await ws.accept()
    try:
        rate, channels, fmt, cfg = parse_stream_params(ws.query_params, settings.engine)
        name = ws.query_params.get("name")
        name = None if name is None else check_stream_name(name)
    except ValueError as exc:  # BadParameter, or a bad stream name
        return await refuse(ws, BAD_PARAMETER, str(exc))
    loop = asyncio.get_running_loop()
    st = _Stream(ws, loop, settings.send_queue, ops.metrics, client_of(ws))
    try:
        st.engine = StreamEngine(model, cfg, on_result=st.on_result)
    except ValueError as exc:
        return await refuse(ws, BAD_PARAMETER, f"engine settings: {exc}")
    # no await between these checks and the registration: a drain that starts now sees this stream
    if refusal := ops.refusal():
        st.engine.close()
        reason, message = refusal
        return await refuse(ws, REFUSALS[reason], message)
    channel = None
    if name is not None:
        if (channel := hub.claim(name, st)) is None:
            st.engine.close()
            return await refuse(ws, NAME_IN_USE, f"a stream named {name!r} is already streaming to this server; "
                                                 "choose another name, or stop that source")
        st.tee = channel.publish
    st.recorder = stream_recorder(history, ws.query_params, st.engine)
    if name is not None:
        st.name = name
        ops.metrics.named_stream(name)
    ops.streams.add(st)
    ops.metrics.stream_opened()
    event(log, "open", f"{rate} Hz, {channels} ch, {fmt}", stream=st.id, client=st.client)
    limit = loop.call_later(settings.max_session_s, st.request_stop, "max_session") if settings.max_session_s else None
    sender = asyncio.create_task(st.sender())
    outcome = "client_gone"
    try:
        code, reason = await _serve_stream(st, ws, rate, channels, fmt, settings, model)
        outcome = FINISH.get(reason, (None, "error"))[1]
    except WebSocketDisconnect:
        code, reason = None, "client gone"
    except Exception:  # a bug must end only this stream, with a log
        log.exception("stream %s failed", st.id)
        event(log, "error", "internal error; see the traceback above", level=logging.ERROR, stream=st.id,
              client=st.client)
        st.push(_error("internal server error; the stream is closed"))
        code, reason, outcome = CLOSE_INTERNAL, "internal error", "error"
    finally:
        if limit is not None:
            limit.cancel()
        ops.streams.discard(st)  # no longer counts against max_streams: the client sees its close next
        ops.closing.add(st)
        if channel is not None:  # its watchers see the end even when the source just vanished
            channel_end = lambda: st.engine.summary().to_json(st.engine.stats, "source disconnected",  # noqa: E731
                                                              dropped_results=st.dropped)
            hub.release(channel, st, channel_end)
        st.engine.close()
    if st.recorder is not None:
        st.recorder.close(st.engine.summary(), reason or "client went away")
    try:
        if code is None:  # the client went away
            sender.cancel()
            return
        st.out.put("stop", None)
        try:  # deliver what is queued; a client that does not read cannot hold us
            await asyncio.wait_for(sender, timeout=st.time_left(SEND_DRAIN_S))
        except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
            sender.cancel()
        await _close(ws, code, reason)
    finally:
        st.count_skipped()
        ops.metrics.stream_closed(outcome)
        ops.closing.discard(st)
        event(log, "close", level=logging.INFO, stream=st.id, client=st.client,
              duration_s=round(time.monotonic() - st.opened, 3), results=st.sent, reason=reason, outcome=outcome,
              code=code, dropped=st.dropped or None)


class _Receiver:
    """The receive side of one stream: bytes -> samples -> `engine.feed`, text events, the
    idle deadline; `handle` answers None (go on), a finish reason, or (close code, reason)."""

    def __init__(self, st: _Stream, rate: int, channels: int, fmt: str, settings: ServerSettings):
        self.st, self.rate, self.channels, self.settings = st, rate, channels, settings
        self.dtype = FORMATS[fmt]
        self.frame = self.dtype.itemsize * channels  # bytes per sample frame (all channels)
        self.pending = b""  # a partial sample frame carried over to the next message
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + settings.idle_timeout_s

    def too_big(self, what: str) -> tuple[int, str]:
        self.st.metrics.reject("frame_too_big")
        self.st.push(_error(f"a {what} is over the limit of {self.settings.max_frame_bytes} bytes; send smaller "
                            "frames (the only text message is {\"event\": \"end\"})"))
        return CLOSE_TOO_BIG, "frame too large"

    def handle(self, msg: dict):
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        data, text = msg.get("bytes"), msg.get("text")
        if data is not None:
            return self.audio(data)
        if text is not None:
            return self.text(text)
        return None

    def audio(self, data: bytes):
        if len(data) > self.settings.max_frame_bytes:
            return self.too_big(f"binary frame of {len(data)} bytes")
        self.deadline = self.loop.time() + self.settings.idle_timeout_s
        if self.pending:
            data = self.pending + data
        usable = len(data) - len(data) % self.frame
        self.pending = data[usable:]
        if usable:
            samples = np.frombuffer(data, dtype=self.dtype, count=usable // self.dtype.itemsize)
            samples = samples.reshape(-1, self.channels)
            try:
                self.st.engine.feed(samples, self.rate)  # returns at once: inference is on the worker thread
            except ValueError as exc:  # not expected after our own checks; the stream survives
                self.st.push(_error(f"audio rejected: {exc}"))
            else:
                self.st.audio_received(len(samples) / self.rate)
        return None

    def text(self, text: str):
        if len(text) > self.settings.max_frame_bytes:  # (characters: at least as many bytes)
            return self.too_big(f"text frame of {len(text)} characters")
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):  # (deeply nested arrays exhaust the decoder's recursion)
            self.st.push(_error(f"a text frame must be a JSON object such as {{\"event\": \"end\"}}; got {text[:80]!r}"))
            return None
        if isinstance(msg, dict) and msg.get("event") == "end":
            return "end of stream"
        self.st.push(_error(f"unknown message {text[:80]!r}; the only text message is {{\"event\": \"end\"}} "
                            "(audio goes in binary frames)"))
        return None


async def _finish(st: _Stream, reason: str) -> tuple[int, str]:
    """The last window's result, then the summary; (close code, reason)."""
    engine = st.engine
    engine.flush()
    # the worker thread classifies the last window; wait for it off the event loop
    await asyncio.to_thread(engine.drain, st.time_left(FINISH_DRAIN_S))
    # drain() returns once the last window is done, but its result may still be on its way
    # (worker thread -> call_soon_threadsafe): wait until every result the engine counted
    # (stats takes the engine's result lock, so the counts are complete) reached our queue
    stats = engine.stats
    expected = stats.windows_classified + stats.windows_silent
    for _ in range(1000):
        if st.results_seen >= expected:
            break
        await asyncio.sleep(0.005)
    st.push(engine.summary().to_json(engine.stats, reason, dropped_results=st.dropped, stream_id=st.id))
    return FINISH[reason][0], reason


async def _serve_stream(st: _Stream, ws, rate, channels, fmt, settings: ServerSettings, model):
    """The receive loop of one stream; returns (close code, reason)."""
    c = st.engine.config
    st.push({"event": "ready", "model": model.name, "labels": st.engine.visible_labels,
             "window_s": c.window_s, "hop_s": c.hop_s, "min_window_s": c.min_window_s,
             "smoothing_s": c.smoothing_s, "top_k": c.top_k, "sample_rate": rate, "channels": channels,
             "format": fmt, "max_frame_bytes": settings.max_frame_bytes,
             "idle_timeout_s": settings.idle_timeout_s, "max_session_s": settings.max_session_s,
             "stream_id": st.id, "genres": st.engine.genres,
             "colours": genre_colours(st.engine.genres, st.engine.genres)})
    rx = _Receiver(st, rate, channels, fmt, settings)
    # one receive in flight at a time, raced against a stop request (drain, --max-session) and
    # the idle deadline; a receive cut short by a stop is simply never read
    stop = asyncio.ensure_future(st.stopping.wait())
    recv = None
    try:
        while True:
            if recv is None:
                recv = asyncio.ensure_future(ws.receive())
            await asyncio.wait({recv, stop}, timeout=max(rx.deadline - rx.loop.time(), 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
            if recv.done():
                msg, recv = recv.result(), None  # (a disconnect raises here, even when stopping)
                if (result := rx.handle(msg)) is not None:
                    return await _finish(st, result) if isinstance(result, str) else result
            if st.stop_reason is not None:
                return await _finish(st, st.stop_reason)
            if recv is not None and rx.loop.time() >= rx.deadline:
                return await _finish(st, "idle timeout")
    finally:
        stop.cancel()
        if recv is not None:
            recv.cancel()
