"""`genre-serve` (also `python -m ui.net`): the network API on uvicorn, or through Ray Serve.

    genre-serve [--model SPEC] [--host 127.0.0.1] [--port 8765] [--max-streams N] [--token T] [--ray ...]

Parses the flags, loads the model and runs the app of ui/net/api.py under uvicorn; with `--ray`
the same app runs as a Ray Serve ingress (ui/net/ray_ingress.py) in front of a batched model
deployment (ui/net/ray_model.py).

SIGTERM (or the first Ctrl-C) drains before uvicorn's own shutdown, which would cut every
WebSocket with 1012: /readyz turns 503, new streams get 1013 "draining", open ones their last
results, a summary (reason "shutdown") and 1001; then the process exits 0 (at the latest after
--drain-timeout). A second signal exits at once (128 + the signal's number).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time

import uvicorn

from stream.errors import ModelLoadError
from stream.models import load_model
from stream.models.remote import import_ray
from ui.history.flags import HistoryError, add_history_flags, history_problems, open_history
from ui.options import add_engine_flags, add_model_flag, engine_config, problems
from ui.report import model_line

from .logs import event, setup_logging
from .ray_model import SPEC_HINT
from .settings import TOKEN_ENV, ServerSettings

PROG = "genre-serve"
log = logging.getLogger("ui.net.server")
UVICORN_GRACE_S = 2.0  # uvicorn's own shutdown after the drain: only connections the drain could not close


_json_banner = False  # --log-format json: the start and stop lines are JSON records too


def say(message: str, kind: str = "start") -> None:
    """A start/stop line for the operator, whatever --log-level (scripts read "Listening on")."""
    if _json_banner:
        message = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "info",
                              "event": kind, "logger": "ui.net.server", "message": message})
    print(message, file=sys.stderr, flush=True)


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value


def _fix_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold where it starts. Every stream allocates buffers of a few
    hundred kB (its ring buffer, frames) and frees them when it closes; glibc raises the
    threshold to the size of the first such block freed, after which these blocks come from
    the heap, fragment it and are not returned: under churn RSS crept up by ~0.25 MB per
    connection (tests/test_reliability.py, bench/soak.py). A fixed threshold keeps them mmapped
    and returned on free. No-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Serve live genre readouts over a WebSocket (see README: 'Network API').",
        epilog="Exit codes: 0 stopped (after the drain on SIGTERM or Ctrl-C), 2 bad arguments (or a --history file "
               "it cannot use), 4 the model could not be loaded, 5 the address could not be bound, 128+N a "
               "second signal N during the drain.")
    add_model_flag(p)  # (the front ends' shared flags: ui/options.py)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--max-streams", type=int, default=16, help="concurrent streams at most (default 16)")
    p.add_argument("--idle-timeout", type=float, default=60.0,
                   help="close a stream that sent no audio for this many seconds (default 60)")
    p.add_argument("--max-frame-bytes", type=int, default=1 << 20, help="largest binary frame (default 1 MiB)")
    p.add_argument("--send-queue", type=int, default=64,
                   help="results buffered per slow client before the oldest are dropped (default 64)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"require this token from every client (default: env {TOKEN_ENV})")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="browser origin allowed to connect, e.g. https://kiosk.example (repeatable; '*' = any)")
    p.add_argument("--max-watchers", type=int, default=64,
                   help="screens watching named streams (/v1/watch) at most, in all (default 64)")
    p.add_argument("--max-watchers-per-name", type=int, default=16,
                   help="screens watching one named stream at most (default 16)")
    add_engine_flags(p)  # the streams' defaults; a client may choose its own in "start"
    p.add_argument("--max-session", type=float, metavar="S",
                   help="end a stream after S seconds (summary reason max_session, close 1000; default: no limit)")
    p.add_argument("--drain-timeout", type=float, default=10.0, metavar="S",
                   help="on SIGTERM, give open streams this long for their last results (default 10)")
    p.add_argument("--kiosk-compute", choices=["server", "device"], default="server",
                   help="what the kiosk page at / does: 'server' streams its microphone here (default); 'device' "
                        "classifies on the screen itself and posts only readouts (?compute= on the page overrides)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="json: one object per line (time, level, event, stream, client, ...) for log shippers")
    add_history_flags(p)  # --history FILE, --history-days N: every stream, per minute (ui/history)
    r = p.add_argument_group("Ray Serve (pip install '.[serve]')")
    r.add_argument("--ray", action="store_true",
                   help="serve through Ray Serve: the model as a batched deployment, this app as its ingress")
    r.add_argument("--replicas", type=int, default=1, help="model replicas with --ray (default 1)")
    r.add_argument("--address", help="with --ray: an existing Ray cluster (HOST:6379); default: start a local Ray")
    return p


def settings_from_args(args) -> ServerSettings:
    return ServerSettings(host=args.host, port=args.port, max_streams=args.max_streams,
                          idle_timeout_s=args.idle_timeout, max_frame_bytes=args.max_frame_bytes,
                          send_queue=args.send_queue, token=args.token or None,
                          allow_origins=tuple(o.rstrip("/") for o in args.allow_origin), engine=engine_config(args),
                          max_watchers=args.max_watchers, max_watchers_per_name=args.max_watchers_per_name,
                          max_session_s=args.max_session, drain_timeout_s=args.drain_timeout,
                          kiosk_compute=args.kiosk_compute)


def main(argv=None) -> int:
    """Console entry point (`genre-serve`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value, ok in (("--max-streams", args.max_streams, args.max_streams >= 1),
                            ("--idle-timeout", args.idle_timeout, args.idle_timeout > 0),
                            ("--max-frame-bytes", args.max_frame_bytes, args.max_frame_bytes >= 64),
                            ("--send-queue", args.send_queue, args.send_queue >= 1),
                            ("--max-watchers", args.max_watchers, args.max_watchers >= 0),
                            ("--max-watchers-per-name", args.max_watchers_per_name, args.max_watchers_per_name >= 0),
                            ("--port", args.port, 0 <= args.port <= 65535),
                            ("--max-session", args.max_session, args.max_session is None or args.max_session > 0),
                            ("--drain-timeout", args.drain_timeout, args.drain_timeout >= 0)):
        if not ok:
            parser.error(f"{name} {value} is out of range")
    if bad := problems(args) + history_problems(args):
        parser.error("; ".join(bad))
    if args.ray and args.history:
        parser.error("--history is not supported with --ray yet (ingress replicas would share one file)")
    setup_logging(args.log_format, args.log_level)
    global _json_banner
    _json_banner = args.log_format == "json"
    settings = settings_from_args(args)
    if not _is_loopback(settings.host) and not settings.token:
        print(f"{PROG}: WARNING: listening on {settings.host} without a token: anyone who can reach this "
              f"port can stream audio to it. Set --token or {TOKEN_ENV}.", file=sys.stderr, flush=True)
    if args.ray:
        return _main_ray(args, settings)
    _fix_mmap_threshold()
    try:
        history = open_history(args)  # a file it cannot use fails now, before the model loads
        model = load_model(args.model)
    except (HistoryError, ModelLoadError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2 if isinstance(exc, HistoryError) else 4
    say(model_line(model))
    from .api import create_app  # inside: FastAPI (half a second) stays off the --help path

    try:
        app = create_app(model, settings, history)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:  # (SIGTERM drains, then returns here: the finally writes the history's last minutes)
        return _run_uvicorn(app, settings, args.log_level)
    finally:
        if history is not None:  # the open streams' last minutes and session ends
            history.close()


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT drains the app's streams (ServerOps.drain)
    before uvicorn's shutdown starts, and whose exit after a drain is 0 (uvicorn would re-raise
    the signal once it is done, and a re-raised SIGTERM kills the process)."""

    def __init__(self, config, ops, drain_timeout: float):
        super().__init__(config)
        self.ops, self.drain_timeout = ops, drain_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.drain_task: asyncio.Task | None = None

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame) -> None:
        # a signal handler: it runs between two bytecodes of the event loop's thread
        if self.drain_task is not None or self.loop is None or not self.started:
            print(f"{PROG}: second signal: exiting now", file=sys.stderr, flush=True)
            os._exit(128 + int(sig))
        self.loop.call_soon_threadsafe(self._start_drain, signal.Signals(sig).name)

    def _start_drain(self, name: str) -> None:
        if self.drain_task is None:
            event(log, "drain", f"{name}: refusing new streams, finishing the open ones", reason="signal")
            self.drain_task = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self.ops.drain(self.drain_timeout)
        finally:
            self.should_exit = True  # now uvicorn's shutdown: listeners closed, whatever is left cut


def _run_uvicorn(app, settings: ServerSettings, log_level: str) -> int:
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, log_config=None,
                            ws_max_size=4 * settings.max_frame_bytes,  # over the limit: the app says why
                            ws_ping_interval=20.0, ws_ping_timeout=20.0, lifespan="off",
                            timeout_graceful_shutdown=UVICORN_GRACE_S)
    server = DrainingServer(config, app.state.ops, settings.drain_timeout_s)

    async def serve():
        server.loop = asyncio.get_running_loop()
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:  # the real port (--port 0 picks one), for scripts and tests
            port = server.servers[0].sockets[0].getsockname()[1]
            say(f"Listening on ws://{settings.host}:{port}/v1/listen (health: http://{settings.host}:{port}/healthz, "
                f"readiness: /readyz, metrics: /metrics, kiosk screen: http://{settings.host}:{port}/)")
        await task

    try:
        asyncio.run(serve())
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        return 5 if exc.code else 0
    except KeyboardInterrupt:
        pass
    if server.drain_task is not None:
        say(f"{PROG}: stopped", "stop")
    return 0


def _main_ray(args, settings: ServerSettings) -> int:
    """--ray: the same app as a Ray Serve ingress in front of a batched model deployment."""
    if args.replicas < 1:
        print(f"{PROG}: error: --replicas must be >= 1", file=sys.stderr, flush=True)
        return 2
    from .ray_ingress import run_server  # inside: FastAPI (half a second) stays off the --help path

    try:
        run_server(args.model, settings, replicas=args.replicas, address=args.address)
    except ModelLoadError as exc:  # Ray not installed / not reachable
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 4
    except Exception as exc:  # a deployment that failed to start (e.g. the model could not load)
        print(f"{PROG}: error: Ray Serve deployment failed: {exc}", file=sys.stderr, flush=True)
        return 4
    print(f"Listening on ws://{settings.host}:{settings.port}/v1/listen through Ray Serve "
          f"({args.replicas} model replica{'s' if args.replicas != 1 else ''})", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    ray, serve = import_ray(SPEC_HINT)
    if not args.address:  # a local Ray lives and dies with this process
        serve.shutdown()
    ray.shutdown()
    return 0

