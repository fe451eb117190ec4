"""What an operator's tooling asks the server: the HTTP routes for probes and scrapes, and the
state behind them (ready, draining, the open streams).

    GET /livez    200 while the process answers (a liveness probe: restart it when this fails)
    GET /readyz   200 once the model is loaded and warmed up and the server is not draining;
                  503 {"status": "unavailable", "reason": "warming up" | "draining" | ...}
                  (a readiness probe: send no new streams while it fails)
    GET /healthz  {"status": "ok", "model", "streams", "max_streams"} (the details with the token)
    GET /metrics  Prometheus text format (ui/net/metrics.py); needs the token when there is one

`ServerOps` is the app's operational state (`app.state.ops`): the stream routes register
their streams there and ask `refusal()` before admitting one; `drain()` is what SIGTERM runs
(ui/net/cli.py): readiness turns 503 at once, every open stream is asked to finish (last
results, a summary with reason "shutdown", close 1001), then every watcher is closed (1001,
after its source's summary: ui/net/watch.py), and the call returns when all have closed or the
timeout passed.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import replace

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from .access import require_token, token_ok
from .logs import event
from .metrics import ServerMetrics, backend_of

log = logging.getLogger("ui.net.server")

WATCHER_CLOSE_S = 2.0  # a drain waits at least this long for its watchers' closes
WARMUP_TIMEOUT_S = 120.0  # a first forward slower than this leaves the server unready, with the reason


class ServerOps:
    """Readiness, drain and the open streams of one app."""

    def __init__(self, model, settings):
        self.model, self.settings = model, settings
        self.metrics = ServerMetrics(model.name, backend_of(model))
        self.streams: set = set()  # the stream routes' per-connection objects (each has request_stop)
        self.closing: set = set()  # streams past their last audio, still delivering, closing and being counted
        self.started = time.monotonic()
        self.ready = False
        self.not_ready = "warming up"  # why /readyz says 503 (None once ready)
        self.draining = False
        self.hub = None  # the app's WatchHub (ui/net/watch.py), drained after the streams

    # ---- readiness ---------------------------------------------------------------------
    def warm_up(self) -> None:
        """One real window through the engine and the shared inference worker (the path every
        stream takes), so the first client does not pay for lazy initialisation; then ready.
        Runs on its own thread (ui/net/api.py starts it)."""
        from stream.engine import StreamEngine  # inside: keeps this module importable without the engine

        try:
            c = StreamEngine.resolve(self.settings.engine, self.model)
            # one full-length window: hop = min window = window
            engine = StreamEngine(self.model, replace(c, hop_s=c.window_s, min_window_s=c.window_s))
            try:
                rate = self.model.sample_rate
                n = int(round(c.window_s * rate))
                noise = np.random.default_rng(0).normal(0.0, 0.1, n).astype(np.float32)  # above the silence gate
                engine.feed(noise, rate)
                engine.flush()
                if not engine.drain(WARMUP_TIMEOUT_S):
                    raise TimeoutError(f"the first window took over {WARMUP_TIMEOUT_S:.0f} s")
                if engine.stats.errors:
                    raise RuntimeError(engine.stats.last_error)
            finally:
                engine.close()
        except Exception as exc:  # the server stays up (live) but says why it is not ready
            self.not_ready = f"warm-up failed: {type(exc).__name__}: {exc}"
            event(log, "error", self.not_ready, level=logging.ERROR)
            return
        self.ready, self.not_ready = True, None
        log.info("model warmed up in %.1f s: ready", time.monotonic() - self.started)

    def start_warm_up(self) -> threading.Thread:
        t = threading.Thread(target=self.warm_up, name="warm-up", daemon=True)
        t.start()
        return t

    def readiness(self) -> str | None:
        """None when ready for new streams, else why not."""
        if self.draining:
            return "draining"
        return None if self.ready else self.not_ready

    # ---- admission and drain ---------------------------------------------------------------
    def refusal(self) -> tuple[str, str] | None:
        """(metric reason, message) when a new stream must be refused now, else None."""
        if self.draining:
            return "draining", "the server is shutting down; connect to another instance or retry shortly"
        if len(self.streams) >= self.settings.max_streams:
            return "capacity", f"the server is at its limit of {self.settings.max_streams} streams; try again later"
        return None

    async def drain(self, timeout: float) -> bool:
        """Refuse new streams, ask every open one to finish (reason "shutdown") and wait until
        all have closed or `timeout` passed; True when all closed in time."""
        self.draining = True
        deadline = time.monotonic() + timeout
        event(log, "drain", f"draining {len(self.streams)} stream(s), at most {timeout:g} s", reason="shutdown")
        for st in list(self.streams):
            st.request_stop("shutdown", deadline)
        # until each has had its last results delivered, its close sent and its end counted: a stream
        # that has merely stopped taking audio would otherwise be cut (and go uncounted) by the exit
        while (self.streams or self.closing) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.hub is not None:  # the sources' summaries are queued for their watchers by now
            self.hub.close_all()
            # (a watcher's close is quick; one that will not read gets a moment even past the deadline)
            until = max(deadline, time.monotonic() + WATCHER_CLOSE_S)
            while self.hub.watchers and time.monotonic() < until:
                await asyncio.sleep(0.05)
        left = len(self.streams | self.closing) + (self.hub.watchers if self.hub is not None else 0)
        event(log, "drain", "all streams closed" if not left
              else f"{left} stream(s) or watcher(s) still open at the timeout",
              level=logging.INFO if not left else logging.WARNING, reason="done" if not left else "timeout")
        return not left


def ops_state(request: Request) -> ServerOps:
    return request.app.state.ops


router = APIRouter(tags=["ops"])


@router.get("/livez")
async def livez():
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(ops: ServerOps = Depends(ops_state)):
    why = ops.readiness()
    if why is None:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "unavailable", "reason": why}, status_code=503)


@router.get("/healthz")
async def healthz(request: Request, ops: ServerOps = Depends(ops_state)):
    if not token_ok(ops.settings, request.headers, request.query_params):
        return JSONResponse({"status": "ok"})  # nothing about streams or model for strangers
    return JSONResponse({"status": "ok", "model": ops.model.name, "streams": len(ops.streams),
                         "max_streams": ops.settings.max_streams})


@router.get("/metrics", dependencies=[Depends(require_token)])
async def metrics(ops: ServerOps = Depends(ops_state)):
    body, content_type = ops.metrics.render()
    return Response(body, media_type=content_type)
