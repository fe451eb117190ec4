#!/usr/bin/env python3
"""How well the live headline follows the music (issues 9 and 22): reaction to a change of
track, flicker on steady music, agreement with the model's own verdict; clean and in a room.

    python -m bench.quality --each          # tags / sum / max, clean + room (~25 min on 2 busy cores, first run)
    python -m bench.quality --segments 8    # shorter stream
    python -m bench.quality --configs 'max,m3=switch_margin:0.3;pool:max'
    python -m bench.quality --electronic '/my/edm/*.flac' --acoustic '/my/classical/*.flac'

The stream. Excerpts of real recordings alternate between an electronic and an acoustic /
orchestral track (`--segments` excerpts, 32 by default, of 26-34 s, each from a random place
in a random track, levelled to -20 dBFS RMS, joined with a 0.1 s crossfade). It reaches the
engine as a microphone delivers it: 48 kHz stereo int16 in 20 ms chunks, `background=False`
(every hop is classified; the figures are in stream seconds and do not depend on this
machine's speed). "room" is the same stream heard in a room: convolved with a synthetic
impulse response per channel (direct sound + exponentially decaying noise tail, RT60 0.5 s,
direct-to-reverberant ratio 0 dB) plus pink noise 10 dB below the music (`--snr`, `--noise white`).

Recordings (Debian packages; GPL-2+, see each package's /usr/share/doc/<pkg>/copyright):
  electronic: asc-music (/usr/share/games/asc/music/*.mp3, Michael Kievernagel),
              nexuiz-music (the OGG tracks inside /usr/share/games/nexuiz/data/music.pk3, Alientrap)
  acoustic:   wesnoth-1.16-music (/usr/share/games/wesnoth/1.16/data/core/music/*.ogg, orchestral
              game soundtrack by the Battle for Wesnoth composers)
  apt-get install asc-music nexuiz-music wesnoth-1.16-music   (~11 + 84 + 153 MB)
Tracks shorter than 60 s (jingles) are skipped.

Configurations. "tags": every label its own genre (EngineConfig.genres = {label: label}), so
the headline is the model's tag, as before issue 22. "max" / "sum": the default EngineConfig,
genres pooled from their styles by max / by sum. NAME=field:value;... sets EngineConfig fields
(pool:max|sum the pooling).

Figures per configuration (readouts = one per hop, 1 s; "steady" = from 12 s after a change
of track until the next):
  verdict    the model's own verdict on an excerpt: the genre of the best label of the mean raw
             scores of the windows wholly inside it (the same for every pooling). "pooled
             verdict": the genre whose pooled scores have the highest mean over those windows.
  headline reaction  stream seconds from a change of track until the headline (`Result.genre`)
             shows the new excerpt's verdict for 3 consecutive readouts (the first of them);
             only changes whose verdict differs from the previous excerpt's count ("changes").
  headline flicker   headline changes per minute of steady music; "style flicker" the same for
             `Result.label`; "headline changes/min (all)" over the whole stream.
  headline = verdict  share of steady readouts whose headline is the excerpt's verdict: what a
             readout of this model can agree with (a readout cannot beat its model).
  family reaction    (issue 9's figure) seconds until the smoothed label scores favour the new
             family (ELECTRONIC vs ACOUSTIC tags below: how the music is made) for 3 readouts.
  excerpts the model gets right  excerpts whose mean raw scores favour the right family.

Issue 9's "before" (the engine before change detection) is replayed by this file as it was at
commit 06b269b (`git show 06b269b:bench/quality.py`).

Model outputs are cached by window content (--cache, default bench/results/quality_cache),
so a second run, or a configuration that shares windows with another, costs little.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import io
import math
import os
import statistics
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import common as C

RATE = 48000
CHUNK = RATE // 50  # 20 ms, as a sound card delivers
LEVEL_DBFS = -20.0
SETTLE_S = 12.0

ELECTRONIC = frozenset({"electronic", "electronica", "electro", "techno", "house", "dance"})
ACOUSTIC = frozenset({"classical", "opera", "folk", "country", "jazz", "blues"})
FAMILIES = {"electronic": ELECTRONIC, "acoustic": ACOUSTIC}

DEFAULT_SOURCES = {
    "electronic": ["/usr/share/games/asc/music/*.mp3", "/usr/share/games/nexuiz/data/music.pk3:sound/cdtracks/*.ogg"],
    "acoustic": ["/usr/share/games/wesnoth/1.16/data/core/music/*.ogg"],
}


# ---- recordings -------------------------------------------------------------------------

@dataclass
class Track:
    name: str
    opener: object  # () -> path or file object for soundfile


def find_tracks(patterns: list[str]) -> list[Track]:
    """Files matching each glob; "archive.pk3:inner/*.ogg" reads members of a zip archive."""
    import fnmatch

    out = []
    for pat in patterns:
        if ":" in pat and pat.split(":", 1)[0].endswith((".pk3", ".zip")):
            arch, inner = pat.split(":", 1)
            if not os.path.isfile(arch):
                continue
            z = zipfile.ZipFile(arch)
            for n in sorted(z.namelist()):
                if fnmatch.fnmatch(n, inner):
                    out.append(Track(f"{Path(arch).stem}/{Path(n).stem}", lambda z=z, n=n: io.BytesIO(z.read(n))))
        else:
            out += [Track(Path(p).stem, lambda p=p: p) for p in sorted(glob.glob(pat))]
    return out


def load_track(track: Track) -> np.ndarray:
    """(n, 2) float32 at 48 kHz."""
    import soundfile as sf
    import soxr

    y, sr = sf.read(track.opener(), dtype="float32", always_2d=True)
    y = y[:, :2] if y.shape[1] >= 2 else np.repeat(y, 2, axis=1)
    if sr != RATE:
        y = soxr.resample(y, sr, RATE).astype(np.float32)
    return y


def rms_db(x) -> float:
    return 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


@dataclass
class Stream:
    audio: np.ndarray  # (n, 2) float32 at 48 kHz
    starts: list  # segment start times (s); starts[0] = 0
    families: list  # family of each segment
    names: list

    @property
    def duration(self) -> float:
        return len(self.audio) / RATE


def build_stream(sources: dict[str, list[Track]], segments: int, seed: int = 0, min_track_s: float = 60.0) -> Stream:
    rng = np.random.default_rng(seed)
    pools = {fam: list(rng.permutation(len(tr))) for fam, tr in sources.items()}
    fams = list(sources)
    xfade = int(0.1 * RATE)
    parts, starts, families, names = [], [], [], []
    pos = 0
    for k in range(segments):
        fam = fams[k % len(fams)]
        while True:
            if not pools[fam]:
                pools[fam] = list(rng.permutation(len(sources[fam])))
            tr = sources[fam][pools[fam].pop()]
            y = load_track(tr)
            if len(y) >= min_track_s * RATE:
                break
        seg_s = rng.uniform(26.0, 34.0)
        n = int(seg_s * RATE)
        lo = int(min(20.0, len(y) / RATE - seg_s - 10) * RATE)
        off = int(rng.uniform(lo, len(y) - n - 5 * RATE))
        seg = y[off:off + n + xfade].copy()
        seg *= 10 ** ((LEVEL_DBFS - rms_db(seg)) / 20)
        peak = float(np.abs(seg).max())
        if peak > 0.99:  # keep it representable as int16 (a limiter, not a level change)
            seg *= 0.99 / peak
        parts.append(seg)
        starts.append(pos / RATE)
        families.append(fam)
        names.append(f"{tr.name}@{off / RATE:.0f}s")
        pos += n
    out = np.zeros((pos + xfade, 2), np.float32)
    ramp = np.linspace(0, 1, xfade, dtype=np.float32)[:, None]
    p = 0
    for k, seg in enumerate(parts):
        seg = seg.copy()
        if k:
            seg[:xfade] *= np.sqrt(ramp)
        if k < len(parts) - 1:
            seg[-xfade:] *= np.sqrt(1 - ramp)
        out[p:p + len(seg)] += seg
        p += len(seg) - xfade
    # a change "happens" in the middle of its crossfade
    starts = [0.0] + [s + 0.05 for s in starts[1:]]
    return Stream(out[:pos], starts, families, names)


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Overlap-add FFT convolution of a long 1-D signal with a short response (same length out)."""
    m = len(h)
    nfft = 1 << int(math.ceil(math.log2(4 * m)))
    step = nfft - m + 1
    H = np.fft.rfft(h, nfft)
    y = np.zeros(len(x) + m - 1, np.float64)
    for i in range(0, len(x), step):
        seg = np.fft.irfft(np.fft.rfft(x[i:i + step], nfft) * H, nfft)
        n = min(nfft, len(y) - i)
        y[i:i + n] += seg[:n]
    return y[:len(x)]


