"""The shared worker keeps several calls in flight for a remote model (max_in_flight > 1),
bounded, one window per engine in flight and one pending; in-process models stay serial."""
import threading
import time

import numpy as np
from conftest import wait_for

from stream.models.base import AudioModel
from stream.worker import InferenceWorker, Job



class GatedModel(AudioModel):
    """Each call blocks until the test opens the gate; records what is in flight."""

    labels = ["a", "b"]

    def __init__(self, max_in_flight=None):
        if max_in_flight is not None:
            self.max_in_flight = max_in_flight
        self.max_batch = 1
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.active = []  # window ids being classified now
        self.most = 0
        self.seen = []

    def predict(self, windows):
        ids = [int(w[0]) for w in windows]
        with self.lock:
            self.active += ids
            self.most = max(self.most, len(self.active))
            self.seen += ids
        self.gate.wait(60)
        with self.lock:
            for i in ids:
                self.active.remove(i)
        return np.tile(np.array([[0.25, 0.75]], np.float32), (len(windows), 1))


def job(key_id, n, got):
    w = np.full(400, float(key_id * 100 + n), np.float32)
    return Job(window=w, deliver=lambda j, p, ms, err: got.append((key_id, n, err)), meta=n)


def test_remote_model_keeps_bounded_calls_in_flight():
    m = GatedModel(max_in_flight=3)
    w = InferenceWorker(m, max_batch=1)
    got = []
    keys = [object() for _ in range(6)]
    for i, k in enumerate(keys):
        w.submit(k, job(i, 0, got))
    assert wait_for(lambda: len(m.active) == 3)
    time.sleep(0.2)  # would let a 4th call start if the bound were broken
    assert len(m.active) == 3 and w.pending() == 3
    m.gate.set()
    assert wait_for(lambda: len(got) == 6)
    assert m.most == 3 and sorted(k for k, _, _ in got) == list(range(6))
    w.stop()


def test_one_window_per_engine_in_flight_newest_pending_results_in_order():
    m = GatedModel(max_in_flight=4)
    w = InferenceWorker(m, max_batch=1)
    got = []
    k = object()
    assert w.submit(k, job(1, 0, got)) is False
    assert wait_for(lambda: m.active == [100])
    # while window 0 is in flight, 1 waits (not sent beside it) and 2 replaces it
    assert w.submit(k, job(1, 1, got)) is False
    time.sleep(0.2)
    assert m.active == [100] and w.pending() == 1
    assert w.submit(k, job(1, 2, got)) is True
    m.gate.set()
    assert wait_for(lambda: len(got) == 2)
    assert [n for _, n, _ in got] == [0, 2] and m.seen == [100, 102] and m.most == 1
    w.stop()


def test_in_process_model_runs_one_forward_at_a_time():
    m = GatedModel()  # no max_in_flight attribute
    w = InferenceWorker(m, max_batch=1)
    got = []
    for i in range(4):
        w.submit(object(), job(i, 0, got))
    assert wait_for(lambda: len(m.active) == 1)
    time.sleep(0.2)
    assert len(m.active) == 1
    m.gate.set()
    assert wait_for(lambda: len(got) == 4)
    assert m.most == 1
    w.stop()


def test_failed_remote_call_frees_its_slot_and_engine():
    class Flaky(GatedModel):
        def predict(self, windows):
            if int(windows[0][0]) % 100 == 0:
                raise RuntimeError("replica died")
            return super().predict(windows)

    m = Flaky(max_in_flight=2)
    m.gate.set()
    w = InferenceWorker(m, max_batch=1)
    got = []
    k = object()
    w.submit(k, job(1, 0, got))
    assert wait_for(lambda: len(got) == 1)
    w.submit(k, job(1, 1, got))
    assert wait_for(lambda: len(got) == 2)
    assert isinstance(got[0][2], RuntimeError) and got[1][2] is None
    w.stop()
