"""The network API end to end: `python -m ui.net` (genre-serve) as a real subprocess on a free port,
real WebSocket clients (the `websockets` library) streaming real music in real time, and
cli_listen.py --server as a client (file replay and the PulseAudio virtual microphone)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from harness.proc import free_port
from support.pulse import PACKAGES, PulseServer, missing_tools
from support.music import MUSIC_DIR, TRACKS, music, music_wav_file, needs_music
from support.server import (CLIENTS, ROOT, ServerProcess, eight_clients, events_until_close, parse_json_lines, pcm,
                            run_async, served, stream)

CLI = str(ROOT / "cli_listen.py")
TOKEN = "s3cret-token"
KIOSK = "http://kiosk.example"
# Tags of the bundled MusiCNN that count as a plausible reading of the (electronic) asc-music tracks
PLAUSIBLE = {"electronic", "techno", "electronica", "electro", "dance", "house", "experimental", "ambient",
             "chillout", "industrial", "new age", "trance"}

pytestmark = [needs_music, pytest.mark.server]


@pytest.fixture(scope="module")
def server():
    with served("--send-queue", "8") as srv:
        yield srv


@pytest.fixture(scope="module")
def strict():
    """Token, origin allow-list, 2 streams at most, 2 s idle timeout."""
    with served("--token", TOKEN, "--allow-origin", KIOSK, "--max-streams", "2", "--idle-timeout", "2", "--hop", "0.5",
                "--log-level", "info") as srv:
        yield srv


def bearer(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- streaming -------------
def test_healthz_reports_model_and_streams(server):
    h = server.healthz()
    assert h == {"status": "ok", "model": "musicnn", "streams": 0, "max_streams": 16}


def test_eight_concurrent_real_time_clients_get_their_own_results(server):
    runs, mid = eight_clients(server)
    assert mid["streams"] == 8, mid
    dominants = []
    for (track, start, seconds, rate, ch, fmt), run in zip(CLIENTS, runs):
        what = f"{track}@{start}s {rate} Hz {ch} ch {fmt}"
        assert run.ready["channels"] == ch and run.ready["hop_s"] == 1.0 and run.ready["model"] == "musicnn"
        s = run.summary
        times = [r["time_s"] for _, r in run.results]
        # every hop from the first window (3 s) on is classified, skipped (the shared model was
        # busy: by design, counted) or flushed at the end
        n_hops = int(seconds - 3.0) + 1
        assert n_hops <= len(times) + s["windows_skipped"] <= n_hops + 1, (what, times, s)
        assert s["dropped_results"] == 0, (what, s)
        assert all(not r["silent"] and r["label"] in run.ready["labels"] for _, r in run.results), what
        assert all(set(r) >= {"time_s", "label", "scores", "silent", "level_dbfs", "latency_ms", "inference_ms"}
                   for _, r in run.results)
        dominants.append(s["dominant"])
    # electronic music reads as such (the model's view; most segments at least)
    assert sum(d in PLAUSIBLE for d in dominants) >= 6, dominants
    assert server.healthz()["streams"] == 0

def test_results_are_pushed_while_the_client_sends_nothing(server):
    """A result goes out as soon as it is ready, not with the reply to the next frame."""
    from websockets.asyncio.client import connect

    audio, sr = music(TRACKS[0], 40, 3.5)
    data = pcm(audio, sr, 22050, 2, "s16le")

    async def go():
        async with connect(server.url(sample_rate=22050, channels=2, format="s16le", hop=1)) as ws:
            ready = json.loads(await ws.recv())
            await ws.send(data)  # one frame: 3.5 s of audio, then silence on the wire
            first = json.loads(await asyncio.wait_for(ws.recv(), 60))
            await ws.send(json.dumps({"event": "end"}))
            rest, code = await events_until_close(ws)
            return ready, first, rest, code

    ready, first, rest, code = run_async(go())
    assert ready["event"] == "ready" and first["event"] == "result" and first["time_s"] == 3.0
    assert code == 1000 and rest[-1]["event"] == "summary"


def test_frames_split_mid_sample_lose_nothing(server):
    audio, sr = music(TRACKS[2], 60, 5.0)
    data = pcm(audio, sr, 44100, 2, "s32le")  # 8-byte sample frames, sent in 1001-byte pieces
    run = run_async(stream(server.url(sample_rate=44100, channels=2, format="s32le", hop=1), data, 44100, 2,
                           "s32le", frame_bytes=1001, realtime=False))
    assert run.close_code == 1000 and not run.errors
    assert run.summary["seconds_received"] == pytest.approx(5.0, abs=1e-6)
    assert run.results and abs(run.results[-1][1]["time_s"] - 5.0) < 0.1


def test_result_and_summary_events_say_when_in_wall_clock_time(server):
    """`at` (ISO-8601 UTC) beside `time_s` in every result and the summary, as in --json lines."""
    from datetime import datetime

    def unix(rec):
        assert rec["at"].endswith("Z"), rec
        return datetime.fromisoformat(rec["at"].replace("Z", "+00:00")).timestamp()

    audio, sr = music(TRACKS[1], 30, 5.0)
    before = time.time()
    run = run_async(stream(server.url(sample_rate=16000, hop=1), pcm(audio, sr, 16000, 1, "s16le"), 16000, 1,
                           "s16le", realtime=False))
    after = time.time()
    assert run.close_code == 1000 and run.results, run.errors
    ats = [unix(r) for _, r in run.results]
    assert all(before <= t <= after for t in ats) and ats == sorted(ats), (before, ats, after)
    assert ats[-1] <= unix(run.summary) <= after


# ---------------------------------------------------------------- close codes -----------
@pytest.mark.parametrize("query, names", [
    ({"channels": 2}, "sample_rate is required"),
    ({"sample_rate": 100}, "sample_rate"),
    ({"sample_rate": "48k"}, "sample_rate"),
    ({"sample_rate": 48000, "format": "mp3"}, "format='mp3' is not supported; accepted: s16le, s32le, f32le"),
    ({"sample_rate": 48000, "channels": 0}, "channels=0 is out of range"),
    ({"sample_rate": 48000, "window": 500}, "window=500 is out of range; accepted: 3..30 s"),
    ({"sample_rate": 48000, "hop": 30}, "hop=30 is out of range; accepted: 0.25..5 s"),
    ({"sample_rate": 48000, "hop": "nan"}, "hop='nan' is not a number"),
    ({"sample_rate": 48000, "top_k": -1}, "top_k=-1 is out of range; accepted: 0..10 (0 = all)"),
    ({"sample_rate": 48000, "rate": 1}, "unknown query parameter(s) ['rate']; accepted: sample_rate"),
])
def test_bad_query_parameters_close_1008_naming_the_parameter(server, query, names):
    from websockets.asyncio.client import connect

    async def go():
        async with connect(server.url(**query)) as ws:
            return await events_until_close(ws)

    events, code = run_async(go())
    assert code == 1008, events
    assert [e["event"] for e in events] == ["error"] and names in events[0]["message"], events


def test_frame_over_the_limit_closes_1009(server):
    from websockets.asyncio.client import connect

    async def go():
        async with connect(server.url(sample_rate=48000), max_size=None) as ws:
            assert json.loads(await ws.recv())["event"] == "ready"
            await ws.send(b"\0" * 4096)  # fine
            await ws.send(b"\0" * ((1 << 20) + 2))  # 1 MiB + 2 bytes
            return await events_until_close(ws)

    events, code = run_async(go())
    assert code == 1009, events
    assert events[-1]["event"] == "error" and "over the limit of 1048576 bytes" in events[-1]["message"]


def test_server_full_closes_1013_then_admits_again(strict):
    from websockets.asyncio.client import connect

    url = strict.url(sample_rate=16000, token=TOKEN)

    async def go():
        async with connect(url) as a, connect(url) as b:
            assert json.loads(await a.recv())["event"] == "ready"
            assert json.loads(await b.recv())["event"] == "ready"
            assert strict.healthz(TOKEN)["streams"] == 2
            async with connect(url) as c:
                third = await events_until_close(c)
        async with connect(url) as d:  # a slot is free again
            again = json.loads(await d.recv())
        return third, again

    (events, code), again = run_async(go())
    assert code == 1013 and events[0]["event"] == "error" and "limit of 2 streams" in events[0]["message"]
    assert events[0]["retry"] is True and again["event"] == "ready"


def test_idle_stream_gets_summary_and_1000(strict):
    from websockets.asyncio.client import connect

    audio, sr = music(TRACKS[1], 50, 4.0)

    async def go():
        async with connect(strict.url(sample_rate=sr, channels=2, format="f32le", token=TOKEN)) as ws:
            await ws.send(pcm(audio, sr, sr, 2, "f32le"))
            await ws.send(json.dumps({"event": "ping?"}))  # text does not count as audio
            t0 = time.monotonic()
            events, code = await events_until_close(ws)
            return events, code, time.monotonic() - t0

    events, code, waited = run_async(go())
    kinds = [e["event"] for e in events]
    assert code == 1000 and kinds[-1] == "summary" and events[-1]["reason"] == "idle timeout", kinds
    assert "result" in kinds and "error" in kinds  # results of the 4 s; the unknown text message
    assert waited > 1.5  # not before the idle timeout (2 s after the last audio frame arrived)


def test_end_event_closes_1000_after_the_last_result(server):
    audio, sr = music(TRACKS[2], 150, 4.2)
    run = run_async(stream(server.url(sample_rate=sr, channels=2, format="f32le", hop=1),
                           pcm(audio, sr, sr, 2, "f32le"), sr, 2, "f32le", realtime=False))
    assert run.close_code == 1000 and run.close_reason == "end of stream"
    assert run.summary["reason"] == "end of stream" and abs(run.results[-1][1]["time_s"] - 4.2) < 0.1


# ---------------------------------------------------------------- access ----------------
def test_token_required(strict):
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def status(url, headers=None):
        try:
            async with connect(url, additional_headers=headers) as ws:
                return json.loads(await ws.recv())["event"]
        except InvalidStatus as exc:
            return exc.response.status_code

    url = strict.url(sample_rate=16000)
    assert run_async(status(url)) == 401  # no token
    assert run_async(status(url, bearer("wrong"))) == 401
    assert run_async(status(strict.url(sample_rate=16000, token="s3cret-tokeN"))) == 401
    assert run_async(status(url, bearer())) == "ready"  # header
    assert run_async(status(strict.url(sample_rate=16000, token=TOKEN))) == "ready"  # query parameter
    # /healthz says nothing about streams (or the model) without the token
    assert strict.healthz() == {"status": "ok"}
    assert strict.healthz(TOKEN)["max_streams"] == 2
    # uvicorn logs every request with its query string (at info level): never the token
    assert "token=***" in strict.log and TOKEN not in strict.log, strict.log


def test_foreign_origin_refused(strict, server):
    """A browser (it sends Origin) sees only close codes: a refused one is accepted and closed at
    once with 4403 (origin) or 4401 (token) and the reason, after an error event that names it."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def status(srv, origin, **q):
        try:
            async with connect(srv.url(sample_rate=16000, **q), origin=origin) as ws:
                first = json.loads(await ws.recv())
                if first["event"] == "ready":
                    return "ready"
                events, code = await events_until_close(ws)
                assert first["event"] == "error" and ws.close_reason.startswith(first["reason"] + ": "), first
                return code, first["reason"], ws.close_reason
        except InvalidStatus as exc:
            return exc.response.status_code

    code, reason, text = run_async(status(strict, "http://evil.example", token=TOKEN))
    assert (code, reason) == (4403, "origin") and "--allow-origin" in text, text
    assert run_async(status(strict, KIOSK, token=TOKEN)) == "ready"  # --allow-origin
    code, reason, text = run_async(status(strict, KIOSK, token="wrong"))  # an allowed page, a wrong token
    assert (code, reason) == (4401, "token") and "token" in text, text
    # default: no foreign origin at all, but a page of the same host is fine
    assert run_async(status(server, KIOSK))[:2] == (4403, "origin")
    assert run_async(status(server, "http://localhost.evil.example"))[:2] == (4403, "origin")
    assert run_async(status(server, f"http://127.0.0.1:{server.port}")) == "ready"


