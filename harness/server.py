"""The network server (genre-serve) as a real subprocess, PCM in the formats it takes, and its
/metrics read with prometheus_client's own parser."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from harness.proc import stop_process

ROOT = Path(__file__).resolve().parents[1]
FORMAT_DTYPES = {"s16le": ("<i2", 32767.0), "s32le": ("<i4", 2147483647.0), "f32le": ("<f4", 1.0)}


class ServerProcess:
    """`python -m ui.net ... --port 0` (genre-serve) as a subprocess; `port` is read from its
    'Listening on ws://HOST:PORT' line. Everything it logs is kept in `log`."""

    def __init__(self, *args, env=None, port=0, root: Path | None = None):
        """root: another checkout's server (a benchmark comparing two versions); default this one."""
        self.args = ["--model", "musicnn", "--port", str(port), "--log-level", "warning", *args]
        cmd = [sys.executable, "-m", "ui.net", *self.args]
        env = dict(os.environ if env is None else env, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, cwd=root or ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.port: int | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = re.search(r"Listening on ws://[^:]+:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout=120.0) -> "ServerProcess":
        self._ready.wait(timeout)
        if self.port is None:
            self.stop()
            raise RuntimeError(f"server did not start (exit {self.proc.poll()}):\n{self.log}")
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def url(self, **params) -> str:
        from urllib.parse import urlencode

        return f"{self.ws_url}/v1/listen?{urlencode(params)}"

    def healthz(self, token=None) -> dict:
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/healthz")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, kill=False):
        stop_process(self.proc, 15, kill)


def pcm(audio: np.ndarray, rate: int, to_rate: int, channels: int, fmt: str) -> bytes:
    """Resample (soxr, offline), pick channels and encode as interleaved little-endian PCM."""
    import soxr

    x = soxr.resample(audio, rate, to_rate) if to_rate != rate else audio
    x = x[:, :channels] if channels <= x.shape[1] else np.repeat(x[:, :1], channels, axis=1)
    dtype, scale = FORMAT_DTYPES[fmt]
    x = np.clip(x, -1.0, 1.0) * scale
    return np.ascontiguousarray(x.astype(dtype)).tobytes()


def http_get(port: int, path: str, token=None, timeout=30.0) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:PORT/PATH; errors are statuses, not exceptions.
    token: sent as `Authorization: Bearer`."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric_samples(text: str) -> dict:
    """The Prometheus text, parsed by prometheus_client's own parser: {(sample name,
    ((label, value), ...)): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(server, token=None) -> dict:
    status, body = http_get(server.port, "/metrics", token)
    if status != 200:
        raise AssertionError(f"/metrics answered {status}: {body[:500]}")
    return metric_samples(body)


def metric(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted((k, str(v)) for k, v in labels.items())))]
