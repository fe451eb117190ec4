"""`genre-history` (also `python -m ui.history`): what played when, from a history file.

    genre-history FILE                                   # the streams recorded, first and last minute
    genre-history FILE --name shop --day 2026-12-01      # a table per hour
    genre-history FILE --name shop --day 2026-12-01 --png shop.png   # and the day as a chart
    genre-history FILE --name shop --from 2026-12-01T08:00Z --to 2026-12-01T20:00Z --step minute --json

The day chart (--png) gives each hour a bar as tall as the minutes heard in it: the genres'
minutes stacked in the page's genre colours (ui/colours.py, so a genre looks the same on the
page and in the chart), then minutes without music, then silence in grey.
Exit codes: 0 done, 2 bad arguments or a file that cannot be read (missing, not a history,
damaged, written by a newer version, locked), 3 nothing recorded for that stream and time.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

from ui.colours import NO_MUSIC_COLOUR, SILENCE_COLOUR, genre_colour
from ui.report import shares

from .store import STEPS, Bucket, HistoryError, HistoryReader, iso, parse_time, zone

PROG = "genre-history"
EXIT_OK, EXIT_USAGE, EXIT_EMPTY = 0, 2, 3


def hms(seconds: float) -> str:
    """"42:05" (m:ss) below an hour, "2:03:10" from one hour on."""
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="What played when: genre shares per hour from a "
                                "history file (written by --history).", epilog="Exit codes: 0 done, 2 bad "
                                "arguments or unusable file, 3 nothing recorded for that stream and time.")
    p.add_argument("file", metavar="FILE", help="the history file (SQLite)")
    p.add_argument("--name", help="the stream (without it: list the streams recorded)")
    p.add_argument("--day", help="a day, YYYY-MM-DD (default: today), in --tz")
    p.add_argument("--from", dest="start", metavar="TIME", help="instead of --day: from this time (ISO 8601 or Unix s)")
    p.add_argument("--to", dest="end", metavar="TIME", help="with --from: until this time (default: now)")
    p.add_argument("--step", choices=list(STEPS), default="hour", help="table rows per minute, hour or day "
                   "[default hour]")
    p.add_argument("--tz", default="UTC", help="time zone of --day, of times without one and of the table's "
                   "hours, e.g. Europe/Berlin [default UTC]")
    p.add_argument("--png", metavar="PATH", help="also draw the day as a chart into this PNG file (only with "
                   "--day); without it nothing is written")
    p.add_argument("--no-png", action="store_true", help=argparse.SUPPRESS)  # the old default's opt-out: a no-op
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    return p


def time_range(args, tz: tzinfo, now: float) -> tuple[float, float, str | None]:
    """(start, end, day) from --day or --from/--to; ValueError names the flag."""
    if args.start is not None or args.end is not None:
        if args.day is not None:
            raise ValueError("give --day or --from/--to, not both")
        if args.start is None:
            raise ValueError("--to needs --from")
        start = parse_time(args.start, tz)
        end = parse_time(args.end, tz) if args.end is not None else now
        if end <= start:
            raise ValueError(f"--to {args.end} is not after --from {args.start}")
        return start, end, None
    day = args.day or datetime.fromtimestamp(now, tz).date().isoformat()
    try:
        d = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=tz)
    except ValueError:
        raise ValueError(f"--day {day!r} is not a day; give YYYY-MM-DD, e.g. 2026-12-01") from None
    return d.timestamp(), (d + timedelta(days=1)).timestamp(), day


def table(rows: list[Bucket], step: str, tz: tzinfo) -> str:
    """One line per minute/hour/day: when, music, silence, the genres' shares."""
    fmt = {"minute": "%H:%M", "hour": "%H:00", "day": "%Y-%m-%d"}[step]
    none = any(b.no_music_s for b in rows)  # the column appears once some time had no music
    lines = [f"{'time':<10} {'music':>8}{' no music' if none else ''} {'silent':>8}  genres"]
    for b in rows:
        when = datetime.fromtimestamp(b.t, tz).strftime(fmt)
        lines.append(f"{when:<10} {hms(b.classified_s):>8}{f' {hms(b.no_music_s):>8}' if none else ''} "
                     f"{hms(b.silent_s):>8}  "
                     f"{shares(b.genre_shares, 5) or '-'}")
    return "\n".join(lines)


def _font(px: int):
    from PIL import ImageFont  # inside: Pillow is no declared dependency; only the chart needs it

    try:
        return ImageFont.load_default(size=px)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):  # older Pillow: its small bitmap font
        return ImageFont.load_default()


CHART_W, CHART_H = 1280, 640  # px: reads at 100 % on a laptop screen (1366 or 1440 wide)


@dataclass(frozen=True)
class ChartLayout:
    """Where `day_chart` draws: hour h's bar spans x0(h) .. x0(h) + bar - 1; a minute is
    `px_per_min` px tall, the axis (0 min) at y = bottom."""

    left: int
    bar: int
    gap: int
    bottom: int
    px_per_min: float
    size: tuple

    def x0(self, hour: int) -> int:
        return self.left + hour * (self.bar + self.gap)

    def y(self, minutes: float) -> float:
        return self.bottom - minutes * self.px_per_min


def hour_parts(b: Bucket, colours: dict) -> list[tuple[str, float]]:
    """An hour's bar from the bottom: (colour, minutes) per genre (largest first), then minutes
    without music (when the history counts them), then silence."""
    parts = [(colours[g], b.classified_s * share / 60) for g, share in b.genre_shares.items()]
    parts.append((NO_MUSIC_COLOUR, b.no_music_s / 60))
    parts.append((SILENCE_COLOUR, b.silent_s / 60))
    return [(c, m) for c, m in parts if m > 0]


