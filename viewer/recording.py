"""Screenshots and recordings of what a browser tab shows, rendered by that tab (viser's
``get_render``: the page's own WebGL, from the user's view without the control panel) and encoded by
:mod:`prior.exports.video`.

A recording plays the stage panel's :class:`~viewer.panels.base.Timeline` frame by frame: each frame
is drawn on the tab's display thread and sent (:meth:`viewer.pacer.Pacer.draw_and_wait`), then the
tab renders it, so every frame of the file shows exactly its step of the clip or trajectory,
whatever the page's own frame rate. Frames stream into a temporary file; a cancelled or failed
recording leaves nothing behind.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import viser

from prior.errors import Cancelled, InputError
from prior.exports.video import VideoEncoder, check_gif_memory, check_size, png_bytes, source_frames
from prior.progress import Progress
from prior.render import write_render
from prior.rotations import wxyz_to_matrix_np

from .page import PANEL_FRACTION
from .panels.base import Timeline

if TYPE_CHECKING:
    from .worker import JobContext

SIZES = ("640x480", "1280x720", "1920x1080", "1080x1080")
"""Image sizes offered (width x height pixels)."""
RENDER_TIMEOUT_S = 60.0  # a tab that stays connected but never answers a render request
MAX_FRAMES = 36_000


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)``; anything not in :data:`SIZES` is an ``InputError``."""
    if text not in SIZES:
        raise InputError(f"image size {text!r} is not one of {', '.join(SIZES)}")
    width, height = (int(v) for v in text.split("x"))
    return width, height


@dataclass(frozen=True)
class View:
    """A camera to render with: ``wxyz`` (camera to world, OpenCV axes), ``position``, vertical ``fov`` (rad)."""

    wxyz: np.ndarray
    position: np.ndarray
    fov: float


def free_view(camera: viser.CameraHandle, aspect: float) -> View:
    """The tab's camera as the user sees it beside the control panel, for an image of ``aspect``
    (width / height) without one: moved sideways by the panel's share of the view (the part of the
    canvas the user looks at is left of the panel, :data:`~viewer.session.PANEL_FRACTION`), and
    widened when the image is narrower than that part, so that what the user sees is in the image."""
    wxyz = np.asarray(camera.wxyz, np.float64)
    position = np.asarray(camera.position, np.float64)
    distance = float(np.linalg.norm(position - np.asarray(camera.look_at, np.float64)))
    tan_half = math.tan(0.5 * float(camera.fov))
    view_width = 2.0 * distance * tan_half * float(camera.aspect)  # at the look-at point
    right = wxyz_to_matrix_np(wxyz)[:, 0]
    position = position - right * 0.5 * PANEL_FRACTION * view_width
    seen_aspect = float(camera.aspect) * (1.0 - PANEL_FRACTION)
    if aspect < seen_aspect:
        tan_half *= seen_aspect / aspect
    return View(wxyz, position, 2.0 * math.atan(tan_half))


def render_view(client: viser.ClientHandle, view: View, width: int, height: int, *, png: bool = False) -> np.ndarray:
    """``view`` rendered by the tab at ``width x height``: ``(H, W, 3)`` uint8 (JPEG transport), or
    with ``png`` ``(H, W, 4)`` with the background transparent."""
    try:
        return client.get_render(height, width, wxyz=view.wxyz, position=view.position, fov=view.fov,
                                 transport_format="png" if png else "jpeg", timeout=RENDER_TIMEOUT_S)
    except TimeoutError:
        raise InputError(f"the browser tab did not render a frame within {RENDER_TIMEOUT_S:.0f} s") from None


def screenshot(client: viser.ClientHandle, width: int, height: int) -> bytes:
    """A PNG of the tab's view (:func:`free_view`; transparent background)."""
    return png_bytes(render_view(client, free_view(client.camera, width / height), width, height, png=True))


def record(
    ctx: JobContext,
    client: viser.ClientHandle,
    pacer,
    timeline: Timeline,
    *,
    width: int,
    height: int,
    fps: float,
    suffix: str,
) -> bytes:
    """Play ``timeline`` at ``fps`` (:func:`prior.exports.video.source_frames`) in the tab and
    encode each rendered frame into a ``suffix`` (``.mp4``, ``.gif``) file; its bytes. Reports a
    step per frame and stops at ``ctx.cancel`` (``Cancelled``: the temporary file is gone)."""
    try:
        check_size(width, height, suffix)
        frames = source_frames(timeline.frames, timeline.fps, fps)
        check_gif_memory(len(frames), width, height, suffix)
    except ValueError as exc:
        raise InputError(f"cannot record {timeline.what}: {exc}") from None
    if len(frames) > MAX_FRAMES:
        raise InputError(f"{len(frames)} frames to record: at most {MAX_FRAMES}; lower the frame rate")
    view = free_view(client.camera, width / height)  # fixed for the whole recording
    with tempfile.TemporaryFile() as out:
        encoder = VideoEncoder(out, suffix, fps=fps, width=width, height=height)
        for step, frame in enumerate(frames, 1):
            if ctx.cancel.is_set():  # also hands the model on to another tab between frames
                raise Cancelled("recording cancelled")
            if not pacer.draw_and_wait("record", lambda f=int(frame): timeline.draw(f)):
                raise InputError("the tab's display did not draw the next frame in time")
            encoder.add(render_view(client, view, width, height))
            ctx.report(Progress("record", step, len(frames), 0.0, torch.empty(0)))
        encoder.finish()
        out.seek(0)
        return out.read()


def record_offscreen(ctx: JobContext, body, timeline: Timeline, *, width: int, height: int, fps: float,
                     suffix: str) -> bytes:
    """``timeline`` drawn by the server's CPU renderer (``timeline.offscreen``, as ``dposer render``
    draws it: bodies on a checkered floor from a fixed front camera) into a ``suffix`` file; its
    bytes. No browser involved: several times faster than :func:`record` with software WebGL.
    Progress and cancel as :func:`record`."""
    if timeline.offscreen is None:
        raise InputError(f"{timeline.what} cannot be rendered offscreen; use the browser renderer")
    try:
        check_size(width, height, suffix)
        check_gif_memory(len(source_frames(timeline.frames, timeline.fps, fps)), width, height, suffix)
    except ValueError as exc:
        raise InputError(f"cannot record {timeline.what}: {exc}") from None
    frames = timeline.offscreen(body, width=width, height=height, fps=fps, cancel=ctx.cancel, progress=ctx.report)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"recording{suffix}"
        write_render(path, frames, fps=fps)
        return path.read_bytes()


__all__ = ["SIZES", "parse_size", "record", "record_offscreen", "render_view", "screenshot"]
