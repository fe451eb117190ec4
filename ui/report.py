"""One vocabulary for readouts: the JSON records of a result and of a session summary.

`cli_listen.py --json` prints them one a line and the WebSocket server (stream/server.py)
sends them as its `result` and `summary` events, so a kiosk can switch between the two
without changing its parser. Front ends add their own counters as extra fields
(the CLI: input overflows; the server: results dropped for a slow reader).
"""
from __future__ import annotations

import json
import math


def _num(x, nd=4):
    """Rounded float, or None for None/NaN/inf (JSON has no NaN)."""
    return round(float(x), nd) if x is not None and math.isfinite(x) else None


def result_record(res, **extra) -> dict:
    """A `stream.Result` as a JSON-ready dict (`event: "result"`); `extra` fields are appended."""
    rec = {
        "event": "result",
        "time_s": _num(res.time_s, 3),
        "label": res.label,
        "scores": {k: _num(v) for k, v in res.scores.items()},
        "silent": res.silent,
        "level_dbfs": _num(res.level_dbfs, 1),
        "window_s": _num(res.window_s, 3),
        "inference_ms": _num(res.inference_ms, 1),
        "latency_ms": _num(res.latency_ms, 1),
    }
    rec.update(extra)
    return rec


def summary_record(summary, stats, reason: str, **extra) -> dict:
    """A `SessionSummary` plus the engine's `EngineStats` counters (`event: "summary"`)."""
    rec = {
        "event": "summary",
        "reason": reason,
        "duration_s": _num(summary.duration_s, 2),
        "silent_s": _num(summary.silent_s, 2),
        "dominant": summary.dominant,
        "shares": {k: _num(v) for k, v in summary.shares.items()},
        "windows_classified": stats.windows_classified,
        "windows_silent": stats.windows_silent,
        "windows_skipped": stats.windows_skipped,
        "errors": stats.errors,
        "inference_ms_mean": _num(stats.inference_ms_mean, 1),
        "inference_ms_p95": _num(stats.inference_ms_p95, 1),
        "real_time_factor": _num(stats.real_time_factor),
        "seconds_received": _num(stats.seconds_received, 3),
    }
    rec.update(extra)
    return rec


def dumps(record: dict) -> str:
    """One JSON line (no NaN: `_num` already mapped non-finite numbers to null)."""
    return json.dumps(record, allow_nan=False)
