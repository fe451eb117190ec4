"""Accuracy of a model on your own labelled recordings, file by file and live.

`genre-evaluate` (also `python -m ui.evaluate`):

    genre-evaluate DIR                       # DIR/<genre>/*.wav|mp3|flac|ogg|...
    genre-evaluate DIR --model musicnn --map musicnn-gtzan --out results/
    genre-evaluate DIR --map my_labels.txt --no-live

DIR is laid out like GTZAN: one folder per genre, named after it. For every file it prints
the genre the model gives the whole file (right or wrong, its top label, where the live
readout ended), then accuracy, per-genre recall and the confusion matrix (text, and with
--out a PNG, results.csv and report.txt). The scoring itself is `stream.evaluate`.

Live vs file: each file is also streamed through the live engine (default settings, in 0.1 s
chunks) and the readout it ends on is compared with the file's verdict: "does the live
readout match what the whole file says?" (--no-live halves the time).

Levels. Folders named after the model's genres (the page's headline: Electronic/, Rock/,
"Folk & Country"/) are scored at the genre level: a file's verdict is its leading genre among
all the model's genres. Folders named after its labels (techno/, opera/) are scored at the
style level, among all its labels. Case, spaces, "-" and "_" do not matter ("Hip-Hop" = "hip
hop"). The report says which level it used, and warns about folders that match neither (their
files can only count wrong). A verdict with no folder of its own counts wrong.

Label mapping. `--map FILE` maps model labels to folder genres instead, one ``model label =
folder genre`` per line (``#`` comments; several labels may map to one genre); the prediction
is then the folder genre whose mapped labels score highest, and labels without a mapping are
ignored (a tagger's "female vocalists" does not compete): only the folders' genres compete,
and the report says it is that N-way comparison. `--map musicnn-gtzan` is a ready mapping of
the bundled tagger's genre tags to the ten GTZAN folders.
"""
from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stream.errors import ModelLoadError
from stream.evaluate import BUILTIN_MAPS, FileResult, Scoring, confusion, find_files, score_folder
from stream.models import load_model
from ui.options import add_model_flag


def file_lines(results: list[FileResult], live: bool, root=None) -> list[str]:
    """One line per file: right or wrong, the file (relative to `root`), its folder genre, the
    genre the model gives the whole file (its own top label beside it) and, with `live`,
    where the live readout ended."""
    def name(r):
        try:
            return str(Path(r.path).relative_to(root)) if root is not None else str(r.path)
        except ValueError:
            return str(r.path)

    names = [name(r) for r in results]
    w = min(max((len(n) for n in names), default=4), 48)
    lines = ["per file (folder genre -> the model's genre for the whole file, its top label"
             + ("; where the live readout ended" if live else "") + "):"]
    for r, n in zip(results, names):
        verdict = "ok   " if r.predicted == r.truth else "WRONG"
        said = f"{r.truth} -> {r.predicted or '(none)'} ({r.top_label or '-'}"
        said += f"; live {r.live or '(none)'})" if live else ")"
        lines.append(f"  {verdict} {n:<{w}}  {said}")
    return lines


def format_report(results: list[FileResult], genres: list[str], live: bool, root=None,
                  scoring: Scoring | None = None) -> str:
    """How the folders were scored (`Scoring.describe`, its warnings), every file's verdict
    (`file_lines`), then accuracy, per-genre recall, the confusion matrix, live agreement and
    time per file."""
    m = confusion(results, genres)
    n = len(results)
    correct = int(np.trace(m[:, :len(genres)]))
    lines = [] if scoring is None else [scoring.describe()] + [f"warning: {w}" for w in scoring.warnings()] + [""]
    lines += file_lines(results, live, root) + [""]
    way = "" if scoring is None else (f" ({len(scoring.classes)}-way, {scoring.level} level)" if scoring.level != "map"
                                      else f" ({len(scoring.classes)}-way among the folders only: not genre accuracy)")
    lines += [f"accuracy: {correct}/{n} = {100 * correct / n:.1f} %{way}", "", "per-genre recall:"]
    for i, g in enumerate(genres):
        tot = int(m[i].sum())
        lines.append(f"  {g:<14} {int(m[i, i])}/{tot} = {100 * m[i, i] / tot:.1f} %" if tot else f"  {g:<14} -")
    lines += ["", "confusion matrix (rows: true genre, columns: predicted):"]
    heads = genres + (["(other)"] if m[:, -1].any() else [])
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


@dataclass(frozen=True)
class PngLayout:
    """Where `save_png` draws: cells of `cell` px from (left, top); the column heads, turned a
    quarter left so names of any length read bottom to top, stand between heads_top and top."""

    left: int
    top: int
    cell: int
    heads_top: int
    font_px: int


FONT_PX = 15  # text in the PNG: readable at 100 % zoom whatever the number of classes


def _font(px: int):
    # inside: Pillow is no declared dependency (Gradio brings it); only --out needs it
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):  # older Pillow: its small bitmap font
        return ImageFont.load_default()