def room(audio: np.ndarray, rt60: float = 0.5, snr_db: float = 10.0, noise: str = "pink", seed: int = 1) -> np.ndarray:
    """The stream as a microphone across a room hears it: reverb (RT60) and steady noise at
    `snr_db` below the music's RMS level."""
    rng = np.random.default_rng(seed)
    n_ir = int(1.2 * rt60 * RATE)
    t = np.arange(n_ir) / RATE
    out = np.empty_like(audio)
    for ch in range(audio.shape[1]):
        tail = rng.standard_normal(n_ir) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
        tail[: int(0.002 * RATE)] = 0  # the first reflections arrive a couple of ms after the direct sound
        tail *= 1.0 / np.sqrt(np.sum(tail ** 2))  # direct-to-reverberant ratio 0 dB
        h = tail
        h[0] += 1.0
        out[:, ch] = _fft_convolve(audio[:, ch].astype(np.float64), h)
    out *= 10 ** ((LEVEL_DBFS - rms_db(out)) / 20)
    w = rng.standard_normal(out.shape)
    if noise == "pink":  # 1/f power: shape white noise in the frequency domain
        spec = np.fft.rfft(w, axis=0)
        f = np.fft.rfftfreq(len(w), 1 / RATE)
        spec /= np.sqrt(np.maximum(f, 20.0))[:, None]
        w = np.fft.irfft(spec, len(w), axis=0)
    w *= 10 ** ((LEVEL_DBFS - snr_db - rms_db(w)) / 20)
    out = out + w
    peak = float(np.abs(out).max())
    if peak > 0.99:
        out *= 0.99 / peak
    return out.astype(np.float32)


