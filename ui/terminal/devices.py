"""Input devices through PortAudio (python-sounddevice): import, list, resolve, check, open.

Every problem is a `DeviceError` whose message says what was wrong and what to do, in the
listener's flags (-d, -r, -c, -l, --file); the CLI exits with 3 on it. sounddevice is
imported only here and only when a device is needed, so --file and --help work without
PortAudio.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

PORTAUDIO_MISSING = (
    "the PortAudio library was not found ({exc}). sounddevice needs it to record audio: "
    "on Debian/Ubuntu install the package libportaudio2 (sudo apt-get install libportaudio2); "
    "on Fedora: sudo dnf install portaudio; on macOS: brew install portaudio "
    "(Windows and macOS wheels of sounddevice bundle it). "
    "--file PATH works without PortAudio."
)


class DeviceError(Exception):
    """An audio input device could not be found, checked or opened (the message says why)."""


@dataclass(frozen=True)
class Input:
    """An input device that accepted these settings (`open_input` checked them)."""

    sd: Any  # the sounddevice module
    index: int
    name: str
    rate: int
    channels: int


def import_sounddevice():
    try:  # inside: PortAudio may be missing (an error that says so), and --help must not load it
        import sounddevice as sd
    except OSError as exc:  # raised by sounddevice's import when libportaudio is missing
        raise DeviceError(PORTAUDIO_MISSING.format(exc=exc)) from None
    return sd


def list_devices() -> str:
    """The input devices, one a line (what -l prints): PortAudio's own table of every device,
    outputs included, says nothing a listener can use that this does not."""
    sd = import_sounddevice()
    return f"Input devices (> = default; pick one with -d INDEX or -d NAME):\n{describe_inputs(sd)}"


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


def resolve_input(sd, spec) -> dict:
    """The device info of input `spec` (index or name substring; None = the default input)."""
    try:
        info = sd.query_devices(kind="input") if spec is None else sd.query_devices(spec, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        what = "there is no default input device" if spec is None else f"unknown input device {spec!r} ({exc})"
        raise DeviceError(f"{what}. Available input devices:\n{describe_inputs(sd)}\n"
                          "Pick one with -d INDEX or -d NAME-SUBSTRING.") from None
    if info["max_input_channels"] < 1:  # an index of an output-only device
        raise DeviceError(f"device {spec!r} ({info['name']}) has no input channels. "
                          f"Available input devices:\n{describe_inputs(sd)}")
    return info


def stream_error(exc, name, rate, channels) -> DeviceError:
    """A clear message for a PortAudio error while checking/opening/starting the stream."""
    code = exc.args[1] if len(exc.args) > 1 else None
    text = str(exc)  # includes the host API's error text when there is one
    low = text.lower()
    if code == -9985 or "unavailable" in low or "busy" in low:
        msg = (f"input device {name!r} is busy or unavailable ({text}): another program may be "
               "using it exclusively; close it, or pick another device with -d")
    elif code == -9997 or "sample rate" in low:
        msg = (f"input device {name!r} does not support {rate} Hz ({text}); leave out "
               "--samplerate to use the device's native rate, or try 44100 or 48000")
    elif code == -9998 or "channels" in low:
        msg = (f"input device {name!r} does not support {channels} channel(s) ({text}); "
               "try --channels 1 or 2")
    else:
        msg = (f"could not open input device {name!r} at {rate} Hz, {channels} channel(s): {text}. "
               "It may be busy, disconnected or misconfigured; list the devices with -l and pick one with -d")
    return DeviceError(msg)


def check(mic: Input) -> None:
    """Fail early (before the model loads) when the device rejects the settings."""
    try:
        mic.sd.check_input_settings(device=mic.index, channels=mic.channels, samplerate=mic.rate, dtype="float32")
    except mic.sd.PortAudioError as exc:
        raise stream_error(exc, mic.name, mic.rate, mic.channels) from None


def open_input(spec=None, samplerate: int | None = None, channels: int | None = None) -> Input:
    """The input device `spec` checked at `samplerate` (default: its native rate) and
    `channels` (default: mono, or 2 where the device cannot record mono)."""
    sd = import_sounddevice()
    info = resolve_input(sd, spec)
    most = info["max_input_channels"]
    mic = Input(sd, info["index"], info["name"], samplerate or int(info["default_samplerate"]), channels or 1)
    if channels is None:  # mono, unless the device insists on more (some raw hw devices)
        try:
            check(mic)
            return mic
        except DeviceError:
            mic = Input(sd, mic.index, mic.name, mic.rate, min(2, most))
    if mic.channels > most:
        raise DeviceError(f"input device {mic.name!r} has {most} input channel(s); "
                          f"--channels {mic.channels} is too many")
    check(mic)
    return mic


def start_stream(mic: Input, callback: Callable):
    """A started float32 `sd.InputStream` calling `callback(indata, frames, time, status)`."""
    stream = None
    try:
        stream = mic.sd.InputStream(device=mic.index, channels=mic.channels, samplerate=mic.rate,
                                    dtype="float32", callback=callback)
        stream.start()
    except mic.sd.PortAudioError as exc:
        if stream is not None:
            stream.close(ignore_errors=True)
        raise stream_error(exc, mic.name, mic.rate, mic.channels) from None
    return stream
