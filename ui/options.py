"""The flags every front end shares, derived from one table: the model and the engine settings.

`app.py`, `cli_listen.py` and `genre-serve` (ui/net/cli.py) add them with `add_model_flag` and
`add_engine_flags`, check them with `problems` and turn them into an `EngineConfig` with
`engine_config`. Flags, help texts, defaults and ranges all come from `stream.config.SETTINGS`,
the table the page's sliders and the network API's query are built from too, so no face can
drift from another. The model flag's help lists the bundled models (`stream.registry`).
Importing this module imports neither numpy nor torch (`--help` answers at once).
"""
from __future__ import annotations

import argparse
import math
import os

from stream.config import BY_KEY, FACE_SETTINGS, EngineConfig, configure
from stream.registry import model_help

DEFAULTS = EngineConfig()

# the spans every face accepts, by flag name (the settings' keys): {"window": (3, 30), ...}
RANGES = {s.key: s.span for s in FACE_SETTINGS if s.span is not None}

MODEL_HELP = model_help()


def number(text: str) -> float:
    """argparse type: a finite number (range checks are `problems`' job, so they can be joined)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_model_flag(parser: argparse.ArgumentParser, env: str | None = None, default: str = "auto") -> None:
    """-m/--model, its help listing the models (`stream.registry`); `env` names an environment
    variable that sets the default (Spaces)."""
    default = os.environ.get(env, default) if env else default
    where = f" [env {env}; default {default}]" if env else f" [default {default}]"
    parser.add_argument("-m", "--model", default=default, help=MODEL_HELP + where)


def flag_help(key: str, ranges: dict = RANGES) -> str:
    """A setting's --help: the table's line, the range every face accepts, the default."""
    s = BY_KEY[key]
    span = ranges.get(key)
    shown = f"; {span[0]:g}-{span[1]:g}" if span is not None else ""
    default = "the model's" if s.default is None else f"{s.default:g}"
    return f"{s.help}{shown} [default: {default}]"


def add_engine_flags(parser: argparse.ArgumentParser, ranges: dict = RANGES) -> None:
    """The engine settings' flags (-w/--window, --hop, -s/--smoothing, -k/--top-k,
    --silence-dbfs); `ranges` only adds the allowed ranges to the help, `problems` enforces them."""
    g = parser.add_argument_group("engine settings")
    for s in FACE_SETTINGS:
        g.add_argument(*s.flags, dest=s.key, type=number if s.kind is float else int, metavar=s.metavar,
                       default=s.default, help=flag_help(s.key, ranges))


def problems(args: argparse.Namespace, ranges: dict = RANGES) -> list[str]:
    """What is wrong with the engine flags, one phrase each naming the flag and what it
    accepts (empty: all fine)."""
    out = []
    for s in FACE_SETTINGS:
        value = getattr(args, s.key)
        if value is not None and (p := s.problem(value, ranges.get(s.key), name=f"{s.flags[-1]} {value:g}")):
            out.append(p)
    return out


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The EngineConfig the flags describe (`stream.config.configure`: a short window also
    shortens the first readout's `min_window_s`)."""
    return configure(**{s.key: getattr(args, s.key) for s in FACE_SETTINGS})
