#!/usr/bin/env python3
"""Soak: `genre-serve` (python -m ui.net) for a long while under a steady real-time load with
client churn; does anything creep?

    python -m bench.soak                      # 16 clients, 60 minutes
    python -m bench.soak --minutes 10         # a short run

Set-up: the bundled MusiCNN (offline; 9 s windows, 1 s hop), the server a subprocess on
127.0.0.1. `--clients` real-time clients stream real music (asc-music, 22050 Hz mono s16le,
100 ms chunks paced to wall clock, each from its own offset, looped); every minute `--replace`
of them (10 %, rounded up) send `end`, wait for their summary and are replaced by new ones.

Every `--every` seconds (30): the server process's RSS (at that moment, and the lowest of the
interval's 0.5 s ticks: the working set between forwards, which a batch does not swing), open
fds and threads (psutil), the readouts received per second and the p95 latency of that
interval (the chunk that completed a window was handed to ws.send -> its readout arrived),
and the streams open (/metrics).
At the end: the slope per hour of each (least squares over the samples after the first
`--settle` minutes, when allocator pools and the runtime's arenas have grown to their
working size; for RSS also its standard error and the slope of its 5-minute floors), the
errors (error events, closes other than 1000 after `end`, exceptions, server
log lines at ERROR), a CSV and a PNG plot (Pillow) in --out.
Targets (issue 21): RSS slope <= 5 MB/hour, 0 errors, p95 flat.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from bench import common as C

from harness.music import TRACKS, music
from harness.server import ServerProcess, metric, pcm, scrape

RATE, CHUNK_S, LOOP_S = 22050, 0.1, 60.0


@dataclass
class Tally:
    """What the clients saw, shared by all of them (one event loop: no locks)."""

    results: list = field(default_factory=list)  # (arrival monotonic, latency s)
    errors: list = field(default_factory=list)
    sessions: int = 0
    summaries: int = 0


async def client(k: int, url: str, data: bytes, tally: Tally, stop: asyncio.Event) -> None:
    """Stream `data` (looped) in real time until `stop`, then `end`; record every readout."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    bytes_per_s = RATE * 2
    step = int(CHUNK_S * bytes_per_s)
    sent: list[tuple[float, float]] = []  # (wall time, stream seconds sent so far)
    tally.sessions += 1
    try:
        async with connect(url, open_timeout=60, close_timeout=30) as ws:
            first = json.loads(await ws.recv())
            if first["event"] != "ready":
                tally.errors.append(f"client {k}: {first}")
                return

            async def reader():  # a broken connection is counted once, by the sender below
                with contextlib.suppress(ConnectionClosed):
                    await read_all()

            async def read_all():
                async for text in ws:
                    msg = json.loads(text)
                    if msg["event"] == "result":
                        t = msg["time_s"]
                        when = next((w for w, upto in sent if upto >= t - 1e-6), None)
                        now = time.monotonic()
                        tally.results.append((now, now - when if when is not None else math.nan))
                        while len(sent) > 1 and sent[0][1] < t - 1e-6:
                            sent.pop(0)
                    elif msg["event"] == "error":
                        tally.errors.append(f"client {k}: {msg['message']}")
                    elif msg["event"] == "summary":
                        tally.summaries += 1

            task = asyncio.create_task(reader())
            t0, i, offset = time.monotonic(), 0, (k * 7919 * step) % len(data)
            while not stop.is_set() and not task.done():
                await asyncio.sleep(max(t0 + i * CHUNK_S - time.monotonic(), 0.0))
                start = (offset + i * step) % (len(data) - step)
                await ws.send(data[start:start + step])
                i += 1
                sent.append((time.monotonic(), i * CHUNK_S))
            await ws.send(json.dumps({"event": "end"}))
            await asyncio.wait_for(task, 120)
            if ws.close_code != 1000:
                tally.errors.append(f"client {k}: closed {ws.close_code} {ws.close_reason}")
    except (ConnectionClosed, OSError, asyncio.TimeoutError) as exc:
        tally.errors.append(f"client {k}: {type(exc).__name__}: {exc}")


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over ts (seconds), per hour."""
    if len(ts) < 2:
        return math.nan
    return float(np.polyfit(np.asarray(ts) / 3600.0, np.asarray(ys, dtype=float), 1)[0])


def slope_error_per_hour(ts: list[float], ys: list[float]) -> float:
    """Standard error of that slope: RSS swings by ~100 MB with the batch sizes, so a short run
    cannot tell a 5 MB/hour creep from noise; this says how much it can tell."""
    if len(ts) < 3:
        return math.nan
    t, y = np.asarray(ts) / 3600.0, np.asarray(ys, dtype=float)
    fit = np.polyval(np.polyfit(t, y, 1), t)
    return float(np.sqrt(np.sum((y - fit) ** 2) / (len(t) - 2) / np.sum((t - t.mean()) ** 2)))


def floors(ts: list[float], ys: list[float], block_s: float = 300.0) -> tuple[list[float], list[float]]:
    """(block middle, lowest value) per whole block: a leak lifts the floor, a busy moment does not."""
    out_t, out_y = [], []
    if not ts:
        return out_t, out_y
    start = ts[0]
    while start + block_s <= ts[-1] + 1e-6:
        ys_in = [y for t, y in zip(ts, ys) if start <= t < start + block_s]
        if ys_in:
            out_t.append(start + block_s / 2)
            out_y.append(min(ys_in))
        start += block_s
    return out_t, out_y


async def soak(srv: ServerProcess, args) -> tuple[list[dict], Tally]:
    import psutil

    proc = psutil.Process(srv.proc.pid)
    audio = [pcm(*music(t, 30, LOOP_S), RATE, 1, "s16le") for t in TRACKS]
    url = srv.url(sample_rate=RATE, channels=1, format="s16le", hop=1)
    tally = Tally()
    live: list[tuple[asyncio.Task, asyncio.Event]] = []
    retired: list[asyncio.Task] = []
    serial = 0

    def start_one():
        nonlocal serial
        stop = asyncio.Event()
        live.append((asyncio.create_task(client(serial, url, audio[serial % len(audio)], tally, stop)), stop))
        serial += 1

    for _ in range(args.clients):
        start_one()
    t0 = time.monotonic()
    end = t0 + args.minutes * 60.0
    next_sample, next_replace = t0 + args.every, t0 + 60.0
    samples: list[dict] = []
    last_t, last_n = t0, 0
    low = math.inf  # RSS between forwards: the lowest of the 0.5 s ticks in this interval
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        rss = proc.memory_info().rss / 1e6
        low = min(low, rss)
        if now >= next_replace:  # the oldest 10 % leave cleanly, new ones take their place
            next_replace += 60.0
            for task, stop in live[:math.ceil(args.replace * args.clients)]:
                stop.set()
            for _ in range(math.ceil(args.replace * args.clients)):
                retired.append(live.pop(0)[0])
                start_one()
        if now >= next_sample:
            next_sample += args.every
            window = [lat for t, lat in tally.results[last_n:] if not math.isnan(lat)]
            s = await asyncio.to_thread(scrape, srv)
            row = {"t_s": round(now - t0, 1), "rss_mb": round(rss, 1),
                   "rss_low_mb": round(low, 1),
                   "fds": proc.num_fds(), "threads": proc.num_threads(),
                   "results_per_s": round((len(tally.results) - last_n) / (now - last_t), 2),
                   "p95_ms": round(float(np.percentile(window, 95)) * 1000, 1) if window else math.nan,
                   "streams": int(metric(s, "genre_streams_active")), "errors": len(tally.errors)}
            samples.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            last_t, last_n, low = now, len(tally.results), math.inf
    for task, stop in live:
        stop.set()
    await asyncio.gather(*(t for t, _ in live), *retired)
    return samples, tally


def plot(samples: list[dict], path: str, title: str) -> None:
    """Four small line charts (Pillow): RSS, fds and threads, results/s, p95 latency."""
    from PIL import Image, ImageDraw

    panels = [("RSS (MB)", ["rss_mb", "rss_low_mb"]), ("open fds / threads", ["fds", "threads"]),
              ("readouts per second", ["results_per_s"]), ("p95 latency (ms)", ["p95_ms"])]
    w, h, pad = 900, 220, 50
    img = Image.new("RGB", (w, h * len(panels) + 30), "white")
    d = ImageDraw.Draw(img)
    d.text((pad, 8), title, fill="black")
    ts = [s["t_s"] / 60.0 for s in samples]
    colours = ["#1f5fbf", "#d9661f"]
    for p, (name, keys) in enumerate(panels):
        top = 30 + p * h
        x0, x1, y0, y1 = pad, w - 20, top + 20, top + h - 30
        values = [s[k] for k in keys for s in samples if not math.isnan(s[k])]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        lo, hi = (lo - 1, hi + 1) if hi - lo < 1e-9 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        tmax = max(ts[-1], 1e-9) if ts else 1.0
        d.rectangle([x0, y0, x1, y1], outline="#888888")
        d.text((x0, top + 4), name, fill="black")
        d.text((4, y0), f"{hi:.0f}", fill="#444444")
        d.text((4, y1 - 10), f"{lo:.0f}", fill="#444444")
        d.text((x1 - 60, y1 + 4), f"{tmax:.1f} min", fill="#444444")
        for c, k in enumerate(keys):
            pts = [(x0 + (x1 - x0) * t / tmax, y1 - (y1 - y0) * (s[k] - lo) / (hi - lo))
                   for t, s in zip(ts, samples) if not math.isnan(s[k])]
            if len(pts) > 1:
                d.line(pts, fill=colours[c], width=2)
            if len(keys) > 1:
                d.text((x0 + 200 + 80 * c, top + 4), k, fill=colours[c])
    img.save(path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--replace", type=float, default=0.1, help="share of the clients replaced every minute")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--settle", type=float, default=2.0, help="minutes left out of the slopes")
    p.add_argument("--out", default=str(C.ROOT / "bench" / "soak-out"), help="CSV and PNG go here")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    print(C.cpu_note(), C.load_note(), flush=True)
    srv = ServerProcess("--max-streams", str(2 * args.clients), "--log-level", "warning").wait_ready()
    try:
        samples, tally = asyncio.run(soak(srv, args))
    finally:
        srv.stop()
    server_errors = [l for l in srv.lines if " ERROR " in l or "Traceback" in l]
    late = [s for s in samples if s["t_s"] >= args.settle * 60.0]
    ts = [s["t_s"] for s in late]
    rss = [s["rss_mb"] for s in late]
    floor_t, floor_rss = floors(ts, rss)
    low = [s["rss_low_mb"] for s in late]
    result = {
        "minutes": args.minutes, "clients": args.clients, "sessions": tally.sessions, "summaries": tally.summaries,
        "results": len(tally.results), "client_errors": len(tally.errors), "server_errors": len(server_errors),
        "rss_mb_first_last": (late[0]["rss_mb"], late[-1]["rss_mb"]) if late else None,
        "rss_mb_per_hour": round(slope_per_hour(ts, rss), 2),
        "rss_mb_per_hour_stderr": round(slope_error_per_hour(ts, rss), 2),
        "rss_floor_mb_per_5min": [round(y, 1) for y in floor_rss],
        "rss_floor_mb_per_hour": round(slope_per_hour(floor_t, floor_rss), 2),
        "rss_low_mb_per_hour": round(slope_per_hour(ts, low), 2),
        "rss_low_mb_per_hour_stderr": round(slope_error_per_hour(ts, low), 2),
        "fds_per_hour": round(slope_per_hour(ts, [s["fds"] for s in late]), 2),
        "threads_per_hour": round(slope_per_hour(ts, [s["threads"] for s in late]), 2),
        "p95_ms_per_hour": round(slope_per_hour(ts, [s["p95_ms"] for s in late if not math.isnan(s["p95_ms"])]), 1)
        if all(not math.isnan(s["p95_ms"]) for s in late) else None,
        "p95_ms_median": float(np.nanmedian([s["p95_ms"] for s in late])) if late else None,
        "results_per_s_median": float(np.median([s["results_per_s"] for s in late])) if late else None,
    }
    with open(os.path.join(args.out, "soak.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(samples[0]) if samples else ["t_s"])
        wr.writeheader()
        wr.writerows(samples)
    plot(samples, os.path.join(args.out, "soak.png"),
         f"genre-serve soak: {args.clients} real-time clients, {args.minutes:g} min, {args.replace:.0%} replaced/min")
    for e in (tally.errors + server_errors)[:10]:
        print("error:", e)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
