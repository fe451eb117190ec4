#!/usr/bin/env python3
"""Train the device page's music-presence head (stream/presence_head.py) on training-side audio only.

    python -m tools.train_presence_head            # ~5 min on 2 quiet cores; writes stream/models/musicnn/presence_head.json

Its Festival voices (a voice not installed is left out, and the head's json lists the voices used):
    apt-get install festival festvox-itapc16k festvox-kdlpc16k festvox-ca-ona-hts festvox-czech-dita \
        festvox-suopuhe-lj festvox-suopuhe-mv

Music (label 1): the training packages of tools/robust_data.py (TRAIN; never asc-music or
wesnoth-1.16-music, the validation packages bench/presence_device.py judges on), and the same music
with a synthetic voice over it (3-10 dB under the music, and up to 3 dB over it). Not music (0):
synthetic talk from espeak-ng voices and six Festival voices that bench/presence.py does not use, with
texts of its own; babble of 4-8 of those voices; real recorded voices and ambiences of the training
noise packages (hedgewars-data shouts, widelands-data ambiences: tools/robust_data.py NOISE_TRAIN);
generated noise (white, pink, brown, mains hum at 60 Hz, fan, rain, applause, with other seeds and
shapes than the bench's). Every patch at a random level, -38 to -14 dBFS.

Features come from the graphs the page runs (ui/net/device_model.py: the log-mel graph and the first
network, under ONNX Runtime). The regularisation is chosen by cross-validation grouped by source
(a package, a voice, a noise kind): a group is never on both sides of a fold. Seeds fixed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np

from stream.models.musicnn.model import weights_digest
from stream.presence_head import HEAD_FILE, PresenceHead, head_features
from tools import robust_data as RD
from tools.robust_chain import festival_wav  # noqa: F401  (bench/presence.py takes it from here too)

RATE = 16000
PATCH = 47616
SEED = 36
CACHE = os.path.expanduser("~/.cache/live-genre-robust")

# voices bench/presence.py does not use (it uses espeak en-us, en-gb+f3, de+m3, fr+f2, es, it+f4, nl, pl+m2 and
# Festival kal, slt, lp): other accents, languages and variants, with texts of their own
TEXTS = {
    "en": "Good evening and thank you for coming. Tonight the hall stays open until ten, and the cafe on the "
          "ground floor serves soup and sandwiches. The lift is out of order, so please take the stairs on the left. "
          "Lost children can be collected at the information desk. Our guided walk starts in five minutes.",
    "en2": "Right, so the parcel should have arrived on Tuesday, but the driver says nobody answered the door. "
           "I was at home all day. Can you check the tracking number again? It starts with four seven two.",
    "pt": "Boa tarde a todos. O autocarro para o aeroporto parte da plataforma seis dentro de quinze minutos. "
          "Por favor, tenham os bilhetes prontos e não deixem a bagagem sem vigilância.",
    "sv": "Hej och välkomna. Butiken stänger om tio minuter. Vänligen gå till kassan med era varor. "
          "Vi öppnar igen i morgon klockan nio. Tack för besöket och ha en trevlig kväll.",
    "cs": "Dobrý den, vážení cestující. Vlak do Brna má zpoždění asi dvacet minut. Omlouváme se za komplikace.",
    "ru": "Добрый вечер. Выставка открыта до восьми часов. Пожалуйста, не фотографируйте со вспышкой.",
    "tr": "İyi akşamlar. Müze saat altıda kapanacaktır. Lütfen çıkışa doğru ilerleyiniz. Teşekkür ederiz.",
    "ca": "Bona tarda. El museu tancarà d'aquí a deu minuts. Si us plau, dirigiu-vos a la sortida principal. "
          "Gràcies per la visita i fins aviat.",
    "fi": "Hyvää iltaa. Kauppa suljetaan kymmenen minuutin kuluttua. Olkaa hyvä ja siirtykää kassalle. Kiitos.",
    "cs2": "Vazeni zakaznici, prodejna se zavira za patnact minut. Dekujeme za navstevu a tesime se na shledanou.",
    "it": "Attenzione prego. Il negozio chiuderà tra dieci minuti. Vi preghiamo di recarvi alle casse. Grazie.",
}
ESPEAK = [("en-gb-scotland", "en"), ("en-gb-x-rp+m4", "en2"), ("en-029+f5", "en"), ("en-us-nyc+m6", "en2"),
          ("en+klatt", "en"), ("pt+m1", "pt"), ("sv+f1", "sv"), ("cs+m5", "cs"), ("ru+f4", "ru"), ("tr+m7", "tr"),
          ("en-us+f2", "en2"), ("da+m2", "en")]
# Festival reads latin-1 here, so the Czech voice gets a text without the other diacritics
FESTIVAL = [("voice_pc_diphone", "it"), ("voice_ked_diphone", "en2"), ("voice_upc_ca_ona_hts", "ca"),
            ("voice_czech_dita", "cs2"), ("voice_suo_fi_lj_diphone", "fi"), ("voice_hy_fi_mv_diphone", "fi")]


# ---- the page's graphs in Python --------------------------------------------------------------

class DeviceGraphs:
    """The log-mel graph and the first network, as the page runs them (ONNX Runtime here)."""

    def __init__(self):
        import onnxruntime as ort

        from stream.models.musicnn.model import load_bundled
        from ui.net.device_model import _net_graph, frontend_graph

        model = load_bundled("musicnn", backend="onnxruntime")
        first = next(iter(model.raw_labels))  # the page's first network (model.json "nets"[0])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.frontend = ort.InferenceSession(frontend_graph(), opts, providers=["CPUExecutionProvider"])
        self.net = ort.InferenceSession(_net_graph(model.nets[first]), opts, providers=["CPUExecutionProvider"])

    def features(self, patches: np.ndarray, batch: int = 16) -> np.ndarray:
        out = []
        for i in range(0, len(patches), batch):
            x = np.ascontiguousarray(patches[i:i + batch], np.float32)
            logmel = self.frontend.run(["logmel"], {"audio": x})[0]
            logits = self.net.run(["y"], {"x": logmel})[0]
            out.append(head_features(logmel, logits))
        return np.concatenate(out)


# ---- audio --------------------------------------------------------------------------------------

def norm(y: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) + 1e-12
    y = y * (10 ** (dbfs / 20) / rms)
    peak = float(np.abs(y).max(initial=0.0))
    return (y * (0.99 / peak) if peak > 0.99 else y).astype(np.float32)


def loop(y: np.ndarray, n: int) -> np.ndarray:
    return np.resize(y, n) if len(y) < n else y[:n]


def decode(path: str) -> np.ndarray:
    return RD._ffmpeg_decode(None, path)


def espeak_wav(voice: str, text: str, tmp: str, speed: int) -> str:
    """espeak-ng's speech of `text` as a WAV file in `tmp`; its path."""
    out = os.path.join(tmp, f"t_{voice.replace('+', '_')}_{speed}.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", out, text], check=True, capture_output=True)
    return out


