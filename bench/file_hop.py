"""Whole-file analysis: what a coarser hop costs in timeline fidelity and saves in time.

`analyze_file` on real recordings (Debian asc-music) with the bundled MusiCNN (9 s windows),
at several hops, each compared with hop 1 s (the live default: 9x overlap) on the same file:

- time: wall time of the whole analysis (decode + resample + forwards), ratio to hop 1 in
  the same run (the hops of one file run back to back, files in turn);
- top label: does the file's top label (highest mean score) stay the same;
- max |dp|: largest difference of the file-average scores (genre view) from hop 1;
- windows agreeing: share of the coarse windows whose leading genre equals that of the
  hop-1 window ending at the nearest time (<= 0.5 s away);
- segment: the most characteristic segment of the top label moves by how many seconds.

    python -m bench.file_hop                 # all files, hops 1 2 3 4.5
    python -m bench.file_hop --hops 1 3
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import cpu_note, load_note, music_files, table

from stream import analyze_file, load_model


def compare(base, fa) -> dict:
    labels = base.labels
    dp = max(abs(base.scores[l] - fa.scores[l]) for l in labels)
    lead_b = np.array([labels[i] for i in np.nanargmax(base.timeline, axis=1)])
    agree = []
    for t, row in zip(fa.ends_s, fa.timeline):
        j = int(np.argmin(np.abs(base.ends_s - t)))
        if abs(base.ends_s[j] - t) <= 0.5 + 1e-6:
            agree.append(labels[int(np.nanargmax(row))] == lead_b[j])
    return {"same_top": fa.top_label == base.top_label, "dp": dp, "agree": float(np.mean(agree)),
            "segment_shift": abs(fa.segment[0] - base.segment[0]) if fa.top_label == base.top_label else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hops", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.5])
    args = ap.parse_args(argv)
    hops = sorted(set(args.hops) | {1.0})
    model = load_model("musicnn")
    print(cpu_note())
    print(load_note())
    files = sorted(music_files(), key=lambda f: Path(f).stat().st_size)  # shortest first
    times = {h: 0.0 for h in hops}
    rows, per = [], {h: [] for h in hops}
    audio_s = 0.0
    for path in files:
        results = {}
        for h in hops:
            t0 = time.perf_counter()
            fa = analyze_file(path, model, hop_s=h)
            results[h] = (fa, time.perf_counter() - t0)
            times[h] += results[h][1]
            print(f"  {Path(path).name} hop {h:g}: {fa.n_windows} windows, {results[h][1]:.1f} s", flush=True)
        base, base_t = results[1.0]
        audio_s += base.duration_s
        for h in hops:
            fa, t = results[h]
            c = compare(base, fa)
            per[h].append(c)
            row = [Path(path).name, f"{base.duration_s:.0f}", f"{h:g}", fa.n_windows, f"{t:.1f}",
                   f"{t / base_t:.2f}", fa.top_label, "yes" if c["same_top"] else "NO", f"{c['dp']:.4f}",
                   f"{c['agree']:.0%}", "-" if c["segment_shift"] is None else f"{c['segment_shift']:.1f}"]
            rows.append(row)
            print("  " + " | ".join(str(x) for x in row), flush=True)  # as it comes: a long run may be cut
    print()
    print(table(rows, ["file", "s", "hop s", "windows", "time s", "ratio", "top label", "same top",
                       "max |dp|", "windows agreeing", "segment shift s"]))
    print()
    summary = []
    for h in hops:
        cs = per[h]
        summary.append([f"{h:g}", f"{times[h]:.1f}", f"{times[h] / times[1.0]:.2f}",
                        f"{audio_s / times[h]:.0f}x", f"{sum(c['same_top'] for c in cs)}/{len(cs)}",
                        f"{max(c['dp'] for c in cs):.4f}", f"{min(c['agree'] for c in cs):.0%}"])
    print(table(summary, ["hop s", "time s (all files)", "ratio to hop 1", "faster than real time",
                          "same top label", "max |dp| (worst file)", "windows agreeing (worst file)"]))


if __name__ == "__main__":
    main()
