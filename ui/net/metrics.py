"""The server's Prometheus metrics (`GET /metrics`, ui/net/ops.py), through `prometheus_client`.

Every app gets its own `CollectorRegistry`, so several apps in one process (tests, a Ray
ingress replica that is rebuilt) never clash over metric names, and nothing lands in the
library's global registry. The names and labels are the server's contract with dashboards:
every label value is declared up front (a counter that is still 0 is exported as 0, so a
rate() over it works before the first event), and `reject()` refuses a reason that is not
declared instead of growing a new series per typo.

Per named stream (`?name=`), two gauges an alert can watch (README: "Prometheus"):
genre_stream_last_readout_timestamp_seconds and genre_stream_last_music_timestamp_seconds
(Unix time; both start at the stream's first connection to this process, so a screen that hears
no music at all still ages). They outlive the stream's connection, which is the point: a screen
that went away ages too. At most MAX_NAMED_STREAMS names are kept (the least recently heard go).
"""
from __future__ import annotations

import collections
import time

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info,
                               generate_latest)
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

# why a stream ended (genre_streams_total{outcome})
OUTCOMES = ("ended", "idle", "max_session", "shutdown", "error", "client_gone")
# why a stream was refused (genre_rejected_total{reason}): ui/net/access.py's REFUSALS, each
# counted by access.refuse, plus frame_too_big (a stream cut for an oversized frame)
REJECT_REASONS = ("token", "origin", "capacity", "bad_parameter", "frame_too_big", "draining", "name_in_use",
                  "watchers")
# inference of one batch: from a few ms (a MusiCNN patch) to seconds (a transformer on a loaded CPU)
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# audio at the window's end received -> its result sent: queueing + inference + the send
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# named streams with their own series: names come from clients, so their number is bounded
MAX_NAMED_STREAMS = 256


def heard_music(result) -> bool:
    """A readout that heard music: it names a genre (not silent) and no music-presence check
    said otherwise (`no_music`, where the engine has one)."""
    return not result.silent and (result.genre or result.label) is not None and not getattr(result, "no_music", False)


class ServerMetrics:
    """The metrics of one app. All methods are cheap and called on the event loop (the
    prometheus_client objects are thread-safe anyway)."""

    def __init__(self, model: str, backend: str):
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_open_fds, ...
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.streams_active = Gauge("genre_streams_active", "WebSocket streams open now", registry=r)
        self.streams_total = Counter("genre_streams", "Streams ended, by outcome", ["outcome"], registry=r)
        self.rejected_total = Counter("genre_rejected", "Streams refused, by reason", ["reason"], registry=r)
        self.audio_seconds_total = Counter("genre_audio_seconds", "Seconds of audio received", registry=r)
        self.results_total = Counter("genre_results", "Readouts sent to clients", registry=r)
        self.windows_skipped_total = Counter("genre_windows_skipped",
                                             "Windows skipped because the model was busy", registry=r)
        self.results_dropped_total = Counter("genre_results_dropped",
                                             "Readouts dropped because a client did not read them", registry=r)
        self.inference_seconds = Histogram("genre_inference_seconds", "Model forward time of a readout's batch",
                                           buckets=INFERENCE_BUCKETS, registry=r)
        self.result_latency_seconds = Histogram("genre_result_latency_seconds",
                                                "End of a window's audio received -> its readout sent",
                                                buckets=LATENCY_BUCKETS, registry=r)
        self.last_readout = Gauge("genre_stream_last_readout_timestamp_seconds",
                                  "Unix time of a named stream's last readout (or of its first connection)",
                                  ["stream"], registry=r)
        self.last_music = Gauge("genre_stream_last_music_timestamp_seconds",
                                "Unix time a named stream last heard music (or of its first connection)",
                                ["stream"], registry=r)
        self.named: collections.OrderedDict[str, None] = collections.OrderedDict()  # least recently heard first
        Info("genre_model", "The model this server classifies with", registry=r).info(
            {"model": str(model), "backend": str(backend)})
        for outcome in OUTCOMES:
            self.streams_total.labels(outcome)
        for reason in REJECT_REASONS:
            self.rejected_total.labels(reason)

    def reject(self, reason: str) -> None:
        """Count one refused stream. `reason` is one of REJECT_REASONS (ValueError otherwise)."""
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; one of {', '.join(REJECT_REASONS)}")
        self.rejected_total.labels(reason).inc()

    def stream_opened(self) -> None:
        self.streams_active.inc()

    def stream_closed(self, outcome: str) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown stream outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
        self.streams_active.dec()
        self.streams_total.labels(outcome).inc()

    def named_stream(self, name: str, now: float | None = None) -> None:
        """A stream named `name` connected: its series exist from now on (started at `now` if new)."""
        if name in self.named:
            return self.named.move_to_end(name)
        now = time.time() if now is None else now
        self.named[name] = None
        self.last_readout.labels(name).set(now)
        self.last_music.labels(name).set(now)
        while len(self.named) > MAX_NAMED_STREAMS:
            old, _ = self.named.popitem(last=False)
            self.last_readout.remove(old)
            self.last_music.remove(old)

    def named_result(self, name: str, result) -> None:
        """A readout of the stream named `name` (registered by named_stream)."""
        if name not in self.named:
            self.named_stream(name)
        self.named.move_to_end(name)
        at = getattr(result, "at", None) or time.time()
        self.last_readout.labels(name).set(at)
        if heard_music(result):
            self.last_music.labels(name).set(at)

    def render(self) -> tuple[bytes, str]:
        """(the text exposition format, its content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def backend_of(model) -> str:
    """What runs the forward: the model's own word (onnxruntime, torch, ray serve), else torch."""
    return str(getattr(model, "backend", None) or "torch")
