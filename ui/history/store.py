"""What played when: a genre history in one SQLite file, one row per stream and wall-clock minute.

Every front end feeds it the same way: `store.recorder(name, hop_s, genres)` when a stream
starts, `recorder.add(result)` for every readout (a `Result` or its `to_json()` record),
`recorder.close(summary, reason)` at the end. `add` only adds seconds to the open minute in
memory; finished minutes, session rows and the daily pruning go to one writer thread through a
bounded queue, and are written in batches, one transaction each. A slow or full disk, or a
file another program locks, therefore never reaches a readout: when the queue is full or a
write fails, rows are dropped and counted (`stats`), with a warning in the log.

The time accounting is the engine's own (`ShareTally`): each readout stands for the time since
the previous one (the first for one hop), charged to its leading genre or to silence, in the
wall-clock minute it arrived in. So a stream's minutes, added up, give its session summary's
genre shares.

The file: WAL journal (readers never wait for the writer, a killed process loses at most the
transaction in flight), `synchronous=NORMAL`; its schema version is `PRAGMA user_version`,
and `MIGRATIONS` bring an older file up to `SCHEMA_VERSION`. A file written by a newer
version, a file that is not a SQLite database (or a database of some other program), a
corrupt one and one locked by another program are refused when the store opens
(`HistoryError`, a `ValueError`), never later.
"""
from __future__ import annotations

import collections
import json
import logging
import math
import queue
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Callable, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
APPLICATION_ID = 0x474E5248  # "GNRH": PRAGMA application_id, this program's mark in the file header
# The stored "minute", in seconds of wall clock. End-to-end tests start their processes with a
# shorter one (tests/short_minute/) so that they see several rows in seconds, not minutes.
MINUTE_S = 60
STEPS = {"minute": 60, "hour": 3600, "day": 86400}
NAME_MAX = 64
DAY_S = 86400.0


@dataclass(frozen=True)
class MinuteRow:
    """One stream's minute as the writer stores it. t: Unix seconds (UTC) of the minute's start;
    genre_s: seconds per leading genre (they add up to classified_s); no_music_s: seconds shown
    as "no music" (talk, noise), counted apart like silence, never as a genre."""

    stream: str
    t: int
    classified_s: float
    silent_s: float
    genre_s: dict
    no_music_s: float = 0.0


@dataclass(frozen=True)
class Bucket:
    """A minute, hour or day of one stream as a query returns it. t: Unix seconds (UTC) of its
    start; genre_shares: shares of the classified time, highest first."""

    t: int
    classified_s: float
    silent_s: float
    genre_shares: dict
    no_music_s: float = 0.0

    def to_json(self) -> dict:
        return {"t": iso(self.t), "unix": self.t, "classified_s": round(self.classified_s, 2),
                "silent_s": round(self.silent_s, 2),
                "genre_shares": {g: round(v, 4) for g, v in self.genre_shares.items()},
                "dominant_genre": next(iter(self.genre_shares), None), "no_music_s": round(self.no_music_s, 2)}


@dataclass(frozen=True)
class SessionRow:
    """One stream session: when it started and ended (None while open, or when the process
    ended without closing it), why it ended and its summary's genre shares."""

    id: str
    stream: str
    start: float
    end: float | None
    reason: str | None
    duration_s: float | None
    silent_s: float | None
    genre_shares: dict = field(default_factory=dict)
    no_music_s: float | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "start": iso(self.start), "end": iso(self.end) if self.end is not None else None,
                "reason": self.reason, "duration_s": self.duration_s, "silent_s": self.silent_s,
                "genre_shares": self.genre_shares, "dominant_genre": next(iter(self.genre_shares), None),
                "no_music_s": self.no_music_s}


@dataclass(frozen=True)
class WriterStats:
    """The writer's counters. dropped: rows (minutes and session rows) lost to a full queue or a
    failed write; last_error: why the newest ones were lost."""

    written: int
    dropped: int
    pending: int
    pruned: int
    last_error: str | None

    def to_json(self) -> dict:
        return {"written": self.written, "dropped": self.dropped, "pending": self.pending,
                "pruned": self.pruned, "last_error": self.last_error}


class HistoryError(ValueError):
    """The history file cannot be used; the message says why and what to do."""


