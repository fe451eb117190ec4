"""The network server's genre history end to end: `python -m ui.net --history FILE` (genre-serve) as a
real subprocess, real WebSocket clients streaming real music in real time, GET /v1/history, a
SIGKILL mid-stream, a full disk (a tiny tmpfs) and files it must refuse at start.

The server runs with 5 s history "minutes" (tests/short_minute/sitecustomize.py): its "minutes"
are 5 s of wall clock, so a test sees several rows in seconds instead of minutes; rows are still
per wall-clock period, exactly as with 60 s."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest

from support.music import TRACKS, music, needs_music
from support.polling import wait_for
from support.server import ROOT, ServerProcess, events_until_close, json_request, pcm, served, stream

TOKEN = "hist-token"
MINUTE_S = 5
# the server's history in 5 s minutes: its Python starts with tests/short_minute/sitecustomize.py
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "short_minute"), str(ROOT)]))

pytestmark = [needs_music, pytest.mark.server]


def bearer(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def get(server, path="/v1/history", auth=TOKEN, **params):
    """(status, JSON body) of a GET to the server, with `auth` as its bearer token."""
    return json_request(f"http://127.0.0.1:{server.port}{path}?{urlencode(params)}", token=auth)


def shares_of(rows):
    total = sum(r["classified_s"] for r in rows)
    acc = {}
    for r in rows:
        for g, v in r["genre_shares"].items():
            acc[g] = acc.get(g, 0.0) + v * r["classified_s"] / total
    return acc


def clip(track, start, seconds, rate=22050, channels=2):
    audio, sr = music(track, start, seconds)
    return pcm(audio, sr, rate, channels, "s16le"), rate, channels


def url(server, **params):
    return server.url(format="s16le", **params)


# ---------------------------------------------------------------- two named streams -----------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A server with --history and a token; two named streams of real music (22 and 18 s) at
    once in real time, and one without a name; returns (server, runs, wall-clock span)."""
    path = tmp_path_factory.mktemp("hist") / "h.sqlite"
    with served("--history", str(path), "--token", TOKEN, "--hop", "1", env=ENV) as srv:
        shop, rate, ch = clip(TRACKS[0], 30, 22.0)
        bar, _, _ = clip(TRACKS[1], 60, 18.0)
        anon, _, _ = clip(TRACKS[2], 40, 6.0)

        async def both():
            return await asyncio.gather(
                stream(url(srv, sample_rate=rate, channels=ch, name="shop"), shop, rate, ch, "s16le", headers=bearer()),
                stream(url(srv, sample_rate=rate, channels=ch, name="bar"), bar, rate, ch, "s16le", headers=bearer()),
                stream(url(srv, sample_rate=rate, channels=ch), anon, rate, ch, "s16le", headers=bearer()))

        t0 = time.time()
        runs = asyncio.run(both())
        t1 = time.time()
        yield srv, dict(zip(("shop", "bar", "anon"), runs)), (t0, t1), path


def test_rows_per_wall_clock_minute_match_each_streams_summary(recorded):
    srv, runs, (t0, t1), _ = recorded
    for name in ("shop", "bar"):
        summary = runs[name].summary
        assert summary and summary["reason"] == "end of stream", runs[name]
        # the last (partial) minute is written when the stream ends: poll, do not assume
        status, body = wait_for(lambda: (r := get(srv, name=name, **{"from": t0 - 60, "to": t1 + 60}))[1].get(
            "sessions") and r[1]["sessions"][0]["end"] and r, timeout=120, step=0.1, what=f"{name}'s session end")
        assert status == 200, body
        rows = body["rows"]
        assert len(rows) >= summary["duration_s"] // MINUTE_S, rows
        assert all(r["unix"] % MINUTE_S == 0 and t0 - MINUTE_S <= r["unix"] <= t1 for r in rows), rows
        assert [r["unix"] for r in rows] == sorted(r["unix"] for r in rows)
        # (a row holds the readouts that arrived in its minute: how many varies with load)
        assert len({r["unix"] for r in rows}) == len(rows)
        total = sum(r["classified_s"] + r["silent_s"] for r in rows)
        assert abs(total - summary["duration_s"]) < 0.05, (total, summary)
        got = shares_of(rows)
        assert set(got) == set(summary["genre_shares"]), (got, summary)
        for g, share in summary["genre_shares"].items():
            assert abs(got[g] - share) < 2e-3, (g, got, summary["genre_shares"])
        (sess,) = body["sessions"]
        assert sess["reason"] == "end of stream" and sess["genre_shares"] == summary["genre_shares"]
        assert body["writer"]["dropped"] == 0, body["writer"]


