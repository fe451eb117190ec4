"""Free ports and child processes that always end."""
from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (for a child that cannot take --port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, timeout: float = 5.0, kill: bool = False) -> None:
    """End a child process: SIGTERM (or SIGKILL with kill=True), SIGKILL if it has not gone
    after `timeout` seconds; always reaped."""
    if proc is None or proc.poll() is not None:
        return
    proc.kill() if kill else proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
