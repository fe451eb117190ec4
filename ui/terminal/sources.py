"""Where the listener's audio comes from: a microphone or a file replayed like one.

Both are `Source`s: created first (a bad device or file fails before the model loads), then
`start(feed)` hands every block to `feed(block, rate)` (an engine's `feed`) from a thread of
their own. The view reads their counters and level meter while they run.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from typing import Callable, Protocol

from . import devices

FILE_CHUNK_S = 0.1  # --file is fed in blocks like a microphone callback delivers them
QUEUE_BLOCKS = 1000  # callback -> feeder queue bound (minutes of audio at typical block sizes)

Feed = Callable[..., None]  # feed(block, rate): StreamEngine.feed or RemoteEngine.feed


class LevelMeter:
    """Peak level of the newest input block, for the meter (display only)."""

    def __init__(self):
        self.peak_dbfs = -math.inf
        self.updated: float | None = None  # time.monotonic() of the last block

    def update(self, block):
        import numpy as np  # inside: numpy stays off cli_listen's --help path (tests/test_cli.py checks it)

        peak = float(np.max(np.abs(block))) if block.size else 0.0
        self.peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
        self.updated = time.monotonic()


class Source(Protocol):
    """What the listener and its view use of an audio source."""

    name: str  # the device or file
    title: str  # one line saying what is listened to and how ("Listening on [3] USB Mic at 48000 Hz, 1 ch")
    rate: int  # Hz of the blocks it feeds
    channels: int
    duration_s: float | None  # the file's length; None for a microphone (or a length not known)
    meter: LevelMeter
    seconds: float  # audio fed so far
    overflows: int  # blocks the device lost before they reached us (PortAudio input overflow)
    dropped: int  # blocks lost because feeding fell behind

    def start(self, feed: Feed) -> None: ...
    def stop(self) -> None: ...  # after it, no more feed calls; every queued block was fed
    def finished(self) -> bool: ...  # the input ended: end of file or the time limit
    def failed(self) -> str | None: ...  # what went wrong, once it has


class MicSource:
    """An input device -> queue -> feeder thread -> feed: the PortAudio callback only copies
    the block into a queue and counts, so a slow `feed` never blocks the audio thread."""

    def __init__(self, mic: devices.Input, limit_s: float | None = None):
        self.mic, self.limit_s = mic, limit_s
        self.name, self.rate, self.channels = mic.name, mic.rate, mic.channels
        self.title = f"Listening on [{mic.index}] {mic.name} at {mic.rate} Hz, {mic.channels} ch"
        self.duration_s = None
        self.meter = LevelMeter()
        self.seconds = 0.0
        self.overflows = self.dropped = 0
        self.error: str | None = None
        self.stream = None
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._feeder: threading.Thread | None = None

    def _callback(self, indata, frames, time_info, status):
        if status.input_overflow:
            self.overflows += 1
        try:
            self.q.put_nowait(indata.copy())
        except queue.Full:
            self.dropped += 1

    def _feed(self, feed: Feed):
        while (block := self.q.get()) is not None:
            self.meter.update(block)
            try:
                feed(block, self.rate)
            except Exception as exc:  # pragma: no cover - closed engine / bad block
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self.seconds += len(block) / self.rate

    def start(self, feed: Feed) -> None:
        self.stream = devices.start_stream(self.mic, self._callback)  # DeviceError when it will not open
        self._feeder = threading.Thread(target=self._feed, args=(feed,), name="feeder", daemon=True)
        self._feeder.start()

    def finished(self) -> bool:
        return self.limit_s is not None and self.seconds >= self.limit_s

    def failed(self) -> str | None:
        if self.error:
            return self.error
        if self.stream is not None and not self.stream.active:
            return "the input stream stopped unexpectedly (device disconnected or sound server gone?)"
        return None

    def stop(self) -> None:
        if self.stream is not None:
            try:
                self.stream.stop(ignore_errors=True)
                self.stream.close(ignore_errors=True)
            except Exception:
                pass
        if self._feeder is None:
            return
        try:  # the sentinel goes after every block already queued
            self.q.put(None, timeout=1.0)
        except queue.Full:  # the feeder already died on an error: nobody is reading
            pass
        self._feeder.join(timeout=5.0)


class FileSource:
    """Replays a file in FILE_CHUNK_S blocks, paced to real time unless `fast`, stopping after
    `limit_s` seconds of audio. `info` is the file's `stream.probe_file` result."""

    def __init__(self, path, info, fast: bool = False, limit_s: float | None = None):
        self.path, self.fast, self.limit_s = path, fast, limit_s
        self.name, self.rate, self.channels, self.duration_s = path, info.sample_rate, info.channels, info.duration_s
        self.title = f"Replaying {path} {'as fast as possible' if fast else 'in real time'}"
        self.meter = LevelMeter()
        self.seconds = 0.0
        self.overflows = self.dropped = 0  # nothing is lost: the file waits for us
        self.error: str | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _chunks(self):
        """(chunk, rate) of FILE_CHUNK_S each, the last one cut at `limit_s`."""
        from stream import decode_blocks  # inside: the decoders (numpy, soundfile) stay off the --help path

        for block, rate in decode_blocks(self.path):
            step = max(1, int(rate * FILE_CHUNK_S))
            for i in range(0, len(block), step):
                chunk = block[i:i + step]
                if self.limit_s is not None:
                    if self.seconds >= self.limit_s:
                        return
                    chunk = chunk[: max(1, int(round((self.limit_s - self.seconds) * rate)))]
                yield chunk, rate

    def _run(self, feed: Feed):
        t0 = time.monotonic()
        try:
            for chunk, rate in self._chunks():
                ahead = 0.0 if self.fast else t0 + self.seconds - time.monotonic()
                if self._stop.is_set() or (ahead > 0 and self._stop.wait(ahead)):
                    return
                self.meter.update(chunk)
                feed(chunk, rate)
                self.seconds += len(chunk) / rate
        except Exception as exc:
            self.error = str(exc)
        finally:
            self.done.set()

    def start(self, feed: Feed) -> None:
        self._thread = threading.Thread(target=self._run, args=(feed,), name="file-replay", daemon=True)
        self._thread.start()

    def finished(self) -> bool:
        return self.done.is_set() and self.error is None

    def failed(self) -> str | None:
        return self.error if self.done.is_set() else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)


def too_short(name: str | None, min_s: float, seconds: float) -> str | None:
    """Why `seconds` of audio give no readout, when they are fewer than model `name` needs
    (`min_s`; 0 where not known: a server's model)."""
    return f"{name} needs at least {min_s:.2f} s" if seconds < min_s else None
