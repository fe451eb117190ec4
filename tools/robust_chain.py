"""How a microphone hears a clean patch: the acoustic chain of the room-robust recipe.

`Chain(rirs, babble)(audio, rng)` returns the same number of samples at the same rate
(16 kHz mono float32), degraded by a random draw of:

- a room: an impulse response from a bank simulated by pyroomacoustics (shoebox rooms of
  random size, absorption and source/mic positions; image sources to order 3 plus ray
  tracing for the late tail, so long RT60s have a real diffuse tail; RT60 0.2-1.2 s);
- a background at 0-20 dB SNR: pink, brown or white noise, mains hum with harmonics,
  babble (several espeak-ng voices, and with `festival_share` Festival's, reading different text
  at once), or a recorded sound
  (ambiences and voices from game packages, `recorded=`), or two of them;
- or, with `p_hiss`, broadband hiss: white noise 5-15 dB below the music under a room's
  diffuse tail (the condition the first student gained nothing on);
- a device: high-pass 100-400 Hz (a small mic's bass cut), low-pass 4-16 kHz (at 16 kHz
  only cut-offs under 7.6 kHz do anything), a gain of -12..+12 dB, soft clipping, and
  sometimes a low-bit-rate codec pass through ffmpeg (MP3 or Opus);

or, with `p_clean`, nothing, so the student keeps the teacher's clean behaviour. The
reverb needs the audio before the patch (its tail): callers pass `pre_roll` extra samples
in front and cut them off afterwards (`apply(..., pre_roll=n)` does that).

Every draw comes from the numpy Generator passed in: the same seed gives the same output.
Also `condition(...)`: the fixed conditions bench/robust.py measures (room, café, laptop, hiss).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
from scipy import signal

RATE = 16000


@dataclass(frozen=True)
class ChainConfig:
    p_clean: float = 0.15
    p_room: float = 0.8
    p_noise: float = 0.85
    snr_db: tuple[float, float] = (0.0, 20.0)
    p_highpass: float = 0.5
    p_lowpass: float = 0.5
    p_clip: float = 0.3
    p_codec: float = 0.1
    gain_db: tuple[float, float] = (-12.0, 12.0)
    p_hiss: float = 0.0  # room + white noise at hiss_snr_db instead of the background draw
    hiss_snr_db: tuple[float, float] = (5.0, 15.0)
    babble_weight: float = 0.4  # babble's weight among the background kinds (pink 0.25 ... recorded 0.4)


# ---- banks (precomputed once, cached by the caller) ------------------------------------

def simulate_rir(rng: np.random.Generator, rt60: float, dims: tuple[float, float, float] | None = None,
                 rate: int = RATE) -> np.ndarray:
    """One room impulse response from pyroomacoustics, normalised to unit energy.

    dims: room size in metres (random 3-15 x 3-12 x 2.4-5 when None). Absorption comes from
    the RT60 by Sabine's formula; source and microphone are >= 0.5 m from the walls and
    >= 1 m apart."""
    import pyroomacoustics as pra

    if dims is None:
        dims = (rng.uniform(3, 15), rng.uniform(3, 12), rng.uniform(2.4, 5))
    d = np.asarray(dims, dtype=float)
    absorption, _ = pra.inverse_sabine(rt60, d)
    while True:
        src = rng.uniform(0.5, d - 0.5)
        mic = rng.uniform(0.5, d - 0.5)
        if np.linalg.norm(src - mic) >= 1.0:
            break
    room = pra.ShoeBox(d, fs=rate, materials=pra.Material(float(min(absorption, 0.99))), max_order=3,
                       ray_tracing=True, air_absorption=True)
    # the ray tracer draws from pyroomacoustics' own generators (a numpy one and libroom's C++ one):
    # pra.random.seed sets both; numpy's global seed sets neither (rooms differed from run to run)
    pra.random.seed(int(rng.integers(2**31)))
    room.set_ray_tracing(receiver_radius=0.5, n_rays=2000, energy_thres=1e-5)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    h = np.asarray(room.rir[0][0], dtype=np.float64)
    h = h[int(np.argmax(np.abs(h) > 1e-3 * np.abs(h).max())):]  # start at the direct sound
    return (h / np.sqrt(np.sum(h ** 2))).astype(np.float32)


def rir_bank(n: int, seed: int, rt60: tuple[float, float] = (0.2, 1.2)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [simulate_rir(rng, float(rng.uniform(*rt60))) for _ in range(n)]


_TEXT = ("/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0",
         "/usr/share/common-licenses/GPL-2")
_VOICES = ("en-us", "en", "en-gb-x-rp", "de", "fr", "es", "it", "nl", "pt", "pl", "sv")
_VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4", "m7", "f5")


def _sentences(rng: np.random.Generator, k: int) -> list[str]:
    words = []
    for p in _TEXT:
        if os.path.exists(p):
            with open(p, encoding="utf-8", errors="ignore") as f:
                words += f.read().split()
    if not words:
        raise RuntimeError("no text to speak: /usr/share/common-licenses is missing")
    out = []
    for _ in range(k):
        i = int(rng.integers(0, len(words) - 40))
        out.append(" ".join(words[i:i + 40]))
    return out


def speech(text: str, voice: str, speed: int, pitch: int, rate: int = RATE) -> np.ndarray:
    """espeak-ng reading `text`, mono float32 at `rate`."""
    import soundfile as sf
    import soxr

    if not shutil.which("espeak-ng"):
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", f.name, text],
                       check=True, capture_output=True)
        y, sr = sf.read(f.name, dtype="float32")
    return soxr.resample(y, sr, rate).astype(np.float32) if sr != rate else y


# Festival voices the training side may use: the presence head's (tools/train_presence_head.py);
# bench/presence.py's kal, slt and lp stay held out
FESTIVAL_VOICES = ("voice_pc_diphone", "voice_ked_diphone", "voice_upc_ca_ona_hts", "voice_czech_dita",
                   "voice_suo_fi_lj_diphone", "voice_hy_fi_mv_diphone")


def festival_wav(voice: str, text: str, tmp: str) -> str | None:
    """Festival's speech of `text` as a WAV file in `tmp` (None: no Festival or that voice)."""
    if not shutil.which("text2wave"):
        return None
    out, txt = os.path.join(tmp, f"f_{voice}.wav"), os.path.join(tmp, f"f_{voice}.txt")
    with open(txt, "w", encoding="latin-1", errors="replace") as f:
        f.write(text)
    r = subprocess.run(["text2wave", "-eval", f"({voice})", "-o", out, txt], capture_output=True)
    return out if r.returncode == 0 and os.path.exists(out) and os.path.getsize(out) > 1000 else None


