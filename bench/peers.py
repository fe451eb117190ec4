#!/usr/bin/env python3
"""Peers side by side: cost of one update (new chunk in -> label out) after 1, 5 and 10 minutes
of streamed audio, for

  (a) the seed's approach: write the newest chunk to a WAV file and call
      `pipeline("audio-classification", model=dir)(path)` (ffmpeg decodes the file);
      a1 = the 1 s chunk (what the seed did; the label sees 1 s of music),
      a2 = the newest 10 s written and classified (same context as the engine);
  (b) Gradio's streaming-ASR pattern: append the chunk to a growing buffer and re-run the
      pipeline on all of it (`pipe({"raw": buffer, "sampling_rate": 16000})`);
  (c) this engine: `StreamEngine(model, EngineConfig(window_s=10, hop_s=1))` fed the 1 s
      chunk; time from `feed` to the `on_result` call (background worker), with the
      accelerated forward (accel auto) and with it off.

    python -m bench.peers            # (b) measured up to 120 s of buffer (~3 min)
    python -m bench.peers --quick    # (b) measured up to 60 s
    python -m bench.peers --budget 600   # let (b) run longer before extrapolating

(b) after 5 and 10 minutes is too slow and memory-hungry to run on this machine (its
transformer attention grows with the square of the buffer, the conv front end linearly):
it is measured on buffers of 10 s .. --max-measured s, a + b*t + c*t^2 is fitted by least
squares, and 5 and 10 minutes are extrapolated from that fit; the table says which figures
are extrapolated. Same DistilHuBERT-shaped model (random weights) for every peer.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import warnings

import numpy as np

from bench import common as C

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
RATE = C.RATE


def seed_update(pipe, chunk: np.ndarray, tmpdir: str):
    """One update of the seed: write the chunk to a WAV file, classify the file."""
    import soundfile as sf

    def run() -> float:
        t0 = time.perf_counter()
        path = os.path.join(tmpdir, "chunk.wav")
        sf.write(path, chunk, RATE)
        pipe(path)
        return (time.perf_counter() - t0) * 1000
    return run


def growing_ms(pipe, buf: np.ndarray, chunk: np.ndarray) -> float:
    t0 = time.perf_counter()
    buf = np.concatenate([buf, chunk])  # the pattern's append
    pipe({"raw": buf, "sampling_rate": RATE})
    return (time.perf_counter() - t0) * 1000


class EnginePeer:
    """An engine that has been streamed `minutes` of audio; update() feeds the next 1 s and
    returns the ms until its result arrives."""

    def __init__(self, model, audio: np.ndarray, minutes: float):
        from stream import EngineConfig, StreamEngine

        self.audio, self.model = audio, model
        self.done = threading.Event()
        self.eng = StreamEngine(model, EngineConfig(window_s=10.0, hop_s=1.0, min_window_s=10.0),
                                on_result=lambda r: self.done.set())
        n = self.pos = int(minutes * 60 * RATE)
        for s in range(0, n, 60 * RATE):  # N minutes streamed (superseded windows are skipped)
            self.eng.feed(np.take(audio, np.arange(s, min(s + 60 * RATE, n)), mode="wrap"), RATE)
        self._idle()
        assert self.eng.stats.seconds_received >= minutes * 60 - 1e-6

    def _idle(self):
        t0 = time.perf_counter()
        while (self.eng._worker.pending() or getattr(self.model, "busy", 0)) and time.perf_counter() - t0 < 120:
            time.sleep(0.01)

    def update(self) -> float:
        self._idle()
        self.done.clear()
        chunk = np.take(self.audio, np.arange(self.pos, self.pos + RATE), mode="wrap")
        self.pos += RATE
        t0 = time.perf_counter()
        self.eng.feed(chunk, RATE)
        self.done.wait(120)
        return (time.perf_counter() - t0) * 1000

    def close(self):
        self.eng.close()
        C.wait_idle(self.model)


def nonneg_quadratic(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares a + b*t + c*t^2 with a, b, c >= 0 (cost cannot fall as the buffer grows):
    the best of the unconstrained fits on every subset of the three terms that is >= 0."""
    import itertools

    basis = np.stack([np.ones_like(t), t, t * t], 1)
    best, best_err = np.zeros(3), np.inf
    for k in (1, 2, 3):
        for cols in itertools.combinations(range(3), k):
            if len(t) < k:
                continue
            c, *_ = np.linalg.lstsq(basis[:, cols], y, rcond=None)
            if (c < 0).any():
                continue
            full = np.zeros(3)
            full[list(cols)] = c
            err = float(((basis @ full - y) ** 2).sum())
            if err < best_err:
                best, best_err = full, err
    return best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--max-measured", type=float, default=None, help="longest growing buffer actually run (s)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    from transformers import pipeline

    max_meas = args.max_measured or (60.0 if args.quick else 120.0)
    repeats = args.repeats or (3 if args.quick else 6)
    ckpt = C.temp_checkpoint("distilhubert")
    music = C.real_music(120.0)
    audio = np.concatenate([y for _, y in music]) if music else C.synthetic_music(240.0)
    print(f"== peers: one update after N minutes of streamed audio ==\n{C.cpu_note()}; {C.load_note()}; "
          f"DistilHuBERT-shaped model; audio: {'real music' if music else 'synthetic'}")
    pipe = pipeline("audio-classification", model=ckpt, device=-1)
    eng_fast = C.load_engine_model(ckpt, "auto")
    eng_off = C.load_engine_model(ckpt, "off")
    tmp = tempfile.mkdtemp(prefix="bench_peers_")
    minutes = [1, 5, 10]

    # (b) growing buffer: measured lengths, then a quadratic fit
    lengths = [s for s in (10, 20, 30, 60, 90, 120, 180, 240, 300, 600) if s <= max_meas]
    meas = {}
    for s in lengths:
        buf = np.take(audio, np.arange(int((s - 1) * RATE)), mode="wrap")
        meas[s] = min(growing_ms(pipe, buf, audio[:RATE]) for _ in range(1 if s > 30 else 2))
        print(f"  (b) growing buffer {s:>4} s: {meas[s]:.0f} ms", flush=True)
    t = np.array(list(meas), float)
    y = np.array(list(meas.values()))
    coef = nonneg_quadratic(t, y)
    fit = lambda s: float(coef[0] + coef[1] * s + coef[2] * s * s)

    rows, out = [], []
    for m in minutes:
        s = m * 60
        cands = {
            "a1": seed_update(pipe, np.take(audio, np.arange((s - 1) * RATE, s * RATE), mode="wrap"), tmp),
            "a2": seed_update(pipe, np.take(audio, np.arange((s - 10) * RATE, s * RATE), mode="wrap"), tmp),
        }
        peers = {"c_fast": EnginePeer(eng_fast, audio, m), "c_off": EnginePeer(eng_off, audio, m)}
        cands.update({k: p.update for k, p in peers.items()})
        times = {k: [] for k in cands}
        for r in range(repeats + 1):  # interleaved rounds; the first warms up
            for k, fn in cands.items():
                ms = fn()
                if r:
                    times[k].append(ms)
        for p in peers.values():
            p.close()
        a1, a2, c_fast, c_off = (C.med(times[k]) for k in ("a1", "a2", "c_fast", "c_off"))
        if s in meas:
            b, b_note = meas[s], "measured"
        else:
            b, b_note = fit(s), f"extrapolated (fit on {int(t[0])}-{int(t[-1])} s)"
        out.append({"minutes": m, "seed_1s": a1, "seed_10s": a2, "growing": b, "growing_note": b_note,
                    "engine": c_fast, "engine_fp32": c_off})
        rows.append([f"{m} min", f"{a1:.0f}", f"{a2:.0f}", f"{b:.0f}{'*' if b_note != 'measured' else ''}",
                     f"{c_off:.0f}", f"{c_fast:.0f}", f"{a2 / c_fast:.1f}x", f"{b / c_fast:.0f}x"])
        print("  " + "  ".join(rows[-1]), flush=True)
    print()
    print(C.table(rows, ["after", "(a1) seed 1 s file ms", "(a2) seed 10 s file ms", "(b) growing ms",
                         "(c) engine fp32 ms", f"(c) engine {eng_fast.accel.mode} ms", "a2 / c", "b / c"]))
    print(f"* extrapolated: growing-buffer cost ~ {coef[0]:.0f} + {coef[1]:.1f}*t + {coef[2]:.3f}*t^2 ms "
          f"(t = buffer seconds), fitted on {', '.join(f'{int(k)} s' for k in meas)}; running it on 5-10 min "
          f"buffers would take minutes and GBs per update here.")
    print(f"(a1) classifies only the last 1 s; (a2), (b) and (c) see >= 10 s. Engine mode: {eng_fast.accel.reason}.")
    return {"rows": out, "growing_measured": meas, "fit": coef.tolist()}


if __name__ == "__main__":
    main()
