#!/usr/bin/env python3
"""Speed of the bundled musicnn models on this CPU.

    python -m bench.musicnn [--threads N] [--repeats R] [--specs musicnn vgg-mtt ...]

For each spec: `predict` time for one 3 s patch (batch 1) and for one default window
(batch 1; 9 s = 3 patches), the front end's share, and the real-time factor
RTF = window time / default hop (below 1 means the model keeps up with a live stream;
the engine also needs headroom for resampling, smoothing and the UI).
Wall times are medians (and minima) over `--repeats` runs after a warm-up; CPU time is
summed over torch's threads.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch


from stream.models.musicnn import SPECS, load_bundled


def timed_ms(fn, repeats: int) -> tuple[float, float, float]:
    """(median wall, min wall, median CPU) in ms per call. On a shared machine the min wall
    time is the better estimate of the cost; CPU time (summed over threads) is the work
    done, which other processes disturb much less than wall time."""
    fn()  # warm-up (allocator, oneDNN primitive caches)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1000 * statistics.median(wall), 1000 * min(wall), 1000 * statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--scaling", action="store_true", help="also time 1..24 patches per network call")
    ap.add_argument("--specs", nargs="+", default=list(SPECS), choices=list(SPECS))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}; load average before: {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    rows = []
    for spec in args.specs:
        m = load_bundled(spec)
        patch = (0.1 * rng.standard_normal((1, m.min_samples))).astype(np.float32)
        n_win = int(m.default_window_s * m.sample_rate)
        window = (0.1 * rng.standard_normal((1, n_win))).astype(np.float32)
        n_patches = m.patches(m.logmel(window)).shape[1]
        t_patch = timed_ms(lambda: m.predict(patch), args.repeats)
        t_win = timed_ms(lambda: m.predict(window), args.repeats)
        t_front = timed_ms(lambda: m.logmel(window), args.repeats)
        rows.append((spec, len(m.labels), t_patch, n_patches, t_win, t_front))
    hop = m.default_hop_s
    print(f"\ndefault window {m.default_window_s:g} s, hop {hop:g} s, batch 1; "
          f"median (min) of {args.repeats} runs\n")
    head = ("spec", "labels", "1 patch ms", "patches/win", "window ms", "ms/patch", "front end ms",
            "RTF", "window CPU ms")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for spec, n_lab, tp, k, tw, tf in rows:
        print(f"| {spec} | {n_lab} | {tp[0]:.1f} ({tp[1]:.1f}) | {k} | {tw[0]:.1f} ({tw[1]:.1f}) | "
              f"{tw[0] / k:.1f} ({tw[1] / k:.1f}) | {tf[0]:.2f} ({tf[1]:.2f}) | "
              f"{tw[0] / (1000 * hop):.3f} ({tw[1] / (1000 * hop):.3f}) | {tw[2]:.0f} |")
    if args.scaling:
        # Per-patch network time vs patches per call (what max_patches_per_forward tunes).
        m = load_bundled("musicnn-mtt")
        net = m.nets["MTT_musicnn"]
        print("\nmusicnn-mtt network only, ms per patch vs patches per call: median (min)\n")
        print("| patches per call | ms/patch | CPU ms/patch |\n|---|---|---|")
        for k in (1, 2, 3, 4, 6, 8, 12, 24):
            x = torch.from_numpy((rng.standard_normal((k, 187, 96))).astype(np.float32))
            with torch.inference_mode():
                med, lo, cpu = timed_ms(lambda: net(x), args.repeats)
            print(f"| {k} | {med / k:.1f} ({lo / k:.1f}) | {cpu / k:.1f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (above ~0.5 the wall times are inflated)")


if __name__ == "__main__":
    main()
