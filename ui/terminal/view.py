"""What the listener shows: a rich live panel in a terminal, else one line per result.

`open_view` picks the output: the panel when stdout is a terminal, JSON records (--json) or
plain text lines when it is a pipe. All three offer the same calls (`with view:`, `show`,
`refresh`, `summary`) and word everything through `ui.report`, so a kiosk reading --json
and a person reading the terminal see the same figures.
"""
from __future__ import annotations

import math
import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ui.report import confidence, dumps, result_line, summary_text

REDRAW_S = 0.2  # the panel redraws at most this often
STALE_S = 2.0  # the level meter says "no audio" after this long without a block


def open_view(engine, source, json_lines: bool = False):
    """The live panel for a terminal, else `Lines` (JSON with json_lines)."""
    if sys.stdout.isatty() and not json_lines:
        return LiveView(engine, source)
    return Lines(engine, source, json_lines)


class Lines:
    """One line per result on stdout (a pipe, a kiosk): `Result.to_json` records or `result_line` text."""

    def __init__(self, engine, source, json_lines: bool = False):
        self.engine, self.source, self.json = engine, source, json_lines

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def counters(self) -> dict:
        return {"overflows": self.source.overflows, "dropped_blocks": self.source.dropped}

    def outages(self) -> dict:
        """A --server engine's disconnections and the audio lost meanwhile (none: {})."""
        n = self.engine.disconnects
        return {"disconnects": n, "audio_lost_s": round(self.engine.lost_s, 2)} if n else {}

    def connection(self, record: dict) -> None:
        """A --server connection change: {"event": "disconnected" | "reconnected", ...}."""
        if self.json:
            print(dumps(record), flush=True)
        elif record["event"] == "disconnected":
            print(f"disconnected — reconnecting ({record.get('reason')})", flush=True)
        else:
            print(f"reconnected after {record.get('outage_s', 0):.1f} s ({record.get('lost_s', 0):.1f} s of audio "
                  "lost while disconnected so far)", flush=True)

    def show(self, res) -> None:
        if isinstance(res, dict):  # a connection change, queued with the results
            return self.connection(res)
        if self.json:
            print(dumps(res.to_json(**self.counters())), flush=True)
        else:
            print(result_line(res, self.engine.stats, overflows=self.source.overflows), flush=True)

    def refresh(self) -> None:
        pass

    def note(self, text: str) -> None:
        """A line for the person watching (what is being listened to, how to stop): on stderr,
        so stdout stays the readouts'."""
        print(text, file=sys.stderr, flush=True)

    def summary(self, reason: str, too_short: str | None = None) -> None:
        """The session summary: text on stdout; with --json its record there and the text on stderr."""
        s, st = self.engine.summary(), self.engine.stats
        text = summary_text(s, st, reason, received_s=self.source.seconds, too_short=too_short, **self.counters())
        if out := self.outages():
            text += (f"\nDisconnected {out['disconnects']} time{'s' if out['disconnects'] > 1 else ''}: "
                     f"{out['audio_lost_s']:.1f} s of audio lost while disconnected.")
        if self.json:
            print(dumps(s.to_json(st, reason, **self.counters(), **self.outages())), flush=True)
        self._say(text, sys.stderr if self.json else sys.stdout)

    def _say(self, text: str, file) -> None:
        print(text, file=file, flush=True)


def bar(frac: float, width: int) -> str:
    """A horizontal bar `width` cells wide, filled to `frac` in eighths of a cell."""
    frac = min(max(frac, 0.0), 1.0)
    full, part = divmod(int(round(frac * width * 8)), 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "") + " " * (width - full - (1 if part else 0))


