"""The terminal listener's run: open the input, the engine (here, or a server's) and the view, then
feed and show until the input ends, fails or Ctrl-C; the session summary last.

`run(args)` takes the parsed command line of `cli_listen.py` (its entry point) and returns the
exit code; problems it can name raise `CliError` (with the exit code). The engine is a
`stream.protocol.Engine`: a `StreamEngine` of the -m model, or with --server a `RemoteEngine`,
driven the same way.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time

from ui.history.flags import finish, open_history, record
from ui.options import engine_config
from ui.report import model_error, model_line

from .devices import open_input
from .sources import FileSource, MicSource, Source, too_short

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUDIO, EXIT_MODEL, EXIT_SERVER, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

DRAIN_TIMEOUT_S = 5.0  # at the end, wait at most this long for the last window's result
STALL_FACTOR, STALL_GRACE_S = 1.5, 10.0  # --duration: give up when audio lags wall time this much


class CliError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def open_source(args) -> Source:
    """The checked microphone or the probed file: input errors come first (no torch yet)."""
    if args.file is None:
        from stream.audio import validate_rate  # inside: numpy stays off the --help path (tests/test_cli.py)

        mic = open_input(args.device, args.samplerate, args.channels)
        try:  # the engine's own limits (the device may accept rates the engine does not)
            validate_rate(mic.rate)
        except ValueError as exc:
            raise CliError(EXIT_USAGE, f"--samplerate: {exc}") from None
        return MicSource(mic, args.duration)
    if not os.path.isfile(args.file):
        raise CliError(EXIT_AUDIO, f"--file {args.file!r}: no such file")
    from stream import AudioDecodeError, probe_file  # inside: the decoders stay off the --help path

    try:
        return FileSource(args.file, probe_file(args.file), args.fast, args.duration)
    except AudioDecodeError as exc:
        raise CliError(EXIT_AUDIO, f"--file {args.file!r}: {exc}") from None


def open_engine(args, source: Source, on_result):
    """The engine the command line names: a server's (--server) or the -m model's here."""
    return connect(args, source, on_result) if args.server else load_engine(args, source, on_result)


def load_engine(args, source: Source, on_result):
    """The model named by -m in a local StreamEngine (runs in the background unless --fast)."""
    from stream import ModelLoadError, StreamEngine, load_model  # inside: the engine stays off the --help path

    try:
        model = load_model(args.model)
    except ModelLoadError as exc:
        raise CliError(EXIT_MODEL, model_error(exc, "-m")) from None
    info(model_line(model))
    min_s = model.min_samples / model.sample_rate
    if source.duration_s is not None and (why := too_short(model.name, min_s, source.duration_s)):
        raise CliError(EXIT_AUDIO, f"--file {args.file!r} is {source.duration_s:.2f} s long: too short to "
                                   f"classify; {why} of audio. Use a longer recording")
    # the engine's warning about skipped windows speaks of its Python API; the listener says it in flags (watch)
    logging.getLogger("stream.engine").setLevel(logging.ERROR)
    try:
        return StreamEngine(model, engine_config(args), background=not (args.file and args.fast),
                            on_result=on_result)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None


def connect(args, source: Source, on_result):
    """--server: a RemoteEngine connected at the source's rate and channels."""
    from stream.client import RemoteEngine, ServerError  # inside: numpy, websockets stay off the --help path

    try:
        token = args.token or os.environ.get("GENRE_SERVER_TOKEN")
        # connection changes travel with the results, so the view shows them in order
        engine = RemoteEngine(args.server, args.server_options, token=token, on_result=on_result,
                              on_event=lambda m: info(f"cli_listen: {m}"), on_connection=on_result,
                              reconnect=args.reconnect)
        ready = engine.connect(source.rate, source.channels)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, f"--server: {exc}") from None
    except ServerError as exc:
        raise CliError(EXIT_USAGE if exc.kind == "rejected" else EXIT_SERVER, str(exc)) from None
    info(f"Server {args.server}: model {ready['model']}.")
    return engine


