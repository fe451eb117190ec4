#!/usr/bin/env python3
"""Fit the headline's confidence: the chance that the genre shown equals the track's genre.

    python -m tools.calibrate_confidence [--model musicnn] [--cache DIR]

No labels: the "track's genre" is the teacher's verdict aggregated over the whole track (the
mean of its raw genre scores over every window of the track), the target the robust models
were trained towards. Data: the validation packages only, asc-music (3 tracks) and
every 3rd of wesnoth-1.16-music (14 of 41 tracks); a 60 s excerpt of each played through an
inline engine with default settings gives the readouts.
Split by track (a track's readouts never sit on both sides; every 2nd track of each package,
by name, fits): fit on one half, ECE and the reliability table on the other. The fit: a
temperature on the log genre scores (softmax over genres), then isotonic regression of the
headline's tempered probability (stream/calibration.py); written to
stream/models/musicnn/calibration.json under the model's name.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

PACKAGES = {"asc-music": "/usr/share/games/asc/music/*.mp3",
            "wesnoth-1.16-music": "/usr/share/games/wesnoth/1.16/data/core/music/*.ogg"}


EXCERPT_S = (30.0, 60.0)  # the readouts: 60 s from 30 s into each track (its start if shorter)
VERDICT_STRIDE_S = 6.0  # the verdict: a 3 s patch every 6 s over the whole track


def gather(model, path: str) -> dict:
    """Per readout of one excerpt of a track: the headline genre and the smoothed genre scores
    (all genres); and the track's verdict: the argmax of the teacher's genre scores averaged
    over 3 s patches every 6 s of the whole track."""
    from stream import EngineConfig, StreamEngine
    from stream.files import decode_blocks
    from stream.resample import StreamingResampler

    rate = int(model.sample_rate)
    parts, rs = [], None
    for block, r in decode_blocks(path):
        rs = rs or StreamingResampler(r, rate)
        parts.append(rs.process(np.ascontiguousarray(block.mean(axis=1) if block.ndim == 2 else block, np.float32)))
    y = np.concatenate(parts + [rs.flush()])
    out = []
    cfg = EngineConfig(top_k=0, music_detector=False)
    e = StreamEngine(model, cfg, background=False, on_result=out.append)
    gl = e.genre_level
    genres = list(gl.genres)
    start = int(EXCERPT_S[0] * rate) if len(y) > sum(EXCERPT_S) * rate else 0
    ex = y[start:start + int(EXCERPT_S[1] * rate)]
    for i in range(0, len(ex), rate // 10):
        e.feed(ex[i:i + rate // 10], rate)
    e.flush()
    e.close()
    rows = [r for r in out if not r.silent and r.genre is not None]
    smooth = np.array([[r.genre_scores.get(g, 0.0) for g in genres] for r in rows], np.float32)
    n = int(model.patch_samples or 3 * rate)
    patches = np.stack([y[i:i + n] for i in range(0, len(y) - n + 1, int(VERDICT_STRIDE_S * rate))])
    loud = np.sqrt(np.mean(patches.astype(np.float64) ** 2, axis=1)) > 10 ** (cfg.silence_dbfs / 20)
    probs = np.concatenate([model.predict(patches[loud][i:i + 16]) for i in range(0, int(loud.sum()), 16)])
    verdict = int(np.argmax(np.mean([gl.scores(p) for p in probs], axis=0)))
    head = np.array([genres.index(r.genre) for r in rows], np.int64)
    return {"smooth": smooth, "head": head, "verdict": verdict, "genres": genres}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="musicnn")
    ap.add_argument("--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "calib_cache"))
    ap.add_argument("--part", type=int, nargs=2, metavar=("K", "N"),
                    help="gather only the K-th of N parts of the tracks (run N at once; then once without)")
    ap.add_argument("--out", default=str(ROOT / "stream/models/musicnn/calibration.json"))
    args = ap.parse_args()
    from stream import load_model
    model = load_model(args.model)
    os.makedirs(args.cache, exist_ok=True)
    tracks, todo = [], 0
    for pkg, pattern in PACKAGES.items():
        paths = sorted(glob.glob(pattern))
        # every track of a small package, every 3rd of a large one (a shared 2-core machine)
        for i, path in enumerate(paths if len(paths) <= 8 else paths[::3]):
            cache = os.path.join(args.cache, f"{model.name}_{pkg}_{Path(path).stem}.npz")
            todo += 1
            if args.part and (todo - 1) % args.part[1] != args.part[0] and not os.path.exists(cache):
                continue  # another part gathers it
            if os.path.exists(cache):
                d = dict(np.load(cache, allow_pickle=True))
                d["genres"] = list(d["genres"])
                d["verdict"] = int(d["verdict"])
            else:
                d = gather(model, path)
                np.savez(cache, **d)
            d.update(pkg=pkg, name=Path(path).stem, fold=i % 2)
            tracks.append(d)
            print(f"{pkg} {d['name']}: {len(d['head'])} readouts, verdict {d['genres'][d['verdict']]}, "
                  f"headline agrees {np.mean(d['head'] == d['verdict']):.0%}", flush=True)
    if args.part:
        return
    from stream.calibration import fit, reliability, reliability_of
    genres = tracks[0]["genres"]

    def stack(fold):
        ts = [t for t in tracks if t["fold"] == fold and len(t["head"])]
        return (np.concatenate([t["smooth"] for t in ts]), np.concatenate([t["head"] for t in ts]),
                np.concatenate([np.full(len(t["head"]), t["verdict"]) for t in ts]))

    fit_set, check_set = stack(0), stack(1)
    # the method: by leave-one-track-out within the fit split only (the check split judges it)
    loto = {}
    fit_tracks = [t for t in tracks if t["fold"] == 0 and len(t["head"])]
    for method in ("isotonic", "temperature"):
        conf, right = [], []
        for i, held in enumerate(fit_tracks):
            rest = [t for j, t in enumerate(fit_tracks) if j != i]
            c = fit(np.concatenate([t["smooth"] for t in rest]), np.concatenate([t["head"] for t in rest]),
                    np.concatenate([np.full(len(t["head"]), t["verdict"]) for t in rest]), method)
            conf += [c.confidence(s, h) for s, h in zip(held["smooth"], held["head"])]
            right += list(held["head"] == held["verdict"])
        loto[method] = reliability_of(np.array(conf), np.array(right, np.float64))
    method = min(loto, key=loto.get)
    print(f"leave-one-track-out ECE on the fit split: {loto}; chosen: {method}")
    cal = fit(*fit_set, method)
    rep = reliability(cal, *check_set)
    raw_rep = reliability(None, *check_set)
    print(json.dumps({"temperature": cal.temperature, "ece_check": rep["ece"], "ece_raw_score": raw_rep["ece"]}))
    table = {}
    if os.path.exists(args.out):
        table = json.loads(Path(args.out).read_text())
    table[model.name] = {**cal.to_json(), "genres": genres, "method": method,
                         "loto_ece_fit_split": {k: round(v, 4) for k, v in loto.items()},
                         "fitted_on": f"{len(fit_set[1])} readouts, every 2nd track of asc-music + wesnoth-1.16-music",
                         "checked_on": f"{len(check_set[1])} readouts of the other tracks",
                         "ece_check": round(rep["ece"], 4), "ece_raw_score": round(raw_rep["ece"], 4),
                         "reliability": rep["bins"]}
    Path(args.out).write_text(json.dumps(table, indent=1) + "\n")
    print("bins (check split): confidence range | readouts | mean confidence | share right")
    for b in rep["bins"]:
        print(f"  {b['lo']:.1f}-{b['hi']:.1f} | {b['n']} | {b['conf']:.3f} | {b['acc']:.3f}")
    print(f"raw score bins: {raw_rep['bins']}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
