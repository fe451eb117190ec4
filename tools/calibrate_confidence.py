#!/usr/bin/env python3
"""Fit the headline's confidence: the chance that the genre shown equals the track's genre.

    python -m tools.calibrate_confidence --part 0 1           # gather what is missing (10-60 s a track)
    python -m tools.calibrate_confidence [--gathered-only]     # fit (and gather what is missing)

No labels: the "track's genre" is the teacher's verdict aggregated over the whole track (the
argmax of its genre scores averaged over 3 s patches every 6 s of the track). Readouts: a 30 s
excerpt of each track (30 s in) played through an inline engine with default settings.
Split by Debian package (tools/robust_data.py): the confidence is fitted on the robust
recipe's training packages (every track, up to 64 each) and checked on its validation packages
(asc-music, wesnoth-1.16-music: every track); the bundled MusiCNN was trained on none.
Candidates (stream/calibration.py, `METHODS`): a temperature alone; a temperature then isotonic
regression of the headline's tempered probability or of its lead over the runner-up; a
logistic regression on the tempered probability's logit and a few numbers the engine has for
every readout (its age since the smoothed genre state began, the lead, the entropy), every
readout or every package weighing alike. The method is chosen by leave-one-package-out on the
fit packages only; the check packages judge it, and a refit that does worse on them than the
calibration already in --out does not replace it (--replace does). For the record, every
package held out in turn (each judged by a fit on the 13 others) gives a second held-out
figure. Gathering is cached per track (--cache); written to
stream/models/musicnn/calibration.json under the model's name.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

EXCERPT_S = (30.0, 30.0)  # the readouts: 30 s from 30 s into each track (its start if shorter)
VERDICT_STRIDE_S = 6.0  # the verdict: a 3 s patch every 6 s over the whole track
PER_PACKAGE = 64  # tracks per package at most, fit and check alike, spread over its sorted list (every track of today's packages: ~10 s each)


def track_list() -> list:
    """(Track, side) for the fit packages (the robust recipe's training packages) and the check
    packages (its validation packages: asc-music, wesnoth-1.16-music). The bundled MusiCNN was
    trained on none of them; the split is by package, so no track, composer session or remix
    sits on both sides."""
    from tools import robust_data as R
    out = []
    for side, pkgs in (("fit", R.TRAIN), ("check", R.VALIDATION)):
        for pkg in pkgs:
            ts = R.tracks([pkg])
            if len(ts) > PER_PACKAGE:
                ts = [ts[int(i)] for i in np.linspace(0, len(ts) - 1, PER_PACKAGE).round()]
            out += [((i + 0.5) / len(ts), t, side) for i, t in enumerate(ts)]
    # every package in step (by the share of its tracks): what is gathered at any moment spreads over all
    return [(t, side) for _, t, side in sorted(out, key=lambda x: x[0])]


def gather(model, y: np.ndarray, teacher=None) -> dict:
    """Per readout of one excerpt of a track (`y`: mono at the model's rate): the headline genre
    and the smoothed genre scores (all genres); and the track's verdict: the argmax of the
    teacher's genre scores averaged over 3 s patches every 6 s of the whole track (`teacher`:
    the original MusiCNN, whichever model is calibrated; None: the model itself)."""
    from stream import EngineConfig, StreamEngine

    rate = int(model.sample_rate)
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
    smooth = np.array([[r.genre_scores.get(g, 0.0) for g in genres] for r in rows], np.float32).reshape(-1, len(genres))
    n = int(model.patch_samples or 3 * rate)
    if len(y) < n:
        y = np.pad(y, (0, n - len(y)))
    patches = np.stack([y[i:i + n] for i in range(0, len(y) - n + 1, int(VERDICT_STRIDE_S * rate))])
    loud = np.sqrt(np.mean(patches.astype(np.float64) ** 2, axis=1)) > 10 ** (cfg.silence_dbfs / 20)
    if not loud.any():
        return {"smooth": smooth[:0], "head": np.zeros(0, np.int64), "verdict": -1, "genres": genres,
                "times": np.zeros(0, np.float32)}
    teacher = teacher or model
    probs = np.concatenate([teacher.predict(patches[loud][i:i + 16]) for i in range(0, int(loud.sum()), 16)])
    verdict = int(np.argmax(np.mean([gl.scores(p) for p in probs], axis=0)))
    head = np.array([genres.index(r.genre) for r in rows], np.int64)
    return {"smooth": smooth, "head": head, "verdict": verdict, "genres": genres,
            "times": np.array([r.time_s for r in rows], np.float32)}


def ages(times: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """Each readout's age as the engine sees it (seconds since its smoothed genre state began:
    stream/smoothing.py's `started_at`), from the readouts alone: the state starts afresh after
    silence (a gap in the readouts' times) and at a detected change, where it jumps to the
    newest seconds' scores (by more than the smoother's novelty, which the EMA never moves)."""
    from stream.smoothing import ScoreSmoother, _novelty
    times = np.asarray(times, np.float64)
    out = np.zeros(len(times))
    if not len(times):
        return out
    gaps = np.diff(times)
    hop = float(np.min(gaps[gaps > 0])) if (gaps > 0).any() else 1.0
    idx = np.arange(smooth.shape[1])
    start = times[0]
    for i in range(1, len(times)):
        if times[i] - times[i - 1] > 1.5 * hop or \
                _novelty(smooth[i].astype(np.float64), smooth[i - 1].astype(np.float64), idx) > ScoreSmoother.NOVELTY:
            start = times[i]
        out[i] = times[i] - start
    return out


def load_track(model, track) -> np.ndarray:
    from stream.resample import StreamingResampler
    from tools import robust_data as R
    y = R.load(track)  # mono 16 kHz (Fret-on-Fire stems summed)
    rate = int(model.sample_rate)
    if rate != R.RATE:
        rs = StreamingResampler(R.RATE, rate)
        y = np.concatenate([rs.process(y), rs.flush()])
    return np.ascontiguousarray(y, np.float32)


def gathered(model, cache_dir: str, part: tuple[int, int] | None = None, only_cached: bool = False,
             teacher=None) -> list[dict]:
    """The readouts of every track (cached per track in `cache_dir`); with `part` (K, N) only
    the K-th of N shares of the tracks not yet cached are gathered (run N at once); with
    `only_cached` none are."""
    os.makedirs(cache_dir, exist_ok=True)
    out = []
    for k, (t, side) in enumerate(track_list()):
        key = f"{t.package}_{t.name}".replace("/", "_").replace(" ", "_")
        cache = os.path.join(cache_dir, f"{model.name}_{key}.npz")
        if os.path.exists(cache):
            d = dict(np.load(cache, allow_pickle=True))
            d["genres"], d["verdict"] = list(d["genres"]), int(d["verdict"])
        elif only_cached or (part and k % part[1] != part[0]):
            continue  # another part gathers it
        else:
            d = gather(model, load_track(model, t), teacher)
            np.savez(cache + ".tmp.npz", **d)
            os.replace(cache + ".tmp.npz", cache)
        d.update(pkg=t.package, name=t.name, side=side)
        out.append(d)
        if len(d["head"]):
            print(f"{side:5s} {t.package} {t.name}: {len(d['head'])} readouts, verdict {d['genres'][d['verdict']]}, "
                  f"headline agrees {np.mean(d['head'] == d['verdict']):.0%}", flush=True)
    return out


# the candidates, chosen by leave-one-package-out on the fit packages: (name, method, features,
# weighting): "readouts" weighs every readout alike, "packages" every package alike (a package
# with many tracks or readouts does not set the map for all)
METHODS = [("temperature", "temperature", (), "readouts"),
           ("isotonic", "isotonic", (), "readouts"),
           ("margin", "margin", (), "readouts")]
METHODS += [(f"logistic[{'+'.join(f)}]{'' if w == 'readouts' else ', packages alike'}", "logistic", f, w)
            for f in (("logit",), ("logit", "age"), ("logit", "age", "margin"), ("logit", "age", "entropy"))
            for w in ("readouts", "packages")]
BY_NAME = {m[0]: m for m in METHODS}


def _stack(tracks: list[dict]):
    """(scores, headline, truth, age, package weight) of the readouts of `tracks`."""
    ts = [t for t in tracks if len(t["head"])]
    pkgs = {t["pkg"] for t in ts}
    per_pkg = {p: sum(len(t["head"]) for t in ts if t["pkg"] == p) for p in pkgs}
    n = sum(per_pkg.values())
    return (np.concatenate([t["smooth"] for t in ts]), np.concatenate([t["head"] for t in ts]),
            np.concatenate([np.full(len(t["head"]), t["verdict"]) for t in ts]),
            np.concatenate([t["age"] for t in ts]),
            np.concatenate([np.full(len(t["head"]), n / len(pkgs) / per_pkg[t["pkg"]]) for t in ts]))


def fit_named(tracks: list[dict], name: str):
    from stream.calibration import fit
    _, method, names, weighting = BY_NAME[name]
    s, h, v, age, w = _stack(tracks)
    return fit(s, h, v, method, age_s=age, names=names or ("logit",),
               weights=w if weighting == "packages" else None)


def judged(cal, tracks: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(confidences, headline right 0/1) of `cal` on the readouts of `tracks`."""
    s, h, v, age, _ = _stack(tracks)
    return cal.confidences(s, h, age), (h == v).astype(np.float64)


def held_out(tracks: list[dict], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Leave one package out: each package's confidences from a fit on the other packages."""
    conf, right = [], []
    for pkg in sorted({t["pkg"] for t in tracks}):
        c, r = judged(fit_named([t for t in tracks if t["pkg"] != pkg], name), [t for t in tracks if t["pkg"] == pkg])
        conf.append(c)
        right.append(r)
    return np.concatenate(conf), np.concatenate(right)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="musicnn")
    ap.add_argument("--teacher", default="musicnn-original",
                    help="whose verdict over the whole track is the truth (the same for every model calibrated)")
    ap.add_argument("--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "calib_cache"))
    ap.add_argument("--part", type=int, nargs=2, metavar=("K", "N"),
                    help="gather only the K-th of N shares of the tracks (run N at once; then once without)")
    ap.add_argument("--gathered-only", action="store_true",
                    help="fit on the tracks already in the cache (the json says which)")
    ap.add_argument("--out", default=str(ROOT / "stream/models/musicnn/calibration.json"))
    ap.add_argument("--replace", action="store_true",
                    help="write the refit even where it does worse on the check packages than the calibration in --out")
    args = ap.parse_args()
    from stream import load_model
    from stream.calibration import Calibrator, reliability, reliability_of
    model = load_model(args.model)
    teacher = load_model(args.teacher) if args.teacher != args.model else model
    tracks = gathered(model, args.cache, args.part, only_cached=args.gathered_only, teacher=teacher)
    if args.part:
        return
    for t in tracks:  # readouts of the excerpt only (a cache gathered with a longer one is cut)
        keep = t["times"] <= EXCERPT_S[1] + 0.05
        t["smooth"], t["head"], t["times"] = t["smooth"][keep], t["head"][keep], t["times"][keep]
        t["age"] = ages(t["times"], t["smooth"])
    tracks = [t for t in tracks if len(t["head"])]
    genres = tracks[0]["genres"]
    fit_tracks = [t for t in tracks if t["side"] == "fit"]
    check_tracks = [t for t in tracks if t["side"] == "check"]
    s, h, v, age, _ = _stack(check_tracks)
    # the method: leave-one-package-out within the fit packages only (the check packages judge it)
    lopo = {m: reliability_of(*held_out(fit_tracks, m)) for m, *_ in METHODS}
    method = min(lopo, key=lopo.get)
    by_method = {m: reliability_of(*judged(fit_named(fit_tracks, m), check_tracks)) for m, *_ in METHODS}
    print("method | leave-one-package-out ECE on the fit packages | ECE on the check packages")
    for m, *_ in METHODS:
        print(f"  {m} | {lopo[m]:.4f} | {by_method[m]:.4f}{'   <- chosen' if m == method else ''}")
    cal = fit_named(fit_tracks, method)
    rep = reliability(cal, s, h, v, age_s=age)
    raw_rep = reliability(None, s, h, v)

    def every_package(name):
        """Every package held out in turn (fit on the others, all 14), for the record."""
        per_pkg = {}
        for pkg in sorted({t["pkg"] for t in tracks}):
            c, r = judged(fit_named([t for t in tracks if t["pkg"] != pkg], name), [t for t in tracks if t["pkg"] == pkg])
            per_pkg[pkg] = {"readouts": len(r), "shown": round(float(c.mean()), 4), "right": round(float(r.mean()), 4)}
        return round(reliability_of(*held_out(tracks, name)), 4), per_pkg

    def described(ts):
        pk = {}
        for t in ts:
            pk[t["pkg"]] = pk.get(t["pkg"], 0) + 1
        return f"{sum(len(t['head']) for t in ts)} readouts of {len(ts)} tracks: " + \
            ", ".join(f"{k} {v}" for k, v in sorted(pk.items()))

    table = json.loads(Path(args.out).read_text()) if os.path.exists(args.out) else {}
    old = table.get(model.name)
    shipped = None
    if old and not args.replace:
        try:
            shipped = Calibrator.from_json(old)
        except (KeyError, TypeError, ValueError):
            pass
    every, per_pkg = every_package(method)
    from stream.models.musicnn.model import SPECS, weights_digest
    digest = weights_digest(model.name) if model.name in SPECS else None
    refit = {"method": method, "calibration": cal.to_json(), "weights_sha256": digest,
             "lopo_ece_fit_packages": {k: round(v, 4) for k, v in lopo.items()},
             "fit_packages": sorted({t["pkg"] for t in fit_tracks}),
             "check_packages": sorted({t["pkg"] for t in check_tracks}),
             "fitted_on": described(fit_tracks), "checked_on": described(check_tracks),
             "ece_check": round(rep["ece"], 4), "ece_check_by_method": {k: round(v, 4) for k, v in by_method.items()},
             "ece_every_package_held_out": every, "every_package_held_out": per_pkg}
    kept = shipped is not None and reliability(shipped, s, h, v, age_s=age)["ece"] < rep["ece"]
    if kept:
        # the check packages never choose the method, but a refit that does worse on them than
        # what ships does not replace it (--replace does): the shipped one, judged on today's check set
        rep = reliability(shipped, s, h, v, age_s=age)
        print(f"kept the shipped calibration ({old.get('method')}): ECE {rep['ece']:.4f} on the check packages, "
              f"the refit's {refit['ece_check']:.4f} (--replace replaces it)")
        every_old = every_package(old["method"]) if old.get("method") in BY_NAME else (None, None)
        old = {k: v for k, v in old.items() if k != "ece_check_by_method"}  # that of an older check set
        table[model.name] = {**old, "checked_on": described(check_tracks), "ece_check": round(rep["ece"], 4),
                             "ece_raw_score": round(raw_rep["ece"], 4), "accuracy_check": round(rep["accuracy"], 4),
                             "reliability": rep["bins"], "ece_every_package_held_out": every_old[0],
                             "every_package_held_out": every_old[1], "refit_not_shipped": refit}
    else:
        fitted = {k: v for k, v in refit.items() if k != "calibration"}  # (its fields sit at the top)
        table[model.name] = {**cal.to_json(), "genres": genres, **fitted, "ece_raw_score": round(raw_rep["ece"], 4),
                             "accuracy_check": round(rep["accuracy"], 4), "reliability": rep["bins"]}
    print(json.dumps({"shipped": table[model.name]["method"], "ece_check": rep["ece"], "ece_raw_score": raw_rep["ece"],
                      "refit": refit}))
    Path(args.out).write_text(json.dumps(table, indent=1) + "\n")
    print("bins (check packages): confidence range | readouts | mean confidence | share right")
    for b in rep["bins"]:
        print(f"  {b['lo']:.1f}-{b['hi']:.1f} | {b['n']} | {b['conf']:.3f} | {b['acc']:.3f}")
    print(f"raw score bins: {raw_rep['bins']}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