def day_chart(path: Path, hours: list[Bucket], day_start: float, tz: tzinfo, order: list[str],
              title: str) -> ChartLayout:
    """The day as 24 bars, one per hour, each as tall as the minutes heard in it (a full hour
    reaches 60): the genres' minutes stacked in the page's colours (largest at the bottom),
    then minutes without music, then silence in grey; an hour nothing was recorded stays
    empty. Returns where it drew (the tests read the bars there)."""
    # inside: Pillow is no declared dependency (Gradio brings it); only the chart needs it
    from PIL import Image, ImageDraw

    genres = sorted({g for b in hours for g in b.genre_shares}, key=lambda g: (order.index(g) if g in order else 99, g))
    colours: dict = {}
    for g in genres:  # (genres the table does not name: spare colours, none twice in one chart)
        colours[g] = genre_colour(g, order, taken=colours.values())
    font, small = _font(18), _font(15)
    keys = [(colours[g], g) for g in genres]
    if any(b.no_music_s for b in hours):
        keys.append((NO_MUSIC_COLOUR, "no music"))
    keys.append((SILENCE_COLOUR, "silence"))
    per_row = 6
    legend_rows = (len(keys) + per_row - 1) // per_row
    left, top, gap = 76, 56, 8
    bottom = CHART_H - 60 - 30 * legend_rows
    bar = (CHART_W - left - 24 - 23 * gap) // 24
    lay = ChartLayout(left=left, bar=bar, gap=gap, bottom=bottom, px_per_min=(bottom - top) / 60,
                      size=(CHART_W, CHART_H))
    img = Image.new("RGB", lay.size, "white")
    d = ImageDraw.Draw(img)
    d.text((16, 14), title, fill="black", font=font)
    right = lay.x0(23) + bar
    for m in (0, 15, 30, 45, 60):
        y = round(lay.y(m))
        d.line([(left - 6, y), (right, y)], fill=(200, 200, 200) if m else (120, 120, 120))
        d.text((left - 10, y), f"{m} min", fill="black", font=small, anchor="rm")
    by_hour = {int((b.t - day_start) // 3600): b for b in hours}
    for h in range(24):
        x = lay.x0(h)
        if h % 3 == 0:
            d.text((x + bar // 2, bottom + 8), f"{h:02d}:00", fill="black", font=small, anchor="mt")
        b = by_hour.get(h)
        if b is None:
            continue
        done = 0.0
        for colour, minutes in hour_parts(b, colours):
            y0, y1 = lay.y(min(60.0, done + minutes)), lay.y(done)
            if round(y0) < round(y1):
                d.rectangle([x, round(y0), x + bar - 1, round(y1) - 1], fill=colour)
            done += minutes
    for i, (colour, name) in enumerate(keys):
        x, y = 16 + (i % per_row) * 205, bottom + 40 + 30 * (i // per_row)
        d.rectangle([x, y, x + 18, y + 18], fill=colour)
        d.text((x + 26, y + 9), name, fill="black", font=small, anchor="lm")
    img.save(path)
    return lay


def list_streams(reader: HistoryReader) -> int:
    names = reader.names()
    if not names:
        print(f"{reader.path}: nothing recorded yet")
        return EXIT_EMPTY
    for name in names:
        span = reader.span(name)
        print(f"{name}: {iso(span[0]) if span else '-'} .. {iso(span[1]) if span else '-'}")
    return EXIT_OK


def report(reader: HistoryReader, args, tz: tzinfo, start: float, end: float, day: str | None) -> int:
    rows = reader.buckets(args.name, start, end, args.step, tz)
    sessions = reader.sessions(args.name, start, end)
    if args.json:
        print(json.dumps({"name": args.name, "step": args.step, "from": iso(start), "to": iso(end),
                          "rows": [b.to_json() for b in rows], "sessions": [s.to_json() for s in sessions]}))
    when = day or f"{iso(start)} .. {iso(end)}"
    if not rows:
        known = reader.names()
        hint = "" if args.name in known else f"; streams recorded: {', '.join(known) or 'none'}"
        print(f"{PROG}: nothing recorded for {args.name!r} on {when} ({args.tz}){hint}", file=sys.stderr)
        return EXIT_EMPTY
    if not args.json:
        music, silent = sum(b.classified_s for b in rows), sum(b.silent_s for b in rows)
        no_music = sum(b.no_music_s for b in rows)
        without = f"{hms(no_music)} without music, " if no_music else ""
        print(f"{args.name}, {when} ({args.tz}): {hms(music)} of music, {without}{hms(silent)} silent, "
              f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}")
        print(table(rows, args.step, tz))
    if args.png:
        hours = rows if args.step == "hour" else reader.buckets(args.name, start, end, "hour", tz)
        path = Path(args.png)
        day_chart(path, hours, start, tz, reader.genres(args.name),
                  f"{args.name}, {day} ({args.tz}): minutes heard per hour, by genre")
        print(f"chart: {path}", file=sys.stderr)
    return EXIT_OK


def main(argv=None) -> int:
    """Console entry point (`genre-history`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            tz = zone(args.tz)
        except ValueError as exc:
            raise ValueError(f"--tz {exc}") from None
        if args.png and args.no_png:
            raise ValueError("give --png or --no-png, not both")
        reader = HistoryReader(args.file)
        if args.name is None:
            return list_streams(reader)
        now = datetime.now(timezone.utc).timestamp()
        start, end, day = time_range(args, tz, now)
        if args.png and day is None:
            raise ValueError("--png draws a day: give --day")
        return report(reader, args, tz, start, end, day)
    except (HistoryError, OSError) as exc:  # (OSError: the chart could not be written)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
