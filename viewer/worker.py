"""``PriorWorker``: runs every model job off the GUI threads, fairly between browser tabs.

GUI callbacks never touch the model: they :meth:`PriorWorker.submit` a job and return at once.
A job of the same ``(owner, kind)`` as a queued or running one cancels it (its cancel flag is set;
prior tasks then raise :class:`prior.errors.Cancelled` at their next step). Progress, results and
errors come back through the job's callbacks, called on a worker thread; receivers hand them to
their display pacer rather than drawing here.

Each owner (a tab's session, the app for model loads) has its own lane: its jobs run in the order
they came. Lanes share the one model by taking turns (:class:`_Turn`): a job holds the turn while
it computes and hands it on between steps when another lane is waiting (prior tasks look at their
cancel flag once per step: :class:`TurnFlag` passes the turn there), so a tab's Complete runs
between the steps of another tab's long generation instead of waiting behind it. Only one job
computes at a time, so the model is never used by two threads at once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prior.errors import Cancelled, InputError
from prior.progress import Progress


@dataclass
class JobContext:
    """What a running job sees: the model resources, its cancel flag (hand it to the prior's
    tasks: they look at it once per step) and a progress reporter."""

    resources: Any
    cancel: TurnFlag
    report: Callable[[Progress], None]


@dataclass
class Job:
    """A unit of model work. ``run(ctx)`` returns the result passed to ``on_done``.

    ``started`` is the ``time.monotonic()`` at which it began computing (None while queued)."""

    kind: str
    owner: Any
    run: Callable[[JobContext], Any]
    on_progress: Callable[[Progress], None] | None = None
    on_done: Callable[[Any], None] | None = None
    on_error: Callable[[str], None] | None = None
    on_cancel: Callable[[], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None
    started: float | None = None

    def describe(self) -> str:
        if self.progress is None:
            return self.kind
        return f"{self.kind} {self.progress.step}/{self.progress.total}"

    def seconds_left(self) -> float | None:
        """Time left at the pace so far (None before the first report)."""
        p = self.progress
        if p is None or self.started is None or p.step <= 0:
            return None
        return (time.monotonic() - self.started) / p.step * max(0, p.total - p.step)


class _Turn:
    """The model's one seat, taken by lanes in the order they asked for it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: object | None = None
        self._waiting: deque[object] = deque()

    def take(self, lane: object, cancel: threading.Event) -> None:
        """Wait for the seat; :class:`Cancelled` if ``cancel`` is set meanwhile."""
        with self._cond:
            self._waiting.append(lane)
            while self._holder is not None or self._waiting[0] is not lane:
                if cancel.is_set():
                    self._waiting.remove(lane)
                    self._cond.notify_all()
                    raise Cancelled("cancelled while waiting for the model")
                self._cond.wait(0.05)
            self._waiting.popleft()
            self._holder = lane

    def leave(self, lane: object) -> None:
        with self._cond:
            if self._holder is lane:
                self._holder = None
                self._cond.notify_all()

    def hand_on(self, lane: object, cancel: threading.Event) -> None:
        """Let a waiting lane have a turn, then take the seat back (nothing if none waits)."""
        with self._cond:
            if not self._waiting or self._holder is not lane:
                return
        self.leave(lane)
        self.take(lane, cancel)


class TurnFlag:
    """A job's cancel flag as its task sees it: ``is_set()`` (asked once per step) first lets a
    waiting lane have a turn at the model, then answers whether the job was cancelled."""

    def __init__(self, cancel: threading.Event, turn: _Turn, lane: object) -> None:
        self._cancel, self._turn, self._lane = cancel, turn, lane

    def is_set(self) -> bool:
        self._turn.hand_on(self._lane, self._cancel)
        return self._cancel.is_set()

    def set(self) -> None:
        self._cancel.set()


@dataclass(eq=False)
class _Lane:
    """One owner's jobs: ``pending`` in order, ``running`` the one started (maybe waiting its turn)."""

    owner: Any
    pending: list[Job] = field(default_factory=list)
    running: Job | None = None
    wake: threading.Event = field(default_factory=threading.Event)


