"""The model served by Ray Serve: a real local Ray (2 CPUs), real replicas, no mocks.

Run by tests/test_serve.py in a pytest process of its own (this process becomes a Ray driver);
by hand: `python -m pytest -p support.ray_child tests/serve_cases.py` from the repository root
with tests/ on PYTHONPATH."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from harness.proc import free_port
from support.polling import wait_for

from stream import EngineConfig, ModelLoadError, StreamEngine, load_model

ray = pytest.importorskip("ray", reason="Ray Serve is optional: pip install -r requirements-serve.txt")
from ray import serve  # noqa: E402

from stream.models.remote import RemoteModel, RemoteModelError  # noqa: E402
from ui.net.ray_model import ModelServer, deploy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "genre-test"
RATE = 16000



@pytest.fixture(scope="module")
def ray_app():
    # replicas import `stream` from this checkout
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    try:
        deploy("musicnn", name=APP, replicas=1, cpus=0.5, max_batch_size=8, batch_wait_s=0.01)
        yield APP
    finally:
        # Not ray.shutdown(): Serve's handle threads may still call into Ray afterwards, and Ray
        # then ends the process (exit 1, no report). This module runs in a pytest process of its
        # own (tests/test_serve.py), which leaves without Ray's exit handlers (support.ray_child).
        serve.shutdown()


@pytest.fixture(scope="module")
def local_model():
    return load_model("musicnn")


def signal(seed, seconds, rate=RATE):
    """Distinct test audio per stream: a chord plus coloured noise, chosen by `seed`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f = 110 * 2 ** (seed % 12 / 12)
    x = sum(0.2 / k * np.sin(2 * np.pi * f * k * t) for k in (1, 2, 3))
    noise = np.cumsum(rng.standard_normal(len(t))) if seed % 2 else rng.standard_normal(len(t))
    noise = noise / np.abs(noise).max()
    return (x + 0.1 * (seed % 5) * noise).astype(np.float32)


def test_remote_predictions_equal_in_process(ray_app, local_model):
    remote = load_model(f"ray://{ray_app}")
    # the replica picks its kernel by the CPU as an in-process load does (same machine: the same one)
    for attr in ("sample_rate", "labels", "multi_label", "default_labels", "default_window_s", "default_hop_s",
                 "min_samples", "backend", "precision"):
        assert getattr(remote, attr) == getattr(local_model, attr), attr
    windows = np.stack([signal(s, 9.0) for s in range(4)])
    want = local_model.predict(windows)
    assert np.abs(remote.predict(windows) - want).max() <= 1e-5
    for i in range(len(windows)):  # one window per call, batched with nothing or with others
        assert np.abs(remote.predict(windows[i:i + 1]) - want[i:i + 1]).max() <= 1e-5
    assert np.abs(want[0] - want[1]).max() > 1e-3  # the signals really score differently


def test_concurrent_engines_get_their_own_results(ray_app, local_model):
    remote = load_model(f"ray://{ray_app}")
    # whole windows: with patch reuse a background engine that skipped windows scores a slightly
    # different patch set than an inline one (in-process too); the edge test covers patch reuse
    n, cfg = 8, EngineConfig(smoothing_s=0, patch_reuse=False)
    results = {i: [] for i in range(n)}
    engines = [StreamEngine(remote, cfg, on_result=results[i].append) for i in range(n)]
    audio = [signal(100 + i, 11.0, 48000) for i in range(n)]
    # the calls actually in flight (not the configured limit): the first call waits (bounded)
    # until a second one has started, so concurrency is seen whatever the machine's speed; a
    # worker that sends one call at a time never starts the second, and the peak stays 1
    predict, lock, flight = remote.predict, threading.Lock(), {"now": 0, "peak": 0}
    second = threading.Event()

    def counting_predict(windows):
        with lock:
            flight["now"] += 1
            flight["peak"] = max(flight["peak"], flight["now"])
            first = flight["peak"] == 1 and not second.is_set()
            if flight["now"] >= 2:
                second.set()
        try:
            if first:
                second.wait(60)
            return predict(windows)
        finally:
            with lock:
                flight["now"] -= 1

    remote.predict = counting_predict

    def stream(i):
        x = audio[i]
        for s in range(0, len(x), 12000):
            engines[i].feed(x[s:s + 12000], 48000)
            time.sleep(0.005)
        engines[i].flush()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, e in enumerate(engines):
        assert e.drain(120), f"engine {i} did not finish"
        st = e.stats
        assert st.errors == 0, st.last_error
        times = [r.time_s for r in results[i]]
        assert times and times == sorted(times), "results out of order"
        # every readout is this engine's own window, as classified in-process (matched by time_s,
        # as tests/support/server.py does: a busy worker may skip windows, never change one)
        ref = {}
        with StreamEngine(local_model, cfg, background=False,
                          on_result=lambda r: ref.__setitem__(round(r.time_s, 6), r.raw_scores)) as inline:
            for s in range(0, len(audio[i]), 12000):  # the same chunks: where a chunk ends decides
                inline.feed(audio[i][s:s + 12000], 48000)  # how much resampler tail a window lacks
            inline.flush()
        assert e.latest.time_s == pytest.approx(max(ref))  # the final window arrived
        for r in results[i]:
            want = ref[round(r.time_s, 6)]
            assert max(abs(r.raw_scores[k] - want[k]) for k in want) <= 1e-5, (i, r.time_s)
        e.close()
    assert remote._stream_worker.max_in_flight > 1
    assert flight["peak"] >= 2, flight  # calls really overlapped