class LiveView(Lines):
    """rich live display: a bar per genre (the leader first, its leading style beside its bar),
    the headline, level meter and counters.

    The panel keeps one width (WIDTH, or the terminal's if narrower) whatever it shows, every
    line is cut rather than wrapped, and the genre rows are capped to the terminal height
    ("+N more"), so rich can always redraw it in place: a panel taller than the terminal, or
    one that changes width, leaves stale lines above it."""

    WIDTH = 80
    MAX_LABEL = 20  # the genre column grows to the longest name seen, up to this
    OTHER_LINES = 8  # borders, head, level, two counter lines, "Ctrl-C", one spare for the cursor
    LINE = dict(no_wrap=True, overflow="ellipsis")

    def __init__(self, engine, source, console=None):
        super().__init__(engine, source)
        self.console = console or Console()
        self.latest = None
        # (a --server RemoteEngine knows neither its genres nor its labels: default widths)
        genres = engine.genres or engine.visible_labels
        self.label_w = min(max((len(g) for g in genres), default=10), self.MAX_LABEL)
        level = engine.genre_level
        styles = [l for l in engine.visible_labels if level is None or l in level.genre_of]
        self.style_w = 0 if level is not None and not level.has_styles else min(max((len(l) for l in styles),
                                                                                    default=12), 16)
        self.next_draw = 0.0
        self.link = None  # the "disconnected" record of an outage in progress
        # stderr lines (errors, warnings) print above the panel, not through it
        self.live = Live(console=self.console, auto_refresh=False, transient=False,
                         redirect_stderr=sys.stderr.isatty())

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.render()  # the final counters stay on screen
        self.live.__exit__(*exc)

    def show(self, res) -> None:
        if isinstance(res, dict):
            self.link = res if res["event"] == "disconnected" else None
            return
        self.latest = res
        # a --server engine learns its genres from the results: widen the column to fit them
        # (the panel keeps its width; the bars give way)
        names = (res.genre_scores or res.scores) if not res.silent else {}
        self.label_w = max(self.label_w, min(max((len(n) for n in names), default=0), self.MAX_LABEL))

    def note(self, text: str) -> None:
        """On the panel's own stream, above it: a line on stderr could reach the terminal after
        the panel's first frame has started, leaving the two on one line."""
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def _say(self, text: str, file) -> None:
        # through rich, wrapped between words at the terminal's width (a terminal cuts mid-word)
        Console(file=file, highlight=False).print(text, markup=False)

    def refresh(self) -> None:
        if time.monotonic() >= self.next_draw:
            self.render()
            self.next_draw = time.monotonic() + REDRAW_S

    def render(self) -> None:
        width = min(self.WIDTH, self.console.size.width)
        # borders and padding, genre, two gaps, "0.29", the leading style and its gap
        bar_w = max(width - 4 - self.label_w - 2 - 4 - (self.style_w + 1 if self.style_w else 0), 5)
        head, rows, more = self._scores(bar_w)
        parts = [head, rows]
        if self.link is not None:  # the bars above are the last readout before the outage
            parts.insert(0, Text("disconnected — reconnecting (the readout below is from before)",
                                 style="bold red", **self.LINE))
        if more:
            parts.append(Text(f"+{more} more (-k N shows the top N)", style="dim", **self.LINE))
        parts += [self._level(min(20, bar_w)), *self._counters(), Text("Ctrl-C to stop", style="dim", **self.LINE)]
        self.live.update(Panel(Group(*parts), title=self.source.title, width=width), refresh=True)

    def _scores(self, bar_w: int):
        """(head line, table of genre bars, how many rows did not fit or None). Records without
        a genre level (an older server's) show the label bars instead."""
        res, line = self.latest, self.LINE
        rows = Table.grid(padding=(0, 1))
        rows.add_column(justify="right", width=self.label_w, **line)
        rows.add_column(width=bar_w, **line)
        rows.add_column(justify="right", width=4, **line)
        if self.style_w:
            rows.add_column(width=self.style_w, **line)
        if res is None:
            return Text("listening… (first readout after a few seconds of audio)", style="dim", **line), rows, None
        if res.silent:
            return Text(f"silence ({res.level_dbfs:.0f} dBFS): no genre claimed", style="yellow", **line), rows, None
        if res.no_music:  # a voice, a crowd, a fan: no genre named
            talk = "  (someone is talking)" if res.talk else ""
            return Text.assemble(("no music", "bold grey50"), (talk, "grey50"), **line), rows, None
        by_genre = bool(res.genre_scores)
        items, more = list((res.genre_scores if by_genre else res.scores).items()), None  # the leader first
        leader = res.genre if by_genre else res.label
        style = res.label if by_genre and res.label != res.genre else None
        room = max(self.console.size.height - self.OTHER_LINES - (self.link is not None), 2)
        if len(items) > room:
            items, more = items[: room - 1], len(items) - (room - 1)
        for name, p in items:
            cells = [name, Text(bar(p, bar_w), style="green" if name == leader else "cyan"), f"{p:.2f}"]
            if self.style_w:
                cells.append(Text(style or "", style="green") if name == leader else "")
            rows.add_row(*cells)
        head = [("Leading genre: ", "bold"), (leader or "-", "bold green")]
        if style:
            head += [("   style: ", "bold"), (style, "green")]
        sure = confidence(res)
        if sure:
            head += [(f"   {sure}", "dim")]
        return Text.assemble(*head, **line), rows, more

    def _level(self, bar_w: int):
        meter, lvl = self.source.meter, self.source.meter.peak_dbfs
        frac = 0.0 if not math.isfinite(lvl) else (max(lvl, -60.0) + 60.0) / 60.0
        style = "red" if lvl > -1 else "green" if lvl > -40 else "yellow"
        level = Text.assemble(("input ", "bold"), (bar(frac, bar_w), style),
                              f" {lvl:6.1f} dBFS" if math.isfinite(lvl) else "   -inf dBFS", **self.LINE)
        if meter.updated is None or time.monotonic() - meter.updated > STALE_S:
            level.append("  (no audio yet)" if self.source.seconds == 0 else "  (no audio for >2 s)", style="yellow")
        return level

    def _counters(self):
        st, src = self.engine.stats, self.source
        timing = Text(f"t {src.seconds:6.1f} s   inference {st.inference_ms_mean:4.0f} ms (p95 {st.inference_ms_p95:.0f})"
                      f"   rtf {st.real_time_factor:.2f}   lag {st.lag_s:.1f} s", style="dim", **self.LINE)
        counts = Text(f"silent windows {st.windows_silent}   skipped {st.windows_skipped}   "
                      f"overflows {src.overflows}   dropped blocks {src.dropped}",
                      style="bold red" if src.overflows + src.dropped else "dim", **self.LINE)
        return timing, counts
