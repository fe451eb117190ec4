"""The front door: the README stays short, its Python example runs as written, and every link into docs/ lands."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: move detail into a docs/ page"


def test_every_relative_link_and_picture_in_the_docs_exists():
    missing = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not re.match(r"[a-z]+://", target) and not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_user_documents_name_no_issue_numbers():
    hits = [f"{d.relative_to(ROOT)}: {m.group(0)}" for d in DOCS for m in re.finditer(r"\bissues? \d+", d.read_text())]
    assert not hits, hits


def test_readme_python_example_runs_as_written(tmp_path):
    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    # The same program on a short excerpt of the same recording, so the test takes seconds, not minutes.
    excerpt = ROOT / "tests/data/musicnn/real.wav"
    assert "/usr/share/games/asc/music/machine_wars.mp3" in code
    script = tmp_path / "example.py"
    script.write_text(code.replace("/usr/share/games/asc/music/machine_wars.mp3", str(excerpt)))
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    readouts = [l for l in lines if re.match(r"\s*\d+\.\d s  ", l)]
    assert len(readouts) >= 3 and lines[-1].startswith("mostly: ") and lines[-1] != "mostly: None", lines[-5:]