def festival_speech(text: str, voice: str, rate: int = RATE) -> np.ndarray | None:
    """Festival's `voice` reading `text` (mono float32 at `rate`), or None where Festival or the voice is missing."""
    import soundfile as sf
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        wav = festival_wav(voice, text, tmp)
        if wav is None:
            return None
        y, sr = sf.read(wav, dtype="float32")
    y = y if y.ndim == 1 else y.mean(axis=1)
    return soxr.resample(y, sr, rate).astype(np.float32) if sr != rate else y


def babble_bank(n: int, seed: int, seconds: float = 8.0, talkers: tuple[int, int] = (3, 7),
                festival_share: float = 0.0) -> list[np.ndarray]:
    """`n` clips of several people talking at once (different voices, speeds, pitches, texts,
    offsets), each `seconds` long at unit RMS. festival_share: the share of talkers read by one of
    FESTIVAL_VOICES (more natural than espeak-ng's; speed and pitch moved together by 0.88-1.12x)
    instead of espeak-ng; voices not installed are left out."""
    rng = np.random.default_rng(seed)
    length = int(seconds * RATE)
    festival = [v for v in FESTIVAL_VOICES if festival_share > 0 and festival_speech("one", v) is not None]
    out = []
    for _ in range(n):
        mix = np.zeros(length, np.float32)
        for text in _sentences(rng, int(rng.integers(*talkers))):
            y = None
            if festival and rng.random() < festival_share:
                y = festival_speech(" ".join(text.split()[:25]), festival[rng.integers(len(festival))],
                                    int(RATE * rng.uniform(0.88, 1.12)))
            if y is None:
                voice = f"{_VOICES[rng.integers(len(_VOICES))]}+{_VARIANTS[rng.integers(len(_VARIANTS))]}"
                y = speech(text, voice, int(rng.integers(130, 200)), int(rng.integers(20, 80)))
            y = y / (np.sqrt(np.mean(y ** 2)) + 1e-9) * rng.uniform(0.5, 1.0)
            start = int(rng.integers(0, length // 4))
            y = y[: length - start]
            mix[start:start + len(y)] += y
        out.append((mix / (np.sqrt(np.mean(mix ** 2)) + 1e-9)).astype(np.float32))
    return out


# ---- the pieces ------------------------------------------------------------------------

def coloured_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / f ** (exponent / 2), n)
    return (y / (np.sqrt(np.mean(y ** 2)) + 1e-12)).astype(np.float32)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz) with a few odd and even harmonics, unit RMS."""
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / RATE
    y = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, 7))
    return (y / (np.sqrt(np.mean(y ** 2)) + 1e-12)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def reverb(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """x convolved with h (causal, same length), at x's RMS."""
    y = signal.fftconvolve(x, h)[: len(x)]
    return (y * (rms(x) / (rms(y) + 1e-12))).astype(np.float32)


