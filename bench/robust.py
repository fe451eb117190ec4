#!/usr/bin/env python3
"""Does the bundled model hear a room as it hears a clean file? (issue 18; a benchmark, not a test)

    python bench/robust.py                       # original vs room-robust, 4 conditions (~10 min on 2 cores)
    python bench/robust.py --segments 8 --models musicnn-original,dir:PATH   # a run of tools/train_robust.py

Through the live engine with default settings (EngineConfig(top_k=0): every label scored,
nothing else changed), on **validation packages only** (asc-music, electronic;
wesnoth-1.16-music, orchestral; tools/robust_data.py): none of their recordings trained the
robust model. The stream alternates excerpts of the two families as bench/quality.py builds
it (26-34 s each, -20 dBFS), mono at 16 kHz, heard in each condition (tools/robust_chain.py
`condition`, rooms simulated by pyroomacoustics):

  clean   the file as it is
  room    RT60 0.5 s (7x5x3 m) + pink noise 10 dB below the music
  cafe    RT60 0.8 s (12x9x3.5 m) + babble (espeak-ng voices, a bank no training drew from) 5 dB below
  laptop  small room (RT60 0.3 s), pink 15 dB, band-pass 250 Hz-6 kHz, soft clipping

Figures: family accuracy of steady readouts (bench/quality.py's: readouts from 12 s after a
change whose smoothed scores favour the right family); on clean audio, agreement of each
window's top genre with the teacher's (the original model on the same window: "raw", and
the shown label after smoothing: "label"); cost per patch (median of interleaved timings).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)),
                os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")]
import common as C  # noqa: E402
import quality as Q  # noqa: E402
import robust_chain as RC  # noqa: E402
import robust_data as RD  # noqa: E402

RATE = RC.RATE
CHUNK = RATE // 50  # 20 ms


def run(model, audio: np.ndarray, config) -> list:
    """Readouts of the live engine fed `audio` (mono float32, 16 kHz) in 20 ms int16 chunks."""
    from stream import StreamEngine

    got = []
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    with StreamEngine(model, config, background=False,
                      on_result=lambda r: got.append(Q.Readout(r.time_s, r.label, r.scores, r.raw_scores, r.window_s))) as e:
        for i in range(0, len(pcm), CHUNK):
            e.feed(pcm[i:i + CHUNK], RATE)
    return got


def load_dir(path: str):
    """The MTT + MSD musicnn pair from a folder of exported weights, as the bundled model runs them."""
    from safetensors.torch import load_file

    from stream.models.musicnn.model import MusicnnModel, load_tag_lists
    from stream.models.musicnn.nets import ARCHITECTURES

    nets = {ck: ARCHITECTURES["musicnn"](load_file(os.path.join(path, f"{ck}.safetensors")))
            for ck in ("MTT_musicnn", "MSD_musicnn")}
    return MusicnnModel("musicnn", nets, load_tag_lists())


def family_accuracy(readouts, stream) -> float:
    """Share of steady readouts (>= 12 s after a change) whose smoothed scores favour the
    right family: the best electronic label above the best acoustic one, or the reverse."""
    bounds = stream.starts + [stream.duration]
    right = n = 0
    for k, fam in enumerate(stream.families):
        other = next(f for f in Q.FAMILIES if f != fam)
        for r in readouts:
            if bounds[k] + Q.SETTLE_S <= r.t <= bounds[k + 1]:
                right += Q._favours(r, fam, other)
                n += 1
    return right / n if n else float("nan")


def top(scores: dict, genres) -> str | None:
    s = {k: v for k, v in scores.items() if k in genres}
    return max(s, key=s.get) if s else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="musicnn-original,musicnn-room",
                    help="comma-separated specs, the first is the teacher; dir:PATH = the musicnn pair exported by "
                         "tools/train_robust.py into PATH")
    ap.add_argument("--conditions", default=",".join(RC.CONDITIONS))
    args = ap.parse_args(argv)

    import soxr

    from stream import EngineConfig, load_model
    from stream.models.musicnn.model import GENRE_TAGS

    sources = {}
    for pkg in RD.VALIDATION:
        fam = RD.VALIDATION_FAMILY[pkg.name]
        sources[fam] = Q.find_tracks(list(pkg.patterns))
        if not sources[fam]:
            print(f"{pkg.name} is not installed (apt-get install {pkg.name})")
            return 2
    print(f"# {C.cpu_note()}; {C.load_note()}")
    stream = Q.build_stream(sources, args.segments, args.seed)
    mono = soxr.resample(stream.audio.mean(axis=1), Q.RATE, RATE).astype(np.float32)
    print(f"# stream: {args.segments} excerpts of validation packages, {stream.duration:.0f} s")
    babble = RC.babble_bank(12, 9000)  # voices and texts no training bank drew (other seed)
    specs = args.models.split(",")
    models = {s: load_dir(s[4:]) if s.startswith("dir:") else load_model(s) for s in specs}
    for s, m in models.items():
        print(f"# model {s}: {m.name}, {m.backend}")
    cfg = EngineConfig(top_k=0)
    rows, clean_runs = [], {}
    for cond in args.conditions.split(","):
        audio = RC.condition(cond, mono, seed=args.seed + 11, babble=babble)
        for s, m in models.items():
            t = time.perf_counter()
            readouts = run(m, audio, cfg)
            fig = family_accuracy(readouts, stream)
            rows.append((cond, s, fig))
            if cond == "clean":
                clean_runs[s] = readouts
            print(f"# {cond}/{s}: family {100 * fig:.1f} % ({len(readouts)} readouts, "
                  f"{time.perf_counter() - t:.0f} s)", flush=True)

    agree = {}
    teacher = specs[0]
    if teacher in clean_runs:
        ref = {round(r.t, 3): r for r in clean_runs[teacher]}
        for s, readouts in clean_runs.items():
            pairs = [(r, ref[round(r.t, 3)]) for r in readouts if round(r.t, 3) in ref and r.raw]
            raw = np.mean([top(a.raw, GENRE_TAGS) == top(b.raw, GENRE_TAGS) for a, b in pairs])
            lab = np.mean([a.label == b.label for a, b in pairs])
            agree[s] = (raw, lab)

    patch = np.random.default_rng(0).standard_normal((1, RC.RATE * 3)).astype(np.float32) * 0.1
    cost = C.interleaved({s: (lambda m=m: m.predict(patch[:, : m.patch_samples])) for s, m in models.items()},
                         repeats=30)
    print()
    header = ["model"] + [f"{c} family %" for c in args.conditions.split(",")] + \
        ["mean room/cafe/laptop %", "clean top genre = teacher (raw / label) %", "ms per patch (2 nets)"]
    table = []
    for s in specs:
        figs = {c: f for c, m, f in rows if m == s}
        degraded = [100 * figs[c] for c in ("room", "cafe", "laptop") if c in figs]
        a = agree.get(s)
        table.append([s] + [f"{100 * figs[c]:.1f}" for c in args.conditions.split(",")] +
                     [f"{np.mean(degraded):.1f}" if degraded else "-",
                      f"{100 * a[0]:.1f} / {100 * a[1]:.1f}" if a else "-", f"{C.med(cost[s]):.1f}"])
    print(C.table(table, header))
    print("\ntargets: clean family >= original - 1; clean top genre = teacher >= 95 %; room >= 90 %; "
          "mean(room, cafe, laptop) >= 88 %; cost unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
