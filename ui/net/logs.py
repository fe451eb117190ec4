"""The server's log lines: plain text for a person, or one JSON object per line for a log
shipper (`genre-serve --log-format json`), and the stream events both carry.

A stream event (`event(log, "open", stream=..., client=...)`) is one record with fixed
fields: time, level, event (start, open, close, reject, error, drain, stop), the stream's short random id,
the client's address, and for a close its duration, results and reason. Other records
(uvicorn's, the engine's) come out in the same format with event "log". The token never
appears: `RedactToken` hides `token=...` in every record before any formatter sees it, and no
event carries request headers.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time

EVENTS = ("start", "open", "close", "reject", "error", "drain", "stop")
FIELDS = ("stream", "client", "duration_s", "results", "reason", "outcome", "code")  # the order in text lines


def stream_id() -> str:
    """A short random id tying a stream's log lines (and its `ready` event) together."""
    return secrets.token_hex(4)


class RedactToken(logging.Filter):
    """uvicorn logs each WebSocket request with its query string: hide ?token=... (on the
    handler, so every logger's records pass through it)."""

    pattern = re.compile(r"(token=)[^&\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(self.pattern.sub(r"\1***", a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str):
            record.msg = self.pattern.sub(r"\1***", record.msg)
        return True


PROBES = ("/livez", "/readyz", "/healthz", "/metrics")


class ProbesAtDebug(logging.Filter):
    """uvicorn logs every request at INFO; probes and scrapes come every few seconds and would
    flood the log, so their lines are DEBUG (shown with --log-level debug). On uvicorn.access."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        path = args[2].split("?", 1)[0] if len(args) >= 3 and isinstance(args[2], str) else None
        if path not in PROBES or record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601, ms), level, event, logger, message,
    then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        ms = int(record.msecs)
        rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z",
               "level": record.levelname.lower(), "event": getattr(record, "event", "log"),
               "logger": record.name, "message": record.getMessage()}
        rec.update(getattr(record, "fields", {}))
        if record.exc_info:
            rec["exception"] = self.formatException(record.exc_info)
        return json.dumps(rec, default=str)


def event(log: logging.Logger, name: str, message: str = "", level: int = logging.INFO, **fields) -> None:
    """Log a stream event; fields that are None are left out. The text line reads
    "<event> stream=... client=... <message>"."""
    fields = {k: v for k, v in fields.items() if v is not None}
    ordered = [k for k in FIELDS if k in fields] + [k for k in fields if k not in FIELDS]
    text = " ".join([name, *(f"{k}={fields[k]}" for k in ordered), *([message] if message else [])])
    log.log(level, "%s", text, extra={"event": name, "fields": {k: fields[k] for k in ordered}})


def setup_logging(fmt: str = "text", level: str = "info") -> logging.Handler:
    """Route every logger (ours, uvicorn's, the engine's) to one stderr handler in `fmt`
    ("text" or "json"); returns the handler. uvicorn must then be started with
    log_config=None so it keeps these handlers."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactToken())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own handlers would bypass ours
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
        lg.setLevel(level.upper())
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, ProbesAtDebug) for f in access.filters):
        access.addFilter(ProbesAtDebug())
    return handler
