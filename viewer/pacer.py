"""``Pacer``: a per-client display thread that applies scene updates at the display rate.

Producers (the prior worker, GUI callbacks, playback) ``post`` a drawing function under a key;
only the newest one per key is kept, and the pacer runs pending ones at most ``max_hz`` times a
second. Animations register a ``tick(dt)`` function that runs on every frame while set. The bone
writes a frame makes are collected and sent together at its end, inside ``frame()`` when given
(the tab's ``client.atomic``: the browser applies a frame's bones at once, and the server wakes its
sender once per frame instead of once per message; nothing is computed while it is held).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable
from typing import ContextManager

from .bones import collect_writes


class Pacer:
    def __init__(self, *, max_hz: float = 60.0, name: str = "pacer",
                 frame: Callable[[], ContextManager] | None = None) -> None:
        self.min_interval_s = 1.0 / max_hz
        self._frame = frame or contextlib.nullcontext
        self._pending: dict[str, Callable[[], None]] = {}
        self._flushed: list[threading.Event] = []  # set once the frame running the pending draws is sent
        self._ticks: dict[str, Callable[[float], None]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self.frames = 0
        self.frame_cpu_s = 0.0  # this thread's CPU time in frames (computing and sending), all told
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def post(self, key: str, draw: Callable[[], None]) -> None:
        """Run ``draw`` on the next frame, replacing any not yet run under the same ``key``."""
        with self._lock:
            self._pending[key] = draw
        self._wake.set()

    def draw_and_wait(self, key: str, draw: Callable[[], None], *, timeout: float = 10.0) -> bool:
        """:meth:`post` ``draw`` and wait until the frame that runs it has sent its writes (so a
        render the browser is asked for next shows them). False when that took over ``timeout`` s."""
        done = threading.Event()
        with self._lock:
            self._pending[key] = draw
            self._flushed.append(done)
        self._wake.set()
        return done.wait(timeout)

    def animate(self, key: str, tick: Callable[[float], None] | None) -> None:
        """Call ``tick(dt_s)`` every frame (``None`` stops it)."""
        with self._lock:
            if tick is None:
                self._ticks.pop(key, None)
            else:
                self._ticks[key] = tick
        self._wake.set()

    def animating(self, key: str) -> bool:
        return key in self._ticks

    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=2)

    def _loop(self) -> None:
        last = time.perf_counter()
        while not self._stopped:
            self._wake.wait(timeout=0.5)
            if self._stopped:
                return
            now = time.perf_counter()
            wait = self.min_interval_s - (now - last)
            if wait > 0:
                time.sleep(wait)
                now = time.perf_counter()
            dt, last = now - last, now
            with self._lock:
                pending, self._pending = self._pending, {}
                flushed, self._flushed = self._flushed, []
                ticks = list(self._ticks.items())
                if not ticks:
                    self._wake.clear()
            cpu0 = time.thread_time()
            with collect_writes() as writes:
                for _key, tick in ticks:
                    _run(tick, min(dt, 0.25))
                for draw in pending.values():
                    _run(draw)
            if writes:
                with self._frame():
                    for write in writes:
                        _run(write)
            self.frame_cpu_s += time.thread_time() - cpu0
            self.frames += 1
            for done in flushed:
                done.set()


def _run(fn: Callable[..., None], *args: float) -> None:
    try:
        fn(*args)
    except Exception:
        traceback.print_exc()
