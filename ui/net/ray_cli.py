"""Deploy a model on Ray Serve: replicas, request batching, restarts.

`genre-serve-ray`, also `python -m ui.net.ray_cli`:

    genre-serve-ray --model musicnn --replicas 2            # local Ray, stays up
    genre-serve-ray --model musicnn --replicas 4 --address 10.0.0.5:6379   # a cluster

Edges then use `load_model("ray://genre")` (or `ray://genre@HOST:6379`): their engines
resample and buffer locally and send only windows (the deployment: ui/net/ray_model.py).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from stream.errors import ModelLoadError
from stream.models.remote import DEFAULT_APP, import_ray, quiet_serve_logs
from ui.options import add_model_flag

from .ray_model import SPEC_HINT, deploy


def main(argv=None) -> int:
    """Console entry point (`genre-serve-ray`)."""
    p = argparse.ArgumentParser(prog="genre-serve-ray", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flag(p, default="musicnn")
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
    quiet_serve_logs()
    try:
        deploy(a.model, name=a.name, address=a.address, num_cpus=a.num_cpus, replicas=a.replicas,
               autoscale=autoscale, cpus=a.cpus, gpus=a.gpus, max_batch_size=a.max_batch,
               batch_wait_s=a.batch_wait_ms / 1000.0)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while Ray or the deployment starts: say so, not a bare 130
        print("genre-serve-ray: interrupted while deploying; "
              + ("the cluster may keep what was deployed so far (`serve status`)." if a.address
                 else "the local Ray goes with this process."), file=sys.stderr, flush=True)
        return 130
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