def add_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    return (x + noise * (rms(x) / (rms(noise) + 1e-12) * 10 ** (-snr_db / 20))).astype(np.float32)


def band(x: np.ndarray, low_hz: float | None, high_hz: float | None) -> np.ndarray:
    """4th-order Butterworth high-pass above low_hz and/or low-pass under high_hz."""
    if low_hz:
        x = signal.sosfilt(signal.butter(4, low_hz, "highpass", fs=RATE, output="sos"), x)
    if high_hz and high_hz < 0.475 * RATE:
        x = signal.sosfilt(signal.butter(4, high_hz, "lowpass", fs=RATE, output="sos"), x)
    return np.asarray(x, dtype=np.float32)


def soft_clip(x: np.ndarray, drive_db: float) -> np.ndarray:
    """tanh saturation of a signal driven `drive_db` above full scale at its peak."""
    g = 10 ** (drive_db / 20) / (np.abs(x).max() + 1e-9)
    return (np.tanh(g * x) / np.tanh(g)).astype(np.float32) * float(np.abs(x).max())


def codec(x: np.ndarray, kind: str, kbps: int) -> np.ndarray:
    """A lossy encode + decode through ffmpeg (kind "mp3" or "opus"), same length out."""
    enc = {"mp3": ["-c:a", "libmp3lame", "-f", "mp3"], "opus": ["-c:a", "libopus", "-f", "ogg"]}[kind]
    pcm = np.clip(x, -1, 1).astype(np.float32).tobytes()
    e = subprocess.run(["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(RATE), "-ac", "1", "-i", "pipe:0",
                        *enc, "-b:a", f"{kbps}k", "pipe:1"], input=pcm, capture_output=True, check=True)
    d = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-ar", str(RATE), "-ac", "1",
                        "pipe:1"], input=e.stdout, capture_output=True, check=True)
    y = np.frombuffer(d.stdout, np.float32)
    out = np.zeros_like(x)
    out[: min(len(x), len(y))] = y[: len(x)]
    return out


# ---- the chain -------------------------------------------------------------------------

