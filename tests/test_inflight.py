"""The shared worker keeps several calls in flight for a remote model (max_in_flight > 1),
bounded, one window per engine in flight and one pending; in-process models stay serial."""
import threading
import time

import numpy as np
from support.polling import wait_for

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
        self.threads = set()  # threads the calls ran on

    def predict(self, windows):
        ids = [int(w[0]) for w in windows]
        with self.lock:
            self.threads.add(threading.current_thread())
            self.active += ids
            self.most = max(self.most, len(self.active))
            self.seen += ids
        self.gate.wait(60)
        with self.lock:
            for i in ids:
                self.active.remove(i)
        return np.tile(np.array([[0.25, 0.75]], np.float32), (len(windows), 1))


def refusals(w):
    """Record each time the worker looked for work and started none while windows were pending:
    the bound (or the one-per-engine rule) held at that moment, seen as it happens instead of
    inferred from a quiet interval, which a busy machine can make too short to notice a break."""
    seen = []
    take = w._take_batch

    def recording():
        jobs = take()
        if not jobs and w._pending:
            seen.append(len(w._pending))
        return jobs

    w._take_batch = recording
    return seen


def job(key_id, n, got):
    w = np.full(400, float(key_id * 100 + n), np.float32)
    return Job(window=w, deliver=lambda j, p, ms, err: got.append((key_id, n, err)), meta=n)


def test_remote_model_keeps_bounded_calls_in_flight():
    m = GatedModel(max_in_flight=3)
    w = InferenceWorker(m, max_batch=1)
    refused = refusals(w)
    got = []
    keys = [object() for _ in range(6)]
    for i, k in enumerate(keys):
        w.submit(k, job(i, 0, got))
    assert wait_for(lambda: len(m.active) == 3)
    # the worker looked again with 3 windows pending and started none (a broken bound starts a 4th)
    assert wait_for(lambda: 3 in refused), (refused, m.active)
    assert len(m.active) == 3 and w.pending() == 3
    m.gate.set()
    assert wait_for(lambda: len(got) == 6)
    assert m.most == 3 and sorted(k for k, _, _ in got) == list(range(6))
    w.stop()


def test_one_window_per_engine_in_flight_newest_pending_results_in_order():
    m = GatedModel(max_in_flight=4)
    w = InferenceWorker(m, max_batch=1)
    refused = refusals(w)
    got = []
    k = object()
    assert w.submit(k, job(1, 0, got)) is False
    assert wait_for(lambda: m.active == [100])
    # while window 0 is in flight, 1 waits (not sent beside it) and 2 replaces it
    assert w.submit(k, job(1, 1, got)) is False
    assert wait_for(lambda: 1 in refused), (refused, m.active)  # the worker saw window 1 and held it
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
    thread = w._thread
    assert len(m.active) == 1
    m.gate.set()
    assert wait_for(lambda: len(got) == 4)
    # every call ran on the worker's own thread: while one runs, nothing can start another
    # (a structural check, not a quiet interval that a busy machine may make too short)
    assert m.most == 1 and m.threads == {thread}, m.threads
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
    # a second failure: with max_in_flight=2 one leaked slot would still leave a free one
    k2 = object()
    w.submit(k2, job(2, 0, got))
    assert wait_for(lambda: len(got) == 2)
    assert wait_for(lambda: w._running == 0), w._running  # both failed calls gave their slot back
    w.submit(k, job(1, 1, got))  # and a third call runs
    assert wait_for(lambda: len(got) == 3)
    assert isinstance(got[0][2], RuntimeError) and isinstance(got[1][2], RuntimeError) and got[2][2] is None
    w.stop()


def test_in_process_results_are_delivered_apart_in_order_and_bounded():
    """The next forward runs while the last one's results are still being delivered (a slow
    callback, the readout's Python work); a stalled delivery holds up the forwards once two
    batches wait, instead of a queue growing."""
    m = GatedModel()
    m.gate.set()
    w = InferenceWorker(m, max_batch=1)
    release = threading.Event()
    got = []

    def slow(j, p, ms, err):
        release.wait(60)
        got.append(j.meta)

    keys = [object() for _ in range(8)]
    for i, k in enumerate(keys):
        w.submit(k, Job(window=np.full(400, float(i), np.float32), deliver=slow, meta=i))
    # forward 1 is being delivered, 2 and 3 wait for delivery, 4 waits for room: no 5th forward
    # (held can also be 1 for a moment after forward 3, before the delivery thread took batch 1)
    assert wait_for(lambda: w._deliveries.held == 1 and len(m.seen) == 4), (m.seen, w.pending())
    time.sleep(0.2)  # (room for a wrong 5th forward to show)
    assert len(m.seen) == 4 and w.pending() == 4 and not got and w._deliveries.held == 1
    release.set()
    assert wait_for(lambda: len(got) == 8)
    assert got == list(range(8)) and m.seen == list(range(8))
    assert len(m.threads) == 1  # still one forward at a time, on the worker thread
    w.stop()


def test_in_process_delivery_can_stay_on_the_forward_thread():
    m = GatedModel()
    m.gate.set()
    w = InferenceWorker(m, max_batch=1, deliver_apart=False)
    threads = []
    w.submit(object(), Job(window=np.zeros(400, np.float32), meta=0,
                           deliver=lambda j, p, ms, err: threads.append(threading.current_thread())))
    assert wait_for(lambda: threads)
    assert threads == list(m.threads)
    w.stop()
