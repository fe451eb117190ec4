"""A client of the network API (`genre-serve`) that is an engine like StreamEngine
(`stream.protocol.Engine`): a front end drives either without knowing which it holds.

    engine = RemoteEngine("ws://kiosk-server:8765", {"hop": 1}, on_result=print)
    engine.connect(48000, 2)           # blocks until the server is ready (ServerError if not)
    engine.feed(block, 48000)          # float/int (n,) or (n, channels); returns at once
    engine.flush(); engine.drain()     # end of input: last results and the server's summary
    engine.close()

`feed`, `flush`, `drain`, `close`, `failed()`, `config`, `stats`, `summary()`, `latest` and
`on_result` mean what they mean on a local engine, so a front end (the terminal listener) drives
either one.
Audio travels as f32le (exact, 4 bytes a sample); the server resamples and classifies.

A lost connection is reported by `failed()`; with `reconnect=True` the client instead
retries (audio fed meanwhile is dropped and counted in `lost_s`: stale audio replayed in a
burst would only make the server skip windows) and continues with a fresh server session,
whose stream times continue from the audio sent so far. Retrying probes the port with a bare
TCP connect, which costs the server nothing, every `RETRY_S` at most (so a server that is back
is found within about that long), and opens the WebSocket only once the port answers; what
backs off is the log: "still unreachable" lines come after 1, 2, 4, 8, ... failed probes. A
server that closes with 1001 (draining for a restart or a redeploy) is retried at once: behind
a load balancer another instance is usually ready. `on_connection` gets a record per change:
{"event": "disconnected", ...} and {"event": "reconnected", ...}.
"""
from __future__ import annotations

import collections
import json
import logging
import queue
import socket
import threading
import time
from typing import Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect as ws_connect

from .config import EngineConfig
from .records import EngineStats, Result, SessionSummary, ShareTally

log = logging.getLogger(__name__)

SEND_QUEUE_BLOCKS = 500  # feed -> sender bound (seconds of audio at typical block sizes)
RETRY_S = (0.25, 2.0)  # first probe delay, largest delay: a server that is back is found this fast
PROBE_TIMEOUT_S = 1.0  # a TCP connect to a live port on a LAN takes milliseconds
GOING_AWAY = 1001  # the server is draining (restart, redeploy): reconnect at once
_END, _STOP = object(), object()


class ServerError(Exception):
    """The server could not be used. kind: 'unreachable', 'refused' (HTTP 401/403: token or
    origin), 'rejected' (close 1008: bad parameters), 'busy' (1013: at --max-streams),
    'too-big' (1009), 'lost' (the connection dropped mid-stream), 'name-in-use' (1008: another
    source streams under the same name; retried with `reconnect` once connected, since a
    source that vanished without a close holds its name until the server notices)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def retry_delays():
    """Seconds to wait before each reconnection probe: doubling from RETRY_S[0], capped at RETRY_S[1]."""
    delay = RETRY_S[0]
    while True:
        yield delay
        delay = min(delay * 2, RETRY_S[1])


def _log_attempt(n: int) -> bool:
    """Say something after failed attempt n only for n = 1, 2, 4, 8, ...: quiet logs, eager probes."""
    return n & (n - 1) == 0


def listen_url(url: str, params: dict) -> str:
    """ws://host:port[/path] + the stream's query parameters (path defaults to /v1/listen)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"server URL {url!r} must look like ws://HOST:PORT (or wss://)")
    path = parts.path if parts.path not in ("", "/") else "/v1/listen"
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


