#!/usr/bin/env python3
"""How well the live readout follows the music (issue 9): reaction to a change of track,
flicker on steady music, and the right *family* of genre, clean and in a simulated room.

    python bench/quality.py                 # before/after, clean + room (~20 min on 2 busy cores, first run)
    python bench/quality.py --segments 8    # shorter stream
    python bench/quality.py --electronic '/my/edm/*.flac' --acoustic '/my/classical/*.flac'

The stream. Excerpts of real recordings alternate between an electronic and an acoustic /
orchestral track (`--segments` excerpts of 26-34 s, each from a random place in a random
track, levelled to -20 dBFS RMS, joined with a 0.1 s crossfade). It reaches the engine as a
microphone delivers it: 48 kHz stereo int16 in 20 ms chunks, `background=False` (every hop is
classified; the figures are in stream seconds and do not depend on this machine's speed).
"room" is the same stream heard in a room: convolved with a synthetic impulse response per
channel (direct sound + exponentially decaying noise tail, RT60 0.5 s, direct-to-reverberant
ratio 0 dB) plus pink noise 10 dB below the music (`--snr`, `--noise white`).

Recordings (Debian packages; GPL-2+, see each package's /usr/share/doc/<pkg>/copyright):
  electronic: asc-music (/usr/share/games/asc/music/*.mp3, Michael Kievernagel),
              nexuiz-music (the OGG tracks inside /usr/share/games/nexuiz/data/music.pk3, Alientrap)
  acoustic:   wesnoth-1.16-music (/usr/share/games/wesnoth/1.16/data/core/music/*.ogg, orchestral
              game soundtrack by the Battle for Wesnoth composers)
  apt-get install asc-music nexuiz-music wesnoth-1.16-music   (~11 + 84 + 153 MB)
Tracks shorter than 60 s (jingles) are skipped.

Families. A tagger names many genres; a listener asks "is it the electronic or the acoustic
one?". ELECTRONIC and ACOUSTIC below group the model's genre labels by how the music is made
(synthesisers and drum machines vs played instruments). Labels that describe a mood or a
texture rather than how the music is made (ambient, new age, chillout, easy listening,
experimental) and band genres (rock, pop, indie, ...) belong to neither family. A readout's
family is the family whose best label has the higher smoothed score (the same test as for
reaction). Stricter, "label family %" asks that the leading label itself be in the right
family; MusiCNN calls much orchestral game music "ambient" (neither family), so that figure
measures the tagger's vocabulary more than the smoothing.

Figures per configuration (readouts = one per hop, 1 s):
  reaction   stream seconds from a change of track until the smoothed scores favour the new
             family (its best label's score above the old family's best) for 3 consecutive
             readouts; the time of the first of those three. "label" = the same for the leading
             label (`Result.label`, with hysteresis). Median and each change.
  flicker    leading-label changes per minute on steady music: readouts from 12 s after a change
             until the next change.
  family     share of those steady readouts whose scores favour the right family
             ("label family": whose leading label is in it). "vs model's verdict": the share
             that favours the family the model itself gives the excerpt when its windows'
             raw scores are averaged over the excerpt: what smoothing can reach with this
             model (an excerpt the model hears as the other family is lost to any readout).

"before" is the engine before issue 9: plain EMA (4 s), absolute switch margin 0.05, no change
detection (`LegacySmoother` below replays it). "after" is the default EngineConfig.

Model outputs are cached by window content (--cache, default bench/results/quality_cache),
so a second run, or a configuration that shares windows with another, costs little.
"""
from __future__ import annotations

import argparse
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

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


def family_of(label: str | None) -> str | None:
    for fam, names in FAMILIES.items():
        if label in names:
            return fam
    return None


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


# ---- the "before" smoother --------------------------------------------------------------