# ---- model cache ------------------------------------------------------------------------

class CachedModel:
    """Wraps an AudioModel: identical windows (same samples) are classified once. Every
    attribute the engine reads is forwarded."""

    def __init__(self, model, path: str | None):
        self._m = model
        self._path = path
        self._cache: dict[bytes, np.ndarray] = {}
        self.hits = self.misses = 0
        if path and os.path.exists(path):
            with np.load(path) as d:
                self._cache = dict(zip(map(bytes, d["keys"]), d["probs"]))

    def __getattr__(self, name):
        return getattr(self._m, name)

    def predict(self, windows):
        out = []
        for w in windows:
            key = hashlib.sha1(np.ascontiguousarray(w, np.float32).tobytes()).digest()
            p = self._cache.get(key)
            if p is None:
                p = self._m.predict(w[None])[0]
                self._cache[key] = p
                self.misses += 1
                if self.misses % 500 == 0:  # keep the work of a long run if it is interrupted
                    self.save()
            else:
                self.hits += 1
            out.append(p)
        return np.stack(out)

    def save(self) -> None:
        if self._path and self._cache:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            keys = np.array(list(self._cache), dtype="S20")
            np.savez(self._path + ".tmp.npz", keys=keys, probs=np.stack(list(self._cache.values())))
            os.replace(self._path + ".tmp.npz", self._path)


# ---- running and scoring ----------------------------------------------------------------

@dataclass
class Readout:
    t: float
    label: str | None
    scores: dict
    raw: dict = field(default_factory=dict)
    window_s: float = 0.0
    genre: str | None = None
    genre_scores: dict = field(default_factory=dict)


@dataclass
class Run:
    """One engine configuration: its EngineConfig and how genres pool their styles."""

    config: object
    pool: str = "max"


def run_stream(model, audio: np.ndarray, run: Run) -> tuple[list[Readout], dict]:
    """The readouts, and the engine's {label: genre} (to turn the model's verdict into a genre)."""
    from stream import StreamEngine

    got: list[Readout] = []
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    with StreamEngine(model, run.config, background=False,
                      on_result=lambda r: got.append(Readout(r.time_s, r.label, r.scores, r.raw_scores, r.window_s,
                                                             r.genre, r.genre_scores))) as e:
        e.genre_level = dataclasses.replace(e.genre_level, pool=run.pool)  # before the first feed
        for i in range(0, len(pcm), CHUNK):
            e.feed(pcm[i:i + CHUNK], RATE)
        genre_of = dict(e.genre_level.genre_of)
    return got, genre_of


def _favours(r: Readout, new: str, old: str, scores: dict | None = None) -> bool:
    scores = r.scores if scores is None else scores
    best = lambda fam: max((v for k, v in scores.items() if k in FAMILIES[fam]), default=0.0)
    return best(new) > best(old)


