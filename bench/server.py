#!/usr/bin/env python3
"""The network API under load: N simulated real-time clients against `genre-serve` (python -m ui.net),
compared with N in-process engines doing the same work (the protocol's overhead).

    python -m bench.server                 # N = 1, 8, 32; 25 s of audio per stream (~4 min)
    python -m bench.server --clients 1 8 --seconds 20

Set-up: the bundled MusiCNN (offline; 9 s windows, 1 s hop). Every stream sends real music
(asc-music, 22050 Hz stereo s16le, each stream from a different offset) in 100 ms chunks
paced to wall clock. Server: a subprocess on 127.0.0.1, clients: `websockets` asyncio
connections in this process. In-process: N StreamEngines on one shared worker in this
process, fed the same chunks on the same schedule (int16 stereo arrays instead of bytes).

Figures per N, over stream time 10 s .. end (windows full):
  results/s   readouts received per second, all streams together
  p50/p95     chunk -> result latency: the chunk that completed a hop was handed over
              (ws.send / engine.feed) -> its readout arrived (client recv / on_result)
  skipped     superseded windows / windows emitted (the shared model could not keep up)
  server CPU  cores used by the server process (psutil); in-process: this process
  CPU/result  CPU ms per readout (server process vs the in-process engines' process)
Ratios are server / in-process, measured in the same run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import warnings

import numpy as np

from bench import common as C

from harness.music import TRACKS, music
from harness.server import ServerProcess

warnings.filterwarnings("ignore")

CHUNK_S = 0.1
RATE = 22050
WARM_S = 10.0  # stream time before measuring (the 9 s window is full)


def _latency(sent: list, t_stream: float, arrived: float) -> float:
    """ms from handing over the chunk that completed stream time t_stream to the result."""
    for wall, upto in sent:
        if upto >= t_stream - 1e-6:
            return (arrived - wall) * 1000.0
    return float("nan")


def audio_for(n: int, seconds: float) -> list[np.ndarray]:
    """n int16 (samples, 2) streams at RATE from different offsets of the recordings."""
    out = []
    for i in range(n):
        track = TRACKS[i % len(TRACKS)]
        x, sr = music(track, 15.0 + 7.0 * (i // len(TRACKS)), seconds)
        assert sr == RATE, sr
        out.append((np.clip(x, -1, 1) * 32767).astype("<i2"))
    return out


def summarise(per_stream: list[tuple[list, list]], seconds: float, skipped: int, emitted: int,
              cpu_s: float, wall_s: float) -> dict:
    lat, count = [], 0
    for results, sent in per_stream:
        for arrived, t in results:
            if t > WARM_S:
                count += 1
                lat.append(_latency(sent, t, arrived))
    lat = np.array(lat) if lat else np.array([np.nan])
    return {"results_per_s": count / (seconds - WARM_S), "p50": float(np.nanpercentile(lat, 50)),
            "p95": float(np.nanpercentile(lat, 95)), "skipped": skipped / emitted if emitted else 0.0,
            "cpu": cpu_s / wall_s, "cpu_ms_per_result": 1000.0 * cpu_s / count if count else float("nan"),
            "results": count}


# ---------------------------------------------------------------- server ------------------
async def _client(url, data: np.ndarray, seconds, t0, results, sent, summaries):
    from websockets.asyncio.client import connect

    step = int(CHUNK_S * RATE)
    async with connect(url, max_size=None) as ws:
        await ws.recv()  # ready

        async def reader():
            async for text in ws:
                msg = json.loads(text)
                if msg["event"] == "result" and not msg["silent"]:
                    results.append((time.perf_counter(), msg["time_s"]))
                elif msg["event"] == "summary":
                    summaries.append(msg)

        task = asyncio.create_task(reader())
        for k, i in enumerate(range(0, int(seconds * RATE), step)):
            ahead = t0 + k * CHUNK_S - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await ws.send(data[i:i + step].tobytes())
            sent.append((time.perf_counter(), (i + step) / RATE))
        await ws.send(json.dumps({"event": "end"}))
        await asyncio.wait_for(task, 300)


def run_server(srv: ServerProcess, n: int, seconds: float) -> dict:
    import psutil

    proc = psutil.Process(srv.proc.pid)
    streams = audio_for(n, seconds)
    per = [([], []) for _ in range(n)]
    summaries: list = []
    cpu = {}

    async def go():
        t0 = time.perf_counter() + 0.5
        url = srv.url(sample_rate=RATE, channels=2, format="s16le", hop=1)

        async def sample_cpu():
            await asyncio.sleep(t0 + WARM_S - time.perf_counter())
            cpu["a"] = (proc.cpu_times(), time.perf_counter())
            await asyncio.sleep(t0 + seconds - time.perf_counter())
            cpu["b"] = (proc.cpu_times(), time.perf_counter())

        await asyncio.gather(sample_cpu(), *[_client(url, streams[i], seconds, t0, per[i][0], per[i][1], summaries)
                                             for i in range(n)])

    asyncio.run(go())
    (ca, wa), (cb, wb) = cpu["a"], cpu["b"]
    cpu_s = (cb.user + cb.system) - (ca.user + ca.system)
    skipped = sum(s["windows_skipped"] for s in summaries)
    emitted = skipped + sum(s["windows_classified"] for s in summaries)
    return summarise(per, seconds, skipped, emitted, cpu_s, wb - wa)


# ---------------------------------------------------------------- in-process --------------
def run_local(model, n: int, seconds: float) -> dict:
    import psutil

    from stream import EngineConfig, StreamEngine

    proc = psutil.Process()
    streams = audio_for(n, seconds)
    per = [([], []) for _ in range(n)]

    def cb(i):
        def on_result(res):
            if not res.silent:
                per[i][0].append((time.perf_counter(), res.time_s))
        return on_result

    model._stream_worker = None  # a fresh shared worker
    engines = [StreamEngine(model, EngineConfig(hop_s=1.0), on_result=cb(i)) for i in range(n)]
    step = int(CHUNK_S * RATE)
    t0 = time.perf_counter() + 0.5
    cpu_a = cpu_b = None
    for k, i in enumerate(range(0, int(seconds * RATE), step)):
        ahead = t0 + k * CHUNK_S - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        if cpu_a is None and (i + step) / RATE > WARM_S:
            cpu_a = (proc.cpu_times(), time.perf_counter())
        for j, e in enumerate(engines):
            e.feed(streams[j][i:i + step], RATE)
            per[j][1].append((time.perf_counter(), (i + step) / RATE))
    cpu_b = (proc.cpu_times(), time.perf_counter())
    for e in engines:
        e.flush()
    for e in engines:
        e.drain(60)
    stats = [e.stats for e in engines]
    for e in engines:
        e.close()
    (ca, wa), (cb_, wb) = cpu_a, cpu_b
    skipped = sum(s.windows_skipped for s in stats)
    emitted = skipped + sum(s.windows_classified for s in stats)
    return summarise(per, seconds, skipped, emitted, (cb_.user + cb_.system) - (ca.user + ca.system), wb - wa)


def row(name, n, r) -> list:
    return [name, n, f"{r['results_per_s']:.2f}", f"{r['p50']:.0f}", f"{r['p95']:.0f}", f"{100 * r['skipped']:.0f} %",
            f"{r['cpu']:.2f}", f"{r['cpu_ms_per_result']:.0f}"]


HEADER = ["", "streams", "results/s", "p50 ms", "p95 ms", "skipped", "CPU cores", "CPU ms/result"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=25.0, help="stream length (measured after 10 s)")
    args = ap.parse_args(argv)
    if args.seconds <= WARM_S + 2:
        ap.error(f"--seconds must exceed {WARM_S + 2:g}")
    from stream import load_model

    print(f"== server: N real-time WebSocket clients vs N in-process engines (bundled MusiCNN, hop 1 s) ==\n"
          f"{C.cpu_note()}; {C.load_note()}; {args.seconds:g} s per stream, measured from {WARM_S:g} s", flush=True)
    srv = ServerProcess("--max-streams", str(max(args.clients) + 1), "--log-level", "warning").wait_ready()
    model = load_model("musicnn")
    rows, out = [], []
    try:
        for n in args.clients:
            a = run_server(srv, n, args.seconds)
            b = run_local(model, n, args.seconds)
            out.append({"n": n, "server": a, "local": b})
            for name, r in (("server", a), ("in-process", b)):
                rows.append(row(name, n, r))
                print("  " + "  ".join(str(c) for c in rows[-1]), flush=True)
    finally:
        srv.stop()
    print()
    print(C.table(rows, HEADER))
    print("\nratios server / in-process (same run):")
    for o in out:
        a, b = o["server"], o["local"]
        print(f"  N={o['n']:>2}: results/s x{a['results_per_s'] / b['results_per_s']:.2f}, "
              f"p50 latency x{a['p50'] / b['p50']:.2f}, p95 x{a['p95'] / b['p95']:.2f}, "
              f"CPU per result x{a['cpu_ms_per_result'] / b['cpu_ms_per_result']:.2f}")
    return {"rows": out}


if __name__ == "__main__":
    main()
