"""pytest plugin for a child pytest process that drives an in-process Ray (tests/serve_cases.py).

Ray Serve's handle threads can call into Ray after `ray.shutdown()` (at the end of a module or
in Ray's own exit handler), and Ray then ends the whole process with exit code 1 and no report.
Once the session's results are final and printed, this process leaves with pytest's own exit
status and without running Ray's exit handlers.
"""
import os
import sys

import pytest

_status = {"code": 1}


def pytest_sessionfinish(session, exitstatus):
    _status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_status["code"])
