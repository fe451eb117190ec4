"""--history FILE, --history-days N (and --history-name NAME for the page and the terminal
listener): the flags every front end that records takes, defined once, and opening the store
from them. Standard library only: `--help` stays fast."""
from __future__ import annotations

import argparse

from ui.options import number

from .store import NAME_MAX, HistoryError, HistoryStore, Recorder, check_history_name

DEFAULT_DAYS = 90.0


def add_history_flags(parser: argparse.ArgumentParser, name_default: str | None = None) -> None:
    """The history flags; `name_default` adds --history-name (a front end with one stream)."""
    g = parser.add_argument_group("history (what played when; README 'History')")
    g.add_argument("--history", metavar="FILE",
                   help="record the genres of every minute in this SQLite file (created if missing; "
                        "read it with genre-history)")
    g.add_argument("--history-days", type=number, default=DEFAULT_DAYS, metavar="N",
                   help=f"keep N days of history; older rows are deleted once a day [default {DEFAULT_DAYS:g}]")
    if name_default is not None:
        g.add_argument("--history-name", default=name_default, metavar="NAME",
                       help=f"the stream's name in the history (1-{NAME_MAX} characters) [default {name_default}]")


def history_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the history flags, one phrase each (empty: all fine)."""
    out = []
    if not args.history_days > 0:
        out.append(f"--history-days {args.history_days:g} must be a positive number of days")
    if getattr(args, "history_name", None) is not None:
        try:
            check_history_name(args.history_name)
        except ValueError as exc:
            out.append(f"--history-name: {exc}")
    return out


def open_history(args: argparse.Namespace, fail=None) -> HistoryStore | None:
    """The store of --history (None without it). Raises HistoryError (a ValueError) saying why
    the file cannot be used (a newer schema, not a database, damaged, locked), or, given
    `fail`, calls fail(message) instead (a command line's one-line exit)."""
    if not getattr(args, "history", None):
        return None
    try:
        return HistoryStore(args.history, retention_days=args.history_days)
    except HistoryError as exc:
        if fail is None:
            raise
        fail(str(exc))
        raise


def record(store: HistoryStore | None, engine, name: str | None = None, prefix: str = "stream") -> Recorder | None:
    """A session of `engine` in the history (None without a store): the engine's `on_result` is
    wrapped, so the recorder sees every readout and the front end's own callback still runs.
    Call before the first audio is fed."""
    if store is None:
        return None
    rec = store.recorder(name, engine.config.hop_s, getattr(engine, "genres", ()), prefix)
    shown = engine.on_result

    def on_result(res):
        rec.add(res)
        if shown is not None:
            shown(res)

    engine.on_result = on_result
    return rec


def finish(store: HistoryStore | None, recorder: Recorder | None, engine, reason: str) -> None:
    """The session's end (its summary, why it ended) recorded, and the store closed."""
    if recorder is not None:
        recorder.close(engine.summary(), reason)
    if store is not None:
        store.close()
