#!/usr/bin/env python3
"""Live music-genre readout from a microphone (or a file replayed in real time).

Opens an input device with sounddevice at the device's native rate and feeds every block to the
streaming engine (`stream.StreamEngine`), which resamples, windows, classifies and smooths. Shows
a bar per genre, the leading genre, an input level meter, inference time / real-time factor and
silence / overflow counts. Ctrl-C stops with a session summary.

Examples:
  python cli_listen.py                      # default microphone, live display
  python cli_listen.py -l                   # list audio devices
  python cli_listen.py -d USB --hop 0.5     # first input device whose name contains "USB"
  python cli_listen.py --json | kiosk-app   # one JSON object per result on stdout
  python cli_listen.py --file song.mp3      # replay a file in real time (--fast: at once)

Exit codes: 0 ok (also after Ctrl-C), 1 unexpected error, 2 bad arguments (or a --history file it
cannot use), 3 audio input problem (no PortAudio, no/unknown/busy device, unsupported settings,
stream died, unreadable --file), 4 the model could not be loaded, 5 --server: the server could not
be reached, refused the stream (token, origin, busy) or the connection was lost (after retries
with --reconnect), 130 interrupted before listening.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time

from ui.history.flags import HistoryError, add_history_flags, finish, history_problems, open_history, record
from ui.options import DEFAULTS, add_engine_flags, add_model_flag, engine_config, number, problems
from ui.report import model_error, model_line
from ui.terminal.devices import DeviceError, list_devices, open_input
from ui.terminal.sources import FileSource, MicSource, Source, too_short

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUDIO, EXIT_MODEL, EXIT_SERVER, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

DRAIN_TIMEOUT_S = 5.0  # at the end, wait at most this long for the last window's result
STALL_FACTOR, STALL_GRACE_S = 1.5, 10.0  # --duration: give up when audio lags wall time this much
SERVER_OPTIONS = ("window", "hop", "smoothing", "top_k")  # engine flags a genre server takes per stream


class CliError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Stop(Exception):
    """SIGTERM: stop like Ctrl-C (kiosk supervisors send it)."""


def int_or_str(text):
    """Helper for argparse: a device index or a name substring."""
    try:
        return int(text)
    except ValueError:
        return text


def parse_args(argv):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-l", "--list-devices", action="store_true", help="show the list of audio devices and exit")
    args, remaining = parser.parse_known_args(argv)
    if args.list_devices:
        print(list_devices())
        parser.exit(EXIT_OK)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[parser])
    parser.add_argument("-d", "--device", type=int_or_str, help="input device (numeric index or name substring)")
    parser.add_argument("-r", "--samplerate", type=int, help="sampling rate (default: the device's native rate)")
    parser.add_argument("-c", "--channels", type=int, help="number of input channels (default: 1, or 2 where the "
                        "device cannot record mono); the engine mixes them to mono")
    add_model_flag(parser)
    add_engine_flags(parser)
    parser.add_argument("-t", "--duration", type=number, help="stop after this many seconds of audio")
    parser.add_argument("--json", action="store_true", help="print one JSON object per result on stdout")
    parser.add_argument("-f", "--file", metavar="PATH", help="replay an audio file through the live engine in real time")
    parser.add_argument("--fast", action="store_true", help="with --file: as fast as possible")
    parser.add_argument("--server", metavar="ws://HOST:PORT",
                        help="send the audio to a genre server (genre-serve) instead of loading a model")
    parser.add_argument("--token", help="with --server: its access token (default: env GENRE_SERVER_TOKEN)")
    parser.add_argument("--reconnect", action="store_true", help="with --server: keep reconnecting (probing every "
                        "2 s at most; audio meanwhile is lost and counted) instead of exiting")
    parser.add_argument("--name", help="with --server: name the stream, so screens can watch it (kiosk: ?watch=NAME)")
    add_history_flags(parser, name_default="listen")
    args = parser.parse_args(remaining)
    bad = problems(args) + history_problems(args)
    if args.duration is not None and args.duration <= 0:
        bad.append(f"--duration {args.duration:g} must be a positive number of seconds")
    if (args.reconnect or args.token or args.name) and not args.server:
        bad.append("--reconnect, --token and --name only apply to --server")
    if args.server and args.silence_dbfs != DEFAULTS.silence_dbfs:
        bad.append("--silence-dbfs does not apply to --server (the server's own setting holds)")
    if args.fast and not args.file:
        bad.append("--fast only applies to --file")
    if args.channels is not None and args.channels < 1:
        bad.append("--channels must be at least 1")
    if bad:
        parser.error("; ".join(bad))
    # --server sends the engine flags given, the others keep the server's own defaults (argparse
    # leaves attributes that are already set alone, so this parse shows which flags were given)
    given = parser.parse_args(remaining, argparse.Namespace(**dict.fromkeys(SERVER_OPTIONS)))
    args.server_options = {k: v for k in SERVER_OPTIONS if (v := getattr(given, k)) is not None}
    args.server_options |= {"name": args.name} if args.name else {}  # screens watch the stream by it
    return args


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


def load_engine(args, source: Source, on_result):
    """The model named by -m in a local StreamEngine (runs in the background unless --fast)."""
    from stream import ModelLoadError, StreamEngine, load_model  # inside: the engine stays off the --help path

    try:
        model = load_model(args.model)
    except ModelLoadError as exc:
        raise CliError(EXIT_MODEL, model_error(exc, "-m")) from None
    info(model_line(model))
    if source.duration_s is not None and (why := too_short(model, source.duration_s)):
        raise CliError(EXIT_AUDIO, f"--file {args.file!r} is {source.duration_s:.2f} s long: too short to "
                                   f"classify; {why} of audio. Use a longer recording")
    # the engine's warning about skipped windows speaks of its Python API; the CLI says it in flags (watch)
    logging.getLogger("stream.engine").setLevel(logging.ERROR)
    try:
        return StreamEngine(model, engine_config(args), background=not (args.file and args.fast),
                            on_result=on_result)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None


def connect(args, source: Source, on_result):
    """--server: a RemoteEngine (ui/net/client.py) connected at the source's rate and channels."""
    from ui.net.client import RemoteEngine, ServerError  # inside: numpy, websockets stay off the --help path

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
    if args.server and (problem := engine.failed()):
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
    source, history = open_source(args), open_history(args)  # bad device/file/--history: fails before the model
    results: queue.Queue = queue.Queue()
    engine = connect(args, source, results.put) if args.server else load_engine(args, source, results.put)
    recorder = record(history, engine, args.history_name)
    from ui.terminal.view import open_view  # inside: rich stays off the --help path (tests/test_cli.py)

    view = open_view(engine, source, json_lines=args.json)
    reason, code = listen(args, engine, source, view, results)
    view.summary(reason, too_short=too_short(getattr(engine, "model", None), source.seconds))
    finish(history, recorder, engine, reason)
    return code


def err(msg):
    print(f"cli_listen: error: {msg}", file=sys.stderr, flush=True)


def info(msg):
    print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    def on_term(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(parse_args(argv))
    except DeviceError as exc:
        err(str(exc))
        return EXIT_AUDIO
    except (CliError, HistoryError) as exc:
        err(str(exc))
        return getattr(exc, "code", EXIT_USAGE)
    except (KeyboardInterrupt, Stop):
        err("interrupted before listening started")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `... --json | head`: the reader went away
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK


if __name__ == "__main__":
    # the engine's worker finishes a running forward at exit, so normal teardown is safe
    sys.exit(main())