def espeak(voice: str, text: str, tmp: str, speed: int) -> np.ndarray:
    return decode(espeak_wav(voice, text, tmp, speed))


def festival(voice: str, text: str, tmp: str) -> np.ndarray | None:
    out = festival_wav(voice, text, tmp)
    return None if out is None else decode(out)


def voices(tmp: str) -> list[tuple[str, np.ndarray]]:
    out = []
    for k, (voice, lang) in enumerate(ESPEAK):
        out.append((f"espeak {voice}", espeak(voice, TEXTS[lang], tmp, 135 + 10 * (k % 5))))
    for voice, lang in FESTIVAL:
        y = festival(voice, TEXTS[lang], tmp)
        if y is not None:
            out.append((f"festival {voice}", y))
    return out


def noise(kind: str, n: int, rng) -> np.ndarray:
    from scipy.signal import butter, lfilter

    t = np.arange(n) / RATE
    low = lambda x, fc: lfilter(*butter(2, fc / (RATE / 2)), x)  # noqa: E731
    w = rng.standard_normal(n)
    if kind == "white":
        return w
    if kind == "pink":  # -3 dB/octave: a sum of octave-spaced low-passed noises
        return sum(low(rng.standard_normal(n), fc) for fc in (60, 120, 240, 480, 960, 1920, 3840, 7000))
    if kind == "brown":
        b = np.cumsum(w)
        return b - low(b, 3)
    if kind == "hum60":
        return sum(np.sin(2 * np.pi * 60 * k * t + rng.uniform(0, 6)) * rng.uniform(0.2, 1) / k for k in (1, 2, 3, 5)) \
            + 0.5 * low(w, 200)
    if kind == "fan":
        return low(w, 800) + 0.3 * np.sin(2 * np.pi * rng.uniform(80, 200) * t)
    if kind == "rain":
        drops = np.zeros(n)
        for _ in range(int(n / RATE * 300)):
            i = int(rng.integers(0, n - 200))
            drops[i:i + 200] += rng.standard_normal(200) * np.exp(-np.arange(200) / 30) * rng.uniform(0.1, 1)
        return drops + 0.3 * low(w, 3000)
    if kind == "applause":
        claps = np.zeros(n)
        for _ in range(int(n / RATE * rng.uniform(15, 60))):
            i = int(rng.integers(0, n - 600))
            claps[i:i + 600] += rng.standard_normal(600) * np.exp(-np.arange(600) / rng.uniform(60, 160))
        return claps
    raise ValueError(kind)