def _first_run_of(ok: list, n: int = 3) -> int | None:
    return next((i for i in range(len(ok) - n + 1) if all(ok[i:i + n])), None)


@dataclass
class Figures:
    reaction: list = field(default_factory=list)  # per change (s): style scores favour the new family
    genre_reaction: list = field(default_factory=list)  # per change whose verdict genre differs: headline shows it
    headline_flicker: float = 0.0  # genre changes per minute of steady music
    style_flicker: float = 0.0  # label changes per minute of steady music
    headline_changes: float = 0.0  # genre changes per minute, all of the stream
    agree: float = 0.0  # steady readouts whose headline is the model's verdict on the excerpt
    agree_pooled: float = 0.0  # ... is the genre whose pooled scores lead over the excerpt
    model_right: int = 0  # excerpts whose whole-excerpt scores favour the right family
    verdicts: list = field(default_factory=list)


def pooled_verdict(windows: list[dict], genre_of: dict, pool: str) -> str | None:
    """The genre whose scores, pooled from each window's raw label scores as the engine pools
    them, have the highest mean over the windows."""
    reduce = max if pool == "max" else sum
    totals: dict = {}
    for raw in windows:
        by: dict = {}
        for label, v in raw.items():
            if label in genre_of:
                by.setdefault(genre_of[label], []).append(v)
        for g, vs in by.items():
            totals[g] = totals.get(g, 0.0) + reduce(vs)
    return max(totals, key=totals.get) if totals else None


def score(readouts: list[Readout], stream: Stream, genre_of: dict, pool: str = "max") -> Figures:
    f = Figures()
    bounds = stream.starts + [stream.duration]
    g_flips = s_flips = steady_n = agree = agree_pooled = 0
    steady_s = 0.0
    for k in range(len(stream.starts)):
        t0, t1, fam = bounds[k], bounds[k + 1], stream.families[k]
        seg = [r for r in readouts if t0 < r.t <= t1]
        # the model's own verdict on the excerpt: the genre of the best label of the mean raw
        # scores of the windows wholly inside it (independent of how genres are pooled)
        inside = [r.raw for r in seg if r.t >= t0 + 9.0 and r.raw]
        mean = {k: float(np.mean([d[k] for d in inside])) for k in inside[0]} if inside else {}
        placed = {k: v for k, v in mean.items() if k in genre_of}
        verdict = genre_of[max(placed, key=placed.get)] if placed else None
        f.verdicts.append(verdict)
        other = next(x for x in FAMILIES if x != fam)
        f.model_right += not mean or _favours(None, fam, other, mean)
        if k:
            old = stream.families[k - 1]
            hit = _first_run_of([_favours(r, fam, old) for r in seg])
            f.reaction.append(seg[hit].t - t0 if hit is not None else float("inf"))
            if verdict is not None and verdict != f.verdicts[k - 1]:  # a change the headline should show
                hit = _first_run_of([r.genre == verdict for r in seg])
                f.genre_reaction.append(seg[hit].t - t0 if hit is not None else float("inf"))
        steady = [r for r in seg if r.t >= t0 + SETTLE_S]
        steady_s += max(t1 - (t0 + SETTLE_S), 0.0)
        for a, b in zip(steady, steady[1:]):
            g_flips += a.genre != b.genre
            s_flips += a.label != b.label
        agree += sum(r.genre == verdict for r in steady)
        pooled = pooled_verdict(inside, genre_of, pool)
        agree_pooled += sum(r.genre == pooled for r in steady)
        steady_n += len(steady)
    f.headline_flicker = g_flips / (steady_s / 60) if steady_s else 0.0
    f.style_flicker = s_flips / (steady_s / 60) if steady_s else 0.0
    f.agree = agree / steady_n if steady_n else float("nan")
    f.agree_pooled = agree_pooled / steady_n if steady_n else float("nan")
    genres = [r.genre for r in readouts]
    f.headline_changes = sum(a != b for a, b in zip(genres, genres[1:])) / (stream.duration / 60)
    return f


def fmt_reaction(xs) -> str:
    return " ".join("-" if math.isinf(x) else f"{x:.1f}" for x in xs)


