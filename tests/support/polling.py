"""Polling instead of sleeping: a wait lasts as long as the behaviour takes, and its timeout is
generous (it only ends a test whose behaviour is wrong, never measures speed)."""
from __future__ import annotations

import time


def wait_for(check, timeout: float = 20.0, step: float = 0.01, what: str | None = None):
    """check() until it returns something truthy (returned) or `timeout` seconds pass: then its
    last value, or an AssertionError naming `what` when given."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > end:
            break
        time.sleep(step)
    if not value and what is not None:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
    return value
