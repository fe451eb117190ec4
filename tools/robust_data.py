"""Music (and recorded noise) for the room-robust recipe (tools.train_robust) and its benchmark (bench/robust.py).

Free music shipped by Debian packages, split **by package**: a package is either a
training or a validation source, never both, so no track (or a remix of it, or another
take from the same composer's session) is on both sides. Validation = asc-music
(electronic) + wesnoth-1.16-music (orchestral): the two families bench/quality.py asks
about, and both installed by `scripts/setup.sh --dev`, so tests can use them.

Licences are each package's /usr/share/doc/<pkg>/copyright. The weights trained on these
recordings ship; the recordings do not.
"""
from __future__ import annotations

import glob
import os
import subprocess
import zipfile
from dataclasses import dataclass

import numpy as np

RATE = 16000


@dataclass(frozen=True)
class Package:
    name: str  # Debian package
    licence: str  # as its copyright file says, for the music
    patterns: tuple[str, ...]  # globs; "archive.pk3:inner/*.ogg" reads zip members
    note: str = ""


TRAIN = (
    Package("nexuiz-music", "GPL-2+", ("/usr/share/games/nexuiz/data/music.pk3:sound/cdtracks/*.ogg",),
            "electronic / industrial game soundtrack"),
    Package("warzone2100-music", "GPL-2+ or CC-BY-SA-3.0 (albums/*/license.txt)",
            ("/usr/share/games/warzone2100/music/albums/*/*.opus",), "electronic, ambient and rock"),
    Package("freedroidrpg-data", "GPL-2+", ("/usr/share/freedroidrpg/data/sound/music/*.ogg",),
            "electronic and ambient"),
    Package("fretsonfire-songs-sectoid", "GPL",
            ("/usr/share/games/fretsonfire/data/songs/sectoid/*/song.ogg",), "rock / metal (song + guitar stems mixed)"),
    Package("fretsonfire-songs-muldjord", "CC-BY-SA-3.0",
            ("/usr/share/games/fretsonfire/data/songs/muldjord/*/song.ogg",), "rock / metal (song + guitar stems mixed)"),
    Package("hedgewars-data", "GPL-2 / CC-BY-SA-3.0 (per file, see copyright)", ("/usr/share/games/hedgewars/Data/Music/*.ogg",),
            "varied: orchestral, oriental, pop, rock"),
    Package("openclonk-data", "ISC / CC-BY-3.0 / CC0 (game content; see copyright)",
            ("/usr/share/games/openclonk/Music.ocg/*.ogg",),
            "orchestral and ambient"),
    Package("drascula-music", "Drascula licence (BSD-like, DFSG-free)", ("/usr/share/scummvm/drascula/audio/*.ogg",),
            "adventure-game score: orchestral, jazz, pop"),
    # acoustic/orchestral material: the packages above are mostly electronic, and a student that
    # never hears an orchestra in a room cannot learn that a reverberant orchestra is not electronic
    Package("widelands-data", "GPL-2+ (ingame_24-26: CC-BY-SA-3.0, Stuart Marshall)",
            ("/usr/share/games/widelands/data/music/*.ogg",), "orchestral / medieval game soundtrack"),
    Package("unknown-horizons", "CC-BY-SA-3.0 (content/*)",
            ("/usr/share/unknown-horizons/content/audio/music/*.ogg",
             "/usr/share/unknown-horizons/content/audio/music/menu/*.ogg"), "orchestral, folk, classical"),
    Package("megaglest-data", "CC-BY-SA-3.0", ("/usr/share/games/megaglest/techs/megapack/factions/*/music/*.ogg",),
            "orchestral, medieval, ethnic faction themes"),
    Package("freeorion-data", "CC-BY-SA-3.0 (content)",
            ("/usr/share/games/freeorion/default/data/sound/artificial_intelligence_v3.ogg",), "orchestral (one long piece)"),
)
VALIDATION = (
    Package("asc-music", "GPL-2+", ("/usr/share/games/asc/music/*.mp3",), "electronic (Michael Kievernagel)"),
    Package("wesnoth-1.16-music", "GPL-2+", ("/usr/share/games/wesnoth/1.16/data/core/music/*.ogg",),
            "orchestral game soundtrack"),
)
# Recorded sounds (not music), split by package like the music: the training chain mixes the first
# under the music; the second are held out, a real-recordings condition of bench/robust.py that
# no training ever heard.
NOISE_TRAIN = (
    Package("hedgewars-data", "GFDL-1.3 (Data/Sounds)",
            ("/usr/share/games/hedgewars/Data/Sounds/voices/*/*.ogg",), "recorded voices: shouts, taunts, accents"),
    Package("widelands-data", "GPL-2+", ("/usr/share/games/widelands/data/sound/*/*.ogg",
                                         "/usr/share/games/widelands/data/sound/*/*/*.ogg"),
            "recorded ambiences: birds, animals, workshops, tools"),
)
NOISE_HELDOUT = (
    Package("megaglest-data", "CC-BY-SA-3.0", ("/usr/share/games/megaglest/tilesets/*/sounds/*.ogg",
                                               "/usr/share/games/megaglest/tilesets/*/sounds/*.wav",
                                               "/usr/share/games/megaglest/techs/megapack/factions/*/units/*/sounds/*.wav",
                                               "/usr/share/games/megaglest/techs/megapack/factions/*/units/*/sounds/*.ogg"),
            "recorded ambiences (wind, rain, night, birds, animals) and unit voices (the authors' family and friends)"),
    Package("unknown-horizons", "CC-BY-SA-3.0 (content/*)", ("/usr/share/unknown-horizons/content/audio/sounds/*.ogg",
                                                             "/usr/share/unknown-horizons/content/audio/sounds/*/*.ogg",
                                                             "/usr/share/unknown-horizons/content/audio/voice/*/*/*/*.ogg"),
            "recorded ambiences, work sounds and narrated speech (en, de, fr)"),
)
# Electronic vs acoustic: what a validation track is, for family accuracy.
VALIDATION_FAMILY = {"asc-music": "electronic", "wesnoth-1.16-music": "acoustic"}
# The two families bench/quality.py scores (genre tags as the engine shows them).
FAMILIES = {"electronic": frozenset({"electronic", "electronica", "electro", "techno", "house", "dance"}),
            "acoustic": frozenset({"classical", "opera", "folk", "country", "jazz", "blues"})}


