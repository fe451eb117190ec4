"""A model as a Ray Serve deployment: replicas, request batching, restarts.

    genre-serve-ray --model musicnn --replicas 2            # `deploy` (ui/net/ray_cli.py)

Edges then use `load_model("ray://genre")` (or `ray://genre@HOST:6379`): their engines
resample and buffer locally and send only windows. The network API runs in front of it as an
ingress: ui/net/ray_ingress.py (`genre-serve --ray`).

Batching: every call (one or more windows of one edge) waits up to `batch_wait_s` for
other calls, up to `max_batch_size` calls, and calls with equal window lengths run as one
model batch. On a CPU a batch of N windows costs about N single forwards, so batching mostly
saves per-call overhead there; on a GPU it is where the throughput comes from.

Ray is an optional dependency: this module imports without it, and every function that needs
it gets it from `import_ray`, which raises a ModelLoadError saying how to install it.
"""
from __future__ import annotations

import asyncio
import logging
import os

import numpy as np

from stream.models import load_model
from stream.models.remote import DEFAULT_APP, connect, import_ray, quiet_serve_logs

SPEC_HINT = "genre-serve-ray"  # names the command in a ModelLoadError (Ray missing or unreachable)

log = logging.getLogger(__name__)

# Ray Serve gives its HTTP proxy actor 5 s to report ready (and 10 s per health check); on a
# busy node (both cores taken, a model loading) it misses that three times, Serve kills it and
# the start fails (issue 24: "Proxy actor readiness check ... didn't complete in 5.0s"). A local
# Ray started here gets these longer limits unless the operator set the variables; a cluster
# joined by address reads its own environment (set them where `ray start` runs).
SLOW_START_ENV = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}


def tolerate_slow_start() -> dict[str, str]:
    """Set Serve's proxy readiness/health timeouts for a local Ray (before `ray.init`), keeping
    any value the user set; returns the variables this call set."""
    set_here = {k: v for k, v in SLOW_START_ENV.items() if not os.environ.get(k)}
    os.environ.update(set_here)
    return set_here


