"""The genre history (ui/history): a real SQLite file written by the store's writer thread, fed by
a real engine on real music; the file's checks (newer schema, not a database, damaged, locked),
the migration path, retention, a full queue and a full disk (a tiny tmpfs), and `genre-history`
(table and day chart) as a real subprocess.

A simulated wall clock (the store's `clock`) lets minutes pass without waiting for them."""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from harness.proc import free_port
from support.music import MUSIC_DIR, needs_music
from support.polling import wait_for
from ui.colours import genre_colour
from ui.history.store import SCHEMA_VERSION, HistoryError, HistoryReader, HistoryStore

ROOT = Path(__file__).resolve().parents[1]
T0 = 1796119200.0  # 2026-12-01 10:00:00 UTC
DAY = 86400.0


class Clock:
    """A wall clock the test moves."""

    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def fake_result(t, genre, silent=False):
    from stream.engine import Result

    return Result({}, {}, None if silent else genre.lower(), t, silent, -20.0, 9.0, 1.0, 1.0,
                  None if silent else genre, {})


def add_seconds(rec, clock, start, stop, genre):
    """One readout of `genre` a second, the clock at T0 + start .. T0 + stop - 1."""
    for i in range(start, stop):
        clock.t = T0 + i
        rec.add(fake_result(i + 1.0, genre))


def end_and_read(store, rec, path):
    """End the session, write everything, close the store: the file's rows of the day."""
    rec.close(None, "end of stream")
    assert store.flush()
    store.close()
    return HistoryReader(path).buckets("shop", T0, T0 + DAY)


