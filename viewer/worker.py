"""``PriorWorker``: the one thread that owns the prior and runs every model job.

GUI callbacks never touch the model: they :meth:`PriorWorker.submit` a job and return at once.
A job of the same ``(owner, kind)`` as a queued or running one cancels it (its cancel flag is set;
prior tasks then raise :class:`prior.errors.Cancelled` at their next step). Progress, results and
errors come back through the job's callbacks, called on the worker thread; receivers hand them to
their display pacer rather than drawing here.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prior.errors import Cancelled, InputError
from prior.progress import Progress


@dataclass
class JobContext:
    """What a running job sees: the model resources, its cancel flag and a progress reporter."""

    resources: Any
    cancel: threading.Event
    report: Callable[[Progress], None]


@dataclass
class Job:
    """A unit of model work. ``run(ctx)`` returns the result passed to ``on_done``."""

    kind: str
    owner: Any
    run: Callable[[JobContext], Any]
    on_progress: Callable[[Progress], None] | None = None
    on_done: Callable[[Any], None] | None = None
    on_error: Callable[[str], None] | None = None
    on_cancel: Callable[[], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None

    def describe(self) -> str:
        if self.progress is None:
            return self.kind
        return f"{self.kind} {self.progress.step}/{self.progress.total}"


class PriorWorker:
    """Runs jobs one at a time on a daemon thread; ``resources`` is handed to every job."""

    def __init__(self, resources: Any, *, on_change: Callable[[], None] | None = None) -> None:
        self.resources = resources
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._on_change = on_change
        self._thread = threading.Thread(target=self._loop, name="prior-worker", daemon=True)
        self._thread.start()

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        """Queue ``job``, cancelling any queued or running job with the same owner and kind."""
        self.cancel(job.owner, job.kind)
        with self._lock:
            self._pending.append(job)
        self._queue.put(job)
        self._changed()
        return job

    def cancel(self, owner: Any, kind: str | None = None) -> None:
        """Cancel the owner's jobs (of one kind, or all)."""
        with self._lock:
            for job in [*self._pending, *( [self._running] if self._running else [])]:
                if job.owner is owner and (kind is None or job.kind == kind):
                    job.cancel.set()

    @property
    def running(self) -> Job | None:
        return self._running

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is queued or running (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending and self._running is None:
                    return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        with self._lock:
            for job in self._pending:
                job.cancel.set()  # still queued before the stop sentinel: each is reported
            if self._running is not None:
                self._running.cancel.set()
        self._queue.put(None)
        self._thread.join(timeout=5)

    # -- the thread ----------------------------------------------------------------------------
    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:  # a status display must never take the worker down
                traceback.print_exc()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job in self._pending:
                    self._pending.remove(job)
                cancelled = job.cancel.is_set()
                if not cancelled:
                    self._running = job
            if cancelled:  # never started: its owner still hears that it stopped
                if job.on_cancel is not None:
                    _safe(job.on_cancel)
                continue
            self._changed()
            self._run(job)
            with self._lock:
                self._running = None
            job = None  # not kept while waiting for the next: it holds its owner (a closed tab's session)
            self._changed()

    def _run(self, job: Job) -> None:
        def report(progress: Progress) -> None:
            job.progress = progress
            if job.on_progress is not None and not job.cancel.is_set():
                job.on_progress(progress)

        ctx = JobContext(self.resources, job.cancel, report)
        try:
            result = job.run(ctx)
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