class LegacySmoother:
    """The readout before issue 9: EMA over stream time, absolute hysteresis margin, no
    change detection (stream/smoothing.py at commit a9958fd)."""

    def __init__(self, tau_s: float, switch_margin: float):
        self.tau_s, self.switch_margin = tau_s, switch_margin
        self.reset()

    changed_at = None  # never re-anchors

    def reset(self):
        self.state = self.leader = self._last_t = None

    def update(self, scores, t, candidates=None, recent=None):
        scores = np.asarray(scores, np.float64)
        if self.state is None or self.tau_s <= 0:
            self.state = scores.copy()
        else:
            self.state = self.state + (1 - math.exp(-max(t - self._last_t, 0) / self.tau_s)) * (scores - self.state)
        self._last_t = t
        idx = np.arange(len(self.state)) if candidates is None else np.asarray(candidates)
        best = int(idx[np.argmax(self.state[idx])])
        if self.leader is None or self.leader not in idx:
            self.leader = best
        elif best != self.leader and self.state[best] >= self.state[self.leader] + self.switch_margin:
            self.leader = best
        return self.state


# ---- running and scoring ----------------------------------------------------------------

@dataclass
class Readout:
    t: float
    label: str | None
    scores: dict
    raw: dict = field(default_factory=dict)
    window_s: float = 0.0


def run_stream(model, audio: np.ndarray, config, legacy: bool = False) -> list[Readout]:
    from stream import StreamEngine

    got: list[Readout] = []
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    with StreamEngine(model, config, background=False,
                      on_result=lambda r: got.append(Readout(r.time_s, r.label, r.scores, r.raw_scores, r.window_s))) as e:
        if legacy:
            e._smoother = LegacySmoother(4.0, 0.05)
        for i in range(0, len(pcm), CHUNK):
            e.feed(pcm[i:i + CHUNK], RATE)
    return got


def _favours(r: Readout, new: str, old: str, scores: dict | None = None) -> bool:
    scores = r.scores if scores is None else scores
    best = lambda fam: max((v for k, v in scores.items() if k in FAMILIES[fam]), default=0.0)
    return best(new) > best(old)


@dataclass
class Figures:
    reaction: list = field(default_factory=list)  # per change (s), scores
    reaction_label: list = field(default_factory=list)
    flicker_per_min: float = 0.0
    family: float = 0.0
    label_family: float = 0.0
    family_vs_model: float = 0.0  # steady readouts on the family the model gives the whole excerpt
    model_right: int = 0  # excerpts whose whole-excerpt verdict is the right family
    family_by: dict = field(default_factory=dict)
    changes_per_min: float = 0.0


def score(readouts: list[Readout], stream: Stream) -> Figures:
    f = Figures()
    bounds = stream.starts + [stream.duration]
    flips = steady_n = right = right_label = agree = 0
    steady_s = 0.0
    by = {fam: [0, 0] for fam in FAMILIES}
    times = np.array([r.t for r in readouts])
    for k in range(len(stream.starts)):
        t0, t1, fam = bounds[k], bounds[k + 1], stream.families[k]
        seg = [r for r in readouts if t0 < r.t <= t1]
        if k:
            old = stream.families[k - 1]
            for key, test in (("s", lambda r: _favours(r, fam, old)), ("l", lambda r: family_of(r.label) == fam)):
                ok = [test(r) for r in seg]
                hit = next((i for i in range(len(ok) - 2) if ok[i] and ok[i + 1] and ok[i + 2]), None)
                val = seg[hit].t - t0 if hit is not None else float("inf")
                (f.reaction if key == "s" else f.reaction_label).append(val)
        steady = [r for r in seg if r.t >= t0 + SETTLE_S]
        steady_s += max(t1 - (t0 + SETTLE_S), 0.0)
        for a, b in zip(steady, steady[1:]):
            flips += a.label != b.label
        other = next(f for f in FAMILIES if f != fam)
        # the model's own verdict on the excerpt: mean raw scores of the windows wholly inside it
        inside = [r.raw for r in seg if r.t >= t0 + 9.0 and r.raw]
        mean = {k: float(np.mean([d[k] for d in inside])) for k in inside[0]} if inside else {}
        verdict = fam if not mean or _favours(None, fam, other, mean) else other
        f.model_right += verdict == fam
        for r in steady:
            agree += _favours(r, verdict, fam if verdict != fam else other)
            steady_n += 1
            good = _favours(r, fam, other)
            right += good
            right_label += family_of(r.label) == fam
            by[fam][0] += good
            by[fam][1] += 1
    f.flicker_per_min = flips / (steady_s / 60) if steady_s else 0.0
    f.family = right / steady_n if steady_n else float("nan")
    f.label_family = right_label / steady_n if steady_n else float("nan")
    f.family_vs_model = agree / steady_n if steady_n else float("nan")
    f.family_by = {k: (a / b if b else float("nan")) for k, (a, b) in by.items()}
    labels = [r.label for r in readouts]
    f.changes_per_min = sum(a != b for a, b in zip(labels, labels[1:])) / (stream.duration / 60)
    del times
    return f


