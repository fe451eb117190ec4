#!/usr/bin/env python3
"""Many real-time streams: the bundled model in-process vs served by Ray Serve (1 and 2 replicas).

    python -m bench.serve            # N = 1, 8, 32, 64 streams, 30 s each, 3 set-ups (~8 min)
    python -m bench.serve --quick    # 10 s each (~4 min)

Set-up: bundled MusiCNN (`load_model("musicnn")`), EngineConfig(window_s=9, hop_s=1,
min_window_s=9). Each of N engines is prefilled with 9 s (+ i/N s, so hops fall at different
moments), then gets 0.25 s of real music every 0.25 s of wall clock for the measured period.
  in-process   one model in this process, the shared worker (one forward at a time, batches
               of up to 8 windows), torch on all cores
  ray-R        a local Ray (num_cpus = all cores) serving the model with R replicas of 1 CPU
               each (@serve.batch 16 calls / 10 ms); the engines stay in this process and
               the worker keeps the deployment's suggested windows in flight (2 per replica;
               `--max-in-flight`, `--max-batch` to try others)
The engines, the feeding and Ray's own processes share the same cores as the model, as an
edge and its model would not: read the Ray rows as "what this machine can serve", and the
overhead figure below as the cost Ray adds per request.

Per row: results/s (non-silent readouts of all engines per second; the ideal is N), latency
p50/p95 (window complete -> result, Result.latency_ms), skipped (superseded windows / windows
emitted), errors.
Overhead: one 9 s window, interleaved: in-process predict with 1 torch thread vs the same
window through a 1-replica deployment (1 CPU = 1 thread), and a no-op round trip (info()).
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
import warnings

import numpy as np

from bench import common as C

warnings.filterwarnings("ignore")

CHUNK_S = 0.25
WINDOW_S = 9.0


def run(model, n: int, seconds: float, audio: np.ndarray) -> dict:
    from stream import EngineConfig, StreamEngine

    rate = C.RATE
    model._stream_worker = None  # a fresh shared worker per row
    lat: list[float] = []
    measuring = threading.Event()
    lock = threading.Lock()

    def on_result(res):
        if measuring.is_set() and not res.silent:
            with lock:
                lat.append(res.latency_ms)

    cfg = EngineConfig(window_s=WINDOW_S, hop_s=1.0, min_window_s=WINDOW_S)
    engines = [StreamEngine(model, cfg, on_result=on_result) for _ in range(n)]
    pos = [int(i * 37.3 * rate) % len(audio) for i in range(n)]

    def feed(i, sec):
        k = int(round(sec * rate))
        engines[i].feed(np.take(audio, np.arange(pos[i], pos[i] + k), mode="wrap"), rate)
        pos[i] += k

    for i in range(n):  # prefill, staggered phases
        feed(i, WINDOW_S + i / n)
    for e in engines:
        e.drain(300)
    base = [e.stats for e in engines]
    measuring.set()
    _, elapsed = C.paced(seconds, CHUNK_S, lambda tick: [feed(i, CHUNK_S) for i in range(n)])
    measuring.clear()
    end = [e.stats for e in engines]
    for e in engines:
        e.close()
    model._stream_worker.stop(60)  # let calls in flight end before the next row
    d = lambda f: sum(getattr(a, f) - getattr(b, f) for a, b in zip(end, base))
    skipped, classified, errors = d("windows_skipped"), d("windows_classified"), d("errors")
    emitted = skipped + classified + errors
    lat_a = np.array(lat) if lat else np.array([np.nan])
    return {"n": n, "seconds": elapsed, "results_s": len(lat) / elapsed,
            "p50": float(np.nanpercentile(lat_a, 50)), "p95": float(np.nanpercentile(lat_a, 95)),
            "skipped": skipped / emitted if emitted else 0.0, "errors": errors}


def row(name: str, r: dict) -> list:
    return [name, r["n"], f"{r['results_s']:.2f}", f"{r['p50']:.0f}", f"{r['p95']:.0f}",
            f"{100 * r['skipped']:.0f} %", r["errors"]]


HEADER = ["set-up", "streams", "results/s", "p50 ms", "p95 ms", "skipped", "errors"]


def overhead(local, remote, repeats: int) -> dict:
    import torch

    w = C.music_windows(WINDOW_S, per_file=1)[0][1][None]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = C.interleaved({"local": lambda: local.predict(w), "remote": lambda: remote.predict(w),
                           "noop": lambda: remote._handle.info.remote().result()}, repeats=repeats, warmup=2)
    finally:
        torch.set_num_threads(threads)
    lo, re_, noop = C.med(t["local"]), C.med(t["remote"]), C.med(t["noop"])
    return {"local_ms": lo, "remote_ms": re_, "noop_ms": noop, "ratio": re_ / lo, "added_ms": re_ - lo,
            "local_min": min(t["local"]), "remote_min": min(t["remote"])}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None, help="measured real-time period per row")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-in-flight", type=int, default=None,
                    help="calls in flight per edge (default: the deployment's suggestion, 2 per CPU replica)")
    ap.add_argument("--max-batch", type=int, default=1, help="windows per call from the edge's worker (default 1)")
    args = ap.parse_args(argv)
    seconds = args.seconds or (10.0 if args.quick else 30.0)

    import ray
    from ray import serve

    from stream import load_model
    from stream.models.remote import RemoteModel
    from ui.net.ray_model import deploy

    local = load_model("musicnn")
    music = C.real_music(120.0)
    audio = np.concatenate([y for _, y in music]) if music else C.synthetic_music(120.0)
    print(f"== serve: N real-time streams, bundled model in-process vs Ray Serve ==\n{C.cpu_note()}; "
          f"{C.load_note()}; window {WINDOW_S:.0f} s, hop 1 s, {seconds:.0f} s measured per row; "
          f"audio: {'real music' if music else 'synthetic'}", flush=True)
    rows, out = [], {}
    for n in args.streams:
        r = run(local, n, seconds, audio)
        out[("in-process", n)] = r
        rows.append(row("in-process", r))
        print("  " + "  ".join(str(c) for c in rows[-1]), flush=True)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(C.ROOT)}})
    try:
        ov = None
        for reps in args.replicas:
            app = f"bench-{reps}"
            deploy("musicnn", name=app, replicas=reps, cpus=1, max_batch_size=16, batch_wait_s=0.01)
            remote = RemoteModel(app, max_in_flight=args.max_in_flight, max_batch=args.max_batch)
            print(f"  {remote.notice}", flush=True)  # names the replicas' backend and precision
            if ov is None:
                ov = overhead(local, remote, repeats=5 if args.quick else 15)
            for n in args.streams:
                r = run(remote, n, seconds, audio)
                out[(f"ray-{reps}", n)] = r
                rows.append(row(f"ray {reps} replica{'s' if reps > 1 else ''} (in flight {remote.max_in_flight})", r))
                print("  " + "  ".join(str(c) for c in rows[-1]), flush=True)
            serve.delete(app)
    finally:
        serve.shutdown()
        ray.shutdown()
    print()
    print(C.table(rows, HEADER))
    print(f"\noverhead per request (one 9 s window, 1 thread, interleaved medians): in-process {ov['local_ms']:.0f} ms "
          f"(min {ov['local_min']:.0f}), through Ray Serve {ov['remote_ms']:.0f} ms (min {ov['remote_min']:.0f}): "
          f"ratio {ov['ratio']:.2f}, +{ov['added_ms']:.0f} ms; no-op round trip {ov['noop_ms']:.1f} ms")
    return {"rows": out, "overhead": ov}


if __name__ == "__main__":
    main()