def _run_in_background(app_obj, name):
    """serve.run waits for the app to be ready: run it on a thread; its failure once the test
    deletes the app is expected."""
    def target():
        try:
            serve.run(app_obj, name=name, route_prefix=None)
        except Exception:
            pass

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def _replica_names(app):
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{app}#")}


def test_replica_killed_mid_stream_streams_continue(ray_app):
    app = "genre-kill"
    # a long batch wait keeps each call inside the replica for a while, so the kill hits one
    deploy("musicnn", name=app, replicas=1, cpus=0.5, max_batch_size=64, batch_wait_s=2.0)
    try:
        remote = load_model(f"ray://{app}")
        [old] = _replica_names(app)
        cfg = EngineConfig(smoothing_s=0, window_s=4.0, min_window_s=3.0)
        engines = [StreamEngine(remote, cfg) for _ in range(2)]
        stop = threading.Event()
        failures = []

        def stream(i):
            x, k = signal(7 + i, 4.0, 48000), 0
            try:
                while not stop.is_set():  # about real time: 0.25 s of audio every 0.25 s
                    engines[i].feed(x[k:k + 12000], 48000)
                    k = (k + 12000) % len(x)
                    time.sleep(0.25)
            except Exception as exc:  # the stream must never see the fault
                failures.append(exc)

        threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        try:
            assert wait_for(lambda: all(e.stats.windows_classified >= 1 for e in engines), 120)
            worker = remote._stream_worker
            assert wait_for(lambda: worker._running > 0, 120, step=0.001)
            after = [e.stats.windows_classified for e in engines]
            ray.kill(ray.get_actor(old, namespace="serve"), no_restart=True)
            # The call in flight either fails (counted as the engine's error, named) or, when
            # it was still queued at Serve's router, is routed to the new replica; either way
            # Serve starts a new replica and both streams go on through it.
            assert wait_for(lambda: all(e.stats.windows_classified >= a + 2 for e, a in zip(engines, after)), 240)
            for st in (e.stats for e in engines):
                assert not st.errors or ("RemoteModelError" in st.last_error and "genre-kill" in st.last_error)
            new = _replica_names(app)
            assert new and old not in new
        finally:  # (a feeding thread left running would call into soxr during interpreter exit)
            stop.set()
            for t in threads:
                t.join()
        assert not failures
        for e in engines:
            assert e.drain(120)
            st = e.stats
            # every window is accounted for: classified, skipped, failed or silent
            assert st.windows_classified + st.windows_skipped + st.errors + st.windows_silent == e._seq
            e.close()
    finally:
        serve.delete(app)


def test_deployment_still_starting_is_waited_for(ray_app, caplog, tmp_path):
    go = str(tmp_path / "go")  # the replica finishes starting once this file exists (same machine)

    class SlowStart(ModelServer):  # defined here: shipped to the replica by value
        def __init__(self, *args, **kwargs):
            end = time.monotonic() + 300
            while not os.path.exists(go) and time.monotonic() < end:
                time.sleep(0.05)
            super().__init__(*args, **kwargs)

    from ui.net.ray_model import model_app

    app = "genre-slow"
    runner = _run_in_background(model_app("musicnn", cpus=0.25, server_cls=SlowStart), app)

    def release_once_waiting():  # the replica may start only once the client says it waits
        if wait_for(lambda: "waiting up to" in caplog.text, 120):
            open(go, "w").close()

    releaser = threading.Thread(target=release_once_waiting, daemon=True)
    try:
        assert wait_for(lambda: app in serve.status().applications, 120)
        with caplog.at_level(logging.WARNING, logger="stream.models.remote"):
            assert serve.status().applications[app].status != "RUNNING"  # held until `go` exists
            releaser.start()
            model = load_model(f"ray://{app}")
        assert "waiting up to" in caplog.text and app in caplog.text
        assert "waited for it to start" in model.notice
        assert model.predict(signal(1, 3.0)[None]).shape == (1, len(model.labels))
    finally:
        open(go, "w").close()
        runner.join(120)
        serve.delete(app)


def test_deployment_that_never_starts_fails_after_the_bounded_wait(ray_app):
    class NeverStarts(ModelServer):
        def __init__(self, *args, **kwargs):
            time.sleep(600)

    from ui.net.ray_model import model_app

    app = "genre-never"
    _run_in_background(model_app("musicnn", cpus=0.25, server_cls=NeverStarts), app)
    try:
        assert wait_for(lambda: app in serve.status().applications, 120)
        with pytest.raises(ModelLoadError, match=r"genre-never.*still (DEPLOYING|NOT_STARTED) after 1 s"):
            RemoteModel(app, ready_timeout_s=1.0)
    finally:
        serve.delete(app)


