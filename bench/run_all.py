#!/usr/bin/env python3
"""Regenerate every performance figure of issue 6 with one command and print a summary.

    python -m bench.run_all            # ~8 min on 2 quiet cores (longer when the machine is busy)
    python -m bench.run_all --quick    # ~3-4 min: fewer repeats, shorter stream runs
    python -m bench.run_all --only forward streams

Runs, in one process: bench/forward.py (acceleration candidates, accuracy), bench/streams.py
(1/2/4/8 engines on one worker), bench/peers.py (seed / growing buffer / engine per update).
Each part prints its own tables; the summary at the end repeats the ratios. All ratios are
measured within this run; absolute milliseconds depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import importlib
import time

from bench import common as C

PARTS = ("forward", "streams", "peers")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--onnx", action="store_true", help="forward: also ONNX Runtime candidates (needs onnxruntime)")
    args = ap.parse_args(argv)
    q = ["--quick"] if args.quick else []
    res, took = {}, {}
    print(f"bench/run_all.py {'--quick ' if args.quick else ''}| {C.cpu_note()} | {C.load_note()}\n")
    for part in args.only:
        t0 = time.perf_counter()
        mod = importlib.import_module(f"bench.{part}")
        res[part] = mod.main(q + (["--onnx"] if part == "forward" and args.onnx else []))
        took[part] = time.perf_counter() - t0
        print(f"[{part}: {took[part]:.0f} s]\n", flush=True)

    print("=" * 78 + "\nSUMMARY (ratios measured in this run)\n")
    rows = []
    if "forward" in res:
        sp = {r[0]: r for r in res["forward"]["speed"]}
        acc = res["forward"]["accuracy"]
        base = sp["off (fp32 as loaded)"]
        for name in sp:
            if name.startswith("off"):
                continue
            d = acc.get(name)
            rows.append([f"forward 10 s: {name}", f"{sp[name][1]} ms vs {base[1]} ms", sp[name][3],
                         f"max|dp| {d[0]:.4f}, flips {d[1]}" if d else ""])
        for r in res["forward"]["other"]:
            rows.append([f"accuracy: {r[0]} ({r[1]})", "", "", f"max|dp| {r[3]}, flips {r[4]}"])
        for r in res["forward"]["batch"][1:]:
            rows.append([f"forward {r[0]}", f"{r[2]} ms per window", r[3], "per-window cost vs batch 1"])
    if "streams" in res:
        for r in res["streams"]["rows"]:
            rows.append([f"streams: {r['n']} engines, max_batch {r['max_batch']}",
                         f"refresh {r['interval_med']:.2f} s, lag <= {r['lag_max']:.1f} s",
                         f"{r['fairness']:.2f}", f"skipped {100 * r['skipped_frac']:.0f} %, batch {r['batch_mean']:.1f}, "
                         f"{r['win_per_s']:.2f} win/s"])
    if "peers" in res:
        for r in res["peers"]["rows"]:
            star = "" if r["growing_note"] == "measured" else " (extrapolated)"
            rows.append([f"peers after {r['minutes']} min", f"engine {r['engine']:.0f} ms/update",
                         f"{r['seed_10s'] / r['engine']:.1f}x / {r['growing'] / r['engine']:.0f}x",
                         f"seed 10 s file / growing buffer{star} vs engine"])
    print(C.table(rows, ["figure", "value", "ratio", "note"]))
    print(f"\ntotal {sum(took.values()):.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in took.items())})")


if __name__ == "__main__":
    main()
