"""The suite's own plumbing (tests/conftest.py): under `pytest -n N` the tests that share a costly
setup, and every Ray test, run on one worker (their ids carry the group xdist schedules by)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_group_runs_whole_on_one_worker():
    pytest.importorskip("xdist", reason="pytest-xdist is in requirements-dev.txt")
    r = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider",
                        "tests/test_precision.py", "tests/test_protocol.py", "-k", "auto_prefers or both_engines"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    ran = re.findall(r"\[(gw\d+)\] \[ *\d+%\] PASSED (\S+)", r.stdout)
    grouped = [(w, t) for w, t in ran if "test_precision.py::" in t]
    assert len(grouped) == 4 and all(t.endswith("@test_precision.py") for _, t in grouped), r.stdout[-3000:]
    assert len({w for w, _ in grouped}) == 1, grouped  # one worker: the module's fixtures built once
    assert any("test_protocol.py::" in t and "@" not in t for _, t in ran), ran  # no group: any worker
