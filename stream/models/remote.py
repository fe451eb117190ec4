"""`RemoteModel`: an `AudioModel` whose forward runs on a Ray Serve deployment.

The engine stays where the audio is (it validates, resamples and buffers); only the windows
travel, and probabilities come back. The deployment (`ui/net/ray_model.py`, `genre-serve-ray`) runs any model
`load_model` accepts, batches requests from all edges with `@serve.batch`, and restarts
replicas that die.

    model = load_model("ray://genre")                  # Ray on this machine (or RAY_ADDRESS)
    model = load_model("ray://genre@10.0.0.5:6379")    # an existing cluster's head node
"""
from __future__ import annotations

import logging
import os
import re
import socket
import time

import numpy as np

from ..errors import ModelLoadError
from .base import AudioModel

log = logging.getLogger(__name__)

SCHEME = "ray://"
DEFAULT_APP = "genre"
INSTALL_HINT = ("Ray Serve is an optional dependency: pip install '.[serve]' "
                "(or pip install -r requirements-serve.txt).")
CONNECT_TIMEOUT_S = 5.0  # TCP probe of the head node: ray.init itself retries for minutes
READY_TIMEOUT_S = 120.0  # a deployment still starting (replicas loading the model)
REQUEST_TIMEOUT_S = 30.0  # one predict call (includes waiting for a restarted replica)
WAITING = ("DEPLOYING", "NOT_STARTED", "UNHEALTHY")  # app states worth waiting for


class RemoteModelError(RuntimeError):
    """A remote predict call failed (replica died, timed out, Ray went away). The engine
    counts the window as an error and the stream goes on with the next hop."""


def parse_spec(spec: str) -> tuple[str, str | None]:
    """"ray://APP[@ADDRESS]" -> (app, address or None)."""
    rest = spec.strip()[len(SCHEME):] if spec.strip().lower().startswith(SCHEME) else spec.strip()
    app, _, address = rest.partition("@")
    return app.strip("/ ") or DEFAULT_APP, (address.strip() or None)


def import_ray(spec: str = SCHEME):
    """(ray, serve), or a ModelLoadError that says how to install them."""
    try:  # inside: Ray is an optional dependency (the `serve` extra); without it, an error saying how to install it
        import ray
        from ray import serve
    except ImportError as exc:
        raise ModelLoadError(spec, f"Ray Serve is not installed ({exc})", INSTALL_HINT) from exc
    return ray, serve