NOISES = ("white", "pink", "brown", "hum60", "fan", "rain", "applause")


def music_patches(per_package: int, rng) -> list[tuple[str, np.ndarray]]:
    """(package, 3 s patch) of the training music packages: from the training run's patch cache where it
    is there, else decoded (every k-th track)."""
    out = []
    for pkg in RD.TRAIN:
        path = os.path.join(CACHE, f"patches-{pkg.name}-train-3-0.npz")
        if os.path.exists(path):
            a = np.load(path)["audio"]
            pick = rng.choice(len(a), size=min(per_package, len(a)), replace=False)
            ps = [a[i, -PATCH:].astype(np.float32) for i in sorted(pick)]
            del a
        else:
            ts = RD.tracks([pkg])
            ps = []
            for t in ts[:: max(1, len(ts) // 6)]:
                y = RD.load(t)
                for _ in range(max(1, per_package // 6)):
                    if len(y) > PATCH:
                        s = int(rng.integers(0, len(y) - PATCH))
                        ps.append(y[s:s + PATCH])
        ps = [p for p in ps if 20 * np.log10(np.sqrt(np.mean(p.astype(np.float64) ** 2)) + 1e-12) > -45]
        out += [(pkg.name, p) for p in ps]
        RD.log(f"music {pkg.name}: {len(ps)} patches")
    return out


def build(rng, tmp: str, per_package: int = 90) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(audio patches, labels, group names)."""
    X, y, g = [], [], []

    def add(p, label, group):
        X.append(norm(p, float(rng.uniform(-38, -14))))
        y.append(label)
        g.append(group)

    music = music_patches(per_package, rng)
    talk = voices(tmp)
    RD.log(f"{len(talk)} training voices")
    for pkg, p in music:
        add(p, 1, f"music {pkg}")
    # music under a voice: talk 10 dB under to 3 dB over the music (every 3rd music patch)
    for k, (pkg, p) in enumerate(music[::3]):
        name, v = talk[k % len(talk)]
        s = int(rng.integers(0, max(1, len(v) - PATCH)))
        mix = norm(p, -20) + norm(loop(v[s:], PATCH), -20 - float(rng.uniform(-3, 10)))
        add(mix, 1, f"music {pkg}")
    for name, v in talk:  # ~30 patches a voice, at random offsets (looped)
        vv = np.concatenate([v, v])
        for _ in range(30):
            s = int(rng.integers(0, len(v)))
            add(vv[s:s + PATCH] if len(vv) >= s + PATCH else loop(vv[s:], PATCH), 0, name)
    for b in range(120):  # babble: 4-8 voices at random offsets and levels
        mix = np.zeros(PATCH, np.float32)
        for i in rng.permutation(len(talk))[: int(rng.integers(4, 9))]:
            v = talk[i][1]
            mix += norm(np.roll(loop(v, PATCH), int(rng.integers(0, PATCH))), float(rng.uniform(-30, -20)))
        add(mix, 0, "babble")
    bank = RD.recorded_bank(RD.NOISE_TRAIN, n=80, seconds=8.0, seed=SEED)
    for k, scene in enumerate(bank):  # real recorded voices and ambiences (training noise packages)
        for _ in range(3):
            s = int(rng.integers(0, max(1, len(scene) - PATCH)))
            add(loop(scene[s:], PATCH), 0, f"recorded {k % 5}")
    for kind in NOISES:
        for _ in range(40):
            add(noise(kind, PATCH, rng), 0, f"noise {kind}")
    return np.stack(X), np.asarray(y, np.float64), g


# ---- the fit ---------------------------------------------------------------------------------

def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method, classes weighted to equal totals."""
    n, d = X.shape
    sw = np.where(y > 0.5, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1)) * n
    A = np.hstack([X, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(A @ w, -30, 30)))
        grad = A.T @ (sw * (p - y)) + reg * w
        H = (A * (sw * p * (1 - p))[:, None]).T @ A + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(H, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def grouped_cv(F: np.ndarray, y: np.ndarray, groups: list[str], l2s, folds: int = 5) -> dict:
    """Balanced accuracy per l2, folds by source group."""
    names = sorted(set(groups))
    order = np.random.default_rng(SEED).permutation(len(names))
    fold_of = {names[j]: k % folds for k, j in enumerate(order)}
    f = np.array([fold_of[x] for x in groups])
    out = {}
    for l2 in l2s:
        pred = np.zeros(len(y))
        for k in range(folds):
            tr, te = f != k, f == k
            mu, sd = F[tr].mean(0), F[tr].std(0) + 1e-6
            w, b = fit_logistic((F[tr] - mu) / sd, y[tr], l2)
            pred[te] = 1 / (1 + np.exp(-(((F[te] - mu) / sd) @ w + b)))
        hit = (pred >= 0.5) == (y > 0.5)
        out[l2] = float(0.5 * hit[y > 0.5].mean() + 0.5 * hit[y < 0.5].mean())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HEAD_FILE))
    ap.add_argument("--per-package", type=int, default=90, help="music patches per training package")
    args = ap.parse_args()
    t0 = time.time()
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory(prefix="presence-head-") as tmp:
        audio, y, groups = build(rng, tmp, args.per_package)
    RD.log(f"{len(y)} patches ({int(y.sum())} music); features from the page's graphs")
    graphs = DeviceGraphs()
    F = graphs.features(audio)
    del audio
    l2s = (0.3, 3.0, 30.0, 300.0, 3000.0)  # a choice at the grid's edge would say the grid is too short
    cv = grouped_cv(F, y, groups, l2s)
    l2 = max(cv, key=cv.get)
    RD.log(f"grouped CV balanced accuracy per l2: {cv}; chosen {l2}")
    mu, sd = F.mean(0), F.std(0) + 1e-6
    w, b = fit_logistic((F - mu) / sd, y, l2)
    head = PresenceHead(mu, sd, w, b)
    train_acc = float(((head.music(F) >= 0.5) == (y > 0.5)).mean())
    counts: dict[str, int] = {}
    for x in groups:
        counts[x] = counts.get(x, 0) + 1
    doc = {**head.to_json(),
           "features": "log-mel mean (96), log-mel std over frames (96), first network's logits (50)",
           "weights_sha256": weights_digest("musicnn"),  # the networks whose logits it reads
           "recipe": {"script": "tools/train_presence_head.py", "seed": SEED, "l2": l2, "cv_balanced_accuracy": cv,
                      "train_accuracy": train_acc, "patches": counts, "music_packages": [p.name for p in RD.TRAIN],
                      "noise_packages": [p.name for p in RD.NOISE_TRAIN],
                      "voices": [v for v, _ in ESPEAK] + [v for v, _ in FESTIVAL]}}
    with open(args.out, "w") as f:
        json.dump(doc, f)
    RD.log(f"wrote {args.out} ({time.time() - t0:.0f} s); train accuracy {train_acc:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
