"""Ray Serve: the model served by a real local Ray with real replicas (tests/serve_cases.py).

Those cases make the test process a Ray driver. Ray ends a driver process (exit code 1, no
report) when anything touches it after `ray.shutdown()` — Serve's own handle threads can — so
they run in a pytest process of their own, and this suite's process never starts Ray."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray Serve is optional: pip install -r requirements-serve.txt")

from stream.models.remote import RemoteModel, RemoteModelError  # noqa: E402

TESTS = Path(__file__).resolve().parent


def test_serve_cases_in_a_pytest_process_of_their_own():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTHONFAULTHANDLER": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-p", "ray_child_plugin",
                        str(TESTS / "serve_cases.py")], cwd=TESTS.parent, env=env, capture_output=True, text=True,
                       timeout=1500)
    report = f"{r.stdout[-8000:]}\n{r.stderr[-4000:]}"
    assert r.returncode == 0 and " passed" in r.stdout and " failed" not in r.stdout, report


def test_calls_after_ray_shutdown_fail_instead_of_starting_a_ray():
    """A RemoteModel used when Ray is not (or no longer) running in this process: a named
    error, and no new local Ray is started behind the caller's back."""
    assert not ray.is_initialized()
    remote = RemoteModel.__new__(RemoteModel)  # (as left by ray.shutdown(): connected once, Ray gone)
    remote._ray, remote.app = ray, "genre"
    with pytest.raises(RemoteModelError, match="Ray was shut down in this process"):
        remote.predict(np.zeros((1, 48000), np.float32))
    assert not ray.is_initialized()
