"""`genre-serve` (also `python -m ui.net`): the network API on uvicorn, or through Ray Serve.

    genre-serve [--model SPEC] [--host 127.0.0.1] [--port 8765] [--max-streams N] [--token T] [--ray ...]

Parses the flags, loads the model and runs the app of ui/net/api.py under uvicorn; with `--ray`
the same app runs as a Ray Serve ingress (ui/net/ray_ingress.py) in front of a batched model
deployment (ui/net/ray_model.py).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import re
import signal
import sys
import threading

import uvicorn

from stream.errors import ModelLoadError
from stream.models import load_model
from stream.models.remote import import_ray
from ui.history.flags import HistoryError, add_history_flags, history_problems, open_history
from ui.options import add_engine_flags, add_model_flag, engine_config, problems
from ui.report import model_line

from .ray_model import SPEC_HINT
from .settings import TOKEN_ENV, ServerSettings

PROG = "genre-serve"


class _RedactToken(logging.Filter):
    """uvicorn logs each WebSocket request with its query string: hide ?token=..."""

    pattern = re.compile(r"(token=)[^&\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(self.pattern.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self.pattern.sub(r"\1***", record.msg)
        return True


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
        epilog="Exit codes: 0 stopped, 2 bad arguments (or a --history file it cannot use), 4 the model could "
               "not be loaded, "
               "5 the address could not be bound.")
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
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
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
                          max_watchers=args.max_watchers, max_watchers_per_name=args.max_watchers_per_name)


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
                            ("--port", args.port, 0 <= args.port <= 65535)):
        if not ok:
            parser.error(f"{name} {value} is out of range")
    if bad := problems(args) + history_problems(args):
        parser.error("; ".join(bad))
    if args.ray and args.history:
        parser.error("--history is not supported with --ray yet (ingress replicas would share one file)")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    if not _is_loopback(settings.host) and not settings.token:
        print(f"{PROG}: WARNING: listening on {settings.host} without a token: anyone who can reach this "
              f"port can stream audio to it. Set --token or {TOKEN_ENV}.", file=sys.stderr, flush=True)
    if args.ray:
        return _main_ray(args, settings)
    try:
        history = open_history(args)  # a file it cannot use fails now, before the model loads
        model = load_model(args.model)
    except (HistoryError, ModelLoadError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2 if isinstance(exc, HistoryError) else 4
    print(model_line(model), file=sys.stderr, flush=True)
    from .api import create_app  # inside: FastAPI (half a second) stays off the --help path

    try:
        app = create_app(model, settings, history)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    if history is not None:  # SIGTERM ends like Ctrl-C (uvicorn re-raises it after its shutdown), so the
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # finally below writes the last minutes
    try:
        return _run_uvicorn(app, settings, args.log_level)
    finally:
        if history is not None:  # the open streams' last minutes and session ends
            history.close()


def _run_uvicorn(app, settings: ServerSettings, log_level: str) -> int:
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                            ws_max_size=4 * settings.max_frame_bytes,  # over the limit: the app says why
                            ws_ping_interval=20.0, ws_ping_timeout=20.0, lifespan="off")
    for name in ("uvicorn.error", "uvicorn.access"):  # uvicorn.Config has set up its loggers by now
        logging.getLogger(name).addFilter(_RedactToken())
    server = uvicorn.Server(config)

    async def serve():
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:  # the real port (--port 0 picks one), for scripts and tests
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"Listening on ws://{settings.host}:{port}/v1/listen (health: http://{settings.host}:{port}/healthz, "
                  f"kiosk screen: http://{settings.host}:{port}/)", file=sys.stderr, flush=True)
        await task

    try:
        asyncio.run(serve())
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        return 5 if exc.code else 0
    except KeyboardInterrupt:
        pass
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

