"""Ray Serve: the model served by a real local Ray with real replicas (tests/serve_cases.py).

Those cases make the test process a Ray driver. Ray ends a driver process (exit code 1, no
report) when anything touches it after `ray.shutdown()` — Serve's own handle threads can — so
they run in a pytest process of their own, and this suite's process never starts Ray."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray Serve is optional: pip install -r requirements-serve.txt")

from stream.models.remote import RemoteModel, RemoteModelError  # noqa: E402

pytestmark = pytest.mark.ray

TESTS = Path(__file__).resolve().parent
CHILD_TIMEOUT_S = 1500


def closing_counts(stdout: str) -> dict[str, int]:
    """{'passed': 9, 'skipped': 1, ...} from pytest's closing line ('9 passed, 1 skipped in 80.1s')."""
    lines = [l for l in stdout.strip().splitlines() if re.search(r"\bin [\d.]+s\b", l)]
    assert lines, "no closing line from the child pytest"
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", lines[-1].split(" in ")[0])}


def expected_cases() -> int:
    return len(re.findall(r"^def test_", (TESTS / "serve_cases.py").read_text(), re.M))


def test_closing_line_is_read():
    assert closing_counts("x\n=== 9 passed, 1 skipped, 2 warnings in 80.12s (0:01:20) ===\n") == \
        {"passed": 9, "skipped": 1, "warnings": 2}
    assert closing_counts("10 passed in 3.2s\n") == {"passed": 10}
    assert expected_cases() >= 10


# The parent's own limit (pytest.ini's global 600 s would end it before the child's, losing the
# child's report): the child's timeout plus a margin to collect its output.
@pytest.mark.timeout(CHILD_TIMEOUT_S + 120)
def test_serve_cases_in_a_pytest_process_of_their_own():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTHONFAULTHANDLER": "1"}
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-p",
                            "support.ray_child", str(TESTS / "serve_cases.py")], cwd=TESTS.parent, env=env,
                           capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:  # the child hung: show what it had printed
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"serve_cases.py ran past {CHILD_TIMEOUT_S} s:\n{out[-8000:]}")
    report = f"{r.stdout[-20000:]}\n{r.stderr[-4000:]}"  # (three failures need ~20,000)
    assert r.returncode == 0, report
    # every case ran and passed: none skipped, deselected or lost
    counts = {k: v for k, v in closing_counts(r.stdout).items() if not k.startswith("warning")}
    assert counts == {"passed": expected_cases()}, report


def test_calls_after_ray_shutdown_fail_instead_of_starting_a_ray():
    """A RemoteModel used when Ray is not (or no longer) running in this process: a named
    error, and no new local Ray is started behind the caller's back."""
    assert not ray.is_initialized()
    remote = RemoteModel.__new__(RemoteModel)  # (as left by ray.shutdown(): connected once, Ray gone)
    remote._ray, remote.app = ray, "genre"
    with pytest.raises(RemoteModelError, match="Ray was shut down in this process"):
        remote.predict(np.zeros((1, 48000), np.float32))
    assert not ray.is_initialized()