def test_history_by_hour_and_for_a_time_range(recorded):
    srv, runs, (t0, t1), _ = recorded
    summary = runs["shop"].summary
    status, hours = get(srv, name="shop", step="hour", **{"from": t0 - 3600, "to": t1 + 3600})
    assert status == 200 and hours["step"] == "hour", hours
    assert 1 <= len(hours["rows"]) <= 2 and all(r["unix"] % 3600 == 0 for r in hours["rows"]), hours
    assert abs(sum(r["classified_s"] + r["silent_s"] for r in hours["rows"]) - summary["duration_s"]) < 0.05
    for g, share in summary["genre_shares"].items():
        assert abs(shares_of(hours["rows"])[g] - share) < 2e-3
    _, minutes = get(srv, name="shop", **{"from": t0 - 60, "to": t1 + 60})
    middle = minutes["rows"][1:3]
    status, part = get(srv, name="shop", **{"from": middle[0]["t"], "to": middle[-1]["unix"] + MINUTE_S})
    assert status == 200 and part["rows"] == middle, (part, middle)
    status, days = get(srv, name="bar", step="day", **{"from": t0 - 86400, "to": t1 + 86400})
    assert status == 200 and 1 <= len(days["rows"]) <= 2


def test_unnamed_streams_are_recorded_under_a_generated_id_and_names_are_listed(recorded):
    srv, runs, (t0, t1), _ = recorded
    status, body = get(srv)
    assert status == 200, body
    others = [n for n in body["names"] if n not in ("shop", "bar")]
    assert {"shop", "bar"} <= set(body["names"]) and len(others) == 1 and others[0].startswith("stream-"), body
    _, anon = get(srv, name=others[0], **{"from": t0 - 60, "to": t1 + 60})
    assert anon["rows"] and anon["sessions"][0]["genre_shares"] == runs["anon"].summary["genre_shares"]


def test_history_requests_follow_the_token_rules_and_bad_ones_say_why(recorded):
    srv, _, _, _ = recorded
    assert get(srv, auth=None)[0] == 401
    assert get(srv, auth="wrong", name="shop")[0] == 401
    status, body = get(srv, auth=None, **{"token": TOKEN})  # ?token= as for the WebSocket
    assert status == 200 and "shop" in body["names"]
    for params, code, says in (({"name": "shop", "step": "week"}, 400, "step='week' is not one of"),
                               ({"name": "shop", "from": "yesterday"}, 400, "is not a time"),
                               ({"name": "shop", "from": "2026-12-02", "to": "2026-12-01"}, 400, "is not after"),
                               ({"name": "shop", "from": "2026-01-01", "to": "2026-12-01"}, 400, "step=hour"),
                               ({"name": "shop", "tz": "Mars/Olympus"}, 400, "is not a time zone"),
                               ({"name": "shop", "colour": "red"}, 400, "unknown query parameter"),
                               ({"name": "cafe"}, 404, "streams recorded: ")):
        status, body = get(srv, **params)
        assert status == code and says in body["error"], (params, status, body)


def test_a_name_the_history_cannot_use_is_refused_with_1008(recorded):
    from websockets.asyncio.client import connect

    srv, _, _, _ = recorded

    async def attempt(name):
        async with connect(url(srv, sample_rate=22050, channels=2, name=name), additional_headers=bearer(),
                           open_timeout=60) as ws:
            return await events_until_close(ws)

    for name in ("x" * 65, "tab\there", " padded"):
        events, code = asyncio.run(attempt(name))
        assert code == 1008 and "is not a valid stream name" in events[0]["message"], (name, code, events)


# ---------------------------------------------------------------- SIGKILL mid-stream ----------
def test_sigkill_mid_stream_loses_at_most_the_last_minute(tmp_path):
    path = tmp_path / "h.sqlite"
    srv = ServerProcess("--history", str(path), "--hop", "1", env=ENV).wait_ready()
    data, rate, ch = clip(TRACKS[0], 30, 40.0)
    seen = {}

    async def until_killed():
        task = asyncio.create_task(stream(url(srv, sample_rate=rate, channels=ch, name="shop"), data, rate, ch,
                                          "s16le"))
        # rows of at least three whole minutes committed (the server says so), then the kill
        while True:  # (404 until the stream's first row is written)
            status, body = await asyncio.to_thread(get, srv, auth=None, name="shop")
            if status == 200 and len(body["rows"]) >= 3:
                seen.update(body)
                break
            await asyncio.sleep(0.2)
        srv.stop(kill=True)
        killed_at = time.time()
        try:
            run = await asyncio.wait_for(task, 60)
        except Exception:  # the connection broke: what the client had received is in the task's run
            run = None
        return killed_at, run

    killed_at, _ = asyncio.run(until_killed())
    assert srv.proc.returncode == -9
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    from ui.history.store import HistoryReader

    reader = HistoryReader(path, minute_s=MINUTE_S)
    rows = reader.buckets("shop", 0, killed_at + 60)
    # every row the server had committed before the kill is there, as it was
    assert [b.to_json() for b in rows[:len(seen["rows"])]] == seen["rows"]
    (sess,) = reader.sessions("shop", 0, killed_at + 60)
    assert sess.end is None and sess.reason is None  # it never ended
    # at most the open minute (and the writer's one-second tick) is missing: the rows reach to
    # within two minutes of the kill
    assert rows[-1].t + MINUTE_S >= killed_at - 2 * MINUTE_S - 2.0, (rows[-1], killed_at)

    # the file opens again: a new server records on, and a SIGTERM mid-stream (unlike the
    # SIGKILL) ends the stream's session and writes its last minute before the server exits
    again = ServerProcess("--history", str(path), "--hop", "1", env=ENV).wait_ready()
    try:
        data2, _, _ = clip(TRACKS[1], 60, 40.0)

        async def until_stopped():
            task = asyncio.create_task(stream(url(again, sample_rate=rate, channels=ch, name="shop"), data2, rate,
                                              ch, "s16le"))
            await asyncio.to_thread(wait_for, lambda: len(get(again, auth=None, name="shop", **{
                "from": killed_at + 1})[1]["rows"]) >= 2, 120.0, 0.1, "rows of the second session")
            again.stop()
            try:
                await asyncio.wait_for(task, 60)
            except Exception:  # (the server went away mid-stream)
                pass

        asyncio.run(until_stopped())
    finally:
        again.stop()
    assert again.proc.returncode == 0, again.log
    sessions = HistoryReader(path, minute_s=MINUTE_S).sessions("shop", 0, time.time() + 60)
    assert len(sessions) == 2 and sessions[1].end is not None and sessions[1].reason, sessions
    assert "Traceback" not in again.log, again.log


