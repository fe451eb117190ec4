"""Accuracy of a model on your own labelled recordings, file by file and live.

    python -m stream.evaluate DIR                       # DIR/<genre>/*.wav|mp3|flac|ogg|...
    python -m stream.evaluate DIR --model musicnn --map musicnn-gtzan --out results/
    python -m stream.evaluate DIR --map my_labels.txt --no-live

DIR is laid out like GTZAN: one folder per genre, named after it. For every file it prints
the genre the model gives the whole file (`analyze_file`, windows side by side) and then
accuracy, per-genre recall and the confusion matrix (text, and a PNG with --out).

Live vs file: each file is also streamed through the live engine (`StreamEngine`, default
settings, in 0.1 s chunks) and the readout it ends on is compared with the file's verdict:
"does the live readout match what the whole file says?" (--no-live halves the time).

Label mapping. The folders' names need not be the model's labels. `--map FILE` maps model
labels to folder genres, one ``model label = folder genre`` per line (``#`` comments; several
labels may map to one genre); the prediction is then the folder genre whose mapped labels
score highest, and labels without a mapping are ignored (a tagger's "female vocalists" does
not compete). Without --map, labels that equal a folder name (case, spaces, "-" and "_"
ignored: "hip-hop" = "hiphop") map to it. `--map musicnn-gtzan` is a ready mapping of the
bundled tagger's genre tags to the ten GTZAN folders.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
                             "pass --map FILE with lines 'model label = folder genre'")
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


def decide(scores: dict, mapping: dict[str, str]) -> str | None:
    """The folder genre whose mapped labels score highest."""
    best, best_v = None, -np.inf
    for label, v in scores.items():
        g = mapping.get(label)
        if g is not None and v > best_v:
            best, best_v = g, v
    return best


def stream_file(path: Path, model, config) -> tuple[dict, str | None]:
    """Feed a file through the live engine in LIVE_CHUNK_S chunks; (final scores, label)."""
    from .engine import StreamEngine
    from .files import decode_blocks

    with StreamEngine(model, config, background=False) as e:
        for block, rate in decode_blocks(path):
            step = max(1, int(rate * LIVE_CHUNK_S))
            for i in range(0, len(block), step):
                e.feed(block[i:i + step], rate)
        e.flush()
        last = e.latest
    if last is None or last.silent:
        return {}, None
    return last.scores, last.label


def confusion(results: list[FileResult], genres: list[str]) -> np.ndarray:
    """rows = true genre, columns = predicted genre (+ a last column: no mapped prediction)."""
    m = np.zeros((len(genres), len(genres) + 1), np.int64)
    col = {g: i for i, g in enumerate(genres)}
    for r in results:
        m[col[r.truth], col.get(r.predicted, len(genres))] += 1
    return m


def format_report(results: list[FileResult], genres: list[str], live: bool) -> str:
    m = confusion(results, genres)
    n = len(results)
    correct = int(np.trace(m[:, :len(genres)]))
    lines = [f"accuracy: {correct}/{n} = {100 * correct / n:.1f} %", "", "per-genre recall:"]
    for i, g in enumerate(genres):
        tot = int(m[i].sum())
        lines.append(f"  {g:<14} {int(m[i, i])}/{tot} = {100 * m[i, i] / tot:.1f} %" if tot else f"  {g:<14} -")
    lines += ["", "confusion matrix (rows: true genre, columns: predicted):"]
    heads = genres + (["(none)"] if m[:, -1].any() else [])
    w = max(8, max(len(g) for g in genres))
    cw = [max(5, len(h)) for h in heads]
    lines.append(" " * (w + 2) + " ".join(f"{h:>{c}}" for h, c in zip(heads, cw)))
    for i, g in enumerate(genres):
        cells = m[i] if m[:, -1].any() else m[i, :-1]
        lines.append(f"  {g:<{w}}" + " ".join(f"{int(v):>{c}}" for v, c in zip(cells, cw)))
    if live:
        agree = sum(r.live is not None and r.live == r.predicted for r in results)
        agree_label = sum(r.live_label is not None and r.live_label == r.top_label for r in results)
        live_ok = sum(r.live == r.truth for r in results)
        lines += ["", f"live vs file: the live readout ends on the file's genre in {agree}/{n} files "
                      f"({100 * agree / n:.1f} %); on the model's own top label in {agree_label}/{n} "
                      f"({100 * agree_label / n:.1f} %); live accuracy {100 * live_ok / n:.1f} %"]
    secs = [r.seconds for r in results]
    lines += ["", f"time per file: mean {np.mean(secs):.2f} s, max {np.max(secs):.2f} s"]
    return "\n".join(lines)


def save_png(path: Path, m: np.ndarray, genres: list[str]) -> None:
    """The confusion matrix as a PNG (Pillow, which Gradio already brings)."""
    from PIL import Image, ImageDraw, ImageFont

    cols = genres + (["(none)"] if m[:, -1].any() else [])
    m = m if m[:, -1].any() else m[:, :-1]
    cell, left, top = 56, 12 + 8 * max(len(g) for g in cols), 40 + 8 * max(len(g) for g in cols)
    title = "confusion matrix (rows: true, columns: predicted)"
    img = Image.new("RGB", (max(left + cell * len(cols) + 16, 16 + 6 * len(title)), top + cell * len(genres) + 40), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    d.text((8, 8), title, fill="black", font=font)
    rows = m.sum(1, keepdims=True).clip(min=1)
    for i in range(len(genres)):
        d.text((8, top + i * cell + cell // 2 - 5), genres[i], fill="black", font=font)
        for j in range(len(cols)):
            frac = m[i, j] / rows[i, 0]
            shade = int(255 * (1 - frac))
            x, y = left + j * cell, top + i * cell
            d.rectangle([x, y, x + cell - 2, y + cell - 2], fill=(shade, shade, 255), outline="grey")
            d.text((x + cell // 2 - 6, y + cell // 2 - 5), str(int(m[i, j])), fill="black" if frac < 0.6 else "white", font=font)
    for j, g in enumerate(cols):  # column heads, written vertically
        x = left + j * cell + cell // 2 - 4
        for k, ch in enumerate(g):
            d.text((x, 28 + 8 * k), ch, fill="black", font=font)
    img.save(path)


def evaluate(root, model, mapping_spec: str | None = None, live: bool = True, file_hop_s: float | None = None,
             progress: bool = True, out: Path | None = None) -> tuple[list[FileResult], list[str], str]:
    """Run the whole evaluation; returns (per-file results, genres, report text).

    file_hop_s: hop of the whole-file analysis (default: the model's window, i.e. windows side
    by side: each second of the file is classified once). Raises ValueError for a bad layout,
    a map that fits nothing, or when no file could be decoded (single bad files are listed
    in the report and skipped)."""
    file_hop_s = file_hop_s or model.default_window_s
    from .engine import EngineConfig, StreamEngine
    from .errors import AudioDecodeError
    from .files import analyze_file

    genres, files = find_files(Path(root))
    with StreamEngine(model, EngineConfig(), background=False) as probe:
        visible = probe.visible_labels
    mapping = load_map(mapping_spec, visible if mapping_spec is None else list(model.labels), genres)
    # a map may name any of the model's labels, not only its default (genre) view
    view = dict(allow=["*"]) if mapping_spec else {}
    results: list[FileResult] = []
    skipped: list[str] = []
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       transient=False)
        bar.start()
        task = bar.add_task("evaluating", total=len(files))
    try:
        for path, truth in files:
            t0 = time.perf_counter()
            try:
                fa = analyze_file(path, model, hop_s=file_hop_s, config=EngineConfig(**view))
            except (AudioDecodeError, RuntimeError) as exc:  # one bad file must not end the evaluation
                skipped.append(f"{path}: {exc}")
                if bar is not None:
                    bar.update(task, advance=1)
                continue
            pred = decide(fa.scores, mapping)
            live_genre = live_label = None
            if live:
                scores, live_label = stream_file(path, model, EngineConfig(top_k=0, **view))
                live_genre = decide(scores, mapping)
            r = FileResult(str(path), truth, pred, fa.top_label, live_genre, live_label, time.perf_counter() - t0)
            results.append(r)
            if bar is not None:
                bar.update(task, advance=1, description=f"{path.name[:28]:<28} {r.seconds:5.1f} s")
    finally:
        if bar is not None:
            bar.stop()
    if not results:
        raise ValueError("no file could be analysed:\n  " + "\n  ".join(skipped))
    report = format_report(results, genres, live)
    if skipped:
        report += f"\n\nskipped {len(skipped)} file(s):\n  " + "\n  ".join(skipped)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_png(out / "confusion.png", confusion(results, genres), genres)
        with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file", "truth", "predicted", "top_label", "live", "live_label", "seconds"])
            for r in results:
                w.writerow([r.path, r.truth, r.predicted or "", r.top_label or "", r.live or "", r.live_label or "",
                            f"{r.seconds:.3f}"])
        (out / "report.txt").write_text(report + "\n", encoding="utf-8")
    return results, genres, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stream.evaluate", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="labelled folder: DIR/<genre>/<audio files>")
    ap.add_argument("-m", "--model", default="auto", help="model spec as for load_model (default: auto)")
    ap.add_argument("--map", dest="mapping", help=f"label map file ('model label = folder genre' lines) or one of {sorted(BUILTIN_MAPS)}")
    ap.add_argument("--no-live", action="store_true", help="skip the live-vs-file comparison")
    ap.add_argument("--file-hop", type=float, help="hop of the whole-file analysis in s (default: the window, no overlap)")
    ap.add_argument("--out", type=Path, help="folder for confusion.png, results.csv and report.txt")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        genres, files = find_files(Path(args.dir))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from . import load_model
    from .errors import ModelLoadError

    try:
        model = load_model(args.model)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(files)} files in {len(genres)} genres ({', '.join(genres)}); model {model.name}")
    try:
        _, _, report = evaluate(args.dir, model, args.mapping, live=not args.no_live, file_hop_s=args.file_hop,
                                progress=not args.no_progress, out=args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report)
    if args.out is not None:
        print(f"\nwrote {args.out / 'confusion.png'}, {args.out / 'results.csv'}, {args.out / 'report.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
