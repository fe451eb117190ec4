#!/usr/bin/env python3
"""Many live streams on one shared inference worker: update interval, lag, skipped windows,
fairness, and whether batching windows of several engines helps.

    python bench/streams.py            # 1, 2, 4, 8 engines, 30 s each + batching check (~4 min)
    python bench/streams.py --quick    # 15 s each
    python bench/streams.py --accel off

Set-up: DistilHuBERT-shaped model (random weights, course-model compute) loaded through
`stream.load_model` with the accelerated forward (`--accel`, default auto = bf16 here);
EngineConfig(window_s=10, hop_s=1). Each engine is first given 10 s (+ i/N s, so that the
engines' hops fall at different moments, as with listeners who arrived at different times),
then every engine gets a 100 ms chunk of real music every 100 ms of wall clock (real time)
for the measured period. A hop of 1 s per engine asks for N windows per second; when the
model is slower than that, the worker drops superseded windows (skipped) and the question
is whether every engine still gets updates at a similar rate (fairness) and whether lag
stays bounded.

Figures per N (over the measured period only):
  interval    wall-clock seconds between successive results of one engine (median / max
              over all engines): what a listener sees as the refresh period
  lag         engine.stats.lag_s sampled every 0.5 s: newest audio fed minus the end of the
              newest classified window (mean / max)
  skipped     superseded windows / windows emitted
  fairness    fewest results of any engine / most results of any engine (1.0 = equal)
  batch       mean windows per forward call of the shared worker
  win/s       windows classified per second by the worker (throughput)
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

warnings.filterwarnings("ignore")

CHUNK_S = 0.1


def run(model, n: int, seconds: float, audio: np.ndarray, max_batch: int = 8) -> dict:
    from stream import EngineConfig, StreamEngine

    rate = C.RATE
    model.max_batch = max_batch
    model._stream_worker = None  # a fresh shared worker with this max_batch
    results: list[list[float]] = [[] for _ in range(n)]
    measuring = threading.Event()

    def cb(i):
        def on_result(res):
            if measuring.is_set() and not res.silent:
                results[i].append(time.perf_counter())
        return on_result

    cfg = EngineConfig(window_s=10.0, hop_s=1.0, min_window_s=10.0)
    engines = [StreamEngine(model, cfg, on_result=cb(i)) for i in range(n)]
    pos = [0] * n

    def feed(i, seconds_):
        k = int(round(seconds_ * rate))
        out = np.take(audio, np.arange(pos[i], pos[i] + k), mode="wrap")
        pos[i] += k
        engines[i].feed(out, rate)

    for i, e in enumerate(engines):  # prefill, staggered phases
        pos[i] = int(i * 37.3 * rate) % len(audio)
        feed(i, 10.0 + i / n)
    worker = engines[0]._worker
    t_wait = time.perf_counter()
    while (worker.pending() or any(e.latest is None for e in engines)) and time.perf_counter() - t_wait < 120:
        time.sleep(0.05)
    base = [e.stats for e in engines]
    b0, w0 = worker.batches, worker.windows
    lags: list[list[float]] = [[] for _ in range(n)]
    measuring.set()
    t0 = time.perf_counter()
    tick = 0
    while True:
        target = t0 + tick * CHUNK_S
        now = time.perf_counter()
        if target > now:
            time.sleep(target - now)
        if time.perf_counter() - t0 >= seconds:
            break
        for i in range(n):
            feed(i, CHUNK_S)
        tick += 1
        if tick % 5 == 0:
            for i, e in enumerate(engines):
                lags[i].append(e.stats.lag_s)
    elapsed = time.perf_counter() - t0
    measuring.clear()
    end = [e.stats for e in engines]
    for e in engines:
        e.close()
    C.wait_idle(model)
    batches, windows = worker.batches - b0, worker.windows - w0
    counts = [len(r) for r in results]
    intervals = np.concatenate([np.diff(r) for r in results if len(r) > 1] or [np.array([np.nan])])
    # the longest wait of each engine, including from the start and to the end of the period
    gaps = [max(np.diff([t0] + r + [t0 + elapsed])) for r in results]
    skipped = sum(e.windows_skipped - b.windows_skipped for e, b in zip(end, base))
    classified = sum(e.windows_classified - b.windows_classified for e, b in zip(end, base))
    emitted = skipped + classified
    all_lags = np.concatenate([np.array(l) for l in lags]) if any(lags) else np.array([np.nan])
    return {
        "n": n, "max_batch": max_batch, "seconds": elapsed,
        "interval_med": float(np.nanmedian(intervals)), "interval_max": float(np.nanmax(intervals)),
        "max_gap": float(max(gaps)),
        "lag_mean": float(np.nanmean(all_lags)), "lag_max": float(np.nanmax(all_lags)),
        "skipped_frac": skipped / emitted if emitted else 0.0,
        "fairness": min(counts) / max(counts) if max(counts) else 0.0,
        "counts": counts,
        "batch_mean": windows / batches if batches else 0.0,
        "win_per_s": windows / elapsed,
        "infer_ms": float(np.mean([e.inference_ms_mean for e in end])),
    }


def row(r: dict) -> list:
    return [r["n"], r["max_batch"], f"{r['interval_med']:.2f} / {r['interval_max']:.2f}", f"{r['max_gap']:.1f}",
            f"{r['lag_mean']:.2f} / {r['lag_max']:.2f}", f"{100 * r['skipped_frac']:.0f} %", f"{r['fairness']:.2f}",
            f"{r['batch_mean']:.2f}", f"{r['win_per_s']:.2f}", f"{r['infer_ms']:.0f}"]


HEADER = ["engines", "max_batch", "interval s med/max", "max gap s", "lag s mean/max", "skipped", "fairness",
          "batch", "win/s", "forward ms"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None, help="measured real-time period per run")
    ap.add_argument("--engines", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--accel", default="auto", help="accelerate() mode: auto, bf16, fp32, off")
    ap.add_argument("--no-batch-check", action="store_true", help="skip the max_batch=1 comparison")
    args = ap.parse_args(argv)
    seconds = args.seconds or (15.0 if args.quick else 30.0)
    ckpt = C.temp_checkpoint("distilhubert")
    model = C.load_engine_model(ckpt, args.accel)
    music = C.real_music(120.0)
    audio = np.concatenate([y for _, y in music]) if music else C.synthetic_music(120.0)
    print(f"== streams: N engines, one shared worker, real-time feed ==\n{C.cpu_note()}; {C.load_note()}; "
          f"forward: {model.accel.mode} ({model.accel.reason}); window 10 s, hop 1 s, {seconds:.0f} s measured per row; "
          f"audio: {'real music' if music else 'synthetic'}")
    rows, out = [], []
    for n in args.engines:
        r = run(model, n, seconds, audio)
        out.append(r)
        rows.append(row(r))
        print("  " + "  ".join(str(c) for c in row(r)) + f"   results per engine {r['counts']}", flush=True)
    if not args.no_batch_check:
        n = max(args.engines)
        r = run(model, n, seconds, audio, max_batch=1)
        out.append(r)
        rows.append(row(r))
        print("  " + "  ".join(str(c) for c in row(r)) + f"   results per engine {r['counts']}", flush=True)
    print()
    print(C.table(rows, HEADER))
    if not args.no_batch_check:
        a, b = out[-2], out[-1]
        print(f"\nbatching at {a['n']} engines: throughput {a['win_per_s']:.2f} vs {b['win_per_s']:.2f} windows/s "
              f"(max_batch 8 vs 1: x{a['win_per_s'] / b['win_per_s']:.2f}); "
              f"median refresh interval {a['interval_med']:.2f} vs {b['interval_med']:.2f} s")
    return {"rows": out}


if __name__ == "__main__":
    main()