def save_png(path: Path, m: np.ndarray, genres: list[str]) -> PngLayout:
    """The confusion matrix as a PNG (Pillow, which Gradio already brings): row names on the
    left, column names turned upright above their columns, counts in cells shaded by the
    row's share. Returns where it drew (the tests read the cells there)."""
    # inside: Pillow is no declared dependency (Gradio brings it); only --out needs it
    from PIL import Image, ImageDraw

    cols = genres + (["(other)"] if m[:, -1].any() else [])
    m = m if m[:, -1].any() else m[:, :-1]
    font = _font(FONT_PX)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = lambda text: int(probe.textlength(text, font=font))  # noqa: E731
    cell, pad = max(44, FONT_PX * 3), 8
    title = "confusion matrix (rows: true genre, columns: predicted)"
    heads_top = pad * 2 + FONT_PX
    layout = PngLayout(left=pad * 2 + max(width(g) for g in genres), top=heads_top + max(width(c) for c in cols) + pad,
                       cell=cell, heads_top=heads_top, font_px=FONT_PX)
    img = Image.new("RGB", (max(layout.left + cell * len(cols), width(title) + pad) + pad * 2,
                            layout.top + cell * len(genres) + pad * 2), "white")
    d = ImageDraw.Draw(img)
    d.text((pad, pad), title, fill="black", font=font)
    rows = m.sum(1, keepdims=True).clip(min=1)
    for i, g in enumerate(genres):
        y = layout.top + i * cell + cell // 2
        d.text((layout.left - pad, y), g, fill="black", font=font, anchor="rm")
        for j in range(len(cols)):
            frac = m[i, j] / rows[i, 0]
            shade = int(255 * (1 - frac))
            x = layout.left + j * cell
            d.rectangle([x, layout.top + i * cell, x + cell - 2, layout.top + (i + 1) * cell - 2],
                        fill=(shade, shade, 255), outline="grey")
            d.text((x + cell // 2 - 1, y - 1), str(int(m[i, j])), fill="black" if frac < 0.6 else "white", font=font,
                   anchor="mm")
    for j, name in enumerate(cols):  # written on their own strip, then turned upright
        strip = Image.new("RGB", (width(name) + 2, FONT_PX + 6), "white")
        ImageDraw.Draw(strip).text((1, 1), name, fill="black", font=font)
        up = strip.rotate(90, expand=True)
        img.paste(up, (layout.left + j * cell + (cell - up.width) // 2, layout.top - pad // 2 - up.height))
    img.save(path)
    return layout


def write_outputs(out: Path, results: list[FileResult], genres: list[str], report: str) -> None:
    """confusion.png, results.csv and report.txt in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    save_png(out / "confusion.png", confusion(results, genres), genres)
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "truth", "predicted", "top_label", "live", "live_label", "seconds"])
        for r in results:
            w.writerow([r.path, r.truth, r.predicted or "", r.top_label or "", r.live or "", r.live_label or "",
                        f"{r.seconds:.3f}"])
    (out / "report.txt").write_text(report + "\n", encoding="utf-8")


def evaluate(root, model, mapping_spec: str | None = None, live: bool = True, file_hop_s: float | None = None,
             progress: bool = True, out: Path | None = None) -> tuple[list[FileResult], list[str], str]:
    """Run the whole evaluation (`stream.evaluate.score_folder`) with a progress bar; returns
    (per-file results, genres, report text) and, with `out`, writes the PNG, CSV and report
    there. Raises ValueError as score_folder does."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   transient=False) if progress else None
    task = bar.add_task("evaluating", total=None) if bar is not None else None

    def on_file(done, total, path, r):
        desc = {"description": f"{path.name[:28]:<28} {r.seconds:5.1f} s"} if r is not None else {}
        bar.update(task, completed=done, total=total, **desc)

    if bar is not None:
        bar.start()
    try:
        scores = score_folder(root, model, mapping_spec, live=live, file_hop_s=file_hop_s,
                              on_file=on_file if bar is not None else None)
    finally:
        if bar is not None:
            bar.stop()
    results, genres = scores.results, scores.genres
    report = format_report(results, genres, live, Path(root), scores.scoring)
    if scores.no_music:  # talk, noise: the genre named for them says nothing about the model
        report += (f"\n\njudged \"no music\" {len(scores.no_music)} file(s) (the music detector heard music in "
                   "under half of each; still counted above):\n  "
                   + "\n  ".join(f"{r.path} (music {100 * r.music_share:.0f} %)" for r in scores.no_music))
    if scores.skipped:
        report += f"\n\nskipped {len(scores.skipped)} file(s):\n  " + "\n  ".join(scores.skipped)
    if out is not None:
        write_outputs(out, results, genres, report)
    return results, genres, report


def main(argv=None) -> int:
    """Console entry point (`genre-evaluate`)."""
    ap = argparse.ArgumentParser(prog="genre-evaluate", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="labelled folder: DIR/<genre>/<audio files>")
    add_model_flag(ap)
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
    for line in report.splitlines():  # (also where a log catches them)
        if line.startswith("warning: "):
            print(line, file=sys.stderr)
    if args.out is not None:
        print(f"\nwrote {args.out / 'confusion.png'}, {args.out / 'results.csv'}, {args.out / 'report.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