class _Open(NamedTuple):  # a session started
    id: str
    stream: str
    start: float
    genres: list


class _Flush(NamedTuple):  # `flush()`: set once everything before it is written
    done: threading.Event


class _Close(NamedTuple):  # a session ended
    id: str
    stream: str
    start: float
    end: float
    reason: str
    duration_s: float
    silent_s: float
    genre_shares: dict
    no_music_s: float = 0.0


# The schema, step by step: MIGRATIONS[v] brings a file from version v to v + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 -> 1
        "CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, genres TEXT NOT NULL DEFAULT '[]')",
        # one row per stream and minute; shares: JSON {genre: share of classified_s}
        "CREATE TABLE minutes (stream INTEGER NOT NULL REFERENCES streams(id), t INTEGER NOT NULL, "
        "classified_s REAL NOT NULL, silent_s REAL NOT NULL, shares TEXT NOT NULL, "
        "PRIMARY KEY (stream, t)) WITHOUT ROWID",
        "CREATE INDEX minutes_by_time ON minutes (t)",
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, stream INTEGER NOT NULL REFERENCES streams(id), "
        "start REAL NOT NULL, end REAL, reason TEXT, duration_s REAL, silent_s REAL, genre_shares TEXT)",
        "CREATE INDEX sessions_by_stream ON sessions (stream, start)",
    ),
    (  # 1 -> 2: time shown as "no music" (talk, noise), apart from silence and the genres
        "ALTER TABLE minutes ADD COLUMN no_music_s REAL NOT NULL DEFAULT 0",
        "ALTER TABLE sessions ADD COLUMN no_music_s REAL",
    ),
)


# ---- names and times ---------------------------------------------------------------------------
def check_history_name(name: str) -> str:
    """A stream name as stored: 1..64 printable characters, no leading or trailing space."""
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX or not name.isprintable() \
            or name != name.strip():
        raise ValueError(f"stream name {str(name)[:80]!r} is not usable: give 1 to {NAME_MAX} printable "
                         "characters without leading or trailing spaces")
    return name


def new_stream_id(prefix: str = "stream") -> str:
    """A name for a stream that has none: unique, short, sortable by nothing in particular."""
    return f"{prefix}-{secrets.token_hex(4)}"


def iso(t: float) -> str:
    """Unix seconds as ISO 8601 UTC, '2026-12-01T10:05:00Z'."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def zone(name: str | None) -> tzinfo:
    """A time zone by name (None or "UTC": UTC); ValueError says what is accepted."""
    if name is None or name.upper() in ("UTC", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone; give e.g. UTC or Europe/Berlin") from None


def parse_time(text: str, tz: tzinfo = timezone.utc) -> float:
    """Unix seconds from '1764583200', '2026-12-01', '2026-12-01T10:00', '...Z' or '...+01:00'
    (a time without a zone is in `tz`). ValueError says what is accepted."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give Unix seconds or ISO 8601, e.g. 2026-12-01 or "
                         "2026-12-01T10:00:00Z") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).timestamp()


