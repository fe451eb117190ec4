"""Accuracy of a model on labelled recordings: the scoring of a folder laid out like GTZAN.

    genres, files = find_files(root)                      # root/<genre>/*.wav|mp3|flac|ogg|...
    scores = score_folder(root, model, "musicnn-gtzan")   # FolderScores: per-file results, genres, skipped
    matrix = confusion(scores.results, scores.genres)

For every file, the genre the model gives the whole file (`analyze_file`, windows side by
side), and, with live=True, the genre the live engine (`StreamEngine`, default settings, fed in
0.1 s chunks) ends on: "does the live readout match what the whole file says?". The tables, the
PNG and the command line are a front end: `genre-evaluate` (ui/evaluate.py).

Levels. Without a map the folders' names say what is scored (`plan_scoring`): named after the
model's genres (the page's headline: "Electronic", "Folk & Country"), each file's verdict is
its leading genre among all the model's genres; named after its labels (its styles: "techno",
"opera"), its leading label among all it shows. Names match ignoring case, spaces, "-" and "_"
("Hip-Hop" = "hip hop"). The level with more matching folders is used (the genre level on a
tie); a folder matching nothing at that level is reported (`Scoring.unmatched`): its files
can only count wrong. A verdict with no folder of its own (a Funk & Soul file in a folder set
without one) counts wrong too: the accuracy is the model's, over all its genres or labels.

Label mapping. A map (a file of ``model label = folder genre`` lines, ``#`` comments; several
labels may map to one genre) sends model labels to folder genres; the prediction is then the
folder genre whose mapped labels score highest, and labels without a mapping are ignored (a
tagger's "female vocalists" does not compete): only the folders' genres compete, an N-way
choice among them, not the model's accuracy over all its labels (`Scoring.describe` says so).
`"musicnn-gtzan"` is a ready mapping of the bundled tagger's genre tags to the ten GTZAN
folders.
"""
from __future__ import annotations

import re
import runpy
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .engine import EngineConfig, StreamEngine
from .errors import AudioDecodeError
from .files import analyze_file, decode_blocks
from .presence import DetectorUnavailable, shared_detector

AUDIO_EXT = {".wav", ".mp3", ".flac", ".ogg", ".opus", ".au", ".aiff", ".aif", ".m4a", ".webm"}
LIVE_CHUNK_S = 0.1

# The bundled MusiCNN tagger's genre tags -> GTZAN folders (tags not listed are ignored).
BUILTIN_MAPS = {
    "musicnn-gtzan": {
        "blues": "blues", "classical": "classical", "opera": "classical", "country": "country",
        "folk": "country", "disco": "disco", "dance": "disco", "funk": "disco", "house": "disco",
        "hip-hop": "hiphop", "rnb": "hiphop", "jazz": "jazz", "metal": "metal", "heavy metal": "metal",
        "pop": "pop", "indie pop": "pop", "soul": "pop", "rock": "rock", "classic rock": "rock",
        "hard rock": "rock", "alternative rock": "rock", "indie rock": "rock", "progressive rock": "rock",
        "punk": "rock", "alternative": "rock", "indie": "rock",
    },
}


@dataclass
class FileResult:
    path: str
    truth: str
    predicted: str | None  # folder genre from the whole file (None: no mapped label scored)
    top_label: str | None  # the model's own top label for the file
    live: str | None  # folder genre of the live readout at the end of the file
    live_label: str | None
    seconds: float  # wall time for this file (file + live)
    music_share: float | None = None  # share of the file's seconds the music detector heard music in
    no_music: bool = False  # judged "no music" (talk, noise: under half of it music): listed apart


