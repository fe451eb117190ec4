#!/usr/bin/env python3
"""Live music-genre readout from a microphone (or a file replayed in real time).

Opens an input device with sounddevice at the device's native rate and feeds every
block to the streaming engine (`stream.StreamEngine`), which resamples, windows,
classifies and smooths. Shows a bar per genre, the leading genre, an input level meter,
inference time / real-time factor and silence / overflow counts. Ctrl-C stops with a
session summary.

Examples:
  python cli_listen.py                      # default microphone, live display
  python cli_listen.py -l                   # list audio devices
  python cli_listen.py -d USB --hop 0.5     # first input device whose name contains "USB"
  python cli_listen.py --json | kiosk-app   # one JSON object per result on stdout
  python cli_listen.py --file song.mp3      # replay a file in real time (--fast: at once)

Exit codes: 0 ok (also after Ctrl-C), 1 unexpected error, 2 bad arguments,
3 audio input problem (no PortAudio, no/unknown/busy device, unsupported settings, stream
died, unreadable --file), 4 the model could not be loaded, 5 --server: the server could not be
reached, refused the stream (token, origin, busy) or the connection was lost (after retries with
--reconnect), 130 interrupted before listening.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import queue
import signal
import sys
import threading
import time

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUDIO, EXIT_MODEL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_SERVER = 5

PORTAUDIO_MISSING = (
    "the PortAudio library was not found ({exc}). sounddevice needs it to record audio: "
    "on Debian/Ubuntu install the package libportaudio2 (sudo apt-get install libportaudio2); "
    "on Fedora: sudo dnf install portaudio; on macOS: brew install portaudio "
    "(Windows and macOS wheels of sounddevice bundle it). "
    "--file PATH works without PortAudio."
)

FILE_CHUNK_S = 0.1  # --file is fed in blocks like a microphone callback delivers them
QUEUE_BLOCKS = 1000  # callback -> feeder queue bound (minutes of audio at typical block sizes)
DRAIN_TIMEOUT_S = 5.0
STALL_FACTOR, STALL_GRACE_S = 1.5, 10.0  # --duration: give up when audio lags wall time this much  # at the end, wait at most this long for the last window's result


class CliError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Stop(Exception):
    """SIGTERM: stop like Ctrl-C (kiosk supervisors send it)."""


# ---------------------------------------------------------------- sounddevice --------
def import_sounddevice():
    try:
        import sounddevice as sd
    except OSError as exc:  # raised by sounddevice's import when libportaudio is missing
        raise CliError(EXIT_AUDIO, PORTAUDIO_MISSING.format(exc=exc)) from None
    return sd


def int_or_str(text):
    """Helper for argparse: a device index or a name substring."""
    try:
        return int(text)
    except ValueError:
        return text


def describe_inputs(sd) -> str:
    """The available input devices, one a line, the default marked with '>'."""
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
    except Exception as exc:  # pragma: no cover - PortAudio failing to enumerate
        return f"  (could not list devices: {exc})"
    default_in = sd.default.device[0]
    lines = []
    for i, d in enumerate(devices):
        if d["max_input_channels"] > 0:
            mark = ">" if i == default_in else " "
            lines.append(f"{mark} {i:3d} {d['name']} ({apis[d['hostapi']]['name']}, "
                         f"{d['max_input_channels']} in, {d['default_samplerate']:.0f} Hz)")
    if not lines:
        return ("  (none: no microphone or sound server was found; connect an input device, "
                "check that PulseAudio/PipeWire is running, or use --file PATH)")
    return "\n".join(lines)


def resolve_input(sd, spec):
    """(index, info) of the input device `spec` (None = default); CliError listing inputs."""
    try:
        if spec is None:
            info = sd.query_devices(kind="input")
        else:
            info = sd.query_devices(spec, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        what = "there is no default input device" if spec is None else f"unknown input device {spec!r} ({exc})"
        raise CliError(EXIT_AUDIO, f"{what}. Available input devices:\n{describe_inputs(sd)}\n"
                                   "Pick one with -d INDEX or -d NAME-SUBSTRING.") from None
    if info["max_input_channels"] < 1:  # an index of an output-only device
        raise CliError(EXIT_AUDIO, f"device {spec!r} ({info['name']}) has no input channels. "
                                   f"Available input devices:\n{describe_inputs(sd)}")
    return info["index"], info


def stream_error(exc, name, rate, channels) -> CliError:
    """A clear message for a PortAudio error while checking/opening/starting the stream."""
    code = exc.args[1] if len(exc.args) > 1 else None
    text = str(exc)  # includes the host API's error text when there is one
    if code == -9985 or "unavailable" in str(text).lower() or "busy" in str(text).lower():
        msg = (f"input device {name!r} is busy or unavailable ({text}): another program may be "
               "using it exclusively; close it, or pick another device with -d")
    elif code == -9997 or "sample rate" in str(text).lower():
        msg = (f"input device {name!r} does not support {rate} Hz ({text}); leave out "
               "--samplerate to use the device's native rate, or try 44100 or 48000")
    elif code == -9998 or "channels" in str(text).lower():
        msg = (f"input device {name!r} does not support {channels} channel(s) ({text}); "
               "try --channels 1 or 2")
    else:
        msg = (f"could not open input device {name!r} at {rate} Hz, {channels} channel(s): {text}. "
               "It may be busy, disconnected or misconfigured; list the devices with -l and pick one with -d")
    return CliError(EXIT_AUDIO, msg)


# ---------------------------------------------------------------- sources ------------
class MicSource:
    """sounddevice InputStream -> queue -> feeder thread -> engine.feed.

    The callback only copies the block into a queue and counts overflows."""

    def __init__(self, sd, device, rate, channels, engine, meter):
        self.sd, self.device, self.rate, self.channels = sd, device, rate, channels
        self.engine, self.meter = engine, meter
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        self.overflows = 0  # PortAudio input overflows (audio lost before it reached us)
        self.dropped = 0  # blocks lost because the feeder fell behind (queue full)
        self.blocks = 0
        self.error: str | None = None
        self.stream = None
        self._feeder = threading.Thread(target=self._feed, name="feeder", daemon=True)

    def _callback(self, indata, frames, time_info, status):
        if status.input_overflow:
            self.overflows += 1
        try:
            self.q.put_nowait(indata.copy())
        except queue.Full:
            self.dropped += 1

    def _feed(self):
        while True:
            block = self.q.get()
            if block is None:
                return
            self.blocks += 1
            self.meter.update(block)
            try:
                self.engine.feed(block, self.rate)
            except Exception as exc:  # pragma: no cover - closed engine / bad block
                self.error = f"{type(exc).__name__}: {exc}"
                return

    def check(self):
        """Fail early (before the model loads) when the device rejects the settings."""
        try:
            self.sd.check_input_settings(device=self.device, channels=self.channels, samplerate=self.rate,
                                         dtype="float32")
        except self.sd.PortAudioError as exc:
            raise stream_error(exc, self.name, self.rate, self.channels) from None

    def start(self):
        sd = self.sd
        try:
            self.stream = sd.InputStream(device=self.device, channels=self.channels, samplerate=self.rate,
                                         dtype="float32", callback=self._callback)
            self.stream.start()
        except sd.PortAudioError as exc:
            if self.stream is not None:
                self.stream.close(ignore_errors=True)
            raise stream_error(exc, self.name, self.rate, self.channels) from None
        self._feeder.start()

    @property
    def name(self):
        return self.sd.query_devices(self.device)["name"]

    def finished(self) -> bool:
        return False

    def failed(self) -> str | None:
        if self.error:
            return self.error
        if self.stream is not None and not self.stream.active:
            return "the input stream stopped unexpectedly (device disconnected or sound server gone?)"
        return None

    def stop(self):
        if self.stream is not None:
            try:
                self.stream.stop(ignore_errors=True)
                self.stream.close(ignore_errors=True)
            except Exception:
                pass
        try:  # the sentinel goes after every block already queued
            self.q.put(None, timeout=1.0)
        except queue.Full:  # the feeder already died on an error: nobody is reading
            pass
        self._feeder.join(timeout=5.0)

    @property
    def seconds(self) -> float:
        return self.engine.stats.seconds_received


class FileSource:
    """Replays a file through the engine in chunks, paced to real time unless `fast`."""

    def __init__(self, path, engine, meter, fast, limit_s=None):
        self.path, self.engine, self.meter, self.fast, self.limit_s = path, engine, meter, fast, limit_s
        self.overflows = self.dropped = 0
        self.error: str | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-replay", daemon=True)
        self.seconds = 0.0

    def _run(self):
        from stream import decode_blocks

        t0 = time.monotonic()
        try:
            for block, rate in decode_blocks(self.path):
                step = max(1, int(rate * FILE_CHUNK_S))
                for i in range(0, len(block), step):
                    if self._stop.is_set():
                        return
                    chunk = block[i:i + step]
                    if self.limit_s is not None and self.seconds >= self.limit_s:
                        return
                    if self.limit_s is not None:
                        chunk = chunk[: max(1, int(round((self.limit_s - self.seconds) * rate)))]
                    if not self.fast:
                        ahead = t0 + self.seconds - time.monotonic()
                        if ahead > 0 and self._stop.wait(ahead):
                            return
                    self.meter.update(chunk)
                    self.engine.feed(chunk, rate)
                    self.seconds += len(chunk) / rate
        except Exception as exc:
            self.error = str(exc)
        finally:
            self.done.set()

    def start(self):
        self._thread.start()

    def finished(self) -> bool:
        return self.done.is_set() and self.error is None

    def failed(self) -> str | None:
        return self.error if self.done.is_set() else None

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10.0)


class LevelMeter:
    """Peak level of the newest input block, for the meter (display only)."""

    def __init__(self):
        self.peak_dbfs = -math.inf
        self.updated = None

    def update(self, block):
        import numpy as np

        peak = float(np.max(np.abs(block))) if block.size else 0.0
        self.peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
        self.updated = time.monotonic()


# ---------------------------------------------------------------- output -------------
def result_json(res, source) -> str:
    from ui.report import dumps, result_record

    return dumps(result_record(res, overflows=source.overflows, dropped_blocks=source.dropped))


def summary_text(engine, source, reason) -> str:
    s, st = engine.summary(), engine.stats
    shares = ", ".join(f"{k} {v:.0%}" for k, v in list(s.shares.items())[:5])
    min_s = engine.model.min_samples / engine.model.sample_rate
    if not shares and st.windows_classified + st.windows_silent == 0 and source.seconds < min_s:
        shares = f"none (only {source.seconds:.2f} s of audio: too short, {engine.model.name} needs at least {min_s:.2f} s)"
    elif not shares:
        shares = "none (all silent)"
    return (f"Session summary ({reason}): {s.duration_s:.1f} s of readouts, {s.silent_s:.1f} s of them silent. "
            f"Dominant genre: {s.dominant or '-'}. Time shares: {shares}.\n"
            f"Windows: {st.windows_classified} classified, {st.windows_silent} silent, "
            f"{st.windows_skipped} skipped; inference {st.inference_ms_mean:.0f} ms mean "
            f"(p95 {st.inference_ms_p95:.0f} ms), real-time factor {st.real_time_factor:.2f}; "
            f"input overflows {source.overflows}, dropped blocks {source.dropped}.")


def summary_json(engine, source, reason) -> str:
    from ui.report import dumps, summary_record

    return dumps(summary_record(engine.summary(), engine.stats, reason, overflows=source.overflows,
                                dropped_blocks=source.dropped))


def plain_line(res, engine, source) -> str:
    st = engine.stats
    if res.silent:
        what = "(silence)"
    else:
        what = f"{res.label or '-':<14} " + "  ".join(f"{k} {v:.2f}" for k, v in res.scores.items())
    return (f"{res.time_s:7.1f}s  {what}  | level {res.level_dbfs:6.1f} dBFS  infer {res.inference_ms:4.0f} ms  "
            f"rtf {st.real_time_factor:.2f}  silent {st.windows_silent}  overflows {source.overflows}")


class LiveView:
    """rich live display: a bar per genre (the leader first), the leader, level meter and counters.

    The panel keeps one width (WIDTH, or the terminal's if narrower) whatever it shows, every
    line is cut rather than wrapped, and the genre rows are capped to the terminal height
    ("+N more"), so rich can always redraw it in place: a panel taller than the terminal, or
    one that changes width, leaves stale lines above it."""

    WIDTH = 80
    OTHER_LINES = 8  # borders, head, level, two counter lines, "Ctrl-C", one spare for the cursor

    def __init__(self, console, title, labels=()):
        from rich.live import Live

        self.console = console
        self.title = title
        self.latest = None
        self.label_w = min(max((len(l) for l in labels), default=10), 20)
        # stderr lines (errors, warnings) print above the panel, not through it
        self.live = Live(console=console, auto_refresh=False, transient=False,
                         redirect_stderr=sys.stderr.isatty())

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.__exit__(*exc)

    @staticmethod
    def _bar(frac, width):
        frac = min(max(frac, 0.0), 1.0)
        eighths = int(round(frac * width * 8))
        full, part = divmod(eighths, 8)
        return "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "") + " " * (width - full - (1 if part else 0))

    def render(self, engine, source, meter):
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        res, st = self.latest, engine.stats
        width, height = min(self.WIDTH, self.console.size.width), self.console.size.height
        inner = width - 4  # borders and padding
        bar_w = max(inner - self.label_w - 2 - 4, 5)  # label, two gaps, "0.29"
        line = dict(no_wrap=True, overflow="ellipsis")
        rows = Table.grid(padding=(0, 1))
        rows.add_column(justify="right", width=self.label_w, **line)
        rows.add_column(width=bar_w, **line)
        rows.add_column(justify="right", width=4, **line)
        if res is None:
            head = Text("listening… (first readout after a few seconds of audio)", style="dim", **line)
        elif res.silent:
            head = Text(f"silence ({res.level_dbfs:.0f} dBFS): no genre claimed", style="yellow", **line)
        else:
            head = Text.assemble(("Leading genre: ", "bold"), (res.label or "-", "bold green"), **line)
        more = None
        if res is not None and not res.silent:
            items = list(res.scores.items())  # the leader first (engine order)
            room = max(height - self.OTHER_LINES, 2)
            if len(items) > room:
                items, more = items[: room - 1], len(items) - (room - 1)
            for label, p in items:
                style = "green" if label == res.label else "cyan"
                rows.add_row(label, Text(self._bar(p, bar_w), style=style), f"{p:.2f}")
        lvl = meter.peak_dbfs
        frac = 0.0 if not math.isfinite(lvl) else (max(lvl, -60.0) + 60.0) / 60.0
        lvl_style = "red" if lvl > -1 else "green" if lvl > -40 else "yellow"
        level = Text.assemble(("input ", "bold"), (self._bar(frac, min(20, bar_w)), lvl_style),
                              f" {lvl:6.1f} dBFS" if math.isfinite(lvl) else "   -inf dBFS", **line)
        stale = meter.updated is None or time.monotonic() - meter.updated > 2.0
        if stale and source.seconds == 0:
            level.append("  (no audio yet)", style="yellow")
        elif stale:
            level.append("  (no audio for >2 s)", style="yellow")
        counters = Text(
            f"t {source.seconds:6.1f} s   inference {st.inference_ms_mean:4.0f} ms (p95 {st.inference_ms_p95:.0f})"
            f"   rtf {st.real_time_factor:.2f}   lag {st.lag_s:.1f} s", style="dim", **line)
        lost = source.overflows + source.dropped
        counts = Text(f"silent windows {st.windows_silent}   skipped {st.windows_skipped}   "
                      f"overflows {source.overflows}   dropped blocks {source.dropped}",
                      style="bold red" if lost else "dim", **line)
        parts = [head, rows]
        if more:
            parts.append(Text(f"+{more} more (-k N shows the top N)", style="dim", **line))
        parts += [level, counters, counts, Text("Ctrl-C to stop", style="dim", **line)]
        self.live.update(Panel(Group(*parts), title=self.title, width=width), refresh=True)


# ---------------------------------------------------------------- main ---------------
def build_parser():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-l", "--list-devices", action="store_true", help="show the list of audio devices and exit")
    return parser


def parse_args(argv):
    pre = build_parser()
    args, remaining = pre.parse_known_args(argv)
    if args.list_devices:
        sd = import_sounddevice()
        print(sd.query_devices())
        print("\nInput devices (> = default):\n" + describe_inputs(sd))
        raise SystemExit(EXIT_OK)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     parents=[pre])
    pos = lambda t: _positive(parser, t)
    parser.add_argument("-d", "--device", type=int_or_str, help="input device (numeric index or name substring)")
    parser.add_argument("-r", "--samplerate", type=int, help="sampling rate (default: the device's native rate)")
    parser.add_argument("-c", "--channels", type=int,
                        help="number of input channels (default: 1, or 2 where the device cannot record mono); "
                             "the engine mixes them to mono")
    parser.add_argument("-m", "--model", default="auto",
                        help="model: 'auto' (default), 'musicnn' (bundled, offline), a Hub id or a checkpoint directory")
    parser.add_argument("-w", "--window", type=pos, help="seconds of audio per classification (default: the model's)")
    parser.add_argument("--hop", type=pos, help="seconds between readouts (default: the model's)")
    parser.add_argument("-s", "--smoothing", type=float, help="smoothing time constant in seconds (0 = off; default 4)")
    parser.add_argument("-k", "--top-k", type=int, help="genres to show (default 5; 0 = all)")
    parser.add_argument("-t", "--duration", type=pos, help="stop after this many seconds of audio")
    parser.add_argument("--json", action="store_true", help="print one JSON object per result on stdout")
    parser.add_argument("-f", "--file", metavar="PATH", help="replay an audio file through the live engine in real time")
    parser.add_argument("--fast", action="store_true", help="with --file: as fast as possible")
    parser.add_argument("--server", metavar="ws://HOST:PORT",
                        help="send the audio to a genre server (python -m stream.server) instead of loading a model")
    parser.add_argument("--token", help="with --server: its access token (default: env GENRE_SERVER_TOKEN)")
    parser.add_argument("--reconnect", action="store_true",
                        help="with --server: retry a lost connection with backoff instead of exiting")
    args = parser.parse_args(remaining)
    if (args.reconnect or args.token) and not args.server:
        parser.error("--reconnect and --token only apply to --server")
    if args.fast and not args.file:
        parser.error("--fast only applies to --file")
    if args.channels is not None and args.channels < 1:
        parser.error("--channels must be at least 1")
    return args


def _positive(parser, text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return v


def engine_config(args):
    from stream import EngineConfig

    cfg = EngineConfig(window_s=args.window, hop_s=args.hop)
    if args.smoothing is not None:
        cfg.smoothing_s = args.smoothing
    if args.top_k is not None:
        cfg.top_k = args.top_k
    if args.window is not None:
        cfg.min_window_s = min(cfg.min_window_s, args.window)
    return cfg


def open_remote(args, rate, on_result):
    """--server: a RemoteEngine (stream/client.py) connected at the input's rate and channels."""
    from stream.client import RemoteEngine, ServerError

    if args.file is not None:  # the file's own rate and channels (decode errors surface here too)
        from stream import decode_blocks

        try:
            block, rate = next(decode_blocks(args.file))
        except Exception as exc:
            raise CliError(EXIT_AUDIO, f"--file {args.file!r}: {exc}") from None
        channels = 1 if block.ndim == 1 else block.shape[1]
    else:
        channels = args.channels
    options = {"window": args.window, "hop": args.hop, "smoothing": args.smoothing, "top_k": args.top_k}
    try:
        token = args.token or os.environ.get("GENRE_SERVER_TOKEN")
        engine = RemoteEngine(args.server, options, token=token, on_result=on_result,
                              on_event=lambda m: info(f"cli_listen: {m}"), reconnect=args.reconnect)
        ready = engine.connect(rate, channels)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, f"--server: {exc}") from None
    except ServerError as exc:
        raise CliError(EXIT_USAGE if exc.kind == "rejected" else EXIT_SERVER, str(exc)) from None
    info(f"Server {args.server}: model {ready['model']}.")
    return engine