def test_non_loopback_without_token_warns():
    # no address is bound: the model spec fails after the warning (servers here bind 127.0.0.1 only)
    r = subprocess.run([sys.executable, "-m", "ui.net", "--host", "0.0.0.0", "--model", "/nonexistent/model"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert "WARNING: listening on 0.0.0.0 without a token" in r.stderr
    assert r.returncode == 4 and "Could not load model" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "ui.net", "--host", "0.0.0.0", "--token", "x", "--model",
                        "/nonexistent/model"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "WARNING" not in r.stderr and r.returncode == 4


# ---------------------------------------------------------------- robustness ------------
def test_garbage_from_one_client_does_not_affect_another(server):
    from websockets.asyncio.client import connect

    audio, sr = music(TRACKS[0], 60, 7.0)
    good_data = pcm(audio, sr, 48000, 1, "s16le")
    rng = np.random.default_rng(0)

    async def garbage():
        outcomes = []
        for query in ({"sample_rate": "x"}, {"sample_rate": 48000, "format": "alaw"}):
            async with connect(server.url(**query)) as ws:
                outcomes.append((await events_until_close(ws))[1])
        async with connect(server.url(sample_rate=8000, channels=3, format="f32le")) as ws:
            await ws.recv()
            nan = np.full(3 * 8000, np.nan, dtype="<f4").tobytes()
            for payload in (b"\xff" * 7, "not json", json.dumps([1, 2]), json.dumps({"event": "shout"}), nan,
                            rng.bytes(50_001), np.full(24000, 3e38, dtype="<f4").tobytes(), b""):
                await ws.send(payload)
            await ws.send(json.dumps({"event": "end"}))
            events, code = await events_until_close(ws)
            outcomes.append(code)
            errors = [e for e in events if e["event"] == "error"]
            summary = events[-1]
        async with connect(server.url(sample_rate=16000)) as ws:  # gone mid-frame, no end, no close
            await ws.recv()
            await ws.send(b"\x01" * 3)
            ws.transport.abort()
        async with connect(server.url(sample_rate=16000), max_size=None) as ws:
            await ws.recv()
            await ws.send(b"\0" * (2 << 20))
            outcomes.append((await events_until_close(ws))[1])
        return outcomes, errors, summary

    async def both():
        good = asyncio.create_task(stream(server.url(sample_rate=48000, hop=1), good_data, 48000, 1, "s16le"))
        await asyncio.sleep(1.0)
        bad = await garbage()
        return await good, bad

    good, (outcomes, errors, summary) = run_async(both())
    assert outcomes == [1008, 1008, 1000, 1009], outcomes
    assert len(errors) == 3 and "JSON object" in errors[0]["message"] and "unknown message" in errors[2]["message"]
    assert summary["event"] == "summary" and summary["seconds_received"] > 0
    # the good stream never noticed
    assert good.close_code == 1000 and not good.errors and good.summary["seconds_received"] == pytest.approx(7.0)
    times = [r["time_s"] for _, r in good.results]
    assert abs(times[-1] - 7.0) < 0.1 and len(times) + good.summary["windows_skipped"] >= 5
    assert server.alive() and server.healthz()["streams"] == 0


def test_a_client_that_never_reads_does_not_delay_the_others(server):
    """The slow client's results pile up in its own bounded queue (oldest dropped, counted)
    while another client gets its results live."""
    from websockets.asyncio.client import connect

    audio, sr = music(TRACKS[1], 80, 8.0)
    good_data = pcm(audio, sr, 44100, 2, "s16le")
    silence = np.zeros(16000 * 5, dtype="<i2").tobytes()  # 5 s at 16 kHz: silent windows cost no model time

    async def slow(stop: asyncio.Event):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small buffers fill sooner
        async with connect(server.url(sample_rate=16000, hop=0.25, top_k=0), sock=sock, max_queue=1) as ws:
            sent = 0
            while not stop.is_set():  # 20 silent readouts a frame (at the shortest hop), 10 frames a second
                await ws.send(silence)
                sent += 1
                if sent == 20:
                    backlog.set()
                await asyncio.sleep(0.1)
            await ws.send(json.dumps({"event": "end"}))
            events, code = await events_until_close(ws)  # now read everything
            return events, code, sent

    backlog = asyncio.Event()

    async def go():
        stop = asyncio.Event()
        slow_task = asyncio.create_task(slow(stop))
        await asyncio.wait_for(backlog.wait(), 60)  # 400 unread readouts: more than its queue holds
        good = await stream(server.url(sample_rate=44100, channels=2, hop=1), good_data, 44100, 2, "s16le")
        stop.set()
        return good, await slow_task

    good, (events, code, sent) = run_async(go())
    # the reading client got its readouts live: the first (3 s of audio) arrived while it was
    # still sending the rest (5 s more, paced to real time), not in a burst once the slow client
    # let go; ordered by events, not bounded by wall-clock ratios a loaded machine breaks
    assert good.close_code == 1000 and good.summary["dropped_results"] == 0
    assert good.results and good.results[0][0] < good.sent_at[-1][0], (good.results[:2], good.sent_at[-1])
    # the slow client lost only its own older readouts, counted, and still got its summary
    summary = events[-1]
    results = [e for e in events if e["event"] == "result"]
    assert code == 1000 and summary["event"] == "summary", events[-3:]
    assert summary["dropped_results"] > 0, summary
    assert len(results) + summary["dropped_results"] == summary["windows_silent"] + summary["windows_classified"]
    assert [r["time_s"] for r in results] == sorted(r["time_s"] for r in results)
    assert summary["seconds_received"] == pytest.approx(5 * sent, abs=1e-6)


# ---------------------------------------------------------------- cli_listen --server ---
def run_cli(args, env=None, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("GENRE_SERVER_TOKEN", None)
    return subprocess.run([sys.executable, CLI, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def music_wav(tmp_path_factory):
    return music_wav_file(tmp_path_factory.mktemp("music"), 40.0)


def test_cli_file_replay_through_the_server(server, music_wav):
    t0 = time.monotonic()
    r = run_cli(["--server", server.ws_url, "--file", str(music_wav), "--duration", "7", "--hop", "1", "--json"])
    assert r.returncode == 0, r.stderr
    assert f"Server {server.ws_url}: model musicnn." in r.stderr
    results, summaries = parse_json_lines(r.stdout)
    times = [o["time_s"] for o in results]
    assert times and abs(times[-1] - 7.0) < 0.1 and all(abs(t - round(t)) < 1e-3 for t in times), times
    assert len(summaries) == 1 and summaries[0]["reason"] == "duration reached"
    assert len(times) + summaries[0]["windows_skipped"] >= 5
    assert summaries[0]["dominant"] in PLAUSIBLE and all(len(o["scores"]) == 5 for o in results)
    assert time.monotonic() - t0 > 5.0  # replayed in real time


def test_cli_virtual_microphone_through_the_server(server, tmp_path_factory, music_wav):
    if missing_tools():
        pytest.skip(f"PulseAudio tools not installed: apt-get install {PACKAGES}")
    pulse = PulseServer(tmp_path_factory.mktemp("pulse")).start()
    try:
        pulse.play(music_wav)
        r = run_cli(["--server", server.ws_url, "--duration", "6", "--hop", "1", "--top-k", "3", "--json"],
                    pulse.env())
    finally:
        pulse.stop()
    assert r.returncode == 0, r.stderr
    assert "Listening on [" in r.stderr and f"Server {server.ws_url}" in r.stderr
    results, summaries = parse_json_lines(r.stdout)
    assert len(results) >= 2 and not any(o["silent"] for o in results), results
    assert all(len(o["scores"]) == 3 for o in results)  # --top-k travelled to the server
    assert summaries[0]["reason"] == "duration reached" and summaries[0]["dominant"] in PLAUSIBLE


def test_cli_server_errors_have_clear_messages_and_exit_codes(strict, server):
    port = free_port()  # nothing listens there now
    f = str(MUSIC_DIR / TRACKS[0])
    r = run_cli(["--server", f"ws://127.0.0.1:{port}", "--file", f, "--duration", "2"])
    assert r.returncode == 5 and "cannot reach the server" in r.stderr, r.stderr
    r = run_cli(["--server", strict.ws_url, "--file", f, "--duration", "2"])
    assert r.returncode == 5 and "HTTP 401" in r.stderr and "token" in r.stderr, r.stderr
    r = run_cli(["--server", strict.ws_url, "--token", TOKEN, "--file", f, "--duration", "3", "--json"])
    assert r.returncode == 0, r.stderr
    r = run_cli(["--server", server.ws_url, "--file", f, "--window", "500"])
    assert r.returncode == 2 and "--window 500 is outside 3..30 s" in r.stderr, r.stderr
    r = run_cli(["--server", "http://127.0.0.1:1", "--file", f])
    assert r.returncode == 2 and "ws://HOST:PORT" in r.stderr, r.stderr
    r = run_cli(["--reconnect", "--file", f])
    assert r.returncode == 2 and "only apply to --server" in r.stderr
    r = run_cli(["--server", server.ws_url, "--file", f, "--name", "shop floor"])
    assert r.returncode == 2 and "not a valid stream name" in r.stderr and "1-64 characters" in r.stderr, r.stderr
    r = run_cli(["--name", "shop-floor", "--file", f])
    assert r.returncode == 2 and "--name only apply to --server" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def _cli_live(args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, CLI, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_cli_reports_a_lost_connection(music_wav):
    srv = ServerProcess().wait_ready()
    cli = _cli_live(["--server", srv.ws_url, "--file", str(music_wav), "--hop", "1", "--json"])
    try:
        first = cli.stdout.readline()  # a result: the stream is running
        assert json.loads(first)["event"] == "result", (first, cli.stderr.read() if cli.poll() else "")
        srv.stop(kill=True)
        out, err = cli.communicate(timeout=60)
    finally:
        srv.stop(kill=True)
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 5, err
    assert "connection to" in err and "lost" in err and "Traceback" not in err
    assert '"reason": "connection lost"' in out


def test_cli_reconnects_after_a_kill_and_counts_the_lost_audio(music_wav):
    """The server is killed (no close frame) and started again on the same port a few seconds
    later: the listener says it is disconnected (an event in --json), probes until the port
    answers, resumes, and its summary says how much audio was lost meanwhile."""
    srv = ServerProcess().wait_ready()
    port = srv.port
    cli = _cli_live(["--server", srv.ws_url, "--reconnect", "--file", str(music_wav), "--hop", "1", "--json"])
    srv2 = None
    try:
        first = cli.stdout.readline()
        assert json.loads(first)["event"] == "result"
        srv.stop(kill=True)
        time.sleep(3.0)  # an outage of several probes
        srv2 = ServerProcess(port=port).wait_ready()  # the same address comes back
        out, err = cli.communicate(timeout=120)  # until the end of the 40 s file
        out = first + out
    finally:
        for s in (srv, srv2):
            if s is not None:
                s.stop()
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 0, err
    assert "reconnecting" in err and "reconnected" in err and "Traceback" not in err
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    kinds = [r["event"] for r in records]
    assert kinds.count("disconnected") == 1 and kinds.count("reconnected") == 1, kinds
    down, up = kinds.index("disconnected"), kinds.index("reconnected")
    assert down < up and "lost" in records[down]["reason"] and records[up]["outage_s"] > 2.0, records[down:up + 1]
    results, summaries = parse_json_lines(out)
    times = [o["time_s"] for o in results]
    # readouts before and after the outage; stream time keeps counting across sessions
    assert times == sorted(times) and len(times) >= 3, times
    assert any(r["event"] == "result" for r in records[up:]), kinds
    s = summaries[0]
    assert s["reason"] == "end of file" and s["disconnects"] == 1, s
    # the outage (the kill, 3 s, the new server's start) is audio the server never heard
    assert s["audio_lost_s"] >= 2.0 and s["audio_lost_s"] == records[up]["lost_s"], (s, records[up])
    assert f"{s['audio_lost_s']:.1f} s of audio lost while disconnected" in err, err