@dataclass(frozen=True)
class Scoring:
    """How the folders' names meet the model (`plan_scoring`).

    level: "genre" (folders named after the model's genres), "style" (after its labels) or
        "map" (a label map decides).
    mapping: {model genre or label: folder}.
    classes: what the model's verdict is chosen from: all its genres, all the labels it shows,
        or (map) the folders that a mapped label reaches.
    unmatched: folders no genre or label of this level reaches (their files always count wrong).
    other_level: {folder: what it is at the other level} for folders named at the other level
        ("techno" among genre folders: a style of Electronic)."""

    level: str
    mapping: dict
    classes: list
    unmatched: list = field(default_factory=list)
    other_level: dict = field(default_factory=dict)
    map_name: str | None = None

    def folder(self, name: str | None) -> str | None:
        """The folder of a model genre or label; the name itself when no folder has it."""
        return None if name is None else self.mapping.get(name, name)

    def describe(self) -> str:
        """One line: the level used and what an accuracy at it means."""
        n = len(self.classes)
        if self.level == "map":
            way = "a two-way" if n == 2 else f"a {n}-way"
            return (f"scored with the map {self.map_name!r}: the verdict is the folder whose mapped labels score "
                    f"highest; only those {n} compete ({way} comparison among the folders, not the model's "
                    f"accuracy over all its labels)")
        what = "genres" if self.level == "genre" else "labels (styles)"
        return (f"scored at the {self.level} level: the folders are named after the model's {what}; the verdict is "
                f"its leading {self.level} among all its {n} ({', '.join(self.classes[:12])}"
                f"{', ...' if n > 12 else ''}); one with no folder of its own counts wrong")

    def warnings(self) -> list[str]:
        """One line per folder that this level cannot score right."""
        out = []
        for f in self.unmatched:
            if f in self.other_level:
                out.append(f"folder {f!r} is {self.other_level[f]}, not one of the model's {self.level}s: its files "
                           f"count wrong at the {self.level} level (rename it, or give --map)")
            else:
                out.append(f"folder {f!r} matches none of the model's genres or labels: its files count wrong "
                           "(rename it after one, or give --map)")
        return out


@dataclass
class FolderScores:
    """What `score_folder` found: per-file results, the folder's genres (sorted), the files
    that could not be analysed ("path: why") and how the folders were scored."""

    results: list[FileResult]
    genres: list[str]
    skipped: list[str] = field(default_factory=list)
    scoring: Scoring | None = None

    @property
    def no_music(self) -> list[FileResult]:
        """The files judged "no music" (their genre is still scored, and counted in the matrix)."""
        return [r for r in self.results if r.no_music]


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def find_files(root: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    """(genres, [(file, genre)]) for root/<genre>/<file>; raises ValueError with what is wrong."""
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a folder; expected DIR/<genre>/<audio files>")
    genres = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, g) for g in genres for f in sorted((root / g).iterdir())
             if f.is_file() and f.suffix.lower() in AUDIO_EXT]
    if not files:
        raise ValueError(f"no audio files found in {str(root)!r}: expected DIR/<genre>/*.wav|mp3|flac|ogg...")
    used = sorted({g for _, g in files})
    return used, files


def load_map(spec: str | None, model_labels: list[str], genres: list[str]) -> dict[str, str]:
    """{model label: folder genre}. Raises ValueError naming what is wrong."""
    by_norm = {_norm(g): g for g in genres}
    if spec is None:
        mapping = {l: by_norm[_norm(l)] for l in model_labels if _norm(l) in by_norm}
        if not mapping:
            raise ValueError(f"none of the model's labels matches a folder name {genres}; "
                             "give a label map (--map FILE) with lines 'model label = folder genre'")
        return mapping
    if spec in BUILTIN_MAPS:
        raw = BUILTIN_MAPS[spec]
    else:
        p = Path(spec)
        if not p.is_file():
            raise ValueError(f"--map {spec!r}: no such file (or built-in map: {sorted(BUILTIN_MAPS)})")
        raw = {}
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if "=" not in line:
                raise ValueError(f"{p.name} line {n}: expected 'model label = folder genre', got {line!r}")
            k, v = (x.strip() for x in line.split("=", 1))
            raw[k] = v
    index = {l.lower(): l for l in model_labels}
    unknown = [k for k in raw if k.lower() not in index]
    if unknown and len(unknown) == len(raw):
        raise ValueError(f"--map names no label of this model (e.g. {unknown[:3]}); its labels are: {model_labels}")
    mapping = {}
    for k, v in raw.items():
        if k.lower() in index and _norm(v) in by_norm:
            mapping[index[k.lower()]] = by_norm[_norm(v)]
    if not mapping:
        raise ValueError(f"--map maps no label to a folder of DIR {genres}")
    return mapping


