"""A model as a Ray Serve deployment: replicas, request batching, restarts.

    python -m stream.serve --model musicnn --replicas 2            # local Ray, stays up
    python -m stream.serve --model musicnn --replicas 4 --address 10.0.0.5:6379   # a cluster

Edges then use `load_model("ray://genre")` (or `ray://genre@HOST:6379`): their engines
resample and buffer locally and send only windows.

Batching: every call (one or more windows of one edge) waits up to `batch_wait_s` for
other calls, up to `max_batch_size` calls, and calls with equal window lengths run as one
model batch. On a CPU a batch of N windows costs about N single forwards, so batching mostly
saves per-call overhead there; on a GPU it is where the throughput comes from.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading

import numpy as np

from .errors import ModelLoadError
from .models.remote import DEFAULT_APP, import_ray

log = logging.getLogger(__name__)


class ModelServer:
    """One replica: a model loaded with `load_model(spec)` behind `predict` and `info`."""

    def __init__(self, spec: str = "musicnn", device: str = "cpu", accel: str = "auto",
                 max_batch_size: int = 16, batch_wait_s: float = 0.01, threads: int | None = None):
        import torch
        from ray import serve

        from .models import load_model

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
                "patch_samples": getattr(m, "patch_samples", None), "genres": getattr(m, "genres", None)}

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


SPEC_HINT = "stream.serve"


class ServerIngress:
    """The WebSocket server (`stream.server.create_app`) as a Serve ingress: every connection's
    engine runs in this replica and sends its windows to the model application `model_app`."""

    def __init__(self, model_app: str, settings):
        self.model_app, self.settings = model_app, settings

    def __serve_build_asgi_app__(self):
        from concurrent.futures import ThreadPoolExecutor

        from .models.remote import RemoteModel
        from .server import create_app

        # RemoteModel makes blocking Serve calls, which Serve forbids on the replica's event loop
        with ThreadPoolExecutor(1) as pool:
            model = pool.submit(RemoteModel, self.model_app).result()
        return create_app(model, self.settings)


def server_app(settings, model_app: str = DEFAULT_APP, *, replicas: int = 1, cpus: float = 0.0):
    """The Serve application of the WebSocket ingress (run it with route_prefix="/").
    `settings.max_streams` holds per ingress replica. cpus=0: its engines only convert,
    resample and buffer, so it reserves no CPU the model replicas could use."""
    _, serve = import_ray(SPEC_HINT)
    cls = serve.ingress()(ServerIngress)
    return serve.deployment(cls).options(
        name="ingress", num_replicas=int(replicas), ray_actor_options={"num_cpus": float(cpus)},
        max_ongoing_requests=max(100, 2 * settings.max_streams),
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    ).bind(model_app, settings)


def run_server(spec: str, settings, *, replicas: int = 1, address: str | None = None, name: str = DEFAULT_APP,
               num_cpus: int | None = None, ingress_replicas: int = 1, cpus: float = 1.0) -> None:
    """`python -m stream.server --ray`: the model deployment (`name`, `replicas`) plus the WebSocket
    ingress (`name`-ws) on Serve's HTTP proxy at settings.host:settings.port. Without `address`
    a local Ray is started (it lives as long as this process); on a cluster the apps stay up.
    Model replicas have `cpus` each."""
    ray, serve = import_ray(SPEC_HINT)
    if address:
        from .models.remote import connect

        connect(address, spec=SPEC_HINT)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    serve.start(http_options={"host": settings.host, "port": int(settings.port)})
    serve.run(model_app(spec, replicas=replicas, cpus=cpus), name=name, route_prefix=None)
    serve.run(server_app(settings, name, replicas=ingress_replicas), name=f"{name}-ws", route_prefix="/")


def deploy(spec: str = "musicnn", *, name: str = DEFAULT_APP, address: str | None = None,
           num_cpus: int | None = None, **app_options):
    """Deploy `spec` as Serve application `name` and return its handle.

    address None: use the Ray of this process if initialised, else start a local one
    (`num_cpus` of this machine); the app lives as long as this process. With an address,
    the app stays on that cluster after this process exits (remove it with `serve delete`)."""
    ray, serve = import_ray(SPEC_HINT)
    if not ray.is_initialized():
        if address:
            from .models.remote import connect

            connect(address, spec=SPEC_HINT)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    serve.start(proxy_location="Disabled")  # edges use handles; no HTTP port needed (ignored if Serve runs)
    return serve.run(model_app(spec, **app_options), name=name, route_prefix=None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.serve", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="musicnn", help="any load_model spec (default: musicnn)")
    p.add_argument("--name", default=DEFAULT_APP, help=f"Serve application name; edges use ray://NAME (default {DEFAULT_APP})")
    p.add_argument("--replicas", type=int, default=1, help="fixed replica count (default 1)")
    p.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX replicas instead")
    p.add_argument("--cpus", type=float, default=1.0, help="CPUs per replica (= torch threads; default 1)")
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs per replica (default 0)")
    p.add_argument("--max-batch", type=int, default=16, help="@serve.batch max batch size in calls (default 16)")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="@serve.batch wait (default 10 ms)")
    p.add_argument("--address", help="an existing Ray cluster (HOST:6379 or 'auto'); default: start a local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    a = p.parse_args(argv)
    autoscale = None
    if a.autoscale:
        try:
            lo, hi = (int(x) for x in a.autoscale.split(":"))
            if not 0 <= lo <= hi or hi < 1:
                raise ValueError
        except ValueError:
            p.error(f"--autoscale expects MIN:MAX with 0 <= MIN <= MAX, MAX >= 1, got {a.autoscale!r}")
        autoscale = (lo, hi)
    if a.replicas < 1:
        p.error("--replicas must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        deploy(a.model, name=a.name, address=a.address, num_cpus=a.num_cpus, replicas=a.replicas,
               autoscale=autoscale, cpus=a.cpus, gpus=a.gpus, max_batch_size=a.max_batch,
               batch_wait_s=a.batch_wait_ms / 1000.0)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Serving {a.model!r} as Ray Serve application {a.name!r}: edges use --model ray://{a.name}"
          + (f"@{a.address}" if a.address and a.address != "auto" else ""), flush=True)
    if a.address:
        return 0  # the app stays on the cluster
    print("Local Ray: press Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not interrupt the shutdown
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    ray, serve = import_ray(SPEC_HINT)
    serve.shutdown()
    ray.shutdown()
    print("Stopped.", flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