@dataclass(frozen=True)
class Track:
    package: str
    name: str
    source: str  # path, or "archive:member"


def tracks(packages) -> list[Track]:
    """Every track of `packages` that is installed, sorted (stable across runs)."""
    import fnmatch

    out = []
    for pkg in packages:
        for pat in pkg.patterns:
            if ":" in pat and pat.split(":", 1)[0].endswith((".pk3", ".zip")):
                arch, inner = pat.split(":", 1)
                if os.path.isfile(arch):
                    with zipfile.ZipFile(arch) as z:
                        out += [Track(pkg.name, os.path.basename(n), f"{arch}:{n}")
                                for n in sorted(z.namelist()) if fnmatch.fnmatch(n, inner)]
            else:
                out += [Track(pkg.name, os.path.join(os.path.basename(os.path.dirname(p)), os.path.basename(p)), p)
                        for p in sorted(glob.glob(pat))]
    return out


def _ffmpeg_decode(data: bytes | None, path: str | None) -> np.ndarray:
    cmd = ["ffmpeg", "-v", "error", "-i", path or "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(RATE), "pipe:1"]
    r = subprocess.run(cmd, input=data, capture_output=True, check=True)
    return np.frombuffer(r.stdout, np.float32).copy()


def load(track: Track) -> np.ndarray:
    """Mono float32 at 16 kHz. Fret-on-Fire songs are stems: song.ogg + guitar.ogg (+ rhythm.ogg) summed."""
    if ":" in track.source and not os.path.exists(track.source):
        arch, member = track.source.split(":", 1)
        with zipfile.ZipFile(arch) as z:
            return _ffmpeg_decode(z.read(member), None)
    y = _ffmpeg_decode(None, track.source)
    if track.package.startswith("fretsonfire"):
        folder = os.path.dirname(track.source)
        for stem in ("guitar.ogg", "rhythm.ogg"):
            p = os.path.join(folder, stem)
            if os.path.exists(p):
                s = _ffmpeg_decode(None, p)
                n = min(len(y), len(s))
                y = y[:n] + s[:n]
    return y


def level(x: np.ndarray, dbfs: float = -20.0) -> np.ndarray:
    """Scaled to `dbfs` RMS, peak kept under 0.99 (a limiter, not a level change)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12
    y = x * (10 ** (dbfs / 20) / rms)
    peak = float(np.abs(y).max(initial=0.0))
    return (y * (0.99 / peak) if peak > 0.99 else y).astype(np.float32)


if __name__ == "__main__":  # inventory: hours per package
    for side, pkgs in (("train", TRAIN), ("validation", VALIDATION)):
        for pkg in pkgs:
            ts = tracks([pkg])
            secs = sum(len(load(t)) / RATE for t in ts)
            print(f"{side:10s} {pkg.name:28s} {len(ts):4d} tracks {secs / 3600:5.2f} h  {pkg.licence}")


# ---- patches: what the recipe trains on, cached per package -------------------------------

PRE_ROLL = RATE  # 1 s before each patch feeds the reverb's tail
PATCH = 3 * RATE  # MusiCNN's 3 s patch (stream.models.musicnn.frontend.PATCH_SAMPLES)


def log(msg: str) -> None:
    import time

    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cut_patches(y: np.ndarray, stride_s: float, max_per_track: int) -> list[np.ndarray]:
    """Patches with pre-roll every stride_s, skipping near-silence (< -45 dBFS RMS); max_per_track 0 = all."""
    n = PRE_ROLL + PATCH
    starts = list(range(0, len(y) - n, int(stride_s * RATE)))
    if max_per_track and len(starts) > max_per_track:  # long tracks: spread the cap over the whole track
        starts = [starts[int(i)] for i in np.linspace(0, len(starts) - 1, max_per_track)]
    out = []
    for s in starts:
        p = y[s:s + n]
        rms = float(np.sqrt(np.mean(np.square(p[PRE_ROLL:], dtype=np.float64))))
        if 20 * np.log10(rms + 1e-12) > -45:
            out.append(p)
    return out


def cached(path, make) -> dict | None:
    """The arrays saved at path, made (and saved) first if missing; None where make() gives None."""
    if not os.path.exists(path):
        d = make()
        if d is None:
            return None
        np.savez(path, **d)
    d = np.load(path, allow_pickle=False)
    return {k: d[k] for k in d.files}


def concat(parts: list[dict]) -> dict:
    return {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}


def prepare_patches(cache, packages, tag: str, stride_s: float, max_per_track: int) -> dict:
    """Every installed package's patches ({"audio": float16 [n, pre-roll + patch], "package",
    "track"}), in track order, cached per package (adding a package decodes only it)."""
    def decode(pkg):
        audio, track = [], []
        for t in tracks([pkg]):
            ps = cut_patches(load(t), stride_s, max_per_track)
            audio += ps
            track += [t.name] * len(ps)
            log(f"  {t.package}/{t.name}: {len(ps)} patches")
        if not audio:
            log(f"  {pkg.name} is not installed, left out (apt-get install {pkg.name})")
            return None
        return {"audio": np.stack(audio).astype(np.float16), "package": np.array([pkg.name] * len(audio)),
                "track": np.array(track)}

    parts = [d for pkg in packages if (d := cached(os.path.join(cache, f"patches-{pkg.name}-{tag}.npz"),
                                                   lambda: decode(pkg)))]
    if not parts:
        raise SystemExit("none of these packages is installed: " + " ".join(p.name for p in packages))
    return concat(parts)


def recorded_bank(packages, n: int = 80, seconds: float = 8.0, seed: int = 0, max_files: int = 60) -> list[np.ndarray]:
    """`n` scenes of `seconds`, each 2-5 recordings of `packages` (ambiences, voices) overlapping at
    random offsets, unit RMS; [] where none is installed. Files are spread over each package
    (every k-th, sorted), so the bank is the same on every machine with the same packages."""
    rng = np.random.default_rng(seed)
    clips = []
    for pkg in packages:
        files = [t for t in tracks([pkg])]
        for t in files[:: max(1, len(files) // max_files)]:
            y = load(t)
            loud = np.flatnonzero(np.abs(y) > 0.01 * (np.abs(y).max() + 1e-9))
            if len(loud) and loud[-1] - loud[0] > RATE // 4:
                y = y[loud[0]:loud[-1]]
                clips.append(y / (np.sqrt(np.mean(y ** 2)) + 1e-9))
    if not clips:
        return []
    length = int(seconds * RATE)
    out = []
    for _ in range(n):
        mix = np.zeros(length, np.float32)
        for _ in range(int(rng.integers(2, 6))):
            c = clips[int(rng.integers(len(clips)))][:length]
            start = int(rng.integers(0, length - len(c) + 1))
            mix[start:start + len(c)] += c * rng.uniform(0.4, 1.0)
        out.append((mix / (np.sqrt(np.mean(mix ** 2)) + 1e-9)).astype(np.float32))
    return out