def plan_scoring(genres: list[str], model_genres: list[str], labels: list[str], genre_of: dict,
                 mapping_spec: str | None = None, all_labels: list[str] | None = None) -> Scoring:
    """How folders `genres` are scored against a model with genres `model_genres` and shown
    labels `labels` (`genre_of`: label -> its genre). With `mapping_spec` (a map file or a
    built-in map; `all_labels` the model's labels it may name) the map decides. Raises
    ValueError when no folder matches anything (naming the model's genres and labels)."""
    if mapping_spec is not None:
        mapping = load_map(mapping_spec, all_labels or labels, genres)
        reached = sorted(set(mapping.values()))
        return Scoring("map", mapping, reached, [g for g in genres if g not in reached], map_name=mapping_spec)
    by_genre = {_norm(g): g for g in model_genres}
    by_label = {_norm(l): l for l in labels}
    g_hits = {f: by_genre[_norm(f)] for f in genres if _norm(f) in by_genre}
    s_hits = {f: by_label[_norm(f)] for f in genres if _norm(f) in by_label}
    if not g_hits and not s_hits:
        raise ValueError(f"no folder name {genres} is one of the model's genres ({', '.join(model_genres)}) or "
                         f"labels ({', '.join(labels)}); rename the folders after them, or give a label map "
                         "(--map FILE) with lines 'model label = folder genre'")
    level, hits, other = ("genre", g_hits, s_hits) if len(g_hits) >= len(s_hits) else ("style", s_hits, g_hits)
    classes = list(model_genres) if level == "genre" else list(labels)
    unmatched = [f for f in genres if f not in hits]
    other_level = {}
    for f in unmatched:
        if f in other:
            other_level[f] = (f"a style (of {genre_of[other[f]]})" if level == "genre" and other[f] in genre_of
                              else "a genre")
    return Scoring(level, {m: f for f, m in hits.items()}, classes, unmatched, other_level)


def decide(scores: dict, mapping: dict[str, str]) -> str | None:
    """The folder genre whose mapped labels score highest."""
    best, best_v = None, -np.inf
    for label, v in scores.items():
        g = mapping.get(label)
        if g is not None and v > best_v:
            best, best_v = g, v
    return best


def stream_file(path: Path, model, config) -> tuple[dict, str | None, str | None]:
    """Feed a file through the live engine in LIVE_CHUNK_S chunks; (final scores, label, genre)."""
    with StreamEngine(model, config, background=False) as e:
        for block, rate in decode_blocks(path):
            step = max(1, int(rate * LIVE_CHUNK_S))
            for i in range(0, len(block), step):
                e.feed(block[i:i + step], rate)
        e.flush()
        last = e.latest
    if last is None or last.silent:
        return {}, None, None
    return last.scores, last.label, last.genre


