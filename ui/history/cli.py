"""`genre-history` (also `python -m ui.history`): what played when, from a history file.

    genre-history FILE                                   # the streams recorded, first and last minute
    genre-history FILE --name shop --day 2026-12-01      # a table per hour, and shop-2026-12-01.png
    genre-history FILE --name shop --from 2026-12-01T08:00Z --to 2026-12-01T20:00Z --step minute --json

The day chart stacks each hour's genre shares (of the time music played in it) in the page's
genre colours (ui/colours.py), so a genre looks the same on the page and in the chart.
Exit codes: 0 done, 2 bad arguments or a file that cannot be read (missing, not a history,
damaged, written by a newer version, locked), 3 nothing recorded for that stream and time.
"""
from __future__ import annotations

import argparse
import json
import sys
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
    p.add_argument("--png", metavar="PATH", help="day chart file [default NAME-DAY.png; only with --day]")
    p.add_argument("--no-png", action="store_true", help="print the table only")
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


def day_chart(path: Path, hours: list[Bucket], day_start: float, tz: tzinfo, order: list[str], title: str) -> None:
    """The day as 24 bars, each hour's genre shares stacked (largest at the bottom) in the
    genres' colours, over the time with sound: the grey part on top is the hour's time without
    music (talk, noise); a thin grey strip under a bar is the hour's silence."""
    # inside: Pillow is no declared dependency (Gradio brings it); only the chart needs it
    from PIL import Image, ImageDraw, ImageFont

    genres = sorted({g for b in hours for g in b.genre_shares}, key=lambda g: (order.index(g) if g in order else 99, g))
    colours: dict = {}
    for g in genres:  # (genres the table does not name: spare colours, none twice in one chart)
        colours[g] = genre_colour(g, order, taken=colours.values())
    bar, gap, left, top, height = 26, 6, 44, 34, 240
    legend_rows = (len(genres) + 4) // 4  # (+ "no music")
    img = Image.new("RGB", (left + 24 * (bar + gap) + 16, top + height + 40 + 18 * legend_rows), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    d.text((8, 8), title, fill="black", font=font)
    for pct in (0, 50, 100):
        y = top + height - height * pct // 100
        d.line([(left - 4, y), (left + 24 * (bar + gap), y)], fill=(225, 225, 225))
        d.text((6, y - 6), f"{pct:>3}%", fill="black", font=font)
    by_hour = {int((b.t - day_start) // 3600): b for b in hours}
    for h in range(24):
        x = left + h * (bar + gap)
        if h % 3 == 0:
            d.text((x, top + height + 10), f"{h:02d}", fill="black", font=font)
        b = by_hour.get(h)
        if b is None:
            continue
        y = float(top + height)
        heard = b.classified_s + b.no_music_s
        music = b.classified_s / heard if heard else 1.0
        for g, share in b.genre_shares.items():  # highest first: the largest share at the bottom
            y0 = y - share * music * height
            d.rectangle([x, round(y0), x + bar - 1, round(y) - 1], fill=colours[g])
            y = y0
        if b.no_music_s:
            d.rectangle([x, round(y - (1 - music) * height), x + bar - 1, round(y) - 1], fill=NO_MUSIC_COLOUR)
        if b.silent_s:
            strip = max(1, round(6 * b.silent_s / (b.silent_s + b.classified_s)))
            d.rectangle([x, top + height + 2, x + bar - 1, top + height + 1 + strip], fill=SILENCE_COLOUR)
    if any(b.no_music_s for b in hours):
        colours, genres = {**colours, "no music": NO_MUSIC_COLOUR}, genres + ["no music"]
    for i, g in enumerate(genres):
        x, y = 8 + (i % 4) * 200, top + height + 30 + 18 * (i // 4)
        d.rectangle([x, y, x + 14, y + 12], fill=colours[g])
        d.text((x + 20, y), g, fill="black", font=font)
    img.save(path)


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
    if day is not None and not args.no_png:
        hours = rows if args.step == "hour" else reader.buckets(args.name, start, end, "hour", tz)
        path = Path(args.png or f"{args.name}-{day}.png")
        day_chart(path, hours, start, tz, reader.genres(args.name),
                  f"{args.name} - {day} ({args.tz}): genre shares per hour")
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
