"""The history counts time without music as such: never as a genre, in rows, sessions, the
table and the day chart (a real SQLite file, a real PNG)."""
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from stream.engine import Result
from ui.history.store import HistoryReader, HistoryStore

T0 = 1796119200.0  # 2026-12-01 10:00:00 UTC
ROOT = Path(__file__).resolve().parents[1]


def _res(t, genre=None, no_music=False):
    return Result({}, {}, None if no_music else genre.lower(), t, False, -20.0, 9.0, 1.0, 1.0,
                  None if no_music else genre, {"Hip hop": 0.3} if no_music else {genre: 0.3},
                  no_music=no_music, talk=no_music)


def test_minutes_without_music_are_counted_as_such_not_as_a_genre(tmp_path):
    path = tmp_path / "h.sqlite"
    clock = [T0]
    with HistoryStore(path, clock=lambda: clock[0]) as store:
        rec = store.recorder("lobby", 1.0, ["Electronic", "Hip hop"])
        for i in range(1800):  # 20 min of music, 10 min of talk per half hour
            clock[0] = T0 + i
            rec.add(_res(i + 1.0, "Electronic") if i % 1800 < 1200 else _res(i + 1.0, no_music=True))
        rec.close(None, "end of stream")
        assert store.flush()
    reader = HistoryReader(path)
    (hour,) = reader.buckets("lobby", T0, T0 + 3600, "hour")
    assert hour.no_music_s == pytest.approx(600, abs=1) and hour.classified_s == pytest.approx(1200, abs=1)
    assert hour.genre_shares == {"Electronic": 1.0}  # the voice's "Hip hop" scores never count
    assert hour.to_json()["no_music_s"] == pytest.approx(600, abs=1)
    (sess,) = reader.sessions("lobby", T0, T0 + 3600)
    assert sess.no_music_s == pytest.approx(600, abs=1) and sess.to_json()["no_music_s"] == sess.no_music_s
    png = tmp_path / "day.png"
    r = subprocess.run([sys.executable, "-m", "ui.history", str(path), "--name", "lobby", "--day", "2026-12-01",
                        "--png", str(png)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "10:00 without music" in r.stdout and "no music" in r.stdout.splitlines()[1]
    from PIL import Image
    from ui.colours import NO_MUSIC_COLOUR
    grey = tuple(int(NO_MUSIC_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    img = Image.open(png).convert("RGB")
    assert grey in {c for _, c in img.getcolors(1 << 16)}  # the hour's bar has its grey part


def test_a_version_1_file_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    for statement in HistoryStore.MIGRATIONS[0]:
        con.execute(statement)
    con.execute("PRAGMA application_id = 1196315208")
    con.execute("INSERT INTO streams (name) VALUES ('shop')")
    con.execute("INSERT INTO minutes VALUES (1, 1796119200, 60.0, 0.0, '{\"Rock\": 1.0}')")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    with HistoryStore(path):
        pass
    (row,) = HistoryReader(path).buckets("shop", T0, T0 + 60)
    assert row.classified_s == 60.0 and row.no_music_s == 0.0 and row.genre_shares == {"Rock": 1.0}
