#!/usr/bin/env python3
"""The genre history's store (ui/history/store.py) under load, fed through its own API faster than
real time on a simulated wall clock.

    python -m bench.history                  # 64 streams x 10 minutes, then 64 streams x 1 day
    python -m bench.history --streams 16 --minutes 5 --day-streams 8

Part 1 (the issue's case): `--streams` recorders, each getting one readout per simulated second
(a 1 s hop) for `--minutes` minutes; a stream's genre follows a fixed-seed random walk (a
"track" of 2-6 minutes, one leading genre, a few seconds of others and of silence). The clock
moves one second for all streams at a time, so every simulated minute closes 64 rows at once.
Figures:
  readouts/s   `Recorder.add` calls per second of wall time, all streams together
  add p99/max  time one `add` took (the readout path's whole cost; it never waits for the disk)
  rows/s       minute rows written per second of wall time, from the first add until
               `flush()` returned (everything on disk, committed)
Part 2: the same for `--day-streams` streams over a whole simulated day (1440 minutes), for
  size/stream-day  the file's size (after the writer folded its WAL in) per stream and day
  query day/hour   `HistoryReader.buckets(name, day, step="hour")` for one stream: median of 20
Part 3: the writer alone: the same streams and day at one readout per simulated minute (a 60 s
  hop), so every `add` hands a finished row to the writer: rows/s is what the writer sustains.
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from stream.engine import Result
from ui.history.store import HistoryReader, HistoryStore

GENRES = ["Electronic", "Rock", "Pop", "Hip hop", "Funk & Soul", "Jazz", "Blues", "Folk & Country", "Classical"]
T0 = 1796083200.0  # 2026-12-01 00:00 UTC


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def readouts(seed: int, seconds: int):
    """(genre or None for silence) per second of one simulated stream."""
    rnd = random.Random(seed)
    out = []
    while len(out) < seconds:
        lead = rnd.choice(GENRES)
        for _ in range(rnd.randint(120, 360)):
            r = rnd.random()
            out.append(None if r < 0.03 else rnd.choice(GENRES) if r < 0.10 else lead)
    return out[:seconds]


def feed(store: HistoryStore, clock: Clock, streams: int, seconds: int, seed: int, hop: int = 1):
    """Every stream one readout per `hop` simulated seconds; (add times in s, wall seconds until flushed)."""
    plans = [readouts(seed + i, seconds) for i in range(streams)]
    recs = [store.recorder(f"stream-{i:03d}", float(hop), GENRES) for i in range(streams)]
    made = [Result({}, {}, None, 0.0, True, -60.0, 9.0, 0.0, 0.0)] + [
        Result({}, {}, g.lower(), 0.0, False, -20.0, 9.0, 5.0, 5.0, g, {}) for g in GENRES]
    index = {None: 0, **{g: i + 1 for i, g in enumerate(GENRES)}}
    times = []
    t_start = time.perf_counter()
    for s in range(0, seconds, hop):
        clock.t = T0 + s
        for rec, plan in zip(recs, plans):
            res = made[index[plan[s]]]
            res = Result(res.scores, res.raw_scores, res.label, float(s + hop), res.silent, res.level_dbfs,
                         res.window_s, res.inference_ms, res.latency_ms, res.genre, res.genre_scores)
            t0 = time.perf_counter()
            rec.add(res)
            times.append(time.perf_counter() - t0)
    for rec in recs:
        rec.close(None, "end of stream")
    assert store.flush(600), "the writer did not catch up within 10 minutes"
    return times, time.perf_counter() - t_start


def part1(folder: Path, streams: int, minutes: int) -> None:
    clock = Clock(T0)
    store = HistoryStore(folder / "ten-minutes.sqlite", clock=clock, max_pending=100_000)
    times, wall = feed(store, clock, streams, minutes * 60, seed=1)
    stats = store.stats
    store.close()
    rows = streams * minutes
    print(f"part 1: {streams} streams x {minutes} simulated minutes ({len(times)} readouts) in {wall:.2f} s wall")
    print(f"  readouts/s {len(times) / wall:,.0f}   add p50 {1e6 * statistics.median(times):.1f} us   "
          f"p99 {1e6 * sorted(times)[int(0.99 * len(times))]:.1f} us   max {1e3 * max(times):.2f} ms")
    print(f"  rows/s     {rows / wall:,.0f} minute rows (written {stats.written} items incl. session rows, "
          f"dropped {stats.dropped})")


def part3(folder: Path, streams: int) -> None:
    """The writer alone: one readout per simulated minute (a 60 s hop), so every add closes a row."""
    clock = Clock(T0)
    store = HistoryStore(folder / "writer.sqlite", clock=clock, max_pending=200_000)
    times, wall = feed(store, clock, streams, 86400, seed=200, hop=60)
    stats = store.stats
    store.close()
    print(f"part 3 (writer alone): {streams} streams x 1 day at one readout a minute: {streams * 1440} rows in "
          f"{wall:.1f} s wall = {streams * 1440 / wall:,.0f} rows/s; dropped {stats.dropped}")


def query_day(reader: HistoryReader, step: str, repeats: int):
    """stream-000's day in `step` buckets, asked `repeats` times: (the buckets, each query's seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = reader.buckets("stream-000", T0, T0 + 86400, step)
        times.append(time.perf_counter() - t0)
    return rows, times


def part2(folder: Path, streams: int) -> None:
    clock = Clock(T0)
    path = folder / "day.sqlite"
    store = HistoryStore(path, clock=clock, max_pending=200_000)
    times, wall = feed(store, clock, streams, 86400, seed=100)
    stats = store.stats
    store.close()  # folds the WAL into the file
    size = path.stat().st_size
    reader = HistoryReader(path)
    hours, q = query_day(reader, "hour", 20)
    assert len(hours) == 24, len(hours)
    minutes, qm = query_day(reader, "minute", 5)
    assert len(minutes) == 1440, len(minutes)
    print(f"part 2: {streams} streams x 1 simulated day ({streams * 1440} minute rows) in {wall:.1f} s wall; "
          f"rows/s {streams * 1440 / wall:,.0f}; dropped {stats.dropped}")
    print(f"  file {size / 1e6:.2f} MB = {size / streams / 1e3:.0f} kB per stream-day "
          f"({size / streams / 1440:.0f} B per minute row); 90 days x 64 streams: "
          f"{size / streams * 90 * 64 / 1e9:.2f} GB")
    print(f"  query one stream's day: per hour {1e3 * statistics.median(q):.1f} ms (median of 20), "
          f"per minute {1e3 * statistics.median(qm):.1f} ms (median of 5)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--day-streams", type=int, default=64, help="streams of part 2 (0: skip it)")
    p.add_argument("--dir", help="where the files go (default: a temporary folder; put it on the disk you mean)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        part1(Path(tmp), args.streams, args.minutes)
        if args.day_streams:
            part2(Path(tmp), args.day_streams)
            part3(Path(tmp), args.day_streams)


if __name__ == "__main__":
    main()