def music_share(path: Path) -> float | None:
    """Share of the file's 1 s stretches in which the music detector (stream/presence.py) hears
    music; None where it is not installed."""
    try:
        det = shared_detector()
    except DetectorUnavailable:
        return None
    frames = []
    for block, rate in decode_blocks(path):
        mono = block.mean(axis=1) if block.ndim == 2 else block
        p = det.frames(mono, rate)
        frames.append(np.maximum(p[:, 1], p[:, 2]))
    f = np.concatenate(frames) if frames else np.zeros(0)
    per_s = int(round(1 / det.frame_s))
    secs = f[: len(f) // per_s * per_s].reshape(-1, per_s).mean(axis=1) if len(f) >= per_s else f[None].mean(axis=1)
    return float(np.mean(secs >= 0.5)) if len(secs) else None


def confusion(results: list[FileResult], genres: list[str]) -> np.ndarray:
    """rows = true genre, columns = predicted genre (+ a last column: "(other)", a verdict with
    no folder of its own, or none)."""
    m = np.zeros((len(genres), len(genres) + 1), np.int64)
    col = {g: i for i, g in enumerate(genres)}
    for r in results:
        m[col[r.truth], col.get(r.predicted, len(genres))] += 1
    return m


def score_folder(root, model, mapping_spec: str | None = None, *, live: bool = True, file_hop_s: float | None = None,
                 on_file: Callable[[int, int, Path, FileResult | None], None] | None = None) -> FolderScores:
    """Score every file of `root` (root/<genre>/<file>) with `model`.

    mapping_spec: a map file, a built-in map name (BUILTIN_MAPS) or None (the folders' names
    say the level: `plan_scoring`). file_hop_s: hop of the whole-file analysis (default: the
    model's window, i.e. windows side by side: each second of the file is classified once).
    on_file(done, total, path, result) is called after each file (result None: skipped).
    Raises ValueError for a bad layout, a map that fits nothing, folders that match nothing,
    or when no file could be decoded (single bad files are listed in `skipped`)."""
    file_hop_s = file_hop_s or model.default_window_s
    genres, files = find_files(Path(root))
    with StreamEngine(model, EngineConfig(), background=False) as probe:
        visible, model_genres, genre_of = probe.visible_labels, probe.genres, dict(probe.genre_level.genre_of)
    scoring = plan_scoring(genres, model_genres, visible, genre_of, mapping_spec, list(model.labels))
    mapping = scoring.mapping
    # a map may name any of the model's labels, not only its default (genre) view
    view = dict(allow=["*"]) if mapping_spec else {}
    scores = FolderScores([], genres, scoring=scoring)
    for done, (path, truth) in enumerate(files, 1):
        t0 = time.perf_counter()
        try:
            fa = analyze_file(path, model, hop_s=file_hop_s, config=EngineConfig(**view))
        except (AudioDecodeError, RuntimeError) as exc:  # one bad file must not end the evaluation
            scores.skipped.append(f"{path}: {exc}")
            if on_file is not None:
                on_file(done, len(files), path, None)
            continue
        pred = {"map": lambda: decide(fa.scores, mapping), "genre": lambda: scoring.folder(fa.top_genre),
                "style": lambda: scoring.folder(fa.top_label)}[scoring.level]()
        live_genre = live_label = None
        if live:
            final, live_label, live_head = stream_file(path, model, EngineConfig(top_k=0, **view))
            live_genre = {"map": lambda: decide(final, mapping), "genre": lambda: scoring.folder(live_head),
                          "style": lambda: scoring.folder(live_label)}[scoring.level]()
        share = music_share(path)
        r = FileResult(str(path), truth, pred, fa.top_label, live_genre, live_label, time.perf_counter() - t0,
                       share, share is not None and share < 0.5)
        scores.results.append(r)
        if on_file is not None:
            on_file(done, len(files), path, r)
    if not scores.results:
        raise ValueError("no file could be analysed:\n  " + "\n  ".join(scores.skipped))
    return scores


if __name__ == "__main__":  # the old command; the target is named as a string, so stream/ imports no front end
    print("stream.evaluate has moved: running `genre-evaluate` (python -m ui.evaluate) instead", file=sys.stderr,
          flush=True)
    runpy.run_module("ui.evaluate", run_name="__main__", alter_sys=True)
