"""The flags every front end shares, defined once: the model and the engine settings.

`app.py`, `cli_listen.py` and `genre-serve` (ui/net/cli.py) add them with `add_model_flag` and
`add_engine_flags`, check them with `problems` (against `stream.config.RANGES`, the one set of
ranges every front end accepts) and turn them into an `EngineConfig` with `engine_config`.
Help texts come from EngineConfig's own docstring, so a flag and the setting it sets cannot
drift apart.
Importing this module imports neither numpy nor torch (`--help` answers at once).
"""
from __future__ import annotations

import argparse
import math
import os
import re

from stream.config import RANGES as FIELD_RANGES
from stream.config import EngineConfig

DEFAULTS = EngineConfig()

# stream.config.RANGES by flag name: the page's sliders, the listener's and the server's flags
# and the network API's query all accept these and nothing else.
RANGES = {field.removesuffix("_s"): span for field, span in FIELD_RANGES.items()}

MODEL_HELP = ("auto (the course model if cached or reachable, else the bundled offline MusiCNN), musicnn, "
              "a Hugging Face Hub id or a checkpoint directory")


def field_help(name: str) -> str:
    """The first sentence of EngineConfig's description of `name` (e.g. "smoothing_s")."""
    doc = EngineConfig.__doc__ or ""
    m = re.search(rf"^\s+{name}: (.+?)(?:\.\s|\n\s*\n|\Z)", doc, re.S | re.M)
    text = " ".join(m.group(1).split()).replace("`", "") if m else name
    return re.sub(r" \(default: [^()]*\)", "", text)  # the flag states its own default


def number(text: str) -> float:
    """argparse type: a finite number (range checks are `problems`' job, so they can be joined)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_model_flag(parser: argparse.ArgumentParser, env: str | None = None) -> None:
    """-m/--model; `env` names an environment variable that sets the default (Spaces)."""
    default = os.environ.get(env, "auto") if env else "auto"
    where = f" [env {env}; default {default}]" if env else f" [default {default}]"
    parser.add_argument("-m", "--model", default=default, help=MODEL_HELP + where)


def add_engine_flags(parser: argparse.ArgumentParser, ranges: dict = RANGES) -> None:
    """-w/--window, --hop, -s/--smoothing, -k/--top-k, --silence-dbfs; `ranges` only adds the
    allowed ranges to the help, `problems` enforces them."""

    def span(key):
        lo, hi = ranges.get(key, (None, None))
        return f"; {lo:g}-{hi:g}" if lo is not None else ""

    g = parser.add_argument_group("engine settings")
    g.add_argument("-w", "--window", type=number, metavar="S",
                   help=f"{field_help('window_s')}{span('window')} [default: the model's]")
    g.add_argument("--hop", type=number, metavar="S",
                   help=f"{field_help('hop_s')}{span('hop')} [default: the model's]")
    g.add_argument("-s", "--smoothing", type=number, metavar="S", default=DEFAULTS.smoothing_s,
                   help=f"{field_help('smoothing_s')}{span('smoothing')} [default {DEFAULTS.smoothing_s:g}]")
    top_k = field_help("top_k")
    g.add_argument("-k", "--top-k", type=int, metavar="N", default=DEFAULTS.top_k,
                   help=f"{top_k}{span('top_k')} [default {DEFAULTS.top_k}]")
    g.add_argument("--silence-dbfs", type=number, metavar="DB", default=DEFAULTS.silence_dbfs,
                   help=f"windows quieter than this are reported as silence, not classified "
                        f"[default {DEFAULTS.silence_dbfs:g}]")


def problems(args: argparse.Namespace, ranges: dict = RANGES) -> list[str]:
    """What is wrong with the engine flags, one phrase each naming the flag and what it
    accepts (empty: all fine)."""
    out = []
    for flag, value in (("--window", args.window), ("--hop", args.hop)):
        if value is not None and value <= 0:
            out.append(f"{flag} {value:g} must be a positive number of seconds")
    if args.smoothing < 0:
        out.append(f"--smoothing {args.smoothing:g} must be 0 (off) or more seconds")
    if args.top_k < 0:
        out.append(f"--top-k {args.top_k} must be 0 (all) or more")
    if args.silence_dbfs > 0:
        out.append(f"--silence-dbfs {args.silence_dbfs:g} must be a level below 0 dBFS")
    for key, (lo, hi) in ranges.items():
        flag, value = f"--{key.replace('_', '-')}", getattr(args, key)
        said = any(p.startswith(f"{flag} ") for p in out)  # one message per flag
        if value is not None and not lo <= value <= hi and not said:
            out.append(f"{flag} {value:g} is outside {span_text(key, lo, hi)}")
    return out


def span_text(key: str, lo: float, hi: float) -> str:
    """A range as the refusals say it: "3..30 s", "0..10 (0 = all)"."""
    return f"{lo:g}..{hi:g}" + (" (0 = all)" if key == "top_k" and lo == 0 else " s")


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The EngineConfig the flags describe; a window shorter than the first readout's
    `min_window_s` also shortens that, so the first readout is a full window."""
    min_window = DEFAULTS.min_window_s if args.window is None else min(DEFAULTS.min_window_s, args.window)
    return EngineConfig(window_s=args.window, hop_s=args.hop, min_window_s=min_window,
                        smoothing_s=args.smoothing, top_k=args.top_k, silence_dbfs=args.silence_dbfs)
