"""The network API (ui/net/api.py) as a Ray Serve ingress in front of a model deployment
(ui/net/ray_model.py): `genre-serve --ray`.

Every WebSocket connection's engine runs in an ingress replica, which sends its windows to the
model application; Serve's HTTP proxy listens where the server would.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from stream.models.remote import DEFAULT_APP, RemoteModel, connect, import_ray, quiet_serve_logs

from .api import create_app
from .ray_model import SPEC_HINT, model_app, tolerate_slow_start
from .settings import ServerSettings


class ServerIngress:
    """The network API (`ui.net.api.create_app`) as a Serve ingress: every connection's
    engine runs in this replica and sends its windows to the model application `model_app`."""

    def __init__(self, model_app: str, settings: ServerSettings):
        self.model_app, self.settings = model_app, settings

    def __serve_build_asgi_app__(self):
        # RemoteModel makes blocking Serve calls, which Serve forbids on the replica's event loop
        with ThreadPoolExecutor(1) as pool:
            model = pool.submit(RemoteModel, self.model_app).result()
        return create_app(model, self.settings)


def server_app(settings: ServerSettings, model_app: str = DEFAULT_APP, *, replicas: int = 1, cpus: float = 0.0):
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


def run_server(spec: str, settings: ServerSettings, *, replicas: int = 1, address: str | None = None, name: str = DEFAULT_APP,
               num_cpus: int | None = None, ingress_replicas: int = 1, cpus: float = 1.0) -> None:
    """`genre-serve --ray`: the model deployment (`name`, `replicas`) plus the WebSocket
    ingress (`name`-ws) on Serve's HTTP proxy at settings.host:settings.port. Without `address`
    a local Ray is started (it lives as long as this process); on a cluster the apps stay up.
    Model replicas have `cpus` each."""
    ray, serve = import_ray(SPEC_HINT)
    if address:
        connect(address, spec=SPEC_HINT)
    else:
        tolerate_slow_start()  # a busy machine: the HTTP proxy may take longer than Serve's 5 s to start
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
        quiet_serve_logs()
    serve.start(http_options={"host": settings.host, "port": int(settings.port)})
    serve.run(model_app(spec, replicas=replicas, cpus=cpus), name=name, route_prefix=None)
    serve.run(server_app(settings, name, replicas=ingress_replicas), name=f"{name}-ws", route_prefix="/")