class RemoteEngine:
    def __init__(self, url: str, options: dict | None = None, *, token: str | None = None,
                 on_result: Callable[[Result], None] | None = None,
                 on_event: Callable[[str], None] | None = None,
                 on_connection: Callable[[dict], None] | None = None,
                 reconnect: bool = False, open_timeout: float = 10.0):
        """options: window / hop / smoothing / top_k for the server's engine (None = server default),
        name: the stream's name, for screens that watch it (/v1/watch).
        on_event(message): server `error` events and reconnection notices, for the user.
        on_connection(record): {"event": "disconnected" | "reconnected", ...} (on the client's thread)."""
        self.url = url
        self.options = {k: v for k, v in (options or {}).items() if v is not None}
        listen_url(url, {})  # a malformed URL fails here, not in a thread
        self.token = token
        self.on_result = on_result
        self.on_event = on_event
        self.on_connection = on_connection
        self.reconnect = reconnect
        self.open_timeout = open_timeout
        self.rate: int | None = None
        self.channels: int | None = None
        self.ready: dict | None = None
        self.config: EngineConfig | None = None
        self.model_name: str | None = None
        self.latest: Result | None = None
        self.reconnects = 0
        self.dropped_blocks = 0  # audio fed while disconnected or faster than the link
        self.disconnects = 0  # sessions lost (with reconnect)
        self.lost_s = 0.0  # seconds of audio dropped while disconnected
        self.disconnected_since: float | None = None  # time.monotonic() of the current outage
        self._q: queue.Queue = queue.Queue(maxsize=SEND_QUEUE_BLOCKS)
        self._ws = None
        self._connected = threading.Event()
        self._ended = threading.Event()  # the last session finished (summary or failure)
        self._closing = False
        self._flushed = False  # `end` was asked for: a close now finishes the stream
        self._close_code: int | None = None  # how the last session closed: 1001 is retried at once
        self._error: str | None = None
        self._runner: threading.Thread | None = None
        self._lock = threading.Lock()
        # tallies over all sessions (a server summary covers one session only)
        self._summaries: list[dict] = []
        self._session_results = 0
        self._offset_s = 0.0  # stream time of the current session's start
        self._sent_s = 0.0
        self._infer_ms: collections.deque = collections.deque(maxlen=512)
        self._n_classified = self._n_silent = 0
        self._shares = ShareTally()
        self._last_t: float | None = None

    # ---- connection --------------------------------------------------------------
    def _open(self):
        params = {"sample_rate": self.rate, "channels": self.channels, "format": "f32le", **self.options}
        url = listen_url(self.url, params)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            ws = ws_connect(url, additional_headers=headers, open_timeout=self.open_timeout,
                         max_size=4 << 20, close_timeout=5)
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
            hint = {401: "wrong or missing token: pass --token or set GENRE_SERVER_TOKEN",
                    403: "refused (origin not allowed, or wrong token)"}.get(status, "")
            raise ServerError("refused", f"the server at {self.url} refused the stream: HTTP {status} "
                                         f"{body or hint}".strip()) from None
        except (InvalidURI, ValueError) as exc:
            raise ServerError("unreachable", f"bad server URL {self.url!r}: {exc}") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ServerError("unreachable", f"cannot reach the server at {self.url}: "
                                             f"{exc or type(exc).__name__}. Is `genre-serve` "
                                             "running there?") from None
        try:
            first = json.loads(ws.recv(timeout=self.open_timeout))
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            ws.close()
            raise ServerError("busy" if code == 1013 else "lost",
                              f"the server at {self.url} closed the stream before it was ready ({exc})") from None
        if first.get("event") != "ready":
            message = first.get("message", first)
            try:
                ws.recv(timeout=2)
            except Exception as exc:
                code = getattr(getattr(exc, "rcvd", None), "code", None)
            else:
                code = None
            ws.close()
            kind = {1013: "busy", 1008: "rejected", 1009: "too-big"}.get(code, "rejected")
            if first.get("reason") == "name_in_use":  # not a bad request: another source has the name
                kind = "name-in-use"
            raise ServerError(kind, f"the server rejected the stream: {message}")
        return ws, first

    def connect(self, sample_rate: int, channels: int) -> dict:
        """Open the stream; returns the server's `ready` event. Raises ServerError (with
        `reconnect`, 'busy' and 'unreachable' are retried first, up to `open_timeout` x 3)."""
        self.rate, self.channels = int(sample_rate), int(channels)
        deadline = time.monotonic() + 3 * self.open_timeout
        for delay in retry_delays():
            try:
                ws, ready = self._open()
                break
            except ServerError as exc:
                if not self.reconnect or exc.kind not in ("busy", "unreachable", "lost") or time.monotonic() > deadline:
                    raise
                self._notify(f"{exc}; retrying in {delay:.1f} s")
                time.sleep(delay)
        self._start_session(ws, ready)
        self._runner = threading.Thread(target=self._run, name="remote-engine", daemon=True)
        self._runner.start()
        return ready

    def _start_session(self, ws, ready):
        self._ws, self.ready = ws, ready
        self.model_name = ready.get("model")
        d = EngineConfig()  # (a server older than a field of `ready` ran with its default)
        self.config = EngineConfig(window_s=ready["window_s"], hop_s=ready["hop_s"],
                                   min_window_s=ready.get("min_window_s", d.min_window_s),
                                   smoothing_s=ready.get("smoothing_s", d.smoothing_s), top_k=ready.get("top_k", d.top_k))
        with self._lock:
            self._offset_s = self._sent_s
            self._last_t = None
            self._session_results = 0
        self._connected.set()

    def _run(self):
        while True:
            outcome = self._session()
            if outcome is None or self._closing:  # finished normally
                break
            if not self.reconnect:
                self._error = outcome
                break
            if not self._reconnect(outcome):
                return
            if self._closing:
                break
        self._ended.set()

    def _reconnect(self, outcome: str) -> bool:
        """Probe until the server takes a new session; False when retrying cannot help."""
        self.disconnects += 1
        self.disconnected_since = since = time.monotonic()
        self._notify(f"{outcome}; reconnecting")
        self._connection({"event": "disconnected", "reason": outcome, "time_s": round(self._sent_s, 3)})
        delays = retry_delays()
        wait = 0.0 if self._close_code == GOING_AWAY else next(delays)
        attempt = 0
        while not self._closing:
            time.sleep(wait)
            wait = next(delays)
            attempt += 1
            try:
                if not self._probe():
                    raise ServerError("unreachable", f"nothing answers at {self.url}")
                ws, ready = self._open()
            except ServerError as exc:
                if exc.kind in ("refused", "rejected"):  # retrying cannot help
                    self._error = str(exc)
                    self._ended.set()
                    return False
                if _log_attempt(attempt):
                    self._notify(f"{exc}; still retrying every {RETRY_S[1]:g} s at most "
                                 f"({attempt} attempt{'s' if attempt > 1 else ''}, {time.monotonic() - since:.0f} s)")
                continue
            self.reconnects += 1
            outage = time.monotonic() - since
            self.disconnected_since = None
            self._notify(f"reconnected to {self.url} (session {self.reconnects + 1}) after {outage:.1f} s; "
                         f"{self.lost_s:.1f} s of audio lost while disconnected so far")
            self._connection({"event": "reconnected", "session": self.reconnects + 1, "outage_s": round(outage, 2),
                              "lost_s": round(self.lost_s, 2)})
            self._start_session(ws, ready)
            return True
        return True

    def _probe(self) -> bool:
        """A bare TCP connect to the server's port: does anything listen there?"""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S):
                return True
        except OSError:
            return False

    def _connection(self, record: dict) -> None:
        if self.on_connection is not None:
            try:
                self.on_connection(record)
            except Exception:
                log.exception("on_connection callback failed")

    def _session(self) -> str | None:
        """Run one connected session; None when it ended with the server's summary, else why not."""
        ws = self._ws
        sender = threading.Thread(target=self._send_loop, args=(ws,), name="remote-sender", daemon=True)
        sender.start()
        outcome, self._close_code = None, None
        try:
            for text in ws:
                if isinstance(text, bytes):
                    continue
                self._handle(json.loads(text))
            # closed normally (1000, or 1001: the server is going away)
            code = self._close_code = ws.close_code
            last = self._summaries[-1] if self._summaries and self._summaries[-1].get("_session") == id(ws) else None
            if code == GOING_AWAY and not self._closing and not self._flushed:
                outcome = f"connection to {self.url} lost (close code {code}: the server is shutting down)"
            elif last is None:
                outcome = f"the server closed the stream ({ws.close_reason or 'no reason given'})"
            elif last.get("reason") in ("idle timeout", "max_session") and not self._closing:
                outcome = f"the server closed the stream ({last['reason']})"
        except ConnectionClosed as exc:
            code = self._close_code = exc.rcvd.code if exc.rcvd else 1006
            reason = exc.rcvd.reason if exc.rcvd and exc.rcvd.reason else "connection dropped"
            outcome = f"connection to {self.url} lost (close code {code}: {reason})"
        except Exception as exc:  # a malformed message: a bug on one side; do not hang
            outcome = f"connection to {self.url} failed: {type(exc).__name__}: {exc}"
        self._connected.clear()
        try:
            self._q.put_nowait(_STOP)
        except queue.Full:
            pass
        sender.join(timeout=5)
        ws.close()
        self._drop_queued()
        return outcome

    def _drop_queued(self):
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple):  # (data, seconds): audio that never left
                self.dropped_blocks += 1
                if self.reconnect:
                    self.lost_s += item[1]

    def _send_loop(self, ws):
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            try:
                if item is _END:
                    ws.send(json.dumps({"event": "end"}))
                else:
                    data, seconds = item
                    ws.send(data)
                    with self._lock:
                        self._sent_s += seconds
            except Exception:  # the receive side reports the lost connection
                return

    def _handle(self, msg: dict):
        event = msg.get("event")
        if event == "result":
            res = Result.from_json(msg, self._offset_s)
            with self._lock:
                self._session_results += 1
                self._tally(res)
                self.latest = res
            if self.on_result is not None:
                try:
                    self.on_result(res)
                except Exception:
                    log.exception("on_result callback failed")
        elif event == "summary":
            msg["_session"] = id(self._ws)
            with self._lock:
                self._summaries.append(msg)
        elif event == "error":
            self._notify(f"server: {msg.get('message')}")

    def _tally(self, res: Result):
        dt = self.config.hop_s if self._last_t is None else max(res.time_s - self._last_t, 0.0)
        self._last_t = res.time_s
        if res.silent:
            self._n_silent += 1
            self._shares.add(dt, None, None)
        else:
            self._n_classified += 1
            self._infer_ms.append(res.inference_ms)
            self._shares.add(dt, res.genre, res.label, res.no_music)

    def _notify(self, message: str):
        if self.on_event is not None:
            try:
                self.on_event(message)
            except Exception:
                log.exception("on_event callback failed")

    # ---- the engine surface ----------------------------------------------------------
    def feed(self, samples, sample_rate) -> None:
        """Queue a chunk for the server; returns at once. Dropped (and counted) while the
        connection is down or when the link cannot keep up."""
        if self.rate is None:
            raise RuntimeError("call connect(sample_rate, channels) before feed()")
        if int(sample_rate) != self.rate:
            raise ValueError(f"this stream was opened at {self.rate} Hz; got a chunk at {sample_rate} Hz")
        arr = np.asarray(samples)
        ch = 1 if arr.ndim == 1 else arr.shape[1]
        if ch != self.channels:
            raise ValueError(f"this stream was opened with {self.channels} channel(s); got a chunk with {ch}")
        if arr.dtype.kind in "iu":
            scale = {1: 128.0, 2: 32768.0, 4: 2147483648.0}[arr.dtype.itemsize]
            arr = (arr.astype(np.float32) - (128.0 if arr.dtype.kind == "u" else 0.0)) / scale
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        if not self._connected.is_set():
            self.dropped_blocks += 1
            if self.disconnected_since is not None:
                self.lost_s += len(arr) / self.rate
            return
        try:
            self._q.put_nowait((data, len(arr) / self.rate))
        except queue.Full:
            self.dropped_blocks += 1

    def flush(self) -> None:
        """End of input: the server classifies the tail and sends its summary."""
        if self._connected.is_set():
            self._flushed = True
            self._q.put(_END)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait for the server's summary (after `flush`); False on timeout."""
        return self._ended.wait(timeout)

    def failed(self) -> str | None:
        """Why the connection is gone (and not being retried); None while it is fine."""
        return self._error

    def close(self) -> None:
        """End the stream: ask for the summary (briefly) if still connected, then disconnect."""
        if self._closing:
            return
        if self._connected.is_set() and not self._ended.is_set():
            self.flush()
            self._ended.wait(5.0)
        self._closing = True
        if self._ws is not None:
            self._ws.close()
        if self._runner is not None:
            self._runner.join(timeout=10)

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def genres(self) -> list[str]:
        """[]: the server's genres come with its results (`Result.genre_scores`)."""
        return []

    @property
    def min_audio_s(self) -> float:
        """0.0: the server's model's minimum is not known here."""
        return 0.0

    @property
    def visible_labels(self) -> list[str]:
        """[]: the server's labels come with its results (`Result.scores`)."""
        return []

    @property
    def genre_level(self) -> None:
        """None: how the server's labels map to genres is not known here."""
        return None

    @property
    def disconnected(self) -> bool:
        """True during an outage that is being retried (`reconnect=True`)."""
        return self.disconnected_since is not None

    def _server_summary(self) -> dict | None:
        """The server's summary when it covers the whole stream (one session)."""
        if self.reconnects == 0 and len(self._summaries) == 1:
            return self._summaries[0]
        return None

    def summary(self) -> SessionSummary:
        s = self._server_summary()
        if s is not None:
            return SessionSummary(duration_s=s["duration_s"], silent_s=s["silent_s"], shares=dict(s["shares"]),
                                  dominant=s["dominant"], genre_shares=dict(s.get("genre_shares") or {}),
                                  dominant_genre=s.get("dominant_genre"), styles=dict(s.get("styles") or {}),
                                  no_music_s=s.get("no_music_s") or 0.0)
        with self._lock:
            return self._shares.summary()

    @property
    def stats(self) -> EngineStats:
        hop = self.config.hop_s if self.config else 1.0
        s = self._server_summary()
        with self._lock:
            ms = np.array(self._infer_ms) if self._infer_ms else np.zeros(1)
            lag = max(self._sent_s - self.latest.time_s, 0.0) if self.latest else 0.0
            skipped = sum(x.get("windows_skipped", 0) for x in self._summaries)
            errors = sum(x.get("errors", 0) for x in self._summaries)
            classified, silent, sent = self._n_classified, self._n_silent, self._sent_s
        if s is not None:  # the server's own counts (it may have classified windows we never got)
            classified, silent = s["windows_classified"], s["windows_silent"]
        mean = float(ms.mean())
        return EngineStats(windows_classified=classified, windows_skipped=skipped, windows_silent=silent,
                           errors=errors, last_error=self._error, inference_ms_mean=mean,
                           inference_ms_p95=float(np.percentile(ms, 95)), real_time_factor=mean / (hop * 1000.0),
                           samples_received=int(round(sent * (self.rate or 0))), seconds_received=sent,
                           bad_samples_replaced=0, lag_s=lag)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
