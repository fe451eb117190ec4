"""Live music-genre classifier: a Gradio page over the `stream` engine (the page is ui/web/).

    python app.py [--model auto|musicnn|HUB_ID|DIR] [--host 127.0.0.1] [--port 7860] [--share]
                  [--window 9] [--hop 1] [--smoothing 4] [--top-k 5] [--history FILE]

`python app.py` builds the page from its command line and serves it. Imported (a Hugging Face
Space, `gradio app.py`), the module builds `demo` on first use from the environment's settings
(GENRE_MODEL, GRADIO_SERVER_NAME/PORT, GENRE_MAX_FILE_MB/MINUTES).

Start-up: the command line is checked, and the port tried, before torch and Gradio are
imported and the model is loaded, so `--help` and mistakes answer at once. Exit codes:
2 bad arguments (or a --history file it cannot use), 3 the port cannot be used, 4 the model
could not be loaded (one line on stderr each).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ui.history.flags import add_history_flags, history_problems, open_history
from ui.options import add_engine_flags, add_model_flag, problems
from ui.web.flags import add_page_flags, page_problems, port_problem

EXIT_USAGE, EXIT_PORT, EXIT_MODEL = 2, 3, 4


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None) -> argparse.Namespace:
    """The page's settings from the command line (and, on a Space, the environment). Values
    the page cannot use (engine settings outside `stream.config.RANGES` too) exit with status
    2 and one line saying which and why."""
    p = _Parser(prog=_prog(), description="Live music-genre classifier (Gradio page).")
    add_model_flag(p, env="GENRE_MODEL")
    add_page_flags(p)
    add_engine_flags(p)
    add_history_flags(p, name_default="page")
    args = p.parse_args(argv)
    if bad := problems(args) + page_problems(args) + history_problems(args):
        p.error("; ".join(bad))
    return args


def _prog() -> str:  # "app.py", or the console script's name
    return Path(sys.argv[0]).name if __name__ == "__main__" and sys.argv and sys.argv[0] else "app.py"


def _fail(code: int, message: str):
    print(f"{_prog()}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


_CLI_ARGS = None
if __name__ == "__main__":  # before the heavy imports below: --help and mistakes answer at once
    _CLI_ARGS = parse_args(sys.argv[1:])
    if (_problem := port_problem(_CLI_ARGS.host, _CLI_ARGS.port)) is not None:
        _fail(EXIT_PORT, _problem)

from stream import ModelLoadError, load_model  # noqa: E402  (torch and gradio take seconds to import)
from ui.report import model_error, model_line  # noqa: E402
from ui.web.page import build_demo, launch  # noqa: E402

log = logging.getLogger("app")


def _load(spec: str):
    """The model, or exit 4 with one line phrased for this command line."""
    try:
        return load_model(spec)
    except ModelLoadError as exc:
        _fail(EXIT_MODEL, model_error(exc))  # phrased for this command line, not the Python API
    except (OSError, ValueError) as exc:
        _fail(EXIT_MODEL, f"cannot load model {spec!r}: {exc}")


def __getattr__(name):
    """Imported (a Space, `gradio app.py`): `demo` (and ARGS, MODEL) are built on first use,
    from the environment's settings; `python app.py` and main() build them from their own."""
    if name in ("demo", "ARGS", "MODEL"):
        global ARGS, MODEL, demo
        ARGS = parse_args([])
        MODEL = load_model(ARGS.model)
        demo = build_demo(MODEL, ARGS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv=None) -> None:
    """Start the page: settings and port are checked before the model loads; each start-up
    failure is one line on stderr and an exit code (see the module docstring)."""
    global ARGS, MODEL, demo
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv is None and _CLI_ARGS is not None:  # `python app.py`: checked before the imports
        args = _CLI_ARGS
    else:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if (problem := port_problem(args.host, args.port)) is not None:
            _fail(EXIT_PORT, problem)
    history = open_history(args, fail=lambda why: _fail(EXIT_USAGE, why))  # before the model loads
    model = _load(args.model)
    log.info("%s", model_line(model))
    ARGS, MODEL, demo = args, model, build_demo(model, args, history)
    try:
        launch(demo, args)
    except OSError as exc:  # the port was taken while the model loaded
        _fail(EXIT_PORT, f"cannot listen on {args.host}:{args.port}: {exc}")
    finally:
        if history is not None:  # the open recordings' last minutes, the sessions' ends
            history.close()


if __name__ == "__main__":
    main()