def bucket_start(t: float, step: str, tz: tzinfo = timezone.utc, minute_s: int = 60) -> int:
    """The start of the minute/hour/day (in `tz`: its hours and midnights) that holds `t`."""
    if step == "minute":
        return int(t // minute_s * minute_s)
    if tz is timezone.utc:
        return int(t // STEPS[step] * STEPS[step])
    local = datetime.fromtimestamp(t, tz)
    local = local.replace(minute=0, second=0, microsecond=0)
    if step == "day":
        local = local.replace(hour=0)
    return int(local.timestamp())


def _minute(minute_s: int | None) -> int:
    """The store's minute: `minute_s`, else MINUTE_S; a divisor of 60 (rows must tile an hour)."""
    v = MINUTE_S if minute_s is None else minute_s
    if not (isinstance(v, int) and 1 <= v <= 60 and 60 % v == 0):
        raise ValueError(f"a history minute of {v!r} s: give a divisor of 60")
    return v


def _dumps(d: dict) -> str:
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


def _merge_shares(old: str, old_s: float, new: str, new_s: float) -> str:
    """Two rows of one minute (a stream that ended and started again in it) as one."""
    total = (old_s or 0.0) + (new_s or 0.0)
    if not total:
        return new
    acc: dict = collections.defaultdict(float)
    for text, s in ((old, old_s), (new, new_s)):
        for g, v in json.loads(text).items():
            acc[g] += v * (s or 0.0)
    return _dumps({g: round(v / total, 4) for g, v in sorted(acc.items(), key=lambda kv: -kv[1])})


# ---- opening a file ----------------------------------------------------------------------------
def _connect(path: str, timeout_s: float) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    con.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    return con


def _explain(path: str, exc: Exception) -> HistoryError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return HistoryError(f"history file {path} is locked by another program ({text}); close that program "
                            "or choose another --history file")
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text
                                                   or "corrupt" in text):
        return HistoryError(f"history file {path} is not a SQLite database or is damaged ({text}); move it "
                            "away (or restore a copy) and start again, or choose another --history file")
    return HistoryError(f"history file {path} cannot be used: {text}")


def _check_file(path: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise HistoryError(f"history file {path} is a folder; give a file name, e.g. {p / 'history.sqlite'}")
    if not p.parent.is_dir():
        raise HistoryError(f"history file {path}: the folder {p.parent} does not exist; create it first")


def _check_schema(con: sqlite3.Connection, path: str, *, writing: bool, known: int = SCHEMA_VERSION,
                  check: bool = True) -> int:
    """The file's schema version, after refusing what this version cannot use."""
    version = con.execute("PRAGMA user_version").fetchone()[0]
    app = con.execute("PRAGMA application_id").fetchone()[0]
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if app != APPLICATION_ID and (tables or version):
        raise HistoryError(f"{path} is a SQLite database of another program (tables: {', '.join(tables[:6])}), "
                           "not a genre history; choose another --history file")
    if version > known:
        raise HistoryError(f"history file {path} was written by a newer version of live-genre (schema "
                           f"version {version}; this version knows up to {known}): upgrade live-genre "
                           "to use it, or choose another file")
    result = con.execute("PRAGMA quick_check").fetchone()[0] if check else "ok"
    if result != "ok":
        raise HistoryError(f"history file {path} is damaged (integrity check: {result}); move it away (or "
                           "restore a copy) and start again")
    if not writing and version < known and tables:
        raise HistoryError(f"history file {path} has schema version {version}; open it once with --history "
                           "(the recording side upgrades it) before reading it")
    return version


def _migrate(con: sqlite3.Connection, version: int, migrations, path: str = "") -> int:
    """Bring the file up to len(migrations), one transaction (a failure leaves it as it was).
    A new file (version 0) is logged as created, not as migrated."""
    con.execute("BEGIN IMMEDIATE")  # the write lock now: a file locked by another program fails here
    try:
        if version == 0:
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for v in range(version, len(migrations)):
            for statement in migrations[v]:
                con.execute(statement)
            if version > 0:
                log.info("history: %s migrated from schema version %d to %d", path, v, v + 1)
        if version == 0:
            log.info("history: created %s (schema version %d)", path, len(migrations))
        con.execute(f"PRAGMA user_version = {len(migrations)}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return len(migrations)


# ---- reading -----------------------------------------------------------------------------------
class HistoryReader:
    """Queries over a history file (any thread: a connection per call; WAL readers never wait
    for the writer). Opening checks the file as the store does, without writing to it."""

    def __init__(self, path, *, timeout_s: float = 5.0, minute_s: int | None = None, known: int = SCHEMA_VERSION,
                 check: bool = True):
        self.path = str(path)
        self.timeout_s = timeout_s
        self.minute_s = _minute(minute_s)
        if not Path(self.path).is_file():
            raise HistoryError(f"history file {self.path} does not exist; record one with --history {self.path}")
        try:
            with self._con() as con:
                self.version = _check_schema(con, self.path, writing=False, known=known, check=check)
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    def _con(self):
        con = _connect(self.path, self.timeout_s)
        con.execute("PRAGMA query_only = ON")
        return _Closing(con)

    def names(self) -> list[str]:
        """The streams recorded, by name."""
        if not self.version:
            return []
        with self._con() as con:
            return [r[0] for r in con.execute("SELECT name FROM streams ORDER BY name")]

    def genres(self, name: str) -> list[str]:
        """The model's genre order of the stream's newest session (the genres' colours)."""
        if not self.version:
            return []
        with self._con() as con:
            row = con.execute("SELECT genres FROM streams WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else []

    def span(self, name: str) -> tuple[int, int] | None:
        """(first, last) minute recorded for the stream, None if none."""
        if not self.version:
            return None
        with self._con() as con:
            row = con.execute("SELECT MIN(t), MAX(t) FROM minutes JOIN streams ON streams.id = minutes.stream "
                              "WHERE name = ?", (name,)).fetchone()
        return None if row is None or row[0] is None else (row[0], row[1])

    def buckets(self, name: str, start: float, end: float, step: str = "minute",
                tz: tzinfo = timezone.utc) -> list[Bucket]:
        """The stream's minutes with start <= t < end, as they are (step "minute"), or added up
        per hour or day (in `tz`), oldest first; empty minutes and hours are left out."""
        if step not in STEPS:
            raise ValueError(f"step {step!r} is not one of {', '.join(STEPS)}")
        if not self.version:
            return []
        with self._con() as con:
            sid = con.execute("SELECT id FROM streams WHERE name = ?", (name,)).fetchone()
            rows = [] if sid is None else con.execute(
                "SELECT t, classified_s, silent_s, shares, no_music_s FROM minutes WHERE stream = ? AND t >= ? AND t < ? "
                "ORDER BY t", (sid[0], math.floor(start), math.ceil(end))).fetchall()
        acc: dict = {}
        starts: dict = {}  # quarter hour -> its hour's or day's start (zone offsets are whole quarters)
        loads = json.loads
        for t, classified, silent, shares, no_music in rows:
            if step == "minute":
                key = t
            else:
                key = starts.get(t // 900)
                if key is None:
                    key = starts[t // 900] = bucket_start(t, step, tz, self.minute_s)
            b = acc.get(key)
            if b is None:
                b = acc[key] = [0.0, 0.0, collections.defaultdict(float), 0.0]
            b[0] += classified
            b[1] += silent
            b[3] += no_music
            genre_s = b[2]
            for g, v in loads(shares).items():
                genre_s[g] += v * classified
        out = []
        for t, (classified, silent, genre_s, no_music) in acc.items():
            order = sorted(genre_s.items(), key=lambda kv: -kv[1])
            out.append(Bucket(t, classified, silent, {g: s / classified for g, s in order} if classified else {},
                              no_music))
        return out

    def sessions(self, name: str, start: float, end: float) -> list[SessionRow]:
        """The stream's sessions that overlap [start, end), oldest first."""
        if not self.version:
            return []
        with self._con() as con:
            rows = con.execute(
                "SELECT sessions.id, start, end, reason, duration_s, silent_s, genre_shares, no_music_s FROM sessions "
                "JOIN streams ON streams.id = sessions.stream WHERE name = ? AND start < ? "
                "AND (end IS NULL OR end >= ?) ORDER BY start", (name, end, start)).fetchall()
        return [SessionRow(i, name, s, e, r, d, si, json.loads(g) if g else {}, nm)
                for i, s, e, r, d, si, g, nm in rows]


class _Closing:
    """`with` for a connection that closes it (sqlite3's own `with` only commits)."""

    def __init__(self, con):
        self.con = con

    def __enter__(self):
        return self.con

    def __exit__(self, *exc):
        self.con.close()


# ---- recording ---------------------------------------------------------------------------------
class Recorder:
    """One stream session's side of the store: `add` each readout (any thread, no I/O), `close`
    once at the end. A closed recorder ignores what comes after."""

    def __init__(self, store: HistoryStore, name: str, hop_s: float, genres=()):
        self.store, self.name, self.hop_s = store, check_history_name(name), float(hop_s)
        self.id = secrets.token_hex(8)
        self.start = store.clock()
        self._lock = threading.Lock()
        self._minute: int | None = None
        self._classified = self._silent = self._no_music = 0.0
        self._genre_s: dict = collections.defaultdict(float)
        self._total: dict = collections.defaultdict(float)  # the session's seconds per genre
        self._total_silent = self._total_no_music = 0.0
        self._last_t: float | None = None
        self.closed = False
        store._put(_Open(self.id, self.name, self.start, list(genres)))

    def add(self, res) -> None:
        """A readout: a `Result` or its `to_json()` record."""
        if isinstance(res, dict):
            t, silent, genre = res.get("time_s"), res.get("silent"), res.get("genre") or res.get("label")
            no_music = bool(res.get("no_music"))
        else:
            t, silent, genre = res.time_s, res.silent, res.genre if res.genre is not None else res.label
            no_music = bool(getattr(res, "no_music", False))
        if t is None or not math.isfinite(t):
            return
        minute = self.store.minute_of(self.store.clock())
        done = None
        with self._lock:
            if self.closed:
                return
            dt = self.hop_s if self._last_t is None else max(t - self._last_t, 0.0)
            self._last_t = t
            if self._minute is not None and minute != self._minute:
                done = self._take()
            self._minute = minute
            if no_music and not silent:  # talk, noise: counted as such, not as a genre
                self._no_music += dt
                self._total_no_music += dt
            elif silent or genre is None:
                self._silent += dt
                self._total_silent += dt
            else:
                self._classified += dt
                self._genre_s[genre] += dt
                self._total[genre] += dt
        if done is not None:
            self.store._put(done)

    def close(self, summary=None, reason: str = "end of stream") -> None:
        """The session ended: its last (partial) minute and its session row go to the writer.
        `summary`: the engine's `SessionSummary` or its `to_json()` record (its genre shares are
        stored); None: the recorder's own tally (the same accounting)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            done = self._take()
        if done is not None:
            self.store._put(done)
        total = sum(self._total.values())
        shares, silent, no_music = {}, self._total_silent, self._total_no_music
        duration = total + silent + no_music
        if summary is not None:
            get = summary.get if isinstance(summary, dict) else lambda k: getattr(summary, k, None)
            shares = dict(get("genre_shares") or get("shares") or {})
            duration = get("duration_s") if get("duration_s") is not None else duration
            silent = get("silent_s") if get("silent_s") is not None else silent
            no_music = get("no_music_s") if get("no_music_s") is not None else no_music
        elif total:
            shares = {g: s / total for g, s in sorted(self._total.items(), key=lambda kv: -kv[1])}
        shares = {g: round(float(v), 4) for g, v in shares.items()}
        self.store._put(_Close(self.id, self.name, self.start, self.store.clock(), reason,
                               round(float(duration), 2), round(float(silent), 2), shares, round(float(no_music), 2)))
        self.store._forget(self)

    def _due(self, minute: int) -> MinuteRow | None:
        """The open minute once the clock has left it (a stream that went quiet): the writer asks."""
        with self._lock:
            if self._minute is None or self._minute >= minute or self.closed:
                return None
            return self._take()

    def _take(self) -> MinuteRow | None:  # under the lock
        if self._minute is None or not (self._classified or self._silent or self._no_music):
            self._minute = None
            return None
        row = MinuteRow(self.name, self._minute, self._classified, self._silent, dict(self._genre_s), self._no_music)
        self._minute, self._classified, self._silent, self._no_music = None, 0.0, 0.0, 0.0
        self._genre_s.clear()
        return row


class HistoryStore:
    """The history file, open for recording: checks and migrates it at once (`HistoryError`),
    then one writer thread writes what the recorders hand it.

    retention_days: minutes and sessions older than this are deleted when the store opens and
        once a day after.
    max_pending: rows waiting for the writer at most; more are dropped and counted (a disk that
        stalls for minutes costs rows, never memory or readouts). 20000 is about five hours of
        64 streams.
    clock: wall-clock seconds (time.time); benchmarks and tests pass a simulated one.
    timeout_s: how long to wait for a file another program holds locked: at start, then a
        refusal; while writing, then the batch is dropped and counted.
    """

    MIGRATIONS = MIGRATIONS

    def __init__(self, path, *, retention_days: float = 90.0, max_pending: int = 20000,
                 clock: Callable[[], float] = time.time, timeout_s: float = 5.0, minute_s: int | None = None):
        if not retention_days > 0:
            raise HistoryError(f"--history-days {retention_days:g} must be a positive number of days")
        self.path = str(path)
        self.retention_days = float(retention_days)
        self.clock = clock
        self.timeout_s = timeout_s
        self.minute_s = _minute(minute_s)
        self._open_file()
        self._con = self._writer_connection()
        self.reader = HistoryReader(self.path, timeout_s=timeout_s, minute_s=self.minute_s,
                                    known=len(self.MIGRATIONS), check=False)  # (checked just now)
        self._queue: queue.Queue = queue.Queue(max(1, max_pending))
        self._recorders: set[Recorder] = set()
        self._recorders_lock = threading.Lock()
        self._written = self._dropped = self._pruned = 0
        self._count_lock = threading.Lock()  # (drops are counted on any thread)
        self._last_error: str | None = None
        self._warned_at = -math.inf
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    def _open_file(self) -> None:
        _check_file(self.path)
        try:
            con = _connect(self.path, self.timeout_s)
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None
        try:
            version = _check_schema(con, self.path, writing=True, known=len(self.MIGRATIONS))
            if con.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise HistoryError(f"history file {self.path}: SQLite refused WAL mode here (a network file "
                                   "system?); put the file on a local disk")
            if version < len(self.MIGRATIONS):
                _migrate(con, version, self.MIGRATIONS, self.path)
            else:  # take the write lock once anyway: a file another program locks is refused now
                con.execute("BEGIN IMMEDIATE")
                con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None
        finally:
            con.close()

    # ---- what front ends call --------------------------------------------------------------
    def recorder(self, name: str | None, hop_s: float, genres=(), prefix: str = "stream") -> Recorder:
        """A new session of stream `name` (None: a generated id, `prefix`-xxxxxxxx). `hop_s`: the
        engine's hop (the first readout stands for one hop); `genres`: the model's genre order."""
        rec = Recorder(self, name if name is not None else new_stream_id(prefix), hop_s, genres)
        with self._recorders_lock:
            if self._closed:
                rec.closed = True
            else:
                self._recorders.add(rec)
        return rec

    def minute_of(self, t: float) -> int:
        return int(t // self.minute_s * self.minute_s)

    @property
    def stats(self) -> WriterStats:
        return WriterStats(self._written, self._dropped, self._queue.qsize(), self._pruned, self._last_error)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed over so far (and every finished minute) is written or
        dropped; False on timeout."""
        done = threading.Event()
        self._put(_Flush(done), force=True)
        return done.wait(timeout)

    def close(self, reason: str = "stopped") -> None:
        """Close the sessions still open (their partial minutes are written), write what is
        waiting, stop the writer. Idempotent."""
        with self._recorders_lock:
            if self._closed:
                return
            self._closed = True
            open_ = list(self._recorders)
        for rec in open_:
            rec.close(None, reason)
        self._stop.set()
        self._thread.join(60.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- inside ----------------------------------------------------------------------------
    def _forget(self, rec: Recorder) -> None:
        with self._recorders_lock:
            self._recorders.discard(rec)

    def _put(self, item, force: bool = False) -> None:
        try:
            if force:
                self._queue.put(item, timeout=self.timeout_s)
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            self._drop(1, "the writer is behind (slow disk?): queue full")

    def _drop(self, n: int, why: str) -> None:
        with self._count_lock:
            self._dropped += n
            self._last_error = why
            now = time.monotonic()
            warn = now - self._warned_at >= 60.0  # one line a minute at most, with the running count
            if warn:
                self._warned_at = now
        if warn:
            log.warning("history %s: %d row(s) dropped so far (%s); readouts go on", self.path, self._dropped, why)

    def _writer_connection(self) -> sqlite3.Connection:
        """The writer's own connection, opened here (at start: a failure is a HistoryError)."""
        try:
            con = _connect(self.path, self.timeout_s)
            con.execute("PRAGMA synchronous = NORMAL")  # with WAL: safe against a killed process
            con.create_function("merge_shares", 4, _merge_shares, deterministic=True)
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None
        return con

    def _run(self) -> None:
        con, ids, next_prune = self._con, {}, -math.inf
        while True:
            items = self._collect()
            flushes = [i.done for i in items if isinstance(i, _Flush)]
            items = [i for i in items if not isinstance(i, _Flush)]
            try:
                now = self.clock()
                with self._recorders_lock:
                    recorders = list(self._recorders)
                minute = self.minute_of(now)
                items += [row for r in recorders if (row := r._due(minute)) is not None]
                if items:
                    self._write(con, items, ids)
                if now >= next_prune:
                    next_prune = now + DAY_S
                    self._prune(con, now)
            except Exception as exc:  # a bug here must not take readouts down, nor the writer
                log.exception("history writer: a batch failed")
                self._drop(len(items), f"{type(exc).__name__}: {exc}")
            finally:
                for ev in flushes:
                    ev.set()
            if self._stop.is_set() and self._queue.empty():
                break
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL folded in: one file again
        except sqlite3.Error:
            pass
        con.close()

    def _collect(self, batch: int = 5000) -> list:
        """What is waiting (up to `batch`), after waiting up to a second for the first item."""
        items = []
        try:
            items.append(self._queue.get(timeout=0.2 if self._stop.is_set() else 1.0))
            while len(items) < batch:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _write(self, con: sqlite3.Connection, items: list, ids: dict) -> None:
        try:
            con.execute("BEGIN IMMEDIATE")
            for item in items:
                if isinstance(item, MinuteRow):
                    c = item.classified_s
                    shares = {g: round(s / c, 4) for g, s in sorted(item.genre_s.items(), key=lambda kv: -kv[1])} if c else {}
                    con.execute(
                        "INSERT INTO minutes (stream, t, classified_s, silent_s, shares, no_music_s) "
                        "VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (stream, t) DO UPDATE SET shares = merge_shares(shares, classified_s, "
                        "excluded.shares, excluded.classified_s), classified_s = classified_s + excluded.classified_s, "
                        "silent_s = silent_s + excluded.silent_s, no_music_s = no_music_s + excluded.no_music_s",
                        (self._stream_id(con, ids, item.stream), item.t, round(c, 3), round(item.silent_s, 3),
                         _dumps(shares), round(item.no_music_s, 3)))
                elif isinstance(item, _Open):
                    sid = self._stream_id(con, ids, item.stream, item.genres)
                    con.execute("INSERT OR IGNORE INTO sessions (id, stream, start) VALUES (?, ?, ?)",
                                (item.id, sid, item.start))
                elif isinstance(item, _Close):
                    con.execute(
                        "INSERT INTO sessions (id, stream, start, end, reason, duration_s, silent_s, genre_shares, "
                        "no_music_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET end = excluded.end, "
                        "reason = excluded.reason, duration_s = excluded.duration_s, silent_s = excluded.silent_s, "
                        "genre_shares = excluded.genre_shares, no_music_s = excluded.no_music_s",
                        (item.id, self._stream_id(con, ids, item.stream), item.start, item.end, item.reason,
                         item.duration_s, item.silent_s, _dumps(item.genre_shares), item.no_music_s))
            con.execute("COMMIT")
            self._written += len(items)
        except sqlite3.Error as exc:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            ids.clear()  # ids of streams inserted by the rolled-back batch are gone
            self._drop(len(items), f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _stream_id(con: sqlite3.Connection, ids: dict, name: str, genres=None) -> int:
        if genres:  # a session start: its model's genre order, the colours of later charts
            con.execute("INSERT INTO streams (name, genres) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                        "SET genres = excluded.genres", (name, _dumps(list(genres))))
        elif name not in ids:
            con.execute("INSERT OR IGNORE INTO streams (name) VALUES (?)", (name,))
        if name not in ids:
            ids[name] = con.execute("SELECT id FROM streams WHERE name = ?", (name,)).fetchone()[0]
        return ids[name]

    def _prune(self, con: sqlite3.Connection, now: float) -> None:
        cutoff = now - self.retention_days * DAY_S
        try:
            con.execute("BEGIN IMMEDIATE")
            n = con.execute("DELETE FROM minutes WHERE t < ?", (cutoff,)).rowcount
            n += con.execute("DELETE FROM sessions WHERE start < ? AND (end IS NULL OR end < ?)",
                             (cutoff, cutoff)).rowcount
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.warning("history %s: pruning failed (%s); tried again tomorrow", self.path, exc)
            return
        self._pruned += n
        if n:
            log.info("history %s: %d row(s) older than %g days deleted", self.path, n, self.retention_days)
