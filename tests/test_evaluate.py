"""`genre-evaluate` (ui/evaluate.py, scoring in stream/evaluate.py) on a small labelled folder cut at test time from real recordings
(Debian asc-music: electronic; wesnoth-1.16-music: orchestral; both GPL-2+)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.music import MUSIC_DIR, WESNOTH_DIR, needs_both_packages
from stream.evaluate import find_files, load_map
from ui.evaluate import evaluate

ROOT = Path(__file__).resolve().parent.parent
CUTS = {  # folder -> [(source, start s)]
    "electronic": [(f"{MUSIC_DIR}/machine_wars.mp3", 60.0), (f"{MUSIC_DIR}/time_to_strike.mp3", 90.0)],
    "classical": [(f"{WESNOTH_DIR}/traveling_minstrels.ogg", 40.0), (f"{WESNOTH_DIR}/silvan_sanctuary.ogg", 60.0)],
}
pytestmark = [needs_both_packages, pytest.mark.slow]


def make_folder(root: Path, names=None, seconds=10.0):
    for genre, cuts in CUTS.items():
        d = root / (names or {}).get(genre, genre)
        d.mkdir(parents=True)
        for i, (src, start) in enumerate(cuts):
            with sf.SoundFile(src) as f:
                f.seek(int(start * f.samplerate))
                y = f.read(int(seconds * f.samplerate), dtype="float32")
                sr = f.samplerate
            # one WAV and one FLAC per genre: any format the engine decodes will do
            sf.write(d / f"{Path(src).stem}.{'wav' if i == 0 else 'flac'}", y, sr)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("labelled"))


@pytest.fixture(scope="module")
def evaluated(folder, musicnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_out")
    results, genres, report = evaluate(folder, musicnn, progress=False, out=out)
    return results, genres, report, out


def test_accuracy_recall_confusion_and_live_agreement(evaluated):
    results, genres, report, out = evaluated
    assert genres == ["classical", "electronic"] and len(results) == 4
    assert all(r.predicted == r.truth for r in results), [(r.path, r.top_label, r.predicted) for r in results]
    assert "accuracy: 4/4 = 100.0 %" in report
    assert "classical      2/2 = 100.0 %" in report and "electronic     2/2 = 100.0 %" in report
    assert "confusion matrix" in report
    # live: each file streamed in chunks through the engine ends on the file's own verdict
    assert all(r.live is not None for r in results)
    agree = sum(r.live == r.predicted for r in results)
    assert f"the live readout ends on the file's genre in {agree}/4 files" in report
    assert agree >= 3
    assert "time per file" in report and all(r.seconds > 0 for r in results)


def test_png_and_csv_written(evaluated):
    from PIL import Image

    results, genres, report, out = evaluated
    with Image.open(out / "confusion.png") as img:
        assert img.format == "PNG" and img.width > 100 and img.height > 100
        px = np.asarray(img.convert("RGB"))
    # the cells, where ui/evaluate.py's save_png draws them (the layout it returns, for the
    # same matrix), sampled inside each cell's corner (clear of its count): all 4 right, so
    # the diagonal is filled solid (0, 0, 255) and the off-diagonal cells are empty (white)
    from stream.evaluate import confusion
    from ui.evaluate import save_png

    layout = save_png(out / "again.png", confusion(results, genres), genres)
    cell, left, top = layout.cell, layout.left, layout.top
    for i in range(len(genres)):
        for j in range(len(genres)):
            colour = tuple(int(c) for c in px[top + i * cell + 4, left + j * cell + 4])
            assert colour == ((0, 0, 255) if i == j else (255, 255, 255)), (i, j, colour)
    import csv

    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results) == 4
    for row, r in zip(rows, results):  # each row is its file's result, field by field
        assert {k: v for k, v in row.items() if k != "seconds"} == {
            "file": str(r.path), "truth": r.truth, "predicted": r.predicted or "", "top_label": r.top_label or "",
            "live": r.live or "", "live_label": r.live_label or ""}, row
        assert float(row["seconds"]) == pytest.approx(r.seconds, abs=5e-4)
    assert (out / "report.txt").read_text().strip() == report.strip()


def ink_box(px: np.ndarray):
    """(x0, y0, x1, y1) of the non-white pixels of an RGB array, None if there are none."""
    ys, xs = np.nonzero((px < 160).any(axis=2))
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else None


@pytest.mark.parametrize("n", [2, 10, 24])
def test_confusion_png_labels_are_readable_at_any_number_of_classes(tmp_path, n):
    """Column names read as words (turned upright, letters at the font's size), each over its
    own column; row names beside their rows; no name overlaps another."""
    from PIL import Image

    from ui.evaluate import save_png

    names = ["electronic", "classical", "hiphop", "experimental rock", "jazz", "folk & country"]
    genres = [f"{names[i % len(names)]}{'' if i < len(names) else f' {i}'}" for i in range(n)]
    m = np.eye(n + 1, dtype=int)[:n] * 3  # (the last column: "(none)", empty here)
    layout = save_png(tmp_path / "c.png", m, genres)
    with Image.open(tmp_path / "c.png") as img:
        px = np.asarray(img.convert("RGB"))
    assert layout.font_px >= 12
    for j, g in enumerate(genres):
        x0 = layout.left + j * layout.cell
        head = ink_box(px[layout.heads_top:layout.top, x0:x0 + layout.cell])
        assert head is not None, g
        # one line of text turned upright: as wide as a line of the font is tall, and the
        # longer the name the taller (one letter per line was one letter wide)
        assert head[2] - head[0] >= 0.6 * layout.font_px, (g, head)
        assert head[3] - head[1] >= 0.3 * layout.font_px * len(g), (g, head)
        # nothing of it spills into the next column's strip
        assert head[0] > 0 and head[2] < layout.cell, (g, head)
        y0 = layout.top + j * layout.cell
        row = ink_box(px[y0:y0 + layout.cell, :layout.left])
        assert row is not None and row[3] - row[1] >= 0.5 * layout.font_px, (g, row)
        assert row[2] - row[0] >= 0.3 * layout.font_px * len(g), (g, row)


def test_label_map_for_folder_names_the_model_does_not_use(tmp_path, musicnn):
    root = make_folder(tmp_path / "data", {"electronic": "edm", "classical": "orchestral"}, seconds=6.0)
    with pytest.raises(ValueError, match="--map"):
        evaluate(root, musicnn, progress=False, live=False)
    mp = tmp_path / "map.txt"
    mp.write_text("# tagger label = folder\nelectronic = edm\ntechno = edm\nclassical = orchestral\nopera = orchestral\n")
    results, genres, report = evaluate(root, musicnn, str(mp), progress=False, live=False)
    assert genres == ["edm", "orchestral"]
    assert sum(r.predicted == r.truth for r in results) >= 3, report
    assert "live vs file" not in report


def test_bad_inputs_give_clear_errors(tmp_path, folder, musicnn):
    with pytest.raises(ValueError, match="not a folder"):
        find_files(tmp_path / "missing")
    (tmp_path / "empty" / "rock").mkdir(parents=True)
    with pytest.raises(ValueError, match="no audio files"):
        find_files(tmp_path / "empty")
    bad = tmp_path / "bad.txt"
    bad.write_text("electronic edm\n")
    with pytest.raises(ValueError, match="line 1"):
        load_map(str(bad), musicnn.labels, ["edm"])
    bad.write_text("nosuchlabel = edm\n")
    with pytest.raises(ValueError, match="names no label"):
        load_map(str(bad), musicnn.labels, ["edm"])
    # one unreadable file is listed and skipped; the others are evaluated
    root = make_folder(tmp_path / "mixed", seconds=4.0)
    (root / "classical" / "notes.mp3").write_text("this is not audio")
    results, _, report = evaluate(root, musicnn, progress=False, live=False)
    assert len(results) == 4 and "skipped 1 file(s)" in report and "notes.mp3" in report


def test_command_line(folder, tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "ui.evaluate", str(folder), "-m", "musicnn", "--no-live",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "accuracy: 4/4" in p.stdout and (out / "confusion.png").is_file()
    # every file's verdict on the terminal, as --help promises (not only in results.csv)
    for genre, cuts in CUTS.items():
        for i, (src, _) in enumerate(cuts):
            name = f"{genre}/{Path(src).stem}.{'wav' if i == 0 else 'flac'}"
            line = next((l for l in p.stdout.splitlines() if name in l), None)
            assert line is not None and f"{genre} -> {genre}" in line and line.lstrip().startswith("ok"), p.stdout
    p = subprocess.run([sys.executable, "-m", "ui.evaluate", str(tmp_path / "nope")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "not a folder" in p.stderr