def median(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=32, help="excerpts in the stream (alternating families)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--electronic", action="append", help="glob of electronic recordings (repeatable)")
    ap.add_argument("--acoustic", action="append", help="glob of acoustic/orchestral recordings (repeatable)")
    ap.add_argument("--model", default="musicnn")
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--rt60", type=float, default=0.5)
    ap.add_argument("--noise", choices=["pink", "white"], default="pink")
    ap.add_argument("--conditions", default="clean,room")
    ap.add_argument("--configs", default="tags,sum,max",
                    help="tags (the label as headline), sum / max (genres pooled so), or "
                         "NAME=field:value;...;pool:max|sum (EngineConfig fields)")
    ap.add_argument("--cache", default=str(C.ROOT / "bench" / "results" / "quality_cache"))
    ap.add_argument("--each", action="store_true", help="print the reaction of each change")
    args = ap.parse_args(argv)

    from stream import EngineConfig, load_model

    sources = {"electronic": find_tracks(args.electronic or DEFAULT_SOURCES["electronic"]),
               "acoustic": find_tracks(args.acoustic or DEFAULT_SOURCES["acoustic"])}
    for fam, tr in sources.items():
        if not tr:
            print(f"no {fam} recordings found; install the Debian packages named in the docstring or pass --{fam}")
            return 2
    print(f"# {C.cpu_note()}; {C.load_note()}")
    print(f"# recordings: {len(sources['electronic'])} electronic, {len(sources['acoustic'])} acoustic")
    t0 = time.perf_counter()
    stream = build_stream(sources, args.segments, args.seed)
    print(f"# stream: {args.segments} excerpts, {stream.duration:.0f} s ({time.perf_counter() - t0:.0f} s to build)")
    for s, fam, name in zip(stream.starts, stream.families, stream.names):
        print(f"#   {s:6.1f} s  {fam:10s} {name}")

    base = load_model(args.model)
    model = CachedModel(base, f"{args.cache}_{base.name.replace('/', '_')}.npz" if args.cache else None)
    runs = {}
    for spec in args.configs.split(","):
        if spec == "tags":  # every label its own genre: the headline is the tag, as before issue 22
            shown = base.default_labels or base.labels
            runs[spec] = Run(EngineConfig(top_k=0, genres={l: l for l in shown}))
        elif spec in ("max", "sum"):
            runs[spec] = Run(EngineConfig(top_k=0), pool=spec)
        else:
            name, _, kv = spec.partition("=")
            fields = dict(p.split(":") for p in kv.split(";") if p)
            pool = fields.pop("pool", "max")
            runs[name] = Run(EngineConfig(top_k=0, **{k: float(v) for k, v in fields.items()}), pool=pool)
    rows = []
    for cond in args.conditions.split(","):
        audio = stream.audio if cond == "clean" else room(stream.audio, args.rt60, args.snr, args.noise)
        for name, run in runs.items():
            t1 = time.perf_counter()
            readouts, genre_of = run_stream(model, audio, run)
            model.save()
            fig = score(readouts, stream, genre_of, run.pool)
            rows.append((cond, name, fig))
            print(f"# {cond}/{name}: {len(readouts)} readouts in {time.perf_counter() - t1:.0f} s "
                  f"(model cache {model.hits} hits, {model.misses} misses)", flush=True)
            if args.each:
                print(f"#   verdicts: {' '.join(str(v) for v in fig.verdicts)}")
                print(f"#   genre reaction each: {fmt_reaction(fig.genre_reaction)}")
    print()
    print(C.table([[cond, name, f"{median(f.genre_reaction):.1f}", f"{max(f.genre_reaction, default=0):.1f}",
                    len(f.genre_reaction), f"{f.headline_flicker:.2f}", f"{f.style_flicker:.2f}",
                    f"{f.headline_changes:.2f}", f"{100 * f.agree:.1f}", f"{100 * f.agree_pooled:.1f}",
                    f"{median(f.reaction):.1f}",
                    f"{f.model_right}/{len(stream.starts)}"]
                   for cond, name, f in rows],
                  ["stream", "config", "headline reaction s (median)", "slowest s", "changes", "headline flicker/min",
                   "style flicker/min", "headline changes/min (all)", "headline = model's verdict %",
                   "= pooled verdict %",
                   "family reaction s (scores)", "excerpts the model gets right"]))
    print()
    for cond, name, f in rows:
        print(f"{cond}/{name} headline reaction each: {fmt_reaction(f.genre_reaction)}")
    print("\ntargets (clean): headline flicker <= 0.4/min (room <= 0.8), headline reaction median <= 3 s, "
          "headline = model's verdict >= 97 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