# ---------------------------------------------------------------- a full disk -----------------
def test_a_full_disk_never_stops_the_readouts(tiny_disk):
    srv = ServerProcess("--history", str(tiny_disk / "h.sqlite"), "--hop", "1", "--log-level", "warning",
                        env=ENV).wait_ready()
    try:
        data, rate, ch = clip(TRACKS[0], 30, 30.0)
        filler = tiny_disk / "filler"
        filled_at = {}

        async def fill_when_recording():
            task = asyncio.create_task(stream(url(srv, sample_rate=rate, channels=ch, name="shop"), data, rate, ch,
                                              "s16le"))
            await asyncio.to_thread(wait_for, lambda: get(srv, auth=None, name="shop")[1].get("rows"),
                                    60.0, 0.1, "a first row")
            with open(filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass
            filled_at["t"] = time.monotonic()
            return await task

        run = asyncio.run(fill_when_recording())
        after = [r for t, r in run.results if t > filled_at["t"]]
        # the readouts went on to the end of the audio, the stream ended normally
        assert run.close_code == 1000 and run.summary["reason"] == "end of stream", run.close_code
        assert run.results[-1][1]["time_s"] >= 29.0 and len(after) >= 10, (len(after), run.results[-1])
        status, body = wait_for(lambda: (r := get(srv, auth=None))[1]["writer"]["dropped"] and r,
                                timeout=120, step=0.1, what="dropped rows counted")
        assert "full" in body["writer"]["last_error"], body
        assert "dropped so far" in srv.log and "readouts go on" in srv.log, srv.log
        filler.unlink()  # space again: the next stream is recorded
        written = body["writer"]["written"]
        data2, _, _ = clip(TRACKS[1], 60, 6.0)
        run2 = asyncio.run(stream(url(srv, sample_rate=rate, channels=ch, name="bar"), data2, rate, ch, "s16le"))
        assert run2.close_code == 1000
        wait_for(lambda: get(srv, auth=None)[1]["writer"]["written"] > written, timeout=120, step=0.1,
                 what="rows written again")
        assert get(srv, auth=None, name="bar")[1]["rows"]
    finally:
        srv.stop()
    assert srv.proc.returncode == 0 and "Traceback" not in srv.log, srv.log
    con = sqlite3.connect(tiny_disk / "h.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


# ---------------------------------------------------------------- refused at start ------------
def serve(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "ui.net", "--model", "musicnn", "--port", "0", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=dict(ENV, HF_HUB_OFFLINE="1"))


def test_the_server_refuses_a_newer_a_damaged_or_a_locked_file_at_start(tmp_path):
    from ui.history.store import SCHEMA_VERSION, HistoryStore

    newer = tmp_path / "newer.sqlite"
    HistoryStore(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    r = serve("--history", str(newer))
    assert r.returncode == 2 and "written by a newer version of live-genre" in r.stderr, r.stderr
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x00garbage" * 1000)
    r = serve("--history", str(junk))
    assert r.returncode == 2 and "not a SQLite database or is damaged" in r.stderr, r.stderr
    locked = tmp_path / "locked.sqlite"
    HistoryStore(locked).close()
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = serve("--history", str(locked))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 2 and "is locked by another program" in r.stderr, r.stderr
    for r in (serve("--history", str(tmp_path / "h.sqlite"), "--history-days", "0"),
              serve("--history", str(tmp_path / "h.sqlite"), "--ray")):
        assert r.returncode == 2 and ("--history-days 0" in r.stderr or "--ray" in r.stderr), r.stderr
    assert "Traceback" not in r.stderr