def _probe(address: str, timeout: float) -> str | None:
    """None if something listens at HOST:PORT, else why not."""
    hostport = address[len(SCHEME):] if address.startswith(SCHEME) else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return f"expected HOST:PORT, e.g. 127.0.0.1:6379, got {address!r}"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def connect(address: str | None = None, *, spec: str = SCHEME, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """Join the Ray cluster at `address` (None: RAY_ADDRESS, else the one running on this
    machine); returns the address used. A Ray already initialised in this process is used
    as is. Raises ModelLoadError naming the address when nothing answers there."""
    ray, _ = import_ray(spec)
    if ray.is_initialized():
        return address or "this process's Ray"
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    advice = ("Start Ray there (`ray start --head`, or `genre-serve-ray --model musicnn` for a local "
              "one), or give the right address: ray://APP@HOST:6379 or the RAY_ADDRESS environment variable.")
    if address not in ("auto", "local"):
        why = _probe(address, timeout)
        if why:
            raise ModelLoadError(spec, f"Ray is not reachable at {address} ({why})", advice)
    where = "on this machine (address 'auto')" if address == "auto" else f"at {address}"
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:
        if isinstance(exc, getattr(ray.exceptions, "AuthenticationError", ())):  # raised here, before asking
            raise ModelLoadError(spec, f"RAY_AUTH_MODE=token is set but {_token_here()}", TOKEN_ADVICE) from exc
        if _refused_token(exc):
            raise ModelLoadError(spec, f"Ray answered {where} but refused this process: the cluster uses token "
                                       f"authentication and {_token_here()}", TOKEN_ADVICE) from exc
        if isinstance(exc, (ConnectionError, RuntimeError, ValueError)):
            raise ModelLoadError(spec, f"Ray is not reachable {where} ({type(exc).__name__}: {exc})", advice) from exc
        raise
    quiet_serve_logs()
    return address


TOKEN_ADVICE = ("Give this process the cluster's token: `ray get-auth-token` on the head node prints it; then "
                "export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token> (or RAY_AUTH_TOKEN_PATH=<file>, or put it "
                "in ~/.ray/auth_token of the user running this command).")


def _refused_token(exc: BaseException) -> bool:
    """Whether the cluster refused ray.init's token (or its absence). Ray 2.60 says so only in the
    text of a RuntimeError under its ConnectionError, after ~20 s of retries."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _token_here() -> str:
    """What this process would send, in words (never the token itself)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return ("this process has token authentication off (RAY_AUTH_MODE is "
                f"{os.environ.get('RAY_AUTH_MODE') or 'unset'}), so it sent no token")
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        if os.environ.get(name):
            return f"the token from {name} is wrong"
    path = os.path.expanduser("~/.ray/auth_token")
    if os.path.isfile(path):
        return f"the token in {path} is wrong"
    return f"no token was found (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH and {path} are all missing)"


def quiet_serve_logs() -> None:
    """Ray Serve's client side logs its plumbing at INFO on its own handler ("Started
    <...SharedRouterLongPollClient object at 0x...>", "Connecting to existing Serve app ...
    will not be applied" when `serve.run` follows `serve.start`): noise on an edge's or a
    command's terminal. Its warnings and errors still show."""
    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def wait_until_running(app: str, *, spec: str, where: str, timeout: float = READY_TIMEOUT_S,
                       say=None) -> int:
    """Wait (bounded) for Serve application `app` to run; returns its running replicas.
    `say(message)` (default: a log warning) is told once when it has to wait."""
    _, serve = import_ray(spec)
    deploy = (f"Deploy it: genre-serve-ray --model musicnn --name {app}"
              + ("" if where in ("auto", "this process's Ray") else f" --address {where}"))
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            apps = serve.status().applications
        except Exception as exc:  # RayServeException: no Serve instance on this cluster
            raise ModelLoadError(spec, f"Ray Serve is not running on the cluster at {where} ({exc})", deploy) from exc
        st = apps.get(app)
        if st is None:
            running = ", ".join(sorted(apps)) or "none"
            raise ModelLoadError(spec, f"no Ray Serve application {app!r} at {where} (applications: {running})", deploy)
        status = getattr(st.status, "value", str(st.status))
        if status == "RUNNING":
            return sum(d.replica_states.get("RUNNING", 0) for d in st.deployments.values())
        if status not in WAITING:
            raise ModelLoadError(spec, f"Ray Serve application {app!r} is {status}: {st.message or 'no message'}", deploy)
        if time.monotonic() > deadline:
            raise ModelLoadError(spec, f"Ray Serve application {app!r} is still {status} after {timeout:.0f} s",
                                 "Check `serve status` on the cluster; replicas may lack CPUs/GPUs to start.")
        if not said:
            msg = f"Ray Serve application {app!r} is {status}; waiting up to {timeout:.0f} s for it to start."
            (say or log.warning)(msg)
            said = True
        time.sleep(0.5)


class RemoteModel(AudioModel):
    """A model served by Ray Serve (`genre-serve-ray`), behind the `AudioModel` interface.

    Labels, sample rate, default window/hop, default labels and multi_label come from the
    deployment, so engines behave exactly as with the same model in-process.
    max_in_flight: calls (= windows, with max_batch 1) the shared inference worker keeps in
        flight at once. None: what the replicas running at load time can work on (2 each on a
        CPU, a full batch each on a GPU). More only queues windows at the replicas, where a
        newer window of the same stream can no longer replace them: latency grows instead of
        windows being skipped.
    max_batch: windows the worker puts in one call (the replica batches calls again).
    request_timeout_s: a call that takes longer fails (the window counts as an error).
    """
    backend = "ray serve"  # what runs the forward, as the in-process models say theirs

    def __init__(self, app: str = DEFAULT_APP, address: str | None = None, *, max_in_flight: int | None = None,
                 max_batch: int = 1, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 ready_timeout_s: float = READY_TIMEOUT_S, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        spec = f"{SCHEME}{app}" + (f"@{address}" if address else "")
        self._ray, serve = import_ray(spec)
        where = connect(address, spec=spec, timeout=connect_timeout_s)
        waited: list[str] = []

        def say(msg):
            waited.append(msg)
            log.warning(msg)

        replicas = wait_until_running(app, spec=spec, where=where, timeout=ready_timeout_s, say=say)
        self.app, self.address = app, where
        self._handle = serve.get_app_handle(app)
        try:
            info = self._handle.info.remote().result(timeout_s=request_timeout_s)
        except Exception as exc:
            raise ModelLoadError(spec, f"application {app!r} did not answer info() ({_short(exc)})",
                                 "Is it a model deployment of genre-serve-ray? Redeploy with genre-serve-ray.") from exc
        self.name = f"{info['name']} @ {spec}"
        self.sample_rate = int(info["sample_rate"])
        self.labels = list(info["labels"])
        self.multi_label = bool(info["multi_label"])
        self.default_labels = None if info["default_labels"] is None else list(info["default_labels"])
        self.default_window_s = float(info["default_window_s"])
        self.default_hop_s = float(info["default_hop_s"])
        self.min_samples = int(info["min_samples"])
        # a patch-scoring model: engines send only each hop's new patch (3x less traffic for MusiCNN)
        self.patch_samples = info.get("patch_samples")
        self.patch_grid = info.get("patch_grid")  # patches cut as an in-process engine cuts them
        self.genres = info.get("genres")  # (None from a deployment older than the genre level)
        # what the replicas run (None from an older deployment): they pick by their own CPU
        self.backend, self.precision = info.get("backend"), info.get("precision")
        if max_in_flight is None:
            max_in_flight = max(2, replicas * int(info.get("in_flight", 2)))
        self.max_in_flight = max(1, int(max_in_flight))
        self.max_batch = max(1, int(max_batch))
        self.request_timeout_s = float(request_timeout_s)
        self.replicas = replicas
        runs = f", {self.backend} {self.precision}" if self.backend else ""
        self.notice = (f"Model: {info['name']} served by Ray Serve app {app!r} at {where} "
                       f"({replicas} replica{'s' if replicas != 1 else ''}{runs})"
                       + ("; waited for it to start." if waited else "."))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of windows, computed by a replica. Raises
        RemoteModelError (one line, the cause chained) when the call fails."""
        w = np.ascontiguousarray(windows, dtype=np.float32)
        if not self._ray.is_initialized():  # a call now would start a fresh local Ray by itself
            raise RemoteModelError(f"remote model {self.app!r}: Ray was shut down in this process "
                                   "(ray.shutdown()); load the model again to reconnect")
        try:
            out = self._handle.predict.remote(w).result(timeout_s=self.request_timeout_s)
        except Exception as exc:
            raise RemoteModelError(f"remote model {self.app!r}: {_short(exc)}") from exc
        return np.asarray(out, dtype=np.float32)


def _short(exc: BaseException) -> str:
    """Ray's errors carry whole remote tracebacks: keep the type and the first line of the
    remote cause (a RayTaskError wraps the exception the replica raised)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:
        exc = cause
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def load_remote(spec: str, **kwargs) -> RemoteModel:
    """`load_model("ray://APP[@ADDRESS]")`."""
    app, address = parse_spec(spec)
    return RemoteModel(app, address, **kwargs)
