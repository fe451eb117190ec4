"""`python -m stream.server --ray`: the same WebSocket protocol served through a Ray Serve
ingress in front of a batched model deployment (a real local Ray, real WebSocket clients)."""
from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("ray", reason="Ray Serve is optional: pip install '.[serve]'")

from server_support import MUSIC_DIR, TRACKS, ServerProcess, music, pcm, stream  # noqa: E402
from test_server import CLIENTS, local_scores  # noqa: E402

pytestmark = pytest.mark.skipif(not (MUSIC_DIR / TRACKS[0]).is_file(),
                                reason=f"{MUSIC_DIR} missing: apt-get install asc-music")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_server():
    srv = ServerProcess("--ray", "--replicas", "2", port=free_port()).wait_ready(timeout=300)
    yield srv
    srv.stop()
    assert srv.proc.returncode == 0, srv.log
    assert "Traceback" not in srv.log, srv.log


def test_eight_concurrent_clients_through_ray_get_their_own_results(ray_server):
    chunks = {}

    async def one(track, start, seconds, rate, ch, fmt):
        audio, sr = music(track, start, seconds)
        data = pcm(audio, sr, rate, ch, fmt)
        chunks[(track, start)] = data
        return await stream(ray_server.url(sample_rate=rate, channels=ch, format=fmt, hop=1, smoothing=0), data,
                            rate, ch, fmt, chunk_s=0.1)

    async def all_clients():
        tasks = [asyncio.create_task(one(*c)) for c in CLIENTS]
        await asyncio.sleep(2.0)
        mid = await asyncio.to_thread(ray_server.healthz)
        return await asyncio.gather(*tasks), mid

    runs, mid = asyncio.run(all_clients())
    assert mid["streams"] == 8 and "ray://genre" in mid["model"], mid
    for (track, start, seconds, rate, ch, fmt), run in zip(CLIENTS, runs):
        what = f"{track}@{start}s {rate} Hz {ch} ch {fmt}"
        assert run.ready and run.ready["sample_rate"] == rate and run.ready["format"] == fmt, (what, run.ready)
        assert run.close_code == 1000 and not run.errors, (what, run.close_code, run.errors)
        s = run.summary
        assert s and s["reason"] == "end of stream" and abs(s["seconds_received"] - seconds) < 1e-3, (what, s)
        times = [r["time_s"] for _, r in run.results]
        assert times and times == sorted(times) and abs(times[-1] - seconds) < 0.1, (what, times)
        assert s["windows_classified"] == len(times), (what, s)
        # this client's own audio: the readouts equal an in-process engine's on the same bytes
        step = int(0.1 * rate * ch * int(fmt[1:3]) // 8)
        local = local_scores(chunks[(track, start)], rate, ch, fmt, step)
        for _, r in run.results:
            ref = local[r["time_s"]]
            assert all(abs(v - ref[k]) < 2e-3 for k, v in r["scores"].items()), (what, r, ref)
    assert ray_server.healthz()["streams"] == 0


def test_ray_option_without_ray_says_how_to_install(tmp_path):
    import subprocess
    import sys

    from server_support import ROOT

    code = "import sys\nsys.modules['ray'] = None\nfrom stream.server import main\nsys.exit(main(['--ray', '--model', 'musicnn']))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and "pip install '.[serve]'" in r.stderr, r.stderr