def test_unknown_application_is_named(ray_app):
    with pytest.raises(ModelLoadError, match=r"no Ray Serve application 'nope'.*genre-test.*genre-serve-ray"):
        load_model("ray://nope")


def test_bad_window_fails_only_its_call(ray_app):
    remote = load_model(f"ray://{ray_app}")
    bad = np.full((1, RATE * 3), np.nan, np.float32)
    with pytest.raises(RemoteModelError, match="NaN"):
        remote.predict(bad)
    assert remote.predict(signal(2, 3.0)[None]).shape == (1, len(remote.labels))


def _run(code, env=None):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_ray_not_reachable_names_the_address():
    port = free_port()
    code = "from stream import load_model\nload_model('ray://genre@127.0.0.1:%d')" % port
    r = _run(code)
    assert r.returncode != 0
    assert f"Ray is not reachable at 127.0.0.1:{port}" in r.stderr and "ray start --head" in r.stderr
    r = _run("from stream import load_model\nload_model('ray://genre')", env={"RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert f"Ray is not reachable at 127.0.0.1:{port}" in r.stderr


def test_not_installed_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ModelLoadError, match="requirements-serve.txt"):
        load_model("ray://genre")
    r = _run("import sys\nsys.modules['ray'] = None\nfrom ui.net.ray_cli import main\nsys.exit(main([]))")
    assert r.returncode == 2 and "requirements-serve.txt" in r.stderr
    # everything else still works without it
    assert load_model("musicnn").labels


EDGE = """
import runpy, sys
for name in ('torch', 'transformers', 'safetensors', 'gradio', 'huggingface_hub', 'httpx'):
    sys.modules[name] = None  # an edge (requirements-edge.txt): the engine and Ray, no model libraries
sys.argv = ['cli_listen.py', '--model', 'ray://%s', '--file', %r, '--fast', '--json', '--smoothing', '0']
runpy.run_path('cli_listen.py', run_name='__main__')
"""


def test_edge_without_torch_runs_cli_listen_through_ray(ray_app, local_model, tmp_path):
    import json

    import soundfile as sf

    wav = tmp_path / "edge.wav"
    x = signal(42, 12.0, 44100)
    sf.write(wav, np.stack([x, x], 1), 44100, subtype="PCM_16")
    r = _run(EDGE % (ray_app, str(wav)), env={"RAY_ADDRESS": ray.get_runtime_context().gcs_address})
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    results = [e for e in events if "scores" in e]
    assert results, r.stdout[-2000:]
    # the same command with the model in-process: the same readouts
    local_code = EDGE.replace("'ray://%s'", "'musicnn'").split("\n")
    local_code = "\n".join(l for l in local_code if "sys.modules[name]" not in l and not l.startswith("for name"))
    # replicas score whole patches (they keep no stream's frames): so does the local reference
    local_code = "import stream.models.musicnn.model as M\nM.StreamingFront.build = lambda *a: None\n" + local_code
    r2 = _run(local_code % str(wav))
    assert r2.returncode == 0, r2.stderr[-3000:]
    local = [e for e in (json.loads(l) for l in r2.stdout.splitlines() if l.startswith("{")) if "scores" in e]
    assert [r["time_s"] for r in results] == [r["time_s"] for r in local]
    for got, want in zip(results, local):
        assert_same_readout(got, want, 2e-4)  # JSON: 4 places


def assert_same_readout(got, want, tol):
    """Scores within `tol`; the label and the shown top-k the same wherever the reference's
    order is decided by more than 2 * tol (a closer tie may break either way between two
    batchings of the same forward)."""
    shared = got["scores"].keys() & want["scores"].keys()
    assert shared and max(abs(got["scores"][k] - want["scores"][k]) for k in shared) <= tol, (got, want)
    ranked = sorted(want["scores"].values(), reverse=True)
    if len(ranked) < 2 or ranked[0] - ranked[1] > 2 * tol:
        assert got["label"] == want["label"], (got, want)
    for rec in (got, want):  # a label shown on one side only sat at the edge of the top k
        edge = min(rec["scores"].values())
        for k in rec["scores"].keys() - shared:
            assert rec["scores"][k] - edge <= 2 * tol, (got, want)


def test_readouts_compare_labels_only_outside_a_tie():
    a = {"label": "techno", "scores": {"techno": 0.5, "house": 0.3, "ambient": 0.1}}
    assert_same_readout(a, a, 2e-4)
    tie = {"label": "house", "scores": {"house": 0.5001, "techno": 0.5, "ambient": 0.1}}
    assert_same_readout(tie, {"label": "techno", "scores": {"techno": 0.5, "house": 0.4999, "ambient": 0.1}}, 2e-4)
    with pytest.raises(AssertionError):
        assert_same_readout({"label": "house", "scores": {"house": 0.5, "techno": 0.3, "ambient": 0.1}}, a, 2e-4)
