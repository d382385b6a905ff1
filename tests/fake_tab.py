"""A browser tab without a browser: a :class:`viewer.session.ClientSession` over a fake client
that draws into a real viser server's scene and GUI (nothing connected), for fast tests of what
panels do server-side. Browser tests (``conftest.viewer_tab``) check what the page shows."""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import numpy as np


class FakeCamera:
    """What a session reads and sets of a tab's camera; its aspect is a 1280x800 tab's."""

    def __init__(self, aspect: float = 1.6) -> None:
        self.position = np.array([0.0, 1.0, 5.0])
        self.look_at = np.zeros(3)
        self.wxyz = np.array([0.0, 1.0, 0.0, 0.0])  # OpenCV axes: looking along world -Z, y down (turned about X)
        self.up_direction = (0.0, 1.0, 0.0)
        self.fov = math.radians(75.0)  # viser's default
        self.aspect = aspect
        self._state = SimpleNamespace(update_timestamp=1.0)  # the browser has reported it: framing may start

    def on_update(self, callback) -> None:
        pass


class FakeClient:
    """A tab as a session uses it, on a real viser server's scene and GUI."""

    def __init__(self, server) -> None:
        self.scene, self.gui, self.atomic = server.scene, server.gui, server.atomic
        self.camera = FakeCamera()
        self.client_id = 0

    def add_notification(self, title: str, body: str, **_) -> None:
        pass


def fake_session(app):
    """A new session of ``app`` on a fake client (close it when done)."""
    from viewer.session import ClientSession

    return ClientSession(app, FakeClient(app.server))


def settle(session, timeout: float = 180.0) -> None:
    """Wait for the worker's jobs and then for the display thread to have drawn what they posted:
    a marker posted to the display thread runs after the frame under way (``pacer.idle()`` is
    true while a frame still draws), twice, for draws that post more."""
    assert session.app.worker.wait_idle(timeout)
    for _ in range(2):
        drawn = threading.Event()
        session.pacer.post("test-settled", drawn.set)
        assert drawn.wait(30), "the display thread is stuck"


def run_coroutine(coro) -> object:
    """Run ``coro`` to its end on an event loop of its own, in a thread: a test process that has
    driven Playwright's sync API already runs a loop in this thread, so ``asyncio.run`` here fails."""
    import asyncio

    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out.get("value")


def press(session, handle) -> None:
    """Run a control's callbacks as a click (or an upload, or a change) in the tab does, with the
    tab as the event's client (coroutine callbacks run to their end)."""
    import asyncio

    from viser import GuiEvent

    for callback in list(handle._impl.update_cb):
        out = callback(GuiEvent(session.client, session.client.client_id, handle))
        if asyncio.iscoroutine(out):
            run_coroutine(out)


def send_as_the_browser(session, handle, **updates) -> None:
    """Deliver ``updates`` to a control as a GUI message from the tab (a page script can send any
    value): viser applies it as it does a tab's message, then the control's callbacks run (viser
    would skip them here, as no real tab is connected)."""
    from viser._messages import GuiUpdateMessage

    run_coroutine(session.gui._handle_gui_updates(session.client.client_id,
                                                  GuiUpdateMessage(handle._impl.uuid, updates)))
    press(session, handle)


def upload_as_the_browser(session, button, name: str, content: bytes) -> None:
    """What viser does once a tab's upload has arrived: the button's value is the file, then its callbacks."""
    from viser import UploadedFile

    button._impl.value = UploadedFile(name, content)
    press(session, button)
