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
import os
import signal
import sys

from stream.config import FACE_SETTINGS, QUERY_SETTINGS
from ui.history.flags import HistoryError, add_history_flags, history_problems
from ui.options import add_engine_flags, add_model_flag, number, problems
from ui.terminal.devices import DeviceError, list_devices
from ui.terminal.listener import EXIT_AUDIO, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError, err, run

SERVER_OPTIONS = tuple(s.key for s in QUERY_SETTINGS)  # engine flags a genre server takes per stream


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
    local = [s.flags[-1] for s in FACE_SETTINGS if not s.query and getattr(args, s.key) != s.default]
    if args.server and local:
        bad.append(f"{', '.join(local)} does not apply to --server (the server's own setting holds)")
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
