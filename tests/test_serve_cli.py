"""`python -m ui.net.ray_cli` (genre-serve-ray) starts a local Ray and deploys; another process uses ray://genre.
(Its Ray runs in processes of their own: the test process never becomes a Ray driver.)"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

pytest.importorskip("ray", reason="Ray Serve is optional: pip install -r requirements-serve.txt")
pytestmark = pytest.mark.ray

from harness.proc import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = """
import numpy as np
from stream import load_model
m = load_model('ray://genre-cli')
print(m.notice)
print('shape', m.predict(np.full((2, 48000), 0.01, np.float32)).shape)
"""


def gcs_servers() -> list[str]:
    r = subprocess.run(["pgrep", "-a", "gcs_server"], capture_output=True, text=True)
    return r.stdout.splitlines()


def test_local_run_two_commands():
    # `ray://genre-cli` without an address joins the Ray running on this machine: a cluster an
    # earlier test left to end by itself would be a second one to pick from
    deadline = time.monotonic() + 60
    while gcs_servers() and time.monotonic() < deadline:
        time.sleep(1)
    assert not gcs_servers(), f"another Ray is running here: {gcs_servers()}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    srv = subprocess.Popen([sys.executable, "-m", "ui.net.ray_cli", "--model", "musicnn", "--name", "genre-cli",
                            "--replicas", "2", "--cpus", "0.5", "--num-cpus", "2"],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        lines = []
        end = time.monotonic() + 240
        while time.monotonic() < end:
            line = srv.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Local Ray: press Ctrl-C"):
                break
        assert any("edges use --model ray://genre-cli" in l for l in lines), "".join(lines[-20:])
        r = subprocess.run([sys.executable, "-c", CLIENT], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=180)
        assert r.returncode == 0, r.stderr[-2000:]
        # "(2 replicas, <backend> <precision>)": what the replicas run, picked by their CPU
        assert "served by Ray Serve app 'genre-cli'" in r.stdout and re.search(r"\(2 replicas, \w+ \w+\)", r.stdout), r.stdout
        assert "shape (2, 92)" in r.stdout
        # Ray Serve's client-side plumbing stays off the terminal (issue 23 item 12)
        assert "SharedRouterLongPollClient" not in r.stdout + r.stderr, r.stderr[-2000:]
        assert not any("Connecting to existing Serve app" in l for l in lines), "".join(lines)
    finally:
        srv.send_signal(signal.SIGINT)
        try:
            out, _ = srv.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            srv.kill()
            out, _ = srv.communicate()
    assert srv.returncode == 0 and "Stopped." in out, out[-2000:]


def test_bad_autoscale_argument_is_explained():
    r = subprocess.run([sys.executable, "-m", "ui.net.ray_cli", "--autoscale", "4:2"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--autoscale expects MIN:MAX" in r.stderr


@pytest.mark.parametrize("start", ["deploy", "run_server"])
def test_a_local_ray_tolerates_a_slow_proxy_start(monkeypatch, start):
    """Serve's proxy gets more than its default 5 s to report ready on a local Ray (a busy node
    made it fail three times and the start with it), unless the user chose a value."""
    import ui.net.ray_ingress as ingress
    import ui.net.ray_model as ray_model
    from ui.net.settings import ServerSettings

    seen = {}

    class Stop(Exception):
        pass

    class FakeRay:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kwargs):  # what the local Ray (and Serve's controller in it) would inherit
            seen.update({k: os.environ.get(k) for k in ray_model.SLOW_START_ENV})
            raise Stop

    for module in (ray_model, ingress):
        monkeypatch.setattr(module, "import_ray", lambda hint: (FakeRay, None))
    monkeypatch.delenv("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", raising=False)
    monkeypatch.setenv("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "7")  # the user's own value wins
    with pytest.raises(Stop):
        if start == "deploy":
            ray_model.deploy("musicnn")
        else:
            ingress.run_server("musicnn", ServerSettings())
    assert float(seen["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"]) >= 30, seen
    assert seen["RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S"] == "7"


EDGE = "from stream import load_model\nload_model('ray://genre@127.0.0.1:%d')"
TOKEN = "5e1f0a2b3c4d5e6f7a8b9c0d1e2f3a4b"


def test_an_edge_without_the_clusters_token_is_told_so(tmp_path):
    """A head with token authentication (RAY_AUTH_MODE=token), edges run as other users (other HOMEs)."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    homes = {name: tmp_path / name for name in ("head", "edge", "edge-with-file")}
    for home in homes.values():
        home.mkdir()
    (homes["edge-with-file"] / ".ray").mkdir()
    (homes["edge-with-file"] / ".ray" / "auth_token").write_text(TOKEN)
    ray_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen(["ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={ray_dir}"],
                            env={**base, "HOME": str(homes["head"]), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN,
                                 "PATH": os.path.dirname(sys.executable) + os.pathsep + base.get("PATH", "")},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def edge(home, **env):
        return subprocess.run([sys.executable, "-c", EDGE % port], cwd=ROOT, capture_output=True, text=True,
                              timeout=180, env={**base, "HOME": str(homes[home]), **env})
    try:
        deadline = time.monotonic() + 180  # the head's GCS listens once it is up (slow on a loaded machine)
        while head.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        assert head.poll() is None, head.stdout.read()[-2000:]
        advice = "export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token>"
        # no token mode here: Ray retries ~20 s and used to say "not reachable"
        r = edge("edge")
        assert r.returncode != 0
        assert f"Ray answered at 127.0.0.1:{port} but refused this process" in r.stderr, r.stderr[-2000:]
        assert "RAY_AUTH_MODE is unset" in r.stderr and advice in r.stderr and "not reachable" not in r.stderr
        # token mode, but no token anywhere: Ray's own AuthenticationError used to escape as a traceback
        r = edge("edge", RAY_AUTH_MODE="token")
        assert "RAY_AUTH_MODE=token is set but no token was found" in r.stderr, r.stderr[-2000:]
        assert "AuthenticationError:" not in r.stderr.splitlines()[-1]
        # a wrong token, named by where it came from and never printed
        r = edge("edge", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 32)
        assert "refused this process" in r.stderr and "the token from RAY_AUTH_TOKEN is wrong" in r.stderr, \
            r.stderr[-2000:]
        # the right token in ~/.ray/auth_token: connected, and the next problem is the missing application
        r = edge("edge-with-file", RAY_AUTH_MODE="token")
        assert "no Ray Serve application 'genre'" in r.stderr or "Ray Serve is not running" in r.stderr, \
            r.stderr[-2000:]
        assert TOKEN not in r.stderr + r.stdout
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.communicate()
        shutil.rmtree(ray_dir, ignore_errors=True)
