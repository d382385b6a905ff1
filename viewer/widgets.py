"""Small pieces several panels use: checked GUI values, names as words, a skeleton overlay that
tolerates unseen joints, a play/pause button driving a pacer animation, and "bring your own poses"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import viser

from prior.data import MAX_FRAMES, load_poses
from prior.errors import InputError

from .markup import literal
from .uploads import MAX_CLIP_BYTES, upload_error, uploaded_to_file

if TYPE_CHECKING:
    from .pacer import Pacer
    from .session import ClientSession

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


def words(name: str) -> str:
    """A joint or part name as the UI shows it: ``"left_wrist"`` -> ``"left wrist"``."""
    return name.replace("_", " ")


def checked_choice(session: ClientSession, dropdown: viser.GuiDropdownHandle, *, reset_to: str) -> str | None:
    """The dropdown's value if it is one of its options; else None, a notification, and the dropdown
    back at ``reset_to`` (a page script can send any string)."""
    value = dropdown.value
    if value in dropdown.options:
        return value
    session.notify(f"Unknown {dropdown.label.lower()}",
                   f"{literal(str(value)[:60])} is not one of {', '.join(dropdown.options)}", error=True)
    dropdown.value = reset_to
    return None


MAX_POSE_FILE_BYTES = MAX_CLIP_BYTES
MAX_FILE_POSES = MAX_FRAMES


class PoseFile:
    """Bring your own poses: an upload button for a poses ``.npz`` (``pose_body (N, 63)``, an AMASS
    clip's frames: whatever :func:`prior.data.load_poses` reads) and the row that becomes the
    session's current pose (an undo step). Adds its controls where it is made (inside a panel's
    ``with container``); Edit and Complete each have one."""

    def __init__(self, session: ClientSession) -> None:
        gui = session.gui
        self.session = session
        self.poses: np.ndarray | None = None  # (N, 63) of the last file read
        self.name = ""
        with gui.add_folder("Your poses", expand_by_default=False):
            self.upload = gui.add_upload_button(
                "Upload poses", icon=viser.Icon.UPLOAD, mime_type=".npz",
                hint=f"An .npz with pose_body (N, 63), or an AMASS clip (its frames); at most "
                     f"{MAX_POSE_FILE_BYTES // 2**20} MiB and {MAX_FILE_POSES} poses")
            self.row = gui.add_number("Row / frame", initial_value=0, min=0, max=0, step=1, disabled=True,
                                      hint="Which pose of the uploaded file (0 = the first) becomes the current pose")
            self.info = gui.add_markdown("*No pose file loaded.*")
        self.upload.on_upload(lambda _: self._on_upload())
        self.row.on_update(lambda _: self.use_row())

    def uploads(self) -> list[tuple[viser.GuiUploadButtonHandle, int]]:
        return [(self.upload, MAX_POSE_FILE_BYTES)]

    def _on_upload(self) -> None:
        upload = self.upload.value
        session = self.session

        def run(ctx) -> np.ndarray:
            try:
                with uploaded_to_file(upload, max_bytes=MAX_POSE_FILE_BYTES, suffix=".npz") as path:
                    return load_poses(path, max_bytes=MAX_POSE_FILE_BYTES, max_poses=MAX_FILE_POSES)
            except InputError as exc:
                raise InputError(upload_error(exc, upload)) from None

        session.submit("pose-file", run, on_done=lambda poses: self.set_poses(poses, Path(upload.name).name),
                       on_error=lambda message: session.notify("Cannot load poses", message, error=True),
                       needs_prior=False)

    def set_poses(self, poses: np.ndarray, name: str) -> None:
        """Offer ``poses: (N, 63)`` (read from file ``name``) and make the first the current pose."""
        self.poses, self.name = poses, name
        self.row.max = len(poses) - 1
        self.row.disabled = len(poses) < 2
        if self.row.value != 0:
            self.row.value = 0  # its callback makes row 0 the pose
        else:
            self.use_row()

    def use_row(self) -> None:
        """Make the chosen row of the file the current pose (read within the file's rows)."""
        if self.poses is None:
            return
        count = len(self.poses)
        row = in_range(self.row.value, 0, count - 1, integer=True)
        self.session.set_pose(self.poses[row], label=f"{self.name} row {row}")
        self.info.content = f"{literal(self.name)}: row {row} of {count} pose{'s' if count > 1 else ''}"