class PriorWorker:
    """Runs jobs on one thread per owner with work, taking turns at the model (see the module
    docstring); ``resources`` is handed to every job."""

    def __init__(self, resources: Any, *, on_change: Callable[[], None] | None = None) -> None:
        self.resources = resources
        self._lock = threading.Lock()
        self._lanes: dict[int, _Lane] = {}  # id(owner) -> its lane, while it has work
        self._threads: list[threading.Thread] = []
        self._turn = _Turn()
        self._on_change = on_change
        self._stopped = False

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        """Queue ``job``, cancelling any queued or running job with the same owner and kind."""
        self.cancel(job.owner, job.kind)
        with self._lock:
            if self._stopped:
                job.cancel.set()  # still run, to report that it stopped
            lane = self._lanes.get(id(job.owner))
            new = lane is None
            if lane is None:
                lane = self._lanes[id(job.owner)] = _Lane(job.owner)
            lane.pending.append(job)
            if new:
                thread = threading.Thread(target=self._serve, args=(lane,), name="prior-worker", daemon=True)
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
                thread.start()
        self._changed()
        return job

    def cancel(self, owner: Any, kind: str | None = None) -> None:
        """Cancel the owner's jobs (of one kind, or all)."""
        with self._lock:
            lane = self._lanes.get(id(owner))
            for job in _jobs(lane):
                if kind is None or job.kind == kind:
                    job.cancel.set()

    def job_of(self, owner: Any) -> Job | None:
        """The owner's started job, else its next queued one, else None."""
        with self._lock:
            return next(iter(_jobs(self._lanes.get(id(owner)))), None)

    @property
    def running(self) -> list[Job]:
        """The started jobs of every owner (one computes at a time; the others wait their turn)."""
        with self._lock:
            return [lane.running for lane in self._lanes.values() if lane.running is not None]

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is queued or running (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._lanes:
                    return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for lane in self._lanes.values():
                for job in _jobs(lane):
                    job.cancel.set()  # each still reports that it stopped
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)

    # -- the lanes -----------------------------------------------------------------------------
    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:  # a status display must never take the worker down
                traceback.print_exc()

    def _serve(self, lane: _Lane) -> None:
        """A lane's thread: its jobs in order, then it ends (a closed tab leaves nothing behind)."""
        while True:
            with self._lock:
                if not lane.pending:
                    del self._lanes[id(lane.owner)]
                    break
                job = lane.running = lane.pending.pop(0)
            self._changed()
            self._run(job, lane)
            with self._lock:
                lane.running = None
            job = None  # not kept while the lane waits: it holds its owner (a closed tab's session)
            self._changed()
        self._changed()

    def _run(self, job: Job, lane: _Lane) -> None:
        def report(progress: Progress) -> None:
            job.progress = progress
            if job.on_progress is not None and not job.cancel.is_set():
                job.on_progress(progress)

        ctx = JobContext(self.resources, TurnFlag(job.cancel, self._turn, lane), report)
        try:
            if job.cancel.is_set():
                raise Cancelled("cancelled before it started")
            self._turn.take(lane, job.cancel)
            job.started = time.monotonic()
            try:
                result = job.run(ctx)
            finally:
                self._turn.leave(lane)
            if job.cancel.is_set():
                raise Cancelled("cancelled")
        except Cancelled:
            if job.on_cancel is not None:
                _safe(job.on_cancel)
            return
        except InputError as exc:
            if job.on_error is not None:
                _safe(job.on_error, str(exc))
            return
        except Exception as exc:  # a failing job is reported; the worker keeps serving
            traceback.print_exc()
            if job.on_error is not None:
                _safe(job.on_error, f"{job.kind} failed: {type(exc).__name__}: {exc}")
            return
        if job.on_done is not None:
            _safe(job.on_done, result)


def _jobs(lane: _Lane | None) -> list[Job]:
    """A lane's started job first, then its queued ones."""
    if lane is None:
        return []
    return ([lane.running] if lane.running is not None else []) + lane.pending


NAN_BY_DESIGN = ("observations", "reprojection_px")  # observed joints, a photo fit's errors: NaN = not seen


def non_finite_part(result: Any, name: str = "result") -> str | None:
    """The name of the first array in ``result`` (an array, a tensor, or tuples and dataclasses of
    them) that holds NaN or Inf, or None. Error measures (``*_mm``) and observations, which may be
    NaN by design, are not looked at."""
    if isinstance(result, torch.Tensor):
        return name if result.is_floating_point() and not bool(torch.isfinite(result).all()) else None
    if isinstance(result, np.ndarray):
        return name if result.dtype.kind in "fc" and not np.isfinite(result).all() else None
    if isinstance(result, (tuple, list)):
        parts = (non_finite_part(item, f"{name}[{i}]") for i, item in enumerate(result))
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        parts = (non_finite_part(getattr(result, f.name), f.name) for f in dataclasses.fields(result)
                 if f.name not in NAN_BY_DESIGN and not f.name.endswith("_mm"))
    else:
        return None
    return next((part for part in parts if part is not None), None)


def _safe(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        traceback.print_exc()
