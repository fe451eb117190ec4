"""`genre-serve --ray` (python -m ui.net --ray): the same WebSocket protocol served through a Ray Serve
ingress in front of a batched model deployment (a real local Ray, real WebSocket clients)."""
from __future__ import annotations

import pytest

pytest.importorskip("ray", reason="Ray Serve is optional: pip install '.[serve]'")

from harness.proc import free_port  # noqa: E402
from support.music import TRACKS, needs_music  # noqa: E402
from support.server import eight_clients, served  # noqa: E402

pytestmark = [needs_music, pytest.mark.server, pytest.mark.ray]


@pytest.fixture(scope="module")
def ray_server():
    with served("--ray", "--replicas", "2", port=free_port(), timeout=300) as srv:
        yield srv
    assert srv.proc.returncode == 0, srv.log


def test_eight_concurrent_clients_through_ray_get_their_own_results(ray_server):
    # (checks each run's results against an in-process engine scoring whole patches, as replicas do)
    runs, mid = eight_clients(ray_server, streaming=False)
    assert mid["streams"] == 8 and "ray://genre" in mid["model"], mid
    assert len(runs) == 8 and ray_server.healthz()["streams"] == 0

def test_kiosk_screen_and_watchers_through_ray(ray_server):
    """The kiosk page (GET /) and /v1/watch come with the same app behind the Ray ingress."""
    import asyncio
    import json
    import urllib.request

    from support.music import music
    from support.server import pcm, stream
    from websockets.asyncio.client import connect

    with urllib.request.urlopen(f"http://127.0.0.1:{ray_server.port}/", timeout=60) as r:
        html = r.read().decode()
    assert r.status == 200 and '<script type="module" src="kiosk/kiosk.js">' in html and '"colours"' in html
    audio, sr = music(TRACKS[0], 30, 5.0)

    async def go():
        async with connect(f"{ray_server.ws_url}/v1/watch?name=ray-room", open_timeout=60) as w:
            assert json.loads(await w.recv())["event"] == "watching"
            run = await stream(ray_server.url(sample_rate=sr, channels=1, format="s16le", name="ray-room"),
                               pcm(audio, sr, sr, 1, "s16le"), sr, 1, "s16le", realtime=False)
            seen = []
            while not seen or seen[-1]["event"] != "summary":
                seen.append(json.loads(await asyncio.wait_for(w.recv(), 120)))
            return run, seen

    run, seen = asyncio.run(go())
    assert [e for e in seen if e["event"] == "result"] == [r for _, r in run.results] and run.results
    assert seen[-1] == run.summary


def test_ray_option_without_ray_says_how_to_install(tmp_path):
    import subprocess
    import sys

    from support.server import ROOT

    code = "import sys\nsys.modules['ray'] = None\nfrom ui.net.cli import main\nsys.exit(main(['--ray', '--model', 'musicnn']))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and "pip install '.[serve]'" in r.stderr, r.stderr
