"""The server's Prometheus metrics (`GET /metrics`, ui/net/ops.py), through `prometheus_client`.

Every app gets its own `CollectorRegistry`, so several apps in one process (tests, a Ray
ingress replica that is rebuilt) never clash over metric names, and nothing lands in the
library's global registry. The names and labels are the server's contract with dashboards:
every label value is declared up front (a counter that is still 0 is exported as 0, so a
rate() over it works before the first event), and `reject()` refuses a reason that is not
declared instead of growing a new series per typo.
"""
from __future__ import annotations

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

    def render(self) -> tuple[bytes, str]:
        """(the text exposition format, its content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def backend_of(model) -> str:
    """What runs the forward: the model's own word (onnxruntime, torch, ray serve), else torch."""
    return str(getattr(model, "backend", None) or "torch")