def write_day(path, clock, name="shop", genres=("Electronic", "Rock", "Jazz"), plan=None, hours=2):
    """`hours` of one readout a second from clock.t: genre by `plan(i)` (i: seconds), silent every 50th."""
    plan = plan or (lambda i: "Rock" if (i // 600) % 3 == 0 else "Electronic")
    with HistoryStore(path, clock=clock) as store:
        rec = store.recorder(name, 1.0, list(genres))
        start = clock.t
        for i in range(int(hours * 3600)):
            clock.t = start + i
            rec.add(fake_result(float(i + 1), plan(i), silent=i % 50 == 0))
        rec.close(None, "end of stream")
        assert store.flush()
        return store.stats


# ---------------------------------------------------------------- a real engine --------------
@needs_music
def test_minutes_of_a_real_stream_add_up_to_its_summary(tmp_path, musicnn):
    """Real music through a real engine (two tracks, with a stretch of silence between), the
    wall clock moving with the audio: one row per wall-clock minute, each holding the seconds
    that arrived in it, and the minutes together give the summary's genre shares."""
    import soundfile as sf

    from stream import EngineConfig, StreamEngine

    parts = []
    for track, start in (("machine_wars.mp3", 30), ("frontiers.mp3", 60)):
        with sf.SoundFile(str(MUSIC_DIR / track)) as f:
            f.seek(start * f.samplerate)
            parts.append(f.read(50 * f.samplerate, dtype="float32", always_2d=True))
            rate = f.samplerate
        # 20 s: longer than the 9 s window, whose level gates silence (unless a detected change has
        # already narrowed it to the newest music), so silent readouts follow whichever model runs
        parts.append(np.zeros((20 * rate, 2), np.float32))
    audio = np.concatenate(parts)
    clock = Clock(T0 + 37.0)  # starts mid-minute
    store = HistoryStore(tmp_path / "h.sqlite", clock=clock)
    model = musicnn
    engine = StreamEngine(model, EngineConfig(hop_s=1.0), background=False)
    rec = store.recorder("shop", engine.config.hop_s, engine.genres)
    engine.on_result = rec.add
    chunk = rate // 10
    for i in range(0, len(audio), chunk):
        clock.t = T0 + 37.0 + i / rate
        engine.feed(audio[i:i + chunk], rate)
    engine.flush()
    summary = engine.summary()
    rec.close(summary, "end of stream")
    assert store.flush()
    store.close()
    assert store.stats.dropped == 0, store.stats

    reader = HistoryReader(tmp_path / "h.sqlite")
    rows = reader.buckets("shop", T0, T0 + DAY)
    seconds = len(audio) / rate
    assert [b.t for b in rows] == [int(T0) + 60 * k for k in range(len(rows))]
    assert len(rows) == int((37 + seconds) // 60) + 1, [b.to_json() for b in rows]
    for b in rows[1:-1]:  # whole minutes in between: a minute of readouts each
        assert abs(b.classified_s + b.silent_s - 60.0) <= 1.0 + 1e-6, b
    assert any(b.silent_s > 5 for b in rows), "the silence between the tracks is not in any minute"
    music = sum(b.classified_s for b in rows)
    assert abs(music + sum(b.silent_s for b in rows) - summary.duration_s) < 0.01, summary
    (day,) = reader.buckets("shop", T0, T0 + DAY, "day")
    assert abs(day.classified_s - music) < 0.01
    assert set(day.genre_shares) == set(summary.genre_shares)
    for g, share in summary.genre_shares.items():
        assert abs(day.genre_shares[g] - share) < 2e-3, (g, day.genre_shares, summary.genre_shares)
    (sess,) = reader.sessions("shop", T0, T0 + DAY)
    assert sess.reason == "end of stream" and sess.end is not None
    assert sess.genre_shares == {g: round(v, 4) for g, v in summary.genre_shares.items()}
    assert reader.genres("shop") == engine.genres


# ---------------------------------------------------------------- the file -------------------
def test_file_is_wal_versioned_and_marked(tmp_path):
    path = tmp_path / "h.sqlite"
    write_day(path, Clock(), hours=0.1)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM minutes").fetchone()[0] == 6
    con.close()


def test_two_sessions_in_one_minute_share_its_row(tmp_path):
    clock = Clock(T0 + 5)
    with HistoryStore(tmp_path / "h.sqlite", clock=clock) as store:
        a = store.recorder("bar", 1.0)
        for i in range(20):
            a.add(fake_result(i + 1.0, "Rock"))
        a.close(None, "end of stream")
        clock.t = T0 + 30
        b = store.recorder("bar", 1.0)
        for i in range(10):
            b.add(fake_result(i + 1.0, "Jazz"))
        b.close(None, "end of stream")
        store.flush()
    (row,) = HistoryReader(tmp_path / "h.sqlite").buckets("bar", T0, T0 + 60)
    assert row.t == T0 and row.classified_s == 30.0
    assert row.genre_shares == pytest.approx({"Rock": 2 / 3, "Jazz": 1 / 3}, abs=1e-3)
    assert len(HistoryReader(tmp_path / "h.sqlite").sessions("bar", T0, T0 + 60)) == 2


def test_a_minute_is_written_when_the_clock_leaves_it_without_readouts(tmp_path):
    """A stream that goes quiet (no readouts) still gets its last minute written: the writer
    closes minutes the clock has left."""
    clock = Clock(T0 + 10)
    with HistoryStore(tmp_path / "h.sqlite", clock=clock) as store:
        rec = store.recorder("quiet", 1.0)
        for i in range(5):
            rec.add(fake_result(i + 1.0, "Jazz"))
        store.flush()
        assert store.reader.buckets("quiet", T0, T0 + 600) == []  # still the open minute
        clock.t = T0 + 75
        store.flush()
        (row,) = store.reader.buckets("quiet", T0, T0 + 600)
        assert row.classified_s == 5.0 and not rec.closed


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "h.sqlite"
    write_day(path, Clock(), hours=0.05)
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    for open_ in (lambda: HistoryStore(path), lambda: HistoryReader(path)):
        with pytest.raises(HistoryError, match=rf"written by a newer version of live-genre \(schema version "
                                               rf"{SCHEMA_VERSION + 1}; this version knows up to {SCHEMA_VERSION}\): upgrade"):
            open_()
    r = subprocess.run([sys.executable, "-m", "ui.history", str(path), "--name", "shop", "--day", "2026-12-01"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "newer version" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_migrations_run_in_order_and_keep_the_rows(tmp_path):
    """The migration path: a version-1 file opened by a store that knows a version 2 is brought
    up to it in one transaction, its rows kept; the version-1 store then refuses it."""
    path = tmp_path / "h.sqlite"
    write_day(path, Clock(), hours=0.1)

    class Next(HistoryStore):
        MIGRATIONS = HistoryStore.MIGRATIONS + (("ALTER TABLE streams ADD COLUMN note TEXT",),)

    Next(path).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert "note" in [r[1] for r in con.execute("PRAGMA table_info(streams)")]
    assert con.execute("SELECT COUNT(*) FROM minutes").fetchone()[0] == 6
    con.close()
    with pytest.raises(HistoryError, match="newer version"):
        HistoryStore(path)


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "h.sqlite"
    write_day(path, Clock(), hours=0.05)

    class Broken(HistoryStore):
        MIGRATIONS = HistoryStore.MIGRATIONS + (("ALTER TABLE streams ADD COLUMN x TEXT", "NOT SQL"),)

    with pytest.raises(HistoryError, match="cannot be used"):
        Broken(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "x" not in [r[1] for r in con.execute("PRAGMA table_info(streams)")]
    con.close()


def test_not_a_database_another_programs_database_and_a_damaged_one_are_refused(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is a text file, not a database\n" * 200)
    with pytest.raises(HistoryError, match="not a SQLite database or is damaged"):
        HistoryStore(junk)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(HistoryError, match=r"database of another program \(tables: invoices\)"):
        HistoryStore(other)
    damaged = tmp_path / "damaged.sqlite"
    write_day(damaged, Clock(), hours=1)
    data = bytearray(damaged.read_bytes())
    assert len(data) > 5 * 4096
    data[2 * 4096:4 * 4096] = np.random.default_rng(0).integers(0, 256, 2 * 4096, dtype=np.uint8).tobytes()
    damaged.write_bytes(bytes(data))
    with pytest.raises(HistoryError, match="damaged"):
        HistoryStore(damaged)
    with pytest.raises(HistoryError, match="damaged"):
        HistoryReader(damaged)
    with pytest.raises(HistoryError, match="is a folder"):
        HistoryStore(tmp_path)
    with pytest.raises(HistoryError, match="does not exist; create it first"):
        HistoryStore(tmp_path / "no" / "such" / "h.sqlite")


def test_a_file_locked_by_another_program_is_refused_at_start(tmp_path):
    path = tmp_path / "h.sqlite"
    write_day(path, Clock(), hours=0.05)
    with held_exclusively(path):  # (WAL: other writers wait, readers do not)
        with pytest.raises(HistoryError, match="is locked by another program"):
            HistoryStore(path, timeout_s=0.5)
    plain = tmp_path / "plain.sqlite"  # a rollback-journal file held exclusively: even reading waits
    with held_exclusively(plain, "CREATE TABLE t (x)"):
        with pytest.raises(HistoryError, match="is locked by another program"):
            HistoryStore(plain, timeout_s=0.5)


@contextlib.contextmanager
def held_exclusively(path, *setup: str):
    """Another program's connection holding an exclusive transaction on `path`."""
    holder = sqlite3.connect(path, isolation_level=None)
    for sql in setup:
        holder.execute(sql)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield holder
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_lock_taken_while_recording_drops_rows_and_counts_them(tmp_path):
    """Another program holds the write lock while the store records: readouts go on (`add`
    never waits), the rows of the batches that could not be written are dropped and counted,
    and once the lock is gone new rows are written again."""
    path = tmp_path / "h.sqlite"
    clock = Clock()
    store = HistoryStore(path, clock=clock, timeout_s=0.3, max_pending=50)
    rec = store.recorder("shop", 1.0)
    with held_exclusively(path):
        add_seconds(rec, clock, 0, 600, "Rock")  # ten minutes of readouts, more rows than the queue holds meanwhile
        wait_for(lambda: store.stats.dropped > 0, timeout=60, step=0.05, what="dropped rows")
    assert "locked" in store.stats.last_error, store.stats
    dropped = store.stats.dropped
    add_seconds(rec, clock, 600, 700, "Jazz")
    rows = end_and_read(store, rec, path)
    assert rows and rows[-1].genre_shares == {"Jazz": 1.0}, [b.to_json() for b in rows]
    assert store.stats.dropped == dropped


def test_retention_prunes_rows_older_than_n_days(tmp_path):
    path = tmp_path / "h.sqlite"
    now = time.time() // 60 * 60  # (on a minute: 0.1 h is six minutes)
    # (each store prunes by its own clock: the older one is written last, so only the store
    # under test prunes it)
    write_day(path, Clock(now - 10 * DAY), name="recent", hours=0.1)
    write_day(path, Clock(now - 100 * DAY), name="old", hours=0.1)
    store = HistoryStore(path, retention_days=90)
    try:
        wait_for(lambda: store.stats.pruned > 0, timeout=60, step=0.05, what="pruning at open")
        assert store.stats.pruned == 6 + 1  # six minutes and one session
        reader = store.reader
        assert reader.buckets("old", 0, now) == [] and reader.sessions("old", 0, now) == []
        assert len(reader.buckets("recent", 0, now)) == 6 and len(reader.sessions("recent", 0, now)) == 1
    finally:
        store.close()
    with pytest.raises(HistoryError, match="--history-days 0 must be a positive"):
        HistoryStore(path, retention_days=0)


# ---------------------------------------------------------------- a full disk ----------------
def fill(folder: Path) -> Path:
    """Fill the file system of `folder` until it refuses more."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:  # (unbuffered: nothing left to write at close)
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_disk_drops_rows_with_a_counted_warning(tiny_disk, caplog):
    clock = Clock()
    store = HistoryStore(tiny_disk / "h.sqlite", clock=clock)
    rec = store.recorder("shop", 1.0)
    filler = fill(tiny_disk)
    with caplog.at_level("WARNING", logger="ui.history.store"):
        add_seconds(rec, clock, 0, 300, "Rock")  # five minutes: readouts go on
        assert store.flush()
    assert store.stats.dropped >= 4 and "full" in store.stats.last_error, store.stats
    assert any("dropped so far" in r.message and "full" in r.message for r in caplog.records), caplog.text
    filler.unlink()  # space again: rows are written again
    written = store.stats.written
    add_seconds(rec, clock, 300, 420, "Jazz")
    rows = end_and_read(store, rec, tiny_disk / "h.sqlite")
    assert store.stats.written > written
    assert rows and rows[-1].genre_shares == {"Jazz": 1.0}
    con = sqlite3.connect(tiny_disk / "h.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


# ---------------------------------------------------------------- genre-history ---------------
def history_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ui.history", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_genre_history_prints_hours_and_draws_the_day_in_the_page_colours(tmp_path):
    from PIL import Image

    path = tmp_path / "h.sqlite"
    # 10:00-12:00: Rock the first 10 minutes of every half hour, else Jazz
    write_day(path, Clock(), plan=lambda i: "Rock" if i % 1800 < 600 else "Jazz", genres=("Electronic", "Rock", "Jazz"))
    png = tmp_path / "chart.png"
    r = history_cli(path, "--name", "shop", "--day", "2026-12-01", "--png", png, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("shop, 2026-12-01 (UTC): 1:57:36 of music, 2:24 silent, 1 session"), r.stdout
    assert lines[2].startswith("10:00") and "Jazz 67 %, Rock 33 %" in lines[2], r.stdout
    assert lines[3].startswith("11:00") and len(lines) == 4, r.stdout
    from ui.history.cli import day_chart
    from ui.history.store import zone

    reader = HistoryReader(path)  # where the chart draws: the same call on the same rows, laid out again
    lay = day_chart(tmp_path / "again.png", reader.buckets("shop", T0 - 10 * 3600, T0 + 14 * 3600, "hour", zone("UTC")),
                    T0 - 10 * 3600, zone("UTC"), reader.genres("shop"), "again")
    img = Image.open(png).convert("RGB")
    hex_ = lambda xy: "#%02x%02x%02x" % img.getpixel(xy)  # noqa: E731
    # the bar of 10:00: Jazz (largest, at the bottom) in the colour of the model's third genre
    x = lay.x0(10) + lay.bar // 2
    assert hex_((x, round(lay.y(2)))) == genre_colour("Jazz") == "#edc948"  # the page's Jazz
    assert hex_((x, round(lay.y(55)))) == genre_colour("Rock")
    assert hex_((lay.x0(9) + lay.bar // 2, round(lay.y(2)))) == "#ffffff"  # 09:00: nothing

    js = history_cli(path, "--name", "shop", "--from", "2026-12-01T10:00Z", "--to", "2026-12-01T10:05Z",
                     "--step", "minute", "--json", cwd=tmp_path)
    assert js.returncode == 0, js.stderr
    out = json.loads(js.stdout)
    assert [row["t"] for row in out["rows"]] == [f"2026-12-01T10:0{m}:00Z" for m in range(5)]
    assert out["rows"][0]["genre_shares"] == {"Rock": 1.0} and out["sessions"][0]["reason"] == "end of stream"

    listing = history_cli(path, cwd=tmp_path)
    assert listing.returncode == 0 and listing.stdout.strip() == "shop: 2026-12-01T10:00:00Z .. 2026-12-01T11:59:00Z"
    berlin = history_cli(path, "--name", "shop", "--day", "2026-12-01", "--tz", "Europe/Berlin", "--no-png",
                         cwd=tmp_path)
    assert berlin.returncode == 0 and berlin.stdout.splitlines()[2].startswith("11:00"), berlin.stdout


def test_genre_history_errors(tmp_path):
    path = tmp_path / "h.sqlite"
    write_day(path, Clock(), hours=0.05)
    none = history_cli(path, "--name", "cafe", "--day", "2026-12-01", cwd=tmp_path)
    assert none.returncode == 3 and "nothing recorded for 'cafe'" in none.stderr and "recorded: shop" in none.stderr
    empty_day = history_cli(path, "--name", "shop", "--day", "2026-11-30", cwd=tmp_path)
    assert empty_day.returncode == 3, empty_day.stderr
    for args, says in ((["--day", "1st of May"], "is not a day; give YYYY-MM-DD"),
                       (["--tz", "Mars/Olympus"], "is not a time zone"),
                       (["--from", "yesterday"], "is not a time"),
                       (["--from", "2026-12-02", "--to", "2026-12-01"], "is not after"),
                       (["--from", "2026-12-01", "--png", "x.png"], "--png draws a day")):
        r = history_cli(path, "--name", "shop", *args, cwd=tmp_path)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    missing = history_cli(tmp_path / "nope.sqlite", cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    unwritable = history_cli(path, "--name", "shop", "--day", "2026-12-01", "--png", tmp_path / "no" / "x.png",
                             cwd=tmp_path)
    assert unwritable.returncode == 2 and "error" in unwritable.stderr and "Traceback" not in unwritable.stderr


def test_recording_never_waits_for_the_writer(tmp_path):
    """Thousands of readouts from several threads while the writer writes: every one returns
    (the test would hang otherwise), nothing is lost while the queue has room."""
    clock = Clock()
    with HistoryStore(tmp_path / "h.sqlite", clock=clock) as store:
        recs = [store.recorder(f"s{i}", 1.0) for i in range(8)]

        def feed(rec):
            for k in range(2000):
                rec.add(fake_result(k + 1.0, "Rock"))

        threads = [threading.Thread(target=feed, args=(r,)) for r in recs]
        for k in range(5):
            clock.t = T0 + 60 * k
            for t in threads[k:k + 1]:
                t.start()
        for t in threads[5:]:
            t.start()
        for t in threads:
            t.join()
        for r in recs:
            r.close(None, "end of stream")
        assert store.flush()
        assert store.stats.dropped == 0
        total = sum(b.classified_s for n in store.reader.names() for b in store.reader.buckets(n, 0, T0 + DAY))
    assert total == 8 * 2000


# ---------------------------------------------------------------- the terminal listener -------
@pytest.mark.slow
@needs_music
def test_cli_listen_records_its_session_per_wall_clock_minute(tmp_path):
    """`cli_listen.py --file ... --history FILE` (real time, 20 s of music) with the test-only
    5 s "minute": a row per wall-clock 5 s, their seconds and shares add up to the printed
    summary, and the session row says why it ended. A file it cannot use: exit 2 at start."""
    path = tmp_path / "h.sqlite"
    short_minute = str(ROOT / "tests" / "short_minute")  # (its sitecustomize.py: 5 s history minutes)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([short_minute, str(ROOT)]))
    t0 = time.time()
    r = subprocess.run([sys.executable, str(ROOT / "cli_listen.py"), "--file", str(MUSIC_DIR / "machine_wars.mp3"),
                        "--duration", "20", "--hop", "1", "--json", "--model", "musicnn", "--history", str(path),
                        "--history-name", "bar"], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    t1 = time.time()
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    summary = [x for x in records if x["event"] == "summary"][0]
    reader = HistoryReader(path, minute_s=5)
    rows = reader.buckets("bar", t0 - 60, t1 + 60)
    assert len(rows) >= 3 and all(b.t % 5 == 0 and t0 - 5 <= b.t <= t1 for b in rows), [b.to_json() for b in rows]
    total = sum(b.classified_s + b.silent_s for b in rows)
    assert abs(total - summary["duration_s"]) < 0.05, (total, summary)
    (day,) = reader.buckets("bar", t0 - 60, t1 + 60, "day") or [None]
    for g, share in summary["genre_shares"].items():
        assert abs(day.genre_shares[g] - share) < 2e-3, (day.genre_shares, summary["genre_shares"])
    (sess,) = reader.sessions("bar", t0 - 60, t1 + 60)
    assert sess.reason == "duration reached" and sess.genre_shares == summary["genre_shares"]

    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    bad = subprocess.run([sys.executable, str(ROOT / "cli_listen.py"), "--file", str(MUSIC_DIR / "machine_wars.mp3"),
                          "--history", str(path)], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "newer version of live-genre" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------- the page --------------------
def shares_of(rows):
    """The genre shares of rows added up (weighted by their classified seconds)."""
    total = sum(b.classified_s for b in rows)
    acc = {}
    for b in rows:
        for g, v in b.genre_shares.items():
            acc[g] = acc.get(g, 0.0) + v * b.classified_s / total
    return acc


@needs_music
def test_page_sessions_record_each_recording(tmp_path, musicnn):
    """The page's per-tab session (ui/web/session.py, no browser needed) with --history: each
    recording is a session of the stream `page` ("stopped", "new recording", "tab closed"), and
    its minutes give its summary's genre shares."""
    import soundfile as sf

    from ui.web.session import LiveSession, LiveSettings

    with sf.SoundFile(str(MUSIC_DIR / "machine_wars.mp3")) as f:
        f.seek(30 * f.samplerate)
        audio, rate = f.read(16 * f.samplerate, dtype="float32", always_2d=True), f.samplerate
    clock = Clock(T0)
    store = HistoryStore(tmp_path / "h.sqlite", clock=clock)
    s = LiveSession(musicnn, LiveSettings(9.0, 1.0, 4.0, 5, -55.0), store, "shop-screen")
    summaries = []
    for take in range(3):
        clock.t = T0 + 120 * take  # each recording in minutes of its own
        s.start(s.settings)
        for i in range(0, len(audio), rate // 4):  # 0.25 s chunks at about 4x real time
            clock.t += 0.25
            s.feed(rate, audio[i:i + rate // 4])
            time.sleep(1 / 16)
        if take == 0:
            summaries.append(s.stop())
        elif take == 1:
            s._engine.flush()
            s._engine.drain(30.0)
            summaries.append(s._engine.summary())  # Record again without Stop: "new recording"
    s._engine.flush()
    s._engine.drain(30.0)
    summaries.append(s._engine.summary())
    s.close()
    assert store.flush()
    sessions = store.reader.sessions("shop-screen", T0, T0 + DAY)
    assert [x.reason for x in sessions] == ["stopped", "new recording", "tab closed"], sessions
    for take, (sess, summary) in enumerate(zip(sessions, summaries)):
        assert sess.genre_shares == {g: round(v, 4) for g, v in summary.genre_shares.items()}
        rows = store.reader.buckets("shop-screen", T0 + 120 * take, T0 + 120 * (take + 1))
        assert rows and abs(sum(b.classified_s + b.silent_s for b in rows) - summary.duration_s) < 0.05
        for g, v in summary.genre_shares.items():
            assert abs(shares_of(rows)[g] - v) < 2e-3, (rows, summary)
    rows = store.reader.buckets("shop-screen", T0, T0 + DAY)
    everything = sum(b.classified_s + b.silent_s for b in rows)
    assert abs(everything - sum(x.duration_s for x in summaries)) < 0.05, (everything, summaries)
    store.close()


@pytest.mark.slow  # app.py imports Gradio before it refuses
def test_page_refuses_an_unusable_history_file_before_the_model_loads(tmp_path):
    port = free_port()  # (a free port: the port is checked first)
    bad = tmp_path / "h.sqlite"
    bad.write_text("not a database\n" * 100)
    r = subprocess.run([sys.executable, str(ROOT / "app.py"), "--history", str(bad), "--model", "no-such-model",
                        "--port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(err) == 1 and "not a SQLite database or is damaged" in err[0], r.stderr


@needs_music
def test_the_page_gives_every_tab_the_history_of_its_command_line(tmp_path, musicnn):
    """app.py's flags -> Setup -> the tab's session (page.new_session): a recording made in a tab
    lands in the file under --history-name."""
    import soundfile as sf

    import app
    from ui.history.flags import open_history
    from ui.web.page import Setup, new_session

    args = app.parse_args(["--history", str(tmp_path / "h.sqlite"), "--history-name", "screen", "--hop", "1"])
    store = open_history(args)
    try:
        setup = Setup.from_args(musicnn, args, store)
        session, _ = new_session(setup, None)
        with sf.SoundFile(str(MUSIC_DIR / "frontiers.mp3")) as f:
            f.seek(60 * f.samplerate)
            audio, rate = f.read(8 * f.samplerate, dtype="float32", always_2d=True), f.samplerate
        session.start(session.settings)
        for i in range(0, len(audio), rate // 4):
            session.feed(rate, audio[i:i + rate // 4])
            time.sleep(1 / 16)
        summary = session.stop()
        session.close()
        assert store.flush()
        (sess,) = store.reader.sessions("screen", 0, time.time() + 60)
        assert sess.reason == "stopped" and sess.genre_shares == {g: round(v, 4) for g, v in summary.genre_shares.items()}
        assert store.reader.buckets("screen", time.time() - 3600, time.time() + 60)
    finally:
        store.close()
