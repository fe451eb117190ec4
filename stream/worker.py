"""One inference thread per model, shared by every engine that uses the model.

Each engine has at most one pending window: a newer window replaces the older one (the
older is counted as skipped), so when the model is slower than the hop, lag stays bounded
instead of a queue growing. Pending engines are served in the order they started waiting
(a replaced window keeps its engine's place), so a busy engine cannot starve another.
Windows of equal length from several engines are batched into one forward call. A job may
also carry several equal-length inputs (the new patches of a patch-scoring model) and a
`prepare` hook that drops, just before the forward, inputs that no longer need scoring.

A remote model (`max_in_flight` > 1, e.g. a Ray Serve deployment) spends most of a call
waiting on the network and on other streams' batches, so the worker keeps up to
`max_in_flight` calls running at once; each engine still has at most one window in flight
and one pending, so its results arrive in order and its lag stays bounded. In-process
models run one forward at a time (a second one would only compete for the same cores), and
hand its results to a delivery thread of their own: the next forward starts while the
readouts of the last one are built (music detector, smoothing, callbacks), so the forward's
threads and that Python work run side by side instead of in turn.
"""
from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

IDLE_EXIT_S = 30.0  # the thread exits after this long with nothing to do; restarted on demand


@dataclass
class Job:
    """window: one window (n,), delivered as one row of probabilities (labels,); or a stack of
    model inputs (k, n), delivered as (k, labels). prepare(job), if set, runs on the worker
    thread just before the forward (outside the worker's lock) and may replace a stacked
    `window` by fewer rows (k may become 0: no forward, deliver still runs). scored(job, out),
    if set, runs on that thread right after the forward (before any later forward's prepare)
    and returns what deliver gets instead of `out`; deliver may run later, on another thread."""

    window: np.ndarray
    deliver: Callable[["Job", np.ndarray | None, float, BaseException | None], None]
    submitted: float = field(default_factory=time.perf_counter)
    meta: Any = None
    key: Any = None  # the engine it came from (set by submit)
    prepare: Callable[["Job"], None] | None = None
    context: list | None = None  # per input row, for models that keep per-stream state (`score`)
    scored: Callable[["Job", np.ndarray], Any] | None = None

    @property
    def width(self) -> int:
        """Samples per model input: jobs of equal width share a forward."""
        return self.window.shape[-1]

    def inputs(self) -> np.ndarray:
        return self.window if self.window.ndim == 2 else self.window[None]


def outcome(job: Job, out, err: BaseException | None) -> tuple[Any, BaseException | None]:
    """(what `job.deliver` gets, error) once its forward returned `out` or raised `err`."""
    if err is None and job.scored is not None:
        try:
            out = job.scored(job, out)
        except Exception as exc:
            out, err = None, exc
    return out, err