def model_error(exc) -> str:
    """ModelLoadError in the CLI's terms: options, not Python calls."""
    advice = exc.advice
    if advice == type(exc).DEFAULT_ADVICE:
        advice = ("Give -m a local checkpoint directory (a folder with config.json and model weights) "
                  "or a Hugging Face Hub id that is cached or reachable")
    fallback = f", or use the bundled offline model: -m {exc.fallback}" if exc.fallback else ""
    return f"Could not load model {exc.spec!r}: {exc.cause}. {advice}{fallback}."


def too_short(path, seconds, model_name, min_s) -> str:
    return (f"--file {path!r} is {seconds:.2f} s long: too short to classify; {model_name} needs at least "
            f"{min_s:.2f} s of audio. Use a longer recording")


def err(msg):
    print(f"cli_listen: error: {msg}", file=sys.stderr, flush=True)


def info(msg):
    print(msg, file=sys.stderr, flush=True)


def run(args) -> int:
    # Audio input first (fast, no torch import): errors about the device come at once.
    sd = device = rate = None
    if args.file is None:
        sd = import_sounddevice()
        device, dev_info = resolve_input(sd, args.device)
        rate = args.samplerate or int(dev_info["default_samplerate"])
        if args.channels is None:  # mono, unless the device insists on more (some raw hw devices)
            args.channels = 1
            try:
                MicSource(sd, device, rate, 1, None, None).check()
            except CliError:
                args.channels = min(2, dev_info["max_input_channels"])
        if args.channels > dev_info["max_input_channels"]:
            raise CliError(EXIT_AUDIO, f"input device {dev_info['name']!r} has {dev_info['max_input_channels']} "
                                       f"input channel(s); --channels {args.channels} is too many")
        MicSource(sd, device, rate, args.channels, None, None).check()
        from stream.audio import validate_rate

        try:  # the engine's own limits (the device may accept rates the engine does not)
            validate_rate(rate)
        except ValueError as exc:
            raise CliError(EXIT_USAGE, f"--samplerate: {exc}") from None
    elif not os.path.isfile(args.file):
        raise CliError(EXIT_AUDIO, f"--file {args.file!r}: no such file")
    file_info = None
    if args.file is not None:  # a bad file fails now, not after the model has loaded
        from stream import AudioDecodeError, probe_file

        try:
            file_info = probe_file(args.file)
        except AudioDecodeError as exc:
            raise CliError(EXIT_AUDIO, f"--file {args.file!r}: {exc}") from None

    results: queue.Queue = queue.Queue()
    if args.server:
        engine = open_remote(args, rate, results.put)
    else:
        from stream import ModelLoadError, StreamEngine, load_model

        try:
            model = load_model(args.model)
        except ModelLoadError as exc:
            raise CliError(EXIT_MODEL, model_error(exc)) from None
        info(model.notice)
        min_s = model.min_samples / model.sample_rate
        if file_info is not None and file_info.duration_s is not None and file_info.duration_s < min_s:
            raise CliError(EXIT_AUDIO, too_short(args.file, file_info.duration_s, model.name, min_s))
        # the engine's warning about skipped windows speaks of its Python API; the CLI says it in flags (below)
        logging.getLogger("stream.engine").setLevel(logging.ERROR)

        try:
            engine = StreamEngine(model, engine_config(args), background=not (args.file and args.fast),
                                  on_result=results.put)
        except ValueError as exc:
            raise CliError(EXIT_USAGE, str(exc)) from None

    meter = LevelMeter()
    if args.file is None:
        source = MicSource(sd, device, rate, args.channels, engine, meter)
    else:
        source = FileSource(args.file, engine, meter, args.fast, args.duration)

    tty = sys.stdout.isatty() and not args.json
    view = None
    if tty:
        from rich.console import Console

        view = LiveView(Console(), "", engine.visible_labels)
    reason, code = "stopped", EXIT_OK

    def emit(res):
        if args.json:
            print(result_json(res, source), flush=True)
        elif view is not None:
            view.latest = res
        else:
            print(plain_line(res, engine, source), flush=True)

    def drain():
        while True:
            try:
                emit(results.get_nowait())
            except queue.Empty:
                return

    source.start()
    if args.file is None:
        what = f"Listening on [{device}] {source.name} at {rate} Hz, {args.channels} ch"
    else:
        what = f"Replaying {args.file} {'as fast as possible' if args.fast else 'in real time'}"
    c = engine.config
    info(f"{what}; window {c.window_s:g} s, hop {c.hop_s:g} s, smoothing {c.smoothing_s:g} s. Ctrl-C to stop.")
    if view is not None:
        view.title = what
    t0 = time.monotonic()
    interrupted = told_skip = False
    try:
        if view is not None:
            view.__enter__()
        next_draw = 0.0
        while True:
            try:
                emit(results.get(timeout=0.05))
            except queue.Empty:
                pass
            drain()
            now = time.monotonic()
            if view is not None and now >= next_draw:
                view.render(engine, source, meter)
                next_draw = now + 0.2
            if not told_skip and engine.stats.windows_skipped:
                told_skip = True
                info(f"note: the model is slower than the hop ({c.hop_s:g} s) here, so some windows are skipped "
                     "(counted as 'skipped'); a larger --hop gives every hop a readout"
                     + (", and --fast classifies every window of a file" if args.file else "") + ".")
            problem = source.failed()
            if problem:
                err(problem)
                reason, code = "input failed", EXIT_AUDIO
                break
            if args.server and engine.failed():
                err(engine.failed())
                reason, code = "connection lost", EXIT_SERVER
                break
            if source.finished():
                reason = "end of file" if args.duration is None or source.seconds < args.duration else "duration reached"
                break
            if args.file is None and args.duration is not None:
                # counted in audio received, like --file: a device can take a second or
                # two to deliver its first block, and those seconds are not listened to
                if source.seconds >= args.duration:
                    reason = "duration reached"
                    break
                if now - t0 > STALL_FACTOR * args.duration + STALL_GRACE_S:
                    err(f"the input device delivered only {source.seconds:.1f} s of audio in "
                        f"{now - t0:.0f} s; is it stalled or suspended?")
                    reason, code = "input stalled", EXIT_AUDIO
                    break
    except (KeyboardInterrupt, Stop):
        interrupted = True
        reason = "interrupted"
        # a second Ctrl-C while shutting down exits at once
        signal.signal(signal.SIGINT, lambda *a: os._exit(EXIT_INTERRUPTED))
    finally:
        source.stop()
        if not interrupted and code == EXIT_OK:
            # end of input: classify the tail and wait (bounded) for the last result
            engine.flush()
            engine.drain(max(DRAIN_TIMEOUT_S, 3 * engine.stats.inference_ms_p95 / 1000))
        drain()
        engine.close()
        if view is not None:
            view.render(engine, source, meter)
            view.__exit__(None, None, None)
    if args.json:
        print(summary_json(engine, source, reason), flush=True)
        info(summary_text(engine, source, reason))
    else:
        print(summary_text(engine, source, reason), flush=True)
    return code


def main(argv=None) -> int:
    def on_term(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    try:
        args = parse_args(argv)
        return run(args)
    except CliError as exc:
        err(str(exc))
        return exc.code
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