def fmt_reaction(xs) -> str:
    return " ".join("-" if math.isinf(x) else f"{x:.1f}" for x in xs)


def median(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=16, help="excerpts in the stream (alternating families)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--electronic", action="append", help="glob of electronic recordings (repeatable)")
    ap.add_argument("--acoustic", action="append", help="glob of acoustic/orchestral recordings (repeatable)")
    ap.add_argument("--model", default="musicnn")
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--rt60", type=float, default=0.5)
    ap.add_argument("--noise", choices=["pink", "white"], default="pink")
    ap.add_argument("--conditions", default="clean,room")
    ap.add_argument("--configs", default="before,after", help="before, after, or NAME=field:value,... (EngineConfig)")
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
    configs = {}
    for spec in args.configs.split(","):
        if spec == "before":
            configs["before"] = (EngineConfig(top_k=0, change_s=0), True)
        elif spec == "after":
            configs["after"] = (EngineConfig(top_k=0), False)
        else:
            name, _, kv = spec.partition("=")
            fields = {k: float(v) for k, v in (p.split(":") for p in kv.split(";") if p)}
            configs[name] = (EngineConfig(top_k=0, **fields), False)
    rows = []
    for cond in args.conditions.split(","):
        audio = stream.audio if cond == "clean" else room(stream.audio, args.rt60, args.snr, args.noise)
        for name, (cfg, legacy) in configs.items():
            t1 = time.perf_counter()
            readouts = run_stream(model, audio, cfg, legacy)
            model.save()
            fig = score(readouts, stream)
            rows.append((cond, name, fig))
            print(f"# {cond}/{name}: {len(readouts)} readouts in {time.perf_counter() - t1:.0f} s "
                  f"(model cache {model.hits} hits, {model.misses} misses)", flush=True)
            if args.each:
                print(f"#   reaction each (scores): {fmt_reaction(fig.reaction)}")
                print(f"#   reaction each (label):  {fmt_reaction(fig.reaction_label)}")
    print()
    print(C.table([[cond, name, f"{median(f.reaction):.1f}", f"{median(f.reaction_label):.1f}",
                    f"{max(f.reaction):.1f}", f"{f.flicker_per_min:.2f}", f"{f.changes_per_min:.2f}",
                    f"{100 * f.family:.1f}", f"{100 * f.family_by['electronic']:.0f} / {100 * f.family_by['acoustic']:.0f}",
                    f"{100 * f.label_family:.1f}", f"{100 * f.family_vs_model:.1f}",
                    f"{f.model_right}/{len(stream.starts)}"]
                   for cond, name, f in rows],
                  ["stream", "config", "reaction s (median)", "label reaction s", "slowest s", "flicker/min",
                   "label changes/min", "family %", "electronic / acoustic %", "label family %",
                   "family vs model's verdict %", "excerpts the model gets right"]))
    print()
    for cond, name, f in rows:
        print(f"{cond}/{name} reaction each (scores): {fmt_reaction(f.reaction)}")
    print(f"\ntargets (after, clean): reaction median <= 3 s, flicker <= 0.5/min, family >= 98 %; "
          f"room: family >= 85 %, flicker <= 1/min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
