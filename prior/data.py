"""Pose and motion files: AMASS SMPL-X / SMPL+H archives, DPoser-style clips and pose sets.

Every file a user brings is read here, as data: ``np.load(..., allow_pickle=False)``, a size
limit, and a check of every array that is used (shape, NaN/Inf, frame counts). A bad file raises
:class:`prior.errors.InputError` with a one-line ``"<file>: <problem>"`` message.

Layouts read (keys; ``T`` frames):

- AMASS SMPL-X "stageii": ``poses (T, 165)`` = root 3, body 63, jaw 3, eyes 6, hands 90; ``trans``,
  ``betas (16+,)``, ``gender``, ``mocap_frame_rate``, ``surface_model_type``; or the split keys
  ``root_orient``, ``pose_body``, ``pose_hand``, ``pose_jaw``, ``pose_eye``.
- AMASS SMPL+H: ``poses (T, 156)`` = root 3, body 63, hands 90; ``trans``, ``betas (16,)``,
  ``gender``, ``mocap_framerate`` (sic), ``dmpls`` (ignored). ``(T, 72)`` SMPL poses are read too.
- DPoser clips and pose sets: ``pose_body (T, 63)`` with optional ``root_orient``; ``pose_samples``.
- SMPL-X parameter sets: ``body_pose``, ``global_orient``, ``left/right_hand_pose``, ``jaw_pose``,
  ``expression``, ``transl``, ``betas``.

Body pose is SMPL-X joints 1..21, which SMPL+H and SMPL share (same joints, same order).
:func:`save_clip` writes the AMASS SMPL-X stageii layout, atomically.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import (
    ANGLES,
    COEFFICIENTS,
    MAX_FRAME_RATE,
    METRES,
    MIN_FRAME_RATE,
    Bound,
    NpzArchive,
    checked_floats,
    open_npz,
    real_numbers,
    save_npz,
)
from .parts import NUM_SKELETON_JOINTS, POSE_DIM
from .rotations import slerp_axis_angle_np

DEFAULT_FPS = 30.0
# AMASS clips are a few MB; a 1 GiB cap keeps a wrong or hostile file from filling memory.
MAX_FILE_BYTES = 2**30
# Frames of a clip or joint track (~55 min at 30 fps), checked from the array's header before it
# is read: a clip of zeros compresses ~1000:1, and each frame costs far more than its bytes
# downstream (meshes, joints, the viewer's timeline). Callers may pass a smaller max_frames.
MAX_FRAMES = 100_000
# Poses of a pose set (load_poses: evaluation and training data, which can be all of AMASS):
# 4M x 63 float32 is what MAX_FILE_BYTES holds; the limit binds for narrower dtypes (float16,
# int8), which would otherwise grow 2-4x when read as float32.
MAX_POSES = 4_000_000
# The arrays that make a file a clip of body poses, in the order they are looked for.
POSE_KEYS = ("poses", "pose_body", "pose_samples", "body_pose")
_POSES_LAYOUTS = {165: "smplx", 156: "smplh", 72: "smpl", 66: "smplx"}
_GENDERS = ("neutral", "male", "female")
# Written by save_clip: which fields the source lacked (so they were written as zeros / 30 fps).
DEFAULTS_KEY = "dposer_defaults"


@dataclass(frozen=True)
class Clip:
    """A motion clip (or a pose set read as one): SMPL-X parameters per frame, float32.

    Rotations are axis-angle in radians; ``trans`` in metres.
    """

    pose_body: np.ndarray
    """``(T, 63)`` SMPL-X body joints 1..21 (DPoser's ``pose_body``)."""
    root_orient: np.ndarray
    """``(T, 3)`` global orientation of the pelvis (zeros when the file had none)."""
    trans: np.ndarray | None = None
    """``(T, 3)`` root translation, or None when the file had none."""
    hands: np.ndarray | None = None
    """``(T, 90)`` 15 left then 15 right finger joints, absolute (AMASS convention)."""
    jaw: np.ndarray | None = None
    """``(T, 3)`` SMPL-X jaw."""
    eyes: np.ndarray | None = None
    """``(T, 6)`` SMPL-X left then right eye."""
    expression: np.ndarray | None = None
    """``(T, E)`` SMPL-X expression coefficients."""
    betas: np.ndarray | None = None
    """``(NB,)`` body shape, or None (mean shape)."""
    gender: str = "neutral"
    fps: float = DEFAULT_FPS
    fps_assumed: bool = True
    """True when the file gave no frame rate and ``fps`` is :data:`DEFAULT_FPS`."""
    surface_model_type: str = "smplx"
    """Which body model the parameters were fitted to (``smplx``, ``smplh``, ``smpl``)."""
    source: str | None = None
    """The file the clip was read from."""

    def __post_init__(self) -> None:
        frames = self.pose_body.shape[0]
        widths = {"pose_body": 63, "root_orient": 3, "trans": 3, "hands": 90, "jaw": 3, "eyes": 6, "expression": None}
        for name, width in widths.items():
            value = getattr(self, name)
            if value is None:
                continue
            if value.ndim != 2 or value.shape[0] != frames or (width is not None and value.shape[1] != width):
                raise ValueError(f"Clip.{name} has shape {value.shape}, expected ({frames}, {width or 'E'})")
        if self.betas is not None and self.betas.ndim != 1:
            raise ValueError(f"Clip.betas has shape {self.betas.shape}, expected (NB,)")
        if not self.fps > 0:
            raise ValueError(f"Clip.fps must be positive, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return self.pose_body.shape[0]

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.num_frames - 1) / self.fps

    def _per_frame(self) -> dict[str, np.ndarray]:
        names = ("pose_body", "root_orient", "trans", "hands", "jaw", "eyes", "expression")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def frames(self, start: int | None = None, stop: int | None = None) -> Clip:
        """Frames ``start:stop`` (Python slice rules, negative indices count from the end)."""
        selected = range(self.num_frames)[start:stop]
        if len(selected) == 0:
            problem = f"frame range {start}:{stop} is empty (the clip has {self.num_frames} frames)"
            raise InputError(problem, self.source)
        cut = slice(selected.start, selected.stop)
        return dataclasses.replace(self, **{k: v[cut].copy() for k, v in self._per_frame().items()})

    def resampled(self, fps: float, *, max_frames: int = MAX_FRAMES) -> Clip:
        """The clip at another frame rate, over the same time span.

        Rotations are interpolated by slerp of each joint's quaternion, translation and
        expression linearly; frames that fall on source frames are copied exactly. A rate
        outside 1..1000 fps, or one that would give more than ``max_frames`` frames, is refused.
        """
        if not (np.isfinite(fps) and MIN_FRAME_RATE <= fps <= MAX_FRAME_RATE):
            raise InputError(
                f"frame rate must be a positive number from {MIN_FRAME_RATE:g} to {MAX_FRAME_RATE:g} fps, got {fps}",
                self.source,
            )
        if fps == self.fps:
            return self
        count = int(np.floor(self.duration_s * fps + 1e-6)) + 1
        if count > max_frames:
            raise InputError(
                f"resampling to {fps:g} fps gives {count} frames, over the limit of {max_frames}", self.source)
        position = np.arange(count) * (self.fps / fps)  # in source frames
        lower = np.minimum(np.floor(position).astype(np.int64), self.num_frames - 1)
        upper = np.minimum(lower + 1, self.num_frames - 1)
        frac = (position - lower).astype(np.float64)
        out = {}
        for name, value in self._per_frame().items():
            if name in ("trans", "expression"):
                mixed = value[lower] + frac[:, None] * (value[upper] - value[lower])
            else:
                mixed = slerp_axis_angle_np(value, lower, upper, frac)
            out[name] = mixed.astype(np.float32)
        return dataclasses.replace(self, fps=float(fps), fps_assumed=False, **out)


# ----------------------------------------------------------------------------------------------
# Reading


def _listed(archive: NpzArchive, most: int = 8) -> str:
    """The archive's keys for an error line: the first ``most`` of them."""
    names = ", ".join(repr(k) for k in archive.files[:most]) or "nothing"
    return names + (f" and {len(archive.files) - most} more" if len(archive.files) > most else "")


def _check_count(archive: NpzArchive, key: str, limit: int, what: str, *, pose_set: bool = False) -> None:
    """Refuse ``key`` when its header declares more than ``limit`` frames (or poses), before it is read.

    ``pose_set``: every leading axis counts (``(N, H, 63)`` or ``(N, H, 21, 3)`` is ``N H`` poses)."""
    shape = archive.shape(key)
    if pose_set:
        count = math.prod(shape[:-2]) if shape[-2:] == (POSE_DIM // 3, 3) else math.prod(shape[:-1])
    else:
        count = shape[0] if shape else 1
    if count > limit:
        raise InputError(f"{key!r} has {count} {what}, over the limit of {limit}", archive.path)


def _no_pose_error(archive: NpzArchive) -> InputError:
    found = _listed(archive)
    return InputError(
        f"no poses found: expected 'poses' (AMASS), 'pose_body', 'body_pose' or 'pose_samples'; found {found}",
        archive.path,
    )


def _betas(archive: NpzArchive, key: str) -> np.ndarray | None:
    if key not in archive:
        return None
    value = archive.raw(key)
    if value.ndim == 2 and value.shape[0] >= 1 and value.shape[1] > 0:
        if not np.allclose(value, value[:1]):
            raise InputError(f"{key!r} changes over the frames; a clip has one body shape", archive.path)
        value = value[0]
    if value.ndim != 1 or value.shape[0] == 0:
        raise InputError(f"{key!r} has shape {value.shape}, expected (NB,)", archive.path)
    if not real_numbers(value.dtype):
        raise InputError(f"{key!r} has dtype {value.dtype}, expected numbers", archive.path)
    value = value.astype(np.float32)
    if not np.isfinite(value).all():  # after the cast: 1e300 is Inf in float32
        raise InputError(f"{key!r} contains NaN or Inf (or values too large for float32)", archive.path)
    COEFFICIENTS.check(value, repr(key), archive.path)
    return value


def _clip_from_archive(archive: NpzArchive, max_frames: int, what: str = "frames") -> Clip:
    fields: dict[str, np.ndarray | None] = {}
    main = next((k for k in POSE_KEYS if k in archive), None)
    if main is not None:
        _check_count(archive, main, max_frames, what)
    if "poses" in archive:
        poses = archive.raw("poses")
        width = poses.shape[1] if poses.ndim == 2 else -1
        if width not in _POSES_LAYOUTS:
            raise InputError(
                f"'poses' has shape {poses.shape}, expected (T, 165) (SMPL-X), (T, 156) (SMPL+H) or (T, 72) (SMPL)",
                archive.path,
            )
        poses = archive.floats("poses", width, bound=ANGLES)
        surface = _POSES_LAYOUTS[width]
        fields["root_orient"], fields["pose_body"] = poses[:, :3], poses[:, 3:66]
        if width == 165:
            fields |= {"jaw": poses[:, 66:69], "eyes": poses[:, 69:75], "hands": poses[:, 75:]}
        elif width == 156:
            fields["hands"] = poses[:, 66:]
        trans_key, betas_key = "trans", "betas"
    elif "pose_body" in archive or "pose_samples" in archive:
        key = "pose_body" if "pose_body" in archive else "pose_samples"
        body = archive.floats(key, POSE_DIM, bound=ANGLES, what="(T, 63)")
        frames = body.shape[0]
        fields["pose_body"] = body
        split = {
            "root_orient": ("root_orient", 3),
            "hands": ("pose_hand", 90),
            "jaw": ("pose_jaw", 3),
            "eyes": ("pose_eye", 6),
        }
        for name, (file_key, width) in split.items():
            if file_key in archive:
                fields[name] = archive.floats(file_key, width, bound=ANGLES, frames=frames)
        surface, trans_key, betas_key = "smplx", "trans", "betas"
    elif "body_pose" in archive:
        body = archive.floats("body_pose", POSE_DIM, bound=ANGLES, what="(T, 63)")
        frames = body.shape[0]
        fields["pose_body"] = body
        if "global_orient" in archive:
            fields["root_orient"] = archive.floats("global_orient", 3, bound=ANGLES, frames=frames)
        hands = [k for k in ("left_hand_pose", "right_hand_pose") if k in archive]
        if len(hands) == 1:
            raise InputError(f"has {hands[0]!r} but not the other hand", archive.path)
        if hands:
            fields["hands"] = np.concatenate([archive.floats(k, 45, bound=ANGLES, frames=frames) for k in hands], 1)
        if "jaw_pose" in archive:
            fields["jaw"] = archive.floats("jaw_pose", 3, bound=ANGLES, frames=frames)
        eyes = [k for k in ("leye_pose", "reye_pose") if k in archive]
        if len(eyes) == 2:
            fields["eyes"] = np.concatenate([archive.floats(k, 3, bound=ANGLES, frames=frames) for k in eyes], 1)
        surface, trans_key, betas_key = "smplx", "transl", "betas"
    else:
        raise _no_pose_error(archive)

    frames = fields["pose_body"].shape[0]
    if "root_orient" not in fields:
        fields["root_orient"] = np.zeros((frames, 3), np.float32)
    if trans_key in archive:
        fields["trans"] = archive.floats(trans_key, 3, bound=METRES, frames=frames)
    if "expression" in archive:
        fields["expression"] = archive.floats("expression", None, bound=COEFFICIENTS, frames=frames)
    betas = _betas(archive, betas_key)
    gender = archive.text("gender").strip().lower() if "gender" in archive else "neutral"
    if gender not in _GENDERS:
        raise InputError(f"'gender' is {gender!r}, expected one of {', '.join(_GENDERS)}", archive.path)
    if "surface_model_type" in archive:
        surface = archive.text("surface_model_type").strip().lower()
    rate_key = next((k for k in ("mocap_frame_rate", "mocap_framerate") if k in archive), None)
    fps = archive.number(rate_key) if rate_key else DEFAULT_FPS

    # Fields our own writer filled with defaults because the source lacked them.
    defaults: set[str] = set()
    if DEFAULTS_KEY in archive:
        listed = archive.raw(DEFAULTS_KEY)
        if listed.dtype.kind not in "US":
            raise InputError(f"{DEFAULTS_KEY!r} is not a list of names", archive.path)
        defaults = {str(x) for x in listed.reshape(-1)}
    for name in ("trans", "hands", "jaw", "eyes", "expression"):
        if name in defaults:
            fields[name] = None
    return Clip(
        **fields,  # type: ignore[arg-type]
        betas=None if "betas" in defaults else betas,
        gender=gender,
        fps=fps,
        fps_assumed=rate_key is None or "fps" in defaults,
        surface_model_type=surface,
        source=str(archive.path),
    )


def load_clip(
    path: str | Path,
    *,
    start: int | None = None,
    stop: int | None = None,
    fps: float | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    max_frames: int = MAX_FRAMES,
) -> Clip:
    """Read a motion clip from any supported ``.npz`` layout (see the module docstring).

    Args:
        path: the file.
        start, stop: keep frames ``start:stop`` (source frame indices, slice rules).
        fps: resample to this frame rate (after selecting the frames).
        max_bytes: refuse larger files (and archives that unpack to more).
        max_frames: refuse clips of more frames (from the array's header, before it is read),
            and a resampling that would give more.

    Raises:
        InputError: ``"<file>: <problem>"`` for a missing, empty, truncated, pickled, too large
            or malformed file, a bad frame range or frame rate.
    """
    with open_npz(path, max_bytes=max_bytes) as archive:
        clip = _clip_from_archive(archive, max_frames)
    if start is not None or stop is not None:
        clip = clip.frames(start, stop)
    if fps is not None:
        clip = clip.resampled(fps, max_frames=max_frames)
    return clip


def load_poses(
    path: str | Path, *, key: str | None = None, max_bytes: int = MAX_FILE_BYTES, max_poses: int = MAX_POSES
) -> np.ndarray:
    """Body poses ``(N, 63)`` float32 (SMPL-X joints 1..21, axis-angle) from a pose-set file.

    Reads ``key`` when given (any ``(..., 63)`` or ``(..., 21, 3)`` array, e.g. ``'val'``),
    else the first of ``'poses'`` (an AMASS file's frames), ``'pose_body'``, ``'body_pose'``,
    ``'pose_samples'``. Extra leading axes are flattened: ``(N, H, 63)`` gives ``N H`` poses.
    More than ``max_poses`` poses are refused from the array's header, before it is read.

    Raises:
        InputError: ``"<file>: <problem>"`` when the file or the array is unusable.
    """
    with open_npz(path, max_bytes=max_bytes) as archive:
        if key is None and "poses" in archive:
            return _clip_from_archive(archive, max_poses, "poses").pose_body
        candidates = [key] if key is not None else ["pose_body", "body_pose", "pose_samples"]
        found = next((k for k in candidates if k in archive), None)
        if found is None:
            if key is not None:
                raise InputError(f"has no {key!r} (found {_listed(archive)})", archive.path)
            raise _no_pose_error(archive)
        _check_count(archive, found, max_poses, "poses", pose_set=True)
        value = archive.raw(found)
        if value.ndim >= 2 and value.shape[-2:] == (POSE_DIM // 3, 3):
            value = value.reshape(*value.shape[:-2], POSE_DIM)
        if value.ndim < 2 or value.shape[-1] != POSE_DIM:
            raise InputError(f"{found!r} has shape {value.shape}, expected (N, 63)", archive.path)
        if value.size == 0:
            raise InputError(f"{found!r} has no poses (shape {value.shape})", archive.path)
        return checked_floats(value.reshape(-1, POSE_DIM), found, archive.path, POSE_DIM, bound=ANGLES, what="(N, 63)")


JOINT_KEYS = ("joints", "noisy_joints", "keypoints3d", "joints3d")


@dataclass(frozen=True)
class JointTrack:
    """Observed 3D joints of a motion (e.g. mocap markers turned joints, or a 3D keypoint
    detector's output): what :func:`prior.motion.denoise_motion` fits body poses to."""

    joints: np.ndarray
    """``(T, 22, 3)`` float32 SMPL-X joints 0..21 in metres; NaN where a joint was not seen."""
    root_orient: np.ndarray | None = None
    """``(T, 3)`` known root orientation, or None (then it is fitted)."""
    trans: np.ndarray | None = None
    """``(T, 3)`` known root translation, or None (then it is fitted)."""
    betas: np.ndarray | None = None
    fps: float = DEFAULT_FPS
    fps_assumed: bool = True
    key: str = "joints"
    """The array the joints were read from."""
    source: str | None = None

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def root_known(self) -> bool:
        """Whether the file gave both the root orientation and translation (else they are fitted)."""
        return self.root_orient is not None and self.trans is not None

    @property
    def seen(self) -> np.ndarray:
        """``(T, 22)`` bool: which joints were seen in which frames."""
        return np.isfinite(self.joints).all(-1)

    def as_clip(self, pose_body: np.ndarray, root_orient: np.ndarray, trans: np.ndarray | None) -> Clip:
        """A clip of fitted parameters with this track's frame rate, shape and source."""
        return Clip(
            pose_body=pose_body.astype(np.float32), root_orient=root_orient.astype(np.float32),
            trans=None if trans is None else trans.astype(np.float32), betas=self.betas, fps=self.fps,
            fps_assumed=self.fps_assumed, source=self.source,
        )


def load_joints(
    path: str | Path, *, key: str | None = None, max_bytes: int = MAX_FILE_BYTES, max_frames: int = MAX_FRAMES
) -> JointTrack:
    """Observed joints from an ``.npz``: ``key``, else the first of :data:`JOINT_KEYS`, an array
    ``(T, J, 3)`` or ``(T, 3 J)`` in metres whose first 22 joints are SMPL-X joints 0..21 in SMPL-X
    order (SMPL, SMPL+H and SMPL-X share them; a body model's full joint output works). NaN marks a
    joint not seen in a frame. Optional ``root_orient`` / ``global_orient``, ``trans`` / ``transl``
    (``(T, 3)``), ``betas`` and ``mocap_frame_rate`` / ``fps``.

    Raises:
        InputError: ``"<file>: <problem>"`` for an unusable file or array (Inf, no finite joint,
            too few joints, a frame count that disagrees, more than ``max_frames`` frames: refused from
            the array's header, before it is read).
    """
    with open_npz(path, max_bytes=max_bytes) as archive:
        candidates = [key] if key is not None else list(JOINT_KEYS)
        found = next((k for k in candidates if k in archive), None)
        if found is None:
            wanted = repr(key) if key is not None else "joints: " + ", ".join(map(repr, JOINT_KEYS))
            raise InputError(f"has no {wanted} (found {_listed(archive)})", archive.path)
        _check_count(archive, found, max_frames, "frames")
        value = archive.raw(found)
        if value.ndim == 2 and value.shape[1] % 3 == 0:
            value = value.reshape(value.shape[0], -1, 3)
        if value.ndim != 3 or value.shape[2] != 3 or value.shape[1] < NUM_SKELETON_JOINTS or value.shape[0] == 0:
            raise InputError(
                f"{found!r} has shape {value.shape}, expected (T, J, 3) with J >= {NUM_SKELETON_JOINTS}", archive.path
            )
        if not real_numbers(value.dtype):
            raise InputError(f"{found!r} has dtype {value.dtype}, expected numbers", archive.path)
        joints = value[:, :NUM_SKELETON_JOINTS]
        if np.isinf(joints).any():
            raise InputError(f"{found!r} contains Inf (mark unseen joints with NaN)", archive.path)
        joints = joints.astype(np.float32)
        if np.isinf(joints).any():
            raise InputError(f"{found!r} has values too large for float32 (metres expected)", archive.path)
        if np.isnan(joints).all():
            raise InputError(f"{found!r} has no finite joint position", archive.path)
        METRES.check(joints, repr(found), archive.path)
        frames = joints.shape[0]

        def optional(*names: str, bound: Bound) -> np.ndarray | None:
            name = next((n for n in names if n in archive), None)
            return None if name is None else archive.floats(name, 3, bound=bound, frames=frames)

        rate_key = next((k for k in ("mocap_frame_rate", "mocap_framerate", "fps") if k in archive), None)
        return JointTrack(
            joints=joints, root_orient=optional("root_orient", "global_orient", bound=ANGLES),
            trans=optional("trans", "transl", bound=METRES),
            betas=_betas(archive, "betas"), fps=archive.number(rate_key) if rate_key else DEFAULT_FPS,
            fps_assumed=rate_key is None, key=found, source=str(archive.path),
        )


def load_motion(
    path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, max_frames: int = MAX_FRAMES
) -> Clip | JointTrack:
    """What a motion file holds: a :class:`Clip` when it has body poses (:func:`load_clip`), else a
    :class:`JointTrack` when it has observed joints (:func:`load_joints`); at most ``max_frames`` frames.

    Raises:
        InputError: ``"<file>: <problem>"``, as the two readers do.
    """
    with open_npz(path, max_bytes=max_bytes) as archive:
        poses = any(k in archive for k in POSE_KEYS)
        joints = any(k in archive for k in JOINT_KEYS)
        if not poses and not joints:
            found = _listed(archive)
            raise InputError(f"no poses or joints found: expected 'poses' (AMASS), 'pose_body', 'body_pose' or "
                             f"observed 'joints' (T, 22+, 3); found {found}", archive.path)
    if joints and not poses:
        return load_joints(path, max_bytes=max_bytes, max_frames=max_frames)
    return load_clip(path, max_bytes=max_bytes, max_frames=max_frames)


# ----------------------------------------------------------------------------------------------
# Writing


MOTION_KEYS = ("poses", "root_orient", "trans", "mocap_frame_rate", "mocap_framerate")
"""Keys that make an npz of poses a motion (frames) rather than a set of poses."""
MAX_POSE_SET = 64
"""The most poses a file may hold to be opened as a set of poses rather than a clip."""


def is_pose_set(path: Path) -> bool:
    """Whether an ``.npz`` holds a set of poses (``dposer generate``'s ``pose_body (N, 63)``, or
    ``pose_samples``) rather than a motion: ``(N, 63)`` poses, N at most :data:`MAX_POSE_SET`,
    and nothing that makes them frames (no frame rate, root orientation, translation or AMASS
    ``poses``: :data:`MOTION_KEYS`). A longer file of bare poses is opened as a clip."""
    with open_npz(path, max_bytes=MAX_FILE_BYTES) as archive:
        key = next((k for k in ("pose_body", "pose_samples") if k in archive), None)
        if key is None or any(k in archive for k in MOTION_KEYS):
            return False
        shape = archive.shape(key)
    return len(shape) == 2 and shape[1] == 63 and shape[0] <= MAX_POSE_SET


def clip_arrays(clip: Clip) -> dict[str, np.ndarray]:
    """The arrays :func:`save_clip` writes: the AMASS SMPL-X stageii layout plus split keys."""
    frames = clip.num_frames
    zeros = np.zeros
    poses = np.concatenate(
        [
            clip.root_orient,
            clip.pose_body,
            clip.jaw if clip.jaw is not None else zeros((frames, 3), np.float32),
            clip.eyes if clip.eyes is not None else zeros((frames, 6), np.float32),
            clip.hands if clip.hands is not None else zeros((frames, 90), np.float32),
        ],
        1,
    ).astype(np.float32)
    betas = clip.betas if clip.betas is not None else zeros(16, np.float32)
    defaults = [name for name in ("trans", "betas", "hands", "jaw", "eyes") if getattr(clip, name) is None]
    if clip.fps_assumed:
        defaults.append("fps")
    out = {
        "poses": poses,
        "trans": clip.trans if clip.trans is not None else zeros((frames, 3), np.float32),
        "betas": betas.astype(np.float32),
        "num_betas": np.array(betas.shape[0]),
        "gender": np.array(clip.gender),
        "mocap_frame_rate": np.array(float(clip.fps)),
        "surface_model_type": np.array(clip.surface_model_type),
        "root_orient": clip.root_orient,
        "pose_body": clip.pose_body,
        DEFAULTS_KEY: np.array(defaults, dtype=str),
    }
    for name, key in (("hands", "pose_hand"), ("jaw", "pose_jaw"), ("eyes", "pose_eye"), ("expression", "expression")):
        if getattr(clip, name) is not None:
            out[key] = getattr(clip, name)
    return out


def save_clip(clip: Clip, path: str | Path) -> Path:
    """Write ``clip`` to ``path`` in the AMASS SMPL-X stageii layout (readable by :func:`load_clip`,
    aitviewer and the SMPL-X Blender add-on).

    The file appears complete or not at all (:func:`prior.files.save_npz`: a temporary file
    in the same folder, renamed over ``path``; missing folders are created). Fields the clip
    lacks are written as zeros (and an assumed frame rate as 30), listed in ``dposer_defaults``
    so that reading the file back gives the same clip.

    Raises:
        InputError: when the clip holds NaN/Inf or the file cannot be written.
    """
    path = Path(path)
    for name, value in clip._per_frame().items():
        if not np.isfinite(value).all():
            raise InputError(f"refusing to write a clip whose {name!r} contains NaN or Inf", path)
    try:
        return save_npz(path, clip_arrays(clip))
    except OSError as exc:
        raise InputError(f"cannot write the file ({exc.strerror or exc})", path) from None


__all__ = [
    "DEFAULTS_KEY",
    "DEFAULT_FPS",
    "JOINT_KEYS",
    "MAX_FILE_BYTES",
    "MAX_FRAMES",
    "MAX_POSES",
    "MAX_POSE_SET",
    "MOTION_KEYS",
    "Clip",
    "JointTrack",
    "clip_arrays",
    "is_pose_set",
    "load_clip",
    "load_joints",
    "load_motion",
    "load_poses",
    "save_clip",
]