class _Deliveries:
    """Batches of results delivered in order on one thread of their own. At most `limit` wait:
    a slow callback then holds up the forwards instead of a queue growing."""

    def __init__(self, name: str, limit: int = 2):
        self.name, self.limit = name, limit
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False  # a batch is being delivered
        self.held = 0  # producers waiting for room (the bound at work)

    def put(self, batch: list) -> None:
        with self._cond:
            while len(self._queue) >= self.limit and self._thread is not None:
                self.held += 1
                self._cond.wait()
                self.held -= 1
            self._queue.append(batch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        """Wait until every queued batch was delivered."""
        end = time.monotonic() + timeout
        with self._cond:
            while (self._queue or self._busy) and time.monotonic() < end:
                self._cond.wait(max(0.0, end - time.monotonic()))

    def _run(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                if not self._queue:
                    self._cond.wait(IDLE_EXIT_S)
                if not self._queue:
                    self._thread = None
                    return
                batch = self._queue.popleft()
                self._busy = True
                self._cond.notify_all()
            deliver(batch)
            del batch  # not kept while idle: a closed engine is freed by reference counting


def deliver(batch: list) -> None:
    for job, out, ms, err in batch:
        try:
            job.deliver(job, out, ms, err)
        except Exception:
            log.exception("result delivery failed")


class InferenceWorker:
    def __init__(self, model, max_batch: int = 8, deliver_apart: bool = True):
        self.model = model
        self.max_batch = max(1, int(max_batch))
        self.max_in_flight = max(1, int(getattr(model, "max_in_flight", 1)))
        self._busy: set = set()  # keys with a window in flight (remote models only)
        self._running = 0  # calls in flight (remote models only)
        self._cond = threading.Condition()
        self._pending: dict[Any, Job] = {}  # insertion order = service order
        self._thread: threading.Thread | None = None
        self._stopping = False
        # in-process: deliveries on a thread of their own (remote calls deliver on their call thread)
        self._deliveries = (_Deliveries(f"results-{getattr(model, 'name', '')}")
                            if deliver_apart and self.max_in_flight == 1 else None)
        self.batches = 0
        self.windows = 0  # jobs served
        self.rows = 0  # model inputs scored (windows, or patches of patch-scoring models)

    def submit(self, key, job: Job) -> bool:
        """Queue `job` for `key` (an engine); returns True if it replaced an unserved job."""
        with self._cond:
            if self._stopping:
                return False
            replaced = key in self._pending
            if replaced and hasattr(job, "absorb"):
                job.absorb(self._pending[key])  # rows the superseded job would have scored, still needed
            job.key = key
            self._pending[key] = job  # same key keeps its place in the order
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"inference-{getattr(self.model, 'name', '')}", daemon=True)
                self._thread.start()
            self._cond.notify()
        return replaced

    def cancel(self, key) -> bool:
        """Drop `key`'s pending job, if any; returns True if one was dropped."""
        with self._cond:
            return self._pending.pop(key, None) is not None

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def stop(self, timeout: float = 10.0) -> None:
        """Drop pending windows and wait for a running forward to end (used at exit: a daemon
        thread still inside torch while the interpreter tears down can abort the process)."""
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self._cond.notify_all()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self._deliveries is not None:
            self._deliveries.join(timeout)
        with self._cond:  # remote calls in flight end by themselves (the model's request timeout)
            end = time.monotonic() + timeout
            while self._running and time.monotonic() < end:
                self._cond.wait(end - time.monotonic())

    def _take_batch(self) -> list[Job]:
        keys = [k for k in self._pending if k not in self._busy]  # _busy is empty in-process
        if not keys or self._running >= self.max_in_flight:
            return []
        n = self._pending[keys[0]].width
        chosen = [k for k in keys if self._pending[k].width == n][: self.max_batch]
        return [self._pending.pop(k) for k in chosen]

    def _run(self) -> None:
        while True:
            with self._cond:
                jobs = [] if self._stopping else self._take_batch()
                if not jobs and not self._stopping:
                    self._cond.wait(IDLE_EXIT_S)
                    jobs = [] if self._stopping else self._take_batch()
                if not jobs:
                    if self._stopping or not self._pending:  # idle too long, or the process exits
                        self._thread = None
                        return
                    continue  # every pending engine still has a window in flight
            if self.max_in_flight > 1:
                self._dispatch(jobs)
            else:
                self._forward(jobs)

    def _dispatch(self, jobs: list[Job]) -> None:
        """Start a call in its own thread (remote models): the call mostly waits on the network."""
        with self._cond:
            self._running += 1
            self._busy.update(j.key for j in jobs)
        threading.Thread(target=self._forward_then_free, args=(jobs,), daemon=True,
                         name=f"inference-call-{getattr(self.model, 'name', '')}").start()

    def _forward_then_free(self, jobs: list[Job]) -> None:
        try:
            self._forward(jobs)
        finally:
            with self._cond:
                self._running -= 1
                self._busy.difference_update(j.key for j in jobs)
                self._cond.notify_all()

    def _forward(self, jobs: list[Job]) -> None:
        t0 = time.perf_counter()
        try:
            for job in jobs:
                if job.prepare is not None:
                    job.prepare(job)
            probs = score(self.model, jobs)
            err = None
        except Exception as exc:  # a model failure must not kill the shared thread
            log.exception("model forward failed")
            probs, err = None, exc
        ms = (time.perf_counter() - t0) * 1000.0
        with self._cond:  # several call threads for a remote model
            self.batches += 1
            self.windows += len(jobs)
            self.rows += sum(len(j.inputs()) for j in jobs)
        start, batch = 0, []
        for job in jobs:
            rows = len(job.inputs())
            out = None if err is not None else probs[start] if job.window.ndim == 1 else probs[start:start + rows]
            start += rows
            out, job_err = outcome(job, out, err)
            batch.append((job, out, ms, job_err))
        if self._deliveries is not None:
            self._deliveries.put(batch)
        else:
            deliver(batch)


def score(model, jobs: list[Job]) -> np.ndarray:
    """The model's probabilities for the jobs' inputs, stacked. Where the jobs carry a context
    (live patches of a model with a streaming front end: `new_stream`), each row's goes along."""
    x = np.concatenate([j.inputs() for j in jobs])
    if not len(x):
        return np.zeros((0, 0), np.float32)
    if any(j.context is not None for j in jobs):
        context = [c for j in jobs for c in (j.context if j.context is not None else [(None, None)] * len(j.inputs()))]
        return model.predict(x, context=context)
    return model.predict(x)


_workers_lock = threading.Lock()
_all_workers: "weakref.WeakSet[InferenceWorker]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for w in list(_all_workers):
        w.stop()


def get_worker(model) -> InferenceWorker:
    """The worker shared by all engines of `model` (created on first use)."""
    with _workers_lock:
        w = getattr(model, "_stream_worker", None)
        if w is None:
            w = InferenceWorker(model, max_batch=getattr(model, "max_batch", 8))
            model._stream_worker = w
            _all_workers.add(w)
        return w