def listen(args, engine, source: Source, view, results: queue.Queue) -> tuple[str, int]:
    """Feed the source to the engine and show results until the input ends or fails, or
    Ctrl-C; then stop the input, classify the tail and close the engine. (reason, exit code)"""
    # Ctrl-C and SIGTERM only ask the loop to stop: an exception raised at an arbitrary point could
    # leave one of the engine's locks held, and closing it would then hang. A second one exits at once.
    stopping = threading.Event()

    def request_stop(signum, frame):
        if stopping.is_set():
            os._exit(EXIT_INTERRUPTED)
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    source.start(engine.feed)
    c = engine.config
    view.note(f"{source.title}; window {c.window_s:g} s, hop {c.hop_s:g} s, smoothing {c.smoothing_s:g} s. "
              "Ctrl-C to stop.")
    reason, code = "interrupted", EXIT_OK
    with view:
        try:
            reason, code = watch(args, engine, source, view, results, stopping)
        finally:
            source.stop()
            if reason != "interrupted" and code == EXIT_OK:  # end of input: the tail's result (bounded wait)
                engine.flush()
                engine.drain(max(DRAIN_TIMEOUT_S, 3 * engine.stats.inference_ms_p95 / 1000))
            show_pending(results, view)
            engine.close()
    return reason, code


def watch(args, engine, source: Source, view, results: queue.Queue, stopping) -> tuple[str, int]:
    """Show each result as it comes until a reason to stop (`stopping`: Ctrl-C or SIGTERM)."""
    t0, told_skip = time.monotonic(), False
    while not stopping.is_set():
        try:
            view.show(results.get(timeout=0.05))
        except queue.Empty:
            pass
        show_pending(results, view)
        view.refresh()
        if not told_skip and engine.stats.windows_skipped:
            told_skip = True
            info(f"note: the model is slower than the hop ({engine.config.hop_s:g} s) here, so some windows are "
                 "skipped (counted as 'skipped'); a larger --hop gives every hop a readout"
                 + (", and --fast classifies every window of a file" if args.file else "") + ".")
        stop = stop_reason(args, engine, source, time.monotonic() - t0)
        if stop:
            return stop
    return "interrupted", EXIT_OK


def stop_reason(args, engine, source: Source, elapsed: float) -> tuple[str, int] | None:
    if problem := source.failed():
        err(problem)
        return "input failed", EXIT_AUDIO
    if problem := engine.failed():
        err(problem)
        return "connection lost", EXIT_SERVER
    if source.finished():
        reached = args.duration is not None and source.seconds >= args.duration
        return ("duration reached" if reached else "end of file"), EXIT_OK
    # --duration counts audio received: a device can take a second or two to deliver its first block
    if args.file is None and args.duration is not None and elapsed > STALL_FACTOR * args.duration + STALL_GRACE_S:
        err(f"the input device delivered only {source.seconds:.1f} s of audio in {elapsed:.0f} s; "
            "is it stalled or suspended?")
        return "input stalled", EXIT_AUDIO
    return None


def show_pending(results: queue.Queue, view) -> None:
    while not results.empty():  # this thread is the only reader
        view.show(results.get_nowait())


def run(args) -> int:
    """The whole session; the exit code (CliError for what the command line can name)."""
    source, history = open_source(args), open_history(args)  # bad device/file/--history: fails before the model
    results: queue.Queue = queue.Queue()
    engine = open_engine(args, source, results.put)
    recorder = record(history, engine, args.history_name)
    from .view import open_view  # inside: rich stays off the --help path (tests/test_cli.py)

    view = open_view(engine, source, json_lines=args.json)
    reason, code = listen(args, engine, source, view, results)
    view.summary(reason, too_short=too_short(engine.model_name, engine.min_audio_s, source.seconds))
    finish(history, recorder, engine, reason)
    return code


def err(msg):
    print(f"cli_listen: error: {msg}", file=sys.stderr, flush=True)


def info(msg):
    print(msg, file=sys.stderr, flush=True)