class ModelServer:
    """One replica: a model loaded with `load_model(spec)` behind `predict` and `info`."""

    def __init__(self, spec: str = "musicnn", device: str = "cpu", accel: str = "auto",
                 max_batch_size: int = 16, batch_wait_s: float = 0.01, threads: int | None = None):
        import torch  # inside: only a model replica needs torch (the ingress and the command lines do not)

        _, serve = import_ray(SPEC_HINT)
        if threads:
            torch.set_num_threads(int(threads))
        self.model = load_model(spec, device=device, accel=accel)
        self._batched = serve.batch(max_batch_size=int(max_batch_size),
                                    batch_wait_timeout_s=float(batch_wait_s))(self._forward_calls)
        self.calls = self.batches = 0
        # windows worth sending to one replica at once: on a CPU a batch costs as much per window as
        # single forwards, so one computing + one waiting keeps it busy; a GPU wants full batches
        self.in_flight = int(max_batch_size) if str(device).startswith("cuda") else 2

    def info(self) -> dict:
        m = self.model
        return {"name": m.name, "sample_rate": int(m.sample_rate), "labels": list(m.labels),
                "multi_label": bool(m.multi_label),
                "default_labels": None if m.default_labels is None else list(m.default_labels),
                "default_window_s": float(m.default_window_s), "default_hop_s": float(m.default_hop_s),
                "min_samples": int(m.min_samples), "in_flight": self.in_flight,
                "patch_samples": getattr(m, "patch_samples", None), "patch_grid": getattr(m, "patch_grid", None),
                "genres": getattr(m, "genres", None),
                # the kernel the replica's CPU picked (OpenVINO bf16 / ONNX Runtime fp32 / torch)
                "backend": getattr(m, "backend", None), "precision": getattr(m, "precision", None)}

    async def predict(self, windows: np.ndarray) -> np.ndarray:
        # check each call alone, so one edge's bad input fails only its own call
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] < 1:
            raise ValueError(f"predict expects windows of shape (batch >= 1, n_samples >= 1), got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError("predict got NaN or infinite samples")
        return await self._batched(w)

    async def _forward_calls(self, calls: list[np.ndarray]) -> list[np.ndarray]:
        """Calls of equal window length run as one model batch (`model.max_batch` windows
        per forward where the model sets it)."""
        self.calls += len(calls)
        out: list[np.ndarray | None] = [None] * len(calls)
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(calls):
            by_len.setdefault(w.shape[1], []).append(i)
        for idx in by_len.values():
            stacked = np.concatenate([calls[i] for i in idx])
            # a worker thread: the replica's event loop keeps collecting the next batch
            probs = await asyncio.to_thread(self._forward, stacked)
            start = 0
            for i in idx:
                out[i] = probs[start:start + len(calls[i])]
                start += len(calls[i])
        return out

    def _forward(self, windows: np.ndarray) -> np.ndarray:
        step = int(getattr(self.model, "max_batch", 0) or len(windows))
        self.batches += 1
        return np.concatenate([self.model.predict(windows[i:i + step]) for i in range(0, len(windows), step)])

    def stats(self) -> dict:
        return {"calls": self.calls, "batches": self.batches}


def model_app(spec: str = "musicnn", *, replicas: int = 1, autoscale: tuple[int, int] | None = None,
              cpus: float = 1.0, gpus: float = 0.0, max_batch_size: int = 16, batch_wait_s: float = 0.01,
              max_ongoing_requests: int | None = None, accel: str = "auto", server_cls=None):
    """The Serve application of a model deployment (pass it to `serve.run`).

    replicas: fixed replica count, or autoscale=(min, max) to let Serve scale on queue length.
    cpus / gpus: resources per replica (torch uses `cpus` threads; gpus > 0 loads on CUDA).
    max_batch_size / batch_wait_s: `@serve.batch` settings: more waiting fills bigger batches
        (worth it on a GPU) but adds that wait to every window's latency.
    server_cls: a ModelServer subclass to deploy instead (tests, custom pre/post-processing).
    """
    _, serve = import_ray(SPEC_HINT)
    options: dict = {
        "name": "model",
        "ray_actor_options": {"num_cpus": float(cpus), "num_gpus": float(gpus)},
        "max_ongoing_requests": int(max_ongoing_requests or max(2 * max_batch_size, 8)),
        "logging_config": {"enable_access_log": False, "log_level": "WARNING"},
    }
    if autoscale:
        lo, hi = autoscale
        options["autoscaling_config"] = {"min_replicas": int(lo), "max_replicas": int(hi),
                                         "target_ongoing_requests": max(2, max_batch_size // 2)}
    else:
        options["num_replicas"] = int(replicas)
    device = "cuda" if gpus > 0 else "cpu"
    threads = max(1, int(cpus)) if gpus == 0 else None
    return serve.deployment(server_cls or ModelServer).options(**options).bind(
        spec, device, accel, max_batch_size, batch_wait_s, threads)



def deploy(spec: str = "musicnn", *, name: str = DEFAULT_APP, address: str | None = None,
           num_cpus: int | None = None, **app_options):
    """Deploy `spec` as Serve application `name` and return its handle.

    address None: use the Ray of this process if initialised, else start a local one
    (`num_cpus` of this machine); the app lives as long as this process. With an address,
    the app stays on that cluster after this process exits (remove it with `serve delete`)."""
    ray, serve = import_ray(SPEC_HINT)
    if not ray.is_initialized():
        if address:
            connect(address, spec=SPEC_HINT)
        else:
            tolerate_slow_start()
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    quiet_serve_logs()  # (serve.run after serve.start says "Connecting to existing Serve app" at INFO)
    serve.start(proxy_location="Disabled")  # edges use handles; no HTTP port needed (ignored if Serve runs)
    return serve.run(model_app(spec, **app_options), name=name, route_prefix=None)
