"""pytest plugin for a child pytest process that drives an in-process Ray (tests/serve_cases.py).

Ray Serve's handle threads can call into Ray after `ray.shutdown()` (at the end of a module or
in Ray's own exit handler), and Ray then ends the whole process with exit code 1 and no report.
Once the session's results are final and printed, this process stops the local Ray it started
and leaves with pytest's own exit status, without running Ray's exit handlers.
"""
import os
import sys

import pytest

_status = {"code": 1}


def pytest_sessionfinish(session, exitstatus):
    _status["code"] = int(exitstatus)


def _stop_local_ray() -> None:
    """End the cluster's processes (GCS, raylet, workers) now. Left to notice their driver's exit
    they lingered, and the next test's `ray://APP` (address 'auto') could pick that dying
    cluster over the live one (the clean-clone CI failed on it once)."""
    ray = sys.modules.get("ray")
    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    if node is not None:
        try:
            node.kill_all_processes(check_alive=False, allow_graceful=True, wait=True)
        except Exception as exc:  # the report is already printed: say so, still leave
            print(f"support.ray_child: could not stop the local Ray: {exc!r}", file=sys.stderr)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    _stop_local_ray()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_status["code"])
