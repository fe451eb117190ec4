"""The old commands `python -m stream.server`, `python -m stream.serve` (the network front end
moved to ui/net) and `python -m stream.evaluate` (its front end moved to ui/evaluate.py) keep
working: one line on stderr names the new command, which then runs with the same arguments."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("old,new,args,error", [
    ("stream.server", "genre-serve", ["--port", "99999"], "genre-serve: error: --port 99999 is out of range"),
    ("stream.serve", "genre-serve-ray", ["--autoscale", "4:2"], "genre-serve-ray: error: --autoscale expects MIN:MAX"),
    ("stream.evaluate", "genre-evaluate", ["/nonexistent/folder"], "error: '/nonexistent/folder' is not a folder"),
])
def test_old_command_says_where_it_moved_and_runs_the_new_one(old, new, args, error):
    r = subprocess.run([sys.executable, "-m", old, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"{old} has moved: running `{new}`"), r.stderr
    assert r.returncode == 2 and error in r.stderr, r.stderr
    h = subprocess.run([sys.executable, "-m", old, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert h.returncode == 0 and h.stdout.startswith(f"usage: {new}"), (h.stdout[:300], h.stderr[-2000:])


def test_importing_a_shim_runs_nothing():
    code = "import sys, stream.server, stream.serve, stream.evaluate; print(sorted(m for m in sys.modules if m == 'ui' or m.startswith('ui.')))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)