class Chain:
    """A random acoustic chain (see the module docstring). Stateless apart from its banks:
    every draw comes from the Generator passed to `__call__`."""

    def __init__(self, rirs: list[np.ndarray], babble: list[np.ndarray], config: ChainConfig = ChainConfig(),
                 use_codec: bool = True, recorded: list[np.ndarray] | None = None) -> None:
        if not rirs or not babble:
            raise ValueError("the chain needs a non-empty RIR bank and babble bank")
        if config.babble_weight < 0:
            raise ValueError(f"babble_weight {config.babble_weight}: a weight among the background kinds, >= 0")
        self.rirs, self.babble, self.config = rirs, babble, config
        self.recorded = [r for r in (recorded or []) if len(r)]
        self.use_codec = use_codec and shutil.which("ffmpeg") is not None

    def _noise(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        kinds = ("pink", "brown", "white", "babble", "hum", "recorded")
        p = np.array([0.25, 0.15, 0.1, self.config.babble_weight, 0.1, 0.4 if self.recorded else 0.0])
        picks = rng.choice(len(kinds), size=1 + int(rng.random() < 0.25), replace=False, p=p / p.sum())
        total = np.zeros(n, np.float32)
        for k in picks:
            kind = kinds[k]
            if kind in ("babble", "recorded"):
                bank = self.babble if kind == "babble" else self.recorded
                clip = bank[rng.integers(len(bank))]
                reps = -(-n // len(clip)) + 1
                start = int(rng.integers(len(clip)))
                y = np.tile(clip, reps)[start:start + n]
            elif kind == "hum":
                y = hum(n, rng)
            else:
                y = coloured_noise(n, rng, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
            total += y * rng.uniform(0.5, 1.0)
        return total, "+".join(kinds[k] for k in picks)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """(degraded copy of x, a short description of what was drawn)."""
        c = self.config
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1 or len(x) == 0:
            raise ValueError(f"the chain takes one mono signal, got shape {x.shape}")
        if rng.random() < c.p_clean:
            return x.copy(), "clean"
        steps = []
        y = x
        hiss = rng.random() < c.p_hiss
        if hiss or rng.random() < c.p_room:
            y = reverb(y, self.rirs[rng.integers(len(self.rirs))])
            steps.append("room")
        if hiss:
            snr = rng.uniform(*c.hiss_snr_db)
            y = add_at_snr(y, coloured_noise(len(y), rng, 0.0), snr)
            steps.append(f"hiss@{snr:.0f}dB")
        elif rng.random() < c.p_noise:
            noise, kind = self._noise(len(y), rng)
            snr = rng.uniform(*c.snr_db)
            y = add_at_snr(y, noise, snr)
            steps.append(f"{kind}@{snr:.0f}dB")
        lo = rng.uniform(100, 400) if rng.random() < c.p_highpass else None
        hi = rng.uniform(4000, 16000) if rng.random() < c.p_lowpass else None
        if lo or (hi and hi < 0.475 * RATE):
            y = band(y, lo, hi)
            steps.append(f"band {lo or 0:.0f}-{hi or RATE / 2:.0f}Hz")
        gain = rng.uniform(*c.gain_db)
        y = y * np.float32(10 ** (gain / 20))
        steps.append(f"gain{gain:+.0f}dB")
        if rng.random() < c.p_clip:
            drive = rng.uniform(2, 12)
            y = soft_clip(y, drive)
            steps.append(f"clip{drive:.0f}dB")
        if self.use_codec and rng.random() < c.p_codec:
            kind = "mp3" if rng.random() < 0.5 else "opus"
            kbps = int(rng.choice([16, 24, 32])) if kind == "opus" else int(rng.choice([32, 48, 64]))
            y = codec(y, kind, kbps)
            steps.append(f"{kind}{kbps}k")
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
        return y.astype(np.float32), ", ".join(steps)

    def apply(self, x: np.ndarray, rng: np.random.Generator, pre_roll: int = 0) -> np.ndarray:
        """The chain on x, with x[:pre_roll] only feeding the reverb's tail; returns x[pre_roll:]'s length."""
        return self(x, rng)[0][pre_roll:]


# ---- fixed conditions for the benchmark ----------------------------------------------------

CONDITIONS = ("clean", "room", "cafe", "laptop", "hiss")


def condition(name: str, x: np.ndarray, seed: int, babble: list[np.ndarray] | None = None) -> np.ndarray:
    """A long mono 16 kHz signal as heard in one fixed condition (bench/robust.py):
    room   = RT60 0.5 s (a 7x5x3 m room) + pink noise 10 dB below the music;
    cafe   = RT60 0.8 s (12x9x3.5 m) + babble 5 dB below the music;
    laptop = band-pass 250 Hz-6 kHz, soft clipping, a small room (RT60 0.3 s, 4x3x2.5 m), pink 15 dB;
    hiss   = the room's RT60 0.5 s (7x5x3 m) + white noise 10 dB below the music."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float32)
    if name == "clean":
        return x.copy()
    if name in ("room", "hiss"):
        y = reverb(x, simulate_rir(rng, 0.5, (7.0, 5.0, 3.0)))
        return add_at_snr(y, coloured_noise(len(y), rng, 1.0 if name == "room" else 0.0), 10.0)
    if name == "cafe":
        if not babble:
            raise ValueError("the cafe condition needs a babble bank")
        y = reverb(x, simulate_rir(rng, 0.8, (12.0, 9.0, 3.5)))
        clip = np.concatenate(babble)
        noise = np.tile(clip, -(-len(y) // len(clip)))[: len(y)]
        return add_at_snr(y, noise, 5.0)
    if name == "laptop":
        y = reverb(x, simulate_rir(rng, 0.3, (4.0, 3.0, 2.5)))
        y = add_at_snr(y, coloured_noise(len(y), rng, 1.0), 15.0)
        return soft_clip(band(y, 250.0, 6000.0), 6.0)
    raise ValueError(f"unknown condition {name!r}; use one of {', '.join(CONDITIONS)}")


def cached_banks(cache, seed: int, n_rirs: int, n_babble: int, festival_share: float = 0.0) -> tuple[list, list]:
    """A RIR bank and a babble bank drawn from `seed`, made once and kept under `cache`."""
    import time

    tail = f"-festival{festival_share:g}" if festival_share > 0 else ""
    path = os.path.join(cache, f"banks-{seed}-{n_rirs}-{n_babble}{tail}.npz")
    if os.path.exists(path):
        d = np.load(path, allow_pickle=True)
        # equal-length clips come back as one 2-D object array: make each a float32 vector again
        return [np.asarray(h, np.float32) for h in d["rirs"]], [np.asarray(b, np.float32) for b in d["babble"]]
    t = time.time()
    rirs, babble = rir_bank(n_rirs, seed), babble_bank(n_babble, seed + 1, festival_share=festival_share)
    print(f"  banks: {n_rirs} rooms, {n_babble} babble clips in {time.time() - t:.0f} s", flush=True)
    np.savez(path, rirs=np.array(rirs, dtype=object), babble=np.array(babble, dtype=object))
    return rirs, babble
