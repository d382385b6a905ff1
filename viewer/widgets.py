"""Small pieces several panels use: a skeleton overlay that tolerates unseen joints, and a
play/pause button driving a pacer animation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import viser

if TYPE_CHECKING:
    from .pacer import Pacer

Color = tuple[int, int, int]
SEED_RANGE = (0, 2**32 - 1)


def in_range(value: object, lo: float, hi: float, *, integer: bool = False) -> float:
    """A GUI value as the server allows it: clamped to ``[lo, hi]`` (NaN or junk: ``lo``).

    A page script can send any value, and viser does not check a slider's range: every value
    that sizes work or memory is read through this, with the bounds the panel itself declares."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    number = lo if number != number else min(max(number, lo), hi)
    return int(round(number)) if integer else number


class SkeletonOverlay:
    """Joints as points and bones as lines under the scene node ``name``, drawn over the meshes.

    ``update(joints)`` takes ``(J, 3)`` positions where NaN marks a joint not seen: it gets no
    point, and a bone with an unseen end gets no line. ``line_color`` / ``point_color`` None
    leaves that part out.
    """

    def __init__(
        self,
        scene: viser.SceneApi,
        name: str,
        parents: Sequence[int],
        *,
        line_color: Color | None = None,
        point_color: Color | None = None,
        thickness: float = 0.012,
        point_size: float = 0.035,
    ) -> None:
        self._parents = np.asarray(parents[1:])
        count = len(parents)
        self.lines = None if line_color is None else scene.add_line_segments(
            f"{name}/bones", np.zeros((count - 1, 2, 3), np.float32), line_color, thickness=thickness)
        self.points = None if point_color is None else scene.add_point_cloud(
            f"{name}/joints", np.zeros((count, 3), np.float32), point_color, point_size=point_size,
            point_shape="circle")

    def update(self, joints: np.ndarray) -> None:
        joints = np.asarray(joints, np.float32)
        seen = np.isfinite(joints).all(-1)
        if self.points is not None:
            self.points.visible = bool(seen.any())
            if seen.any():
                self.points.points = joints[seen]
        if self.lines is not None:
            bones = seen[1:] & seen[self._parents]
            self.lines.visible = bool(bones.any())
            if bones.any():
                self.lines.points = np.stack([joints[self._parents[bones]], joints[1:][bones]], 1)

    def remove(self) -> None:
        for handle in (self.lines, self.points):
            if handle is not None:
                handle.remove()


class PlayButton:
    """A Play/Pause button that runs ``tick(dt_s)`` on every display frame while playing.

    ``tick`` returns False to stop (the end of a trajectory); the label and icon follow the state.
    """

    def __init__(self, button: viser.GuiButtonHandle, pacer: Pacer, key: str) -> None:
        self.button, self._pacer, self._key = button, pacer, key
        self._label = button.label

    @property
    def playing(self) -> bool:
        return self._pacer.animating(self._key)

    def start(self, tick: Callable[[float], bool | None]) -> None:
        def step(dt: float) -> None:
            if tick(dt) is False:
                self.stop()

        self.button.label, self.button.icon = "Pause", viser.Icon.PLAYER_PAUSE
        self._pacer.animate(self._key, step)

    def stop(self) -> None:
        self._pacer.animate(self._key, None)
        self.button.label, self.button.icon = self._label, viser.Icon.PLAYER_PLAY
