"""2D keypoints of a person in a photo, in one named set, and the readers that produce it.

Every source (OpenPose, COCO, MMPose / ViTPose, MediaPipe, our own BlazePose detector) is turned
into the 23 body and foot points of COCO-WholeBody (:data:`KEYPOINT_NAMES`): pixel coordinates
``(x right, y down)`` with a confidence in 0..1 per point (0 = not seen). What the fitter
(:mod:`prior.image_fit`) fits the body to.

:func:`load_keypoints` reads one photo's file (OpenPose, COCO / COCO-WholeBody, MMPose / ViTPose,
MediaPipe JSON, or our ``.npz``), :func:`load_keypoint_sequence` a video's (a folder of them, or one
file of frames), :func:`from_mediapipe` a detector's landmarks in memory; :func:`save_keypoints`
writes our ``.npz``. Every problem with a file is one :class:`prior.errors.InputError` line naming it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .files import PIXELS, checked_file, open_npz, real_numbers, save_npz

# COCO-WholeBody's first 23 points: COCO's 17 body keypoints, then its 6 foot keypoints.
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Keypoints:
    """One person's 2D keypoints in one image (or, with a leading frame axis, a sequence)."""

    xy: np.ndarray
    """``(23, 2)`` (or ``(T, 23, 2)``) float32 pixel coordinates, x right, y down; 0 where not seen."""
    conf: np.ndarray
    """``(23,)`` (or ``(T, 23)``) float32 confidence in 0..1; 0 = not seen (the point is ignored)."""
    image_size: tuple[int, int] | None = None
    """``(width, height)`` in pixels when the source says (else the photo's, or None)."""
    source: str | None = None
    """The file (or detector) the points came from."""

    def __post_init__(self) -> None:
        lead = self.conf.shape
        if self.xy.shape != (*lead, 2) or lead[-1:] != (NUM_KEYPOINTS,):
            raise ValueError(f"keypoints must be xy (..., {NUM_KEYPOINTS}, 2) and conf (..., {NUM_KEYPOINTS}), "
                             f"got {self.xy.shape} and {self.conf.shape}")

    @property
    def num_frames(self) -> int:
        """Frames of a sequence (1 for a single image)."""
        return 1 if self.conf.ndim == 1 else int(self.conf.shape[0])

    @property
    def seen(self) -> np.ndarray:
        """``(23,)`` (or ``(T, 23)``) bool: points with a positive confidence."""
        return self.conf > 0

    def frames(self) -> Keypoints:
        """The same points with a leading frame axis (``(T, 23, ...)``; T = 1 for an image)."""
        if self.conf.ndim == 2:
            return self
        return Keypoints(self.xy[None], self.conf[None], self.image_size, self.source)

    def frame(self, t: int) -> Keypoints:
        """Frame ``t`` of a sequence as a single image's points."""
        seq = self.frames()
        return Keypoints(seq.xy[t], seq.conf[t], self.image_size, self.source)


# ----------------------------------------------------------------------------------------------
# Limits

# Keypoint files are kilobytes per frame; a 64 MiB cap keeps a wrong or hostile file from filling memory.
MAX_KEYPOINT_FILE_BYTES = 64 * 2**20
# Frames of a keypoint sequence (~55 min at 30 fps), like prior.data.MAX_FRAMES for clips.
MAX_KEYPOINT_FRAMES = 100_000
# The JSON formats ``format=`` may name (``"npz"`` for our own arrays); None detects from the content.
KEYPOINT_FORMATS = ("openpose", "coco", "mmpose", "mediapipe", "npz")
# MediaPipe's visibility below which a landmark is treated as not seen (its own demos draw from 0.5).
MEDIAPIPE_MIN_VISIBILITY = 0.5
# COCO visibility flags: 0 not labelled, 1 labelled but occluded (its position is the annotator's
# guess, so it counts half), 2 labelled and visible.
COCO_FLAG_CONF = {0: 0.0, 1: 0.5, 2: 1.0}
# Normalised MediaPipe coordinates run a little past 0..1 for points off the image; far beyond it
# they are pixels written where normalised values were expected.
_MAX_NORMALISED = 10.0


# ----------------------------------------------------------------------------------------------
# Layouts: where each of our 23 points sits in another format's list


def _layout(index: dict[str, int]) -> np.ndarray:
    """``(23,)`` int: a format's index (``index[name]``) for each of our points, -1 where it lacks one."""
    return np.array([index.get(n, -1) for n in KEYPOINT_NAMES], dtype=np.int64)


# COCO-WholeBody: ours are its first 23 (of 23, or of 133 where face and hands follow)
_WHOLEBODY = _layout({n: i for i, n in enumerate(KEYPOINT_NAMES)})
_COCO17 = _layout({n: i for i, n in enumerate(KEYPOINT_NAMES[:17])})
_BODY25 = _layout({
    "nose": 0, "right_shoulder": 2, "right_elbow": 3, "right_wrist": 4, "left_shoulder": 5, "left_elbow": 6,
    "left_wrist": 7, "right_hip": 9, "right_knee": 10, "right_ankle": 11, "left_hip": 12, "left_knee": 13,
    "left_ankle": 14, "right_eye": 15, "left_eye": 16, "right_ear": 17, "left_ear": 18, "left_big_toe": 19,
    "left_small_toe": 20, "left_heel": 21, "right_big_toe": 22, "right_small_toe": 23, "right_heel": 24,
})  # 1 Neck and 8 MidHip are not in our set
_OPENPOSE18 = _layout({
    "nose": 0, "right_shoulder": 2, "right_elbow": 3, "right_wrist": 4, "left_shoulder": 5, "left_elbow": 6,
    "left_wrist": 7, "right_hip": 8, "right_knee": 9, "right_ankle": 10, "left_hip": 11, "left_knee": 12,
    "left_ankle": 13, "right_eye": 14, "left_eye": 15, "right_ear": 16, "left_ear": 17,
})  # 1 Neck dropped; no feet
_MEDIAPIPE = _layout({
    "nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8, "left_shoulder": 11,
    "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14, "left_wrist": 15, "right_wrist": 16, "left_hip": 23,
    "right_hip": 24, "left_knee": 25, "right_knee": 26, "left_ankle": 27, "right_ankle": 28, "left_heel": 29,
    "right_heel": 30, "left_big_toe": 31, "right_big_toe": 32,
})  # foot_index (the tip of the foot) stands in for the big toe; no small toe
_OPENPOSE_LAYOUTS = {75: _BODY25, 54: _OPENPOSE18}  # by the count of numbers (3 per point)
_MMPOSE_LAYOUTS = {17: _COCO17, 23: _WHOLEBODY, 133: _WHOLEBODY}  # by the count of points
_NPZ_LAYOUTS = {17: _COCO17, 18: _OPENPOSE18, 23: _WHOLEBODY, 25: _BODY25, 33: _MEDIAPIPE, 133: _WHOLEBODY}


# ----------------------------------------------------------------------------------------------
# People found in one frame, before one is chosen


@dataclass(frozen=True, eq=False)
class _Person:
    xy: np.ndarray
    """``(23, 2)`` float32 pixels, 0 where not seen."""
    conf: np.ndarray
    """``(23,)`` float32 in 0..1."""
    box: np.ndarray | None = None
    """``(4,)`` x1, y1, x2, y2 pixels when the file gives a bounding box."""
    image_size: tuple[int, int] | None = None

    @property
    def seen(self) -> np.ndarray:
        return self.conf > 0

    def area(self) -> float:
        """Bounding-box area in pixels²: the file's box, else the box of the seen points."""
        if self.box is not None:
            x1, y1, x2, y2 = (float(v) for v in self.box)
            return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
        pts = self.xy[self.seen].astype(np.float64)
        span = pts.max(axis=0) - pts.min(axis=0)
        return float(span[0] * span[1])


@dataclass(frozen=True, eq=False)
class _Frame:
    people: list[_Person]
    path: Path
    """The file the frame came from (errors name it)."""
    label: str = ""
    """Where in the file, for a file of several frames (``"frames[3]"``)."""


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(value: Any) -> str:
    """What a JSON value is, for an error message (short: keys and strings are cut)."""
    if isinstance(value, dict):
        keys = ", ".join(repr(str(k)[:40]) for k in list(value)[:8])
        more = ", ..." if len(value) > 8 else ""
        return f"an object with keys {keys}{more}" if value else "an empty object"
    if isinstance(value, list):
        return f"a list of {len(value)} items" if value else "an empty list"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else type(value).__name__


def _numbers(value: Any, what: str, path: Path) -> np.ndarray:
    """``value`` (JSON at ``what``) as a float64 array of any shape; anything but nested lists of
    numbers, or NaN / Inf, is an :class:`InputError`."""
    if not isinstance(value, list):
        raise InputError(f"{what} is {_describe(value)}, expected a list of numbers", path)
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nesting
        raise InputError(f"{what} is not a regular list of numbers (rows of different lengths)", path) from None
    if arr.size and not real_numbers(arr.dtype):
        found = {"U": "text", "b": "true/false"}.get(arr.dtype.kind, "null, objects or numbers too large")
        raise InputError(f"{what} holds {found}, expected numbers", path)
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contains NaN or Infinity", path)
    return arr


def _box(value: Any, what: str, path: Path, *, xywh: bool) -> np.ndarray | None:
    """A bounding box as ``(4,)`` x1, y1, x2, y2 (COCO writes x, y, w, h; MMPose ``[[x1, y1, x2, y2]]``)."""
    if value is None or value == []:  # no detector box
        return None
    box = _numbers(value, what, path).reshape(-1)
    if box.shape != (4,):
        raise InputError(f"{what} has {box.size} numbers, expected 4", path)
    if xywh:
        if box[2] < 0 or box[3] < 0:
            raise InputError(f"{what} has a negative width or height ({box[2]:g}, {box[3]:g})", path)
        box = np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]])
    return box


def _to_ours(points: np.ndarray, layout: np.ndarray, *, min_conf: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``points (..., K, 3)`` x, y, confidence in ``layout`` as our ``xy (..., 23, 2)`` and
    ``conf (..., 23)`` float32: confidences clipped to 1 (heatmap scores run a little over),
    below ``min_conf`` or missing from the layout set to 0, and xy 0 where not seen."""
    have = layout >= 0
    picked = points[..., np.where(have, layout, 0), :]
    conf = np.where(have, np.minimum(picked[..., 2], 1.0), 0.0)
    conf = np.where(conf >= min_conf, conf, 0.0)
    xy = np.where((conf > 0)[..., None], picked[..., :2], 0.0)
    return xy.astype(np.float32), conf.astype(np.float32)  # _checked_points kept xy within PIXELS


def _checked_points(points: np.ndarray, what: str, path: Path | str | None) -> None:
    """Refuse negative confidences and coordinates no photo has (:data:`prior.files.PIXELS`) in
    ``points (..., K, 3)``."""
    if not np.isfinite(points).all():
        raise InputError(f"{what} contains NaN or Infinity", path)
    negative = points[..., 2] < 0
    if negative.any():
        where = np.argwhere(negative)[0]
        raise InputError(f"{what} has a negative confidence ({points[(*where, 2)]:g} at point {where[-1]}), "
                         "expected 0..1", path)
    PIXELS.check(points[..., :2], what, path)


def _person(points: np.ndarray, layout: np.ndarray, what: str, path: Path, *, box: np.ndarray | None = None,
            image_size: tuple[int, int] | None = None, min_conf: float = 0.0) -> _Person:
    """One person from ``points (K, 3)`` x, y, confidence in ``layout``, checked."""
    _checked_points(points, what, path)
    xy, conf = _to_ours(points, layout, min_conf=min_conf)
    return _Person(xy, conf, box, image_size)


def _whole_pixels(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return False
    return bool(1 <= v < 2**31) and float(v).is_integer()  # range first: float(10**400) overflows


def _size(width: Any, height: Any, what: str, path: Path | str | None) -> tuple[int, int]:
    """``(width, height)`` as positive whole numbers of pixels, else :class:`InputError`."""
    if not (_whole_pixels(width) and _whole_pixels(height)):
        raise InputError(f"{what} must be a width and height in whole pixels, got {width!r} x {height!r}", path)
    return int(width), int(height)


def _image_size_arg(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
        raise InputError(f"image_size must be (width, height) in pixels, got {image_size!r}")
    return _size(image_size[0], image_size[1], "image_size", None)


# ----------------------------------------------------------------------------------------------
# The formats, one frame each: a JSON value to the people it lists


def _openpose(data: Any, path: Path, where: str, image_size: tuple[int, int] | None) -> list[_Person]:
    """OpenPose ``{"people": [{"pose_keypoints_2d": [x, y, c, ...]}, ...]}``, BODY_25 or COCO-18."""
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        found = _describe(data.get("people")) if isinstance(data, dict) and "people" in data else _describe(data)
        raise InputError(f"{where or 'the file'} is not OpenPose JSON: expected {{\"people\": [...]}}, "
                         f"found {found}", path)
    people = []
    for i, entry in enumerate(data["people"]):
        what = _key(where, f"people[{i}]")
        # "pose_keypoints": OpenPose 1.0's name for the same list
        key = next((k for k in ("pose_keypoints_2d", "pose_keypoints") if isinstance(entry, dict) and k in entry), None)
        if key is None:
            raise InputError(f"{what} is {_describe(entry)}, expected an object with 'pose_keypoints_2d'", path)
        what = _key(what, key)
        flat = _numbers(entry[key], what, path)
        if flat.ndim != 1 or flat.size not in _OPENPOSE_LAYOUTS:
            found = f"{flat.size} numbers" if flat.ndim == 1 else f"shape {flat.shape}"
            raise InputError(f"{what} has {found}, expected a flat list of 75 numbers (BODY_25) or 54 (COCO-18): "
                             "x, y, confidence per point", path)
        people.append(_person(flat.reshape(-1, 3), _OPENPOSE_LAYOUTS[flat.size], what, path))
    return people


def _coco_flags(points: np.ndarray, what: str, path: Path) -> np.ndarray:
    """``points (K, 3)`` with COCO's visibility flags (0, 1, 2) turned into confidences."""
    flags = points[:, 2]
    bad = ~np.isin(flags, list(COCO_FLAG_CONF))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{what} has visibility {flags[i]:g} at point {i}, expected COCO's 0 (not labelled), "
                         "1 (occluded) or 2 (visible); detector scores need a 'score' on the annotation", path)
    conf = np.choose(flags.astype(np.int64), [COCO_FLAG_CONF[v] for v in sorted(COCO_FLAG_CONF)])
    return np.column_stack([points[:, :2], conf])


def _coco_annotation(ann: Any, what: str, path: Path, sizes: dict[Any, tuple[int, int]]) -> _Person:
    if not isinstance(ann, dict) or "keypoints" not in ann:
        raise InputError(f"{what} is {_describe(ann)}, expected a COCO annotation with 'keypoints'", path)
    body = _numbers(ann["keypoints"], _key(what, "keypoints"), path)
    if body.ndim != 1 or body.size != 51:
        hint = "; MMPose instances also have 'keypoint_scores'" if body.ndim == 2 else ""
        found = f"{body.size} numbers" if body.ndim == 1 else f"shape {body.shape}"
        raise InputError(f"{_key(what, 'keypoints')} has {found}, expected a flat list of COCO's 51 "
                         f"(17 points: x, y, visibility){hint}", path)
    points = body.reshape(17, 3)
    if ann.get("foot_kpts") is not None:  # COCO-WholeBody
        feet = _numbers(ann["foot_kpts"], _key(what, "foot_kpts"), path)
        if feet.ndim != 1 or feet.size != 18:
            raise InputError(f"{_key(what, 'foot_kpts')} has {feet.size} numbers, expected 18 "
                             "(6 foot points: x, y, visibility)", path)
        points = np.concatenate([points, feet.reshape(6, 3)])
    # COCO's results format (detections, with a person "score") holds a confidence per point, not a flag.
    if "score" not in ann:
        points = _coco_flags(points, what, path)
    points = np.concatenate([points, np.zeros((23 - len(points), 3))])
    box = _box(ann.get("bbox"), _key(what, "bbox"), path, xywh=True)
    image_id = ann.get("image_id")
    size = sizes.get(image_id) if isinstance(image_id, (int, str)) else None
    return _person(points, _WHOLEBODY, what, path, box=box, image_size=size)


def _coco(data: Any, path: Path, where: str, image_size: tuple[int, int] | None) -> list[_Person]:
    """COCO (or COCO-WholeBody) keypoints: a whole file with ``images`` and ``annotations``, a list
    of annotations or one annotation."""
    if isinstance(data, dict) and "annotations" not in data:
        return [_coco_annotation(data, where or "the file", path, {})]
    sizes: dict[Any, tuple[int, int]] = {}
    if isinstance(data, dict):
        images = data.get("images", [])
        if not isinstance(images, list):
            raise InputError(f"{_key(where, 'images')} is {_describe(images)}, expected a list", path)
        for i, image in enumerate(images):
            if isinstance(image, dict) and {"id", "width", "height"} <= image.keys() \
                    and isinstance(image["id"], (int, str)):
                sizes[image["id"]] = _size(image["width"], image["height"], _key(where, f"images[{i}]"), path)
        annotations, prefix = data["annotations"], _key(where, "annotations")
    else:
        annotations, prefix = data, where
    if not isinstance(annotations, list):
        raise InputError(f"{prefix or 'the file'} is {_describe(annotations)}, expected a list of COCO "
                         "annotations", path)
    return [_coco_annotation(ann, f"{prefix}[{i}]", path, sizes) for i, ann in enumerate(annotations)]


def _mmpose_instance(inst: Any, what: str, path: Path) -> _Person:
    if not isinstance(inst, dict) or "keypoints" not in inst or "keypoint_scores" not in inst:
        raise InputError(f"{what} is {_describe(inst)}, expected an MMPose instance with 'keypoints' "
                         "and 'keypoint_scores'", path)
    xy = _numbers(inst["keypoints"], _key(what, "keypoints"), path)
    scores = _numbers(inst["keypoint_scores"], _key(what, "keypoint_scores"), path)
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] not in _MMPOSE_LAYOUTS:
        raise InputError(f"{_key(what, 'keypoints')} has shape {xy.shape}, expected (K, 2) with K = 17 (COCO), "
                         "23 or 133 (COCO-WholeBody)", path)
    if scores.shape != (xy.shape[0],):
        raise InputError(f"{_key(what, 'keypoint_scores')} has shape {scores.shape}, expected ({xy.shape[0]},) "
                         "like 'keypoints'", path)
    box = _box(inst.get("bbox"), _key(what, "bbox"), path, xywh=False)
    return _person(np.column_stack([xy, scores]), _MMPOSE_LAYOUTS[xy.shape[0]], what, path, box=box)


def _mmpose(data: Any, path: Path, where: str, image_size: tuple[int, int] | None) -> list[_Person]:
    """MMPose / ViTPose instances: a list, ``{"instance_info": [...]}`` (its demo), ``{"instances": [...]}``
    (a video frame of that demo) or one instance."""
    if isinstance(data, dict) and "keypoint_scores" in data:
        return [_mmpose_instance(data, where or "the instance", path)]
    key = next((k for k in ("instance_info", "instances") if isinstance(data, dict) and k in data), None)
    instances = data[key] if key else data
    prefix = _key(where, key) if key else where
    if not isinstance(instances, list):
        raise InputError(f"{prefix or 'the file'} is {_describe(instances)}, expected a list of MMPose instances "
                         "('keypoints', 'keypoint_scores')", path)
    return [_mmpose_instance(inst, f"{prefix}[{i}]", path) for i, inst in enumerate(instances)]


def _landmarks(value: Any, what: str, path: Path) -> np.ndarray:
    """33 MediaPipe landmark objects as ``(33, 4)`` x, y, z, visibility (z 0 when absent)."""
    if not isinstance(value, list) or len(value) != 33:
        raise InputError(f"{what} is {_describe(value)}, expected MediaPipe Pose's 33 landmarks", path)
    rows = []
    for i, lm in enumerate(value):
        if not isinstance(lm, dict) or not {"x", "y", "visibility"} <= lm.keys():
            raise InputError(f"{what}[{i}] is {_describe(lm)}, expected a landmark with 'x', 'y', 'visibility'", path)
        rows.append([lm["x"], lm["y"], lm.get("z", 0.0), lm["visibility"]])
    return _numbers(rows, what, path)


def _mediapipe(data: Any, path: Path, where: str, image_size: tuple[int, int] | None) -> list[_Person]:
    """MediaPipe Pose's normalised landmarks: a list of 33, or ``{"landmarks": [...], "image_width": W,
    "image_height": H}`` whose ``landmarks`` may also be a list of such lists (several people)."""
    size = None
    if isinstance(data, dict) and "landmarks" in data:
        if "image_width" in data or "image_height" in data:
            size = _size(data.get("image_width"), data.get("image_height"), _key(where, "image_width/height"), path)
        prefix, data = _key(where, "landmarks"), data["landmarks"]
    else:
        prefix = where or "the landmarks"
    size = size or image_size
    if isinstance(data, list) and data and all(isinstance(item, list) for item in data):
        people = [_landmarks(item, f"{prefix}[{i}]", path) for i, item in enumerate(data)]
        whats = [f"{prefix}[{i}]" for i in range(len(data))]
    else:
        people, whats = [_landmarks(data, prefix, path)], [prefix]
    if size is None:
        raise InputError("MediaPipe landmarks are normalised to 0..1 and the file gives no image size; "
                         "pass image_size=(width, height) of the photo", path)
    out = []
    for lms, what in zip(people, whats):
        far = float(np.abs(lms[:, :2]).max())
        if far > _MAX_NORMALISED:
            raise InputError(f"{what} has coordinates up to {far:g}, expected MediaPipe's normalised 0..1 "
                             "(pixel landmarks: an .npz of 33 points, or from_mediapipe)", path)
        pixels = np.column_stack([lms[:, 0] * size[0], lms[:, 1] * size[1], lms[:, 3]])
        out.append(_person(pixels, _MEDIAPIPE, what, path, image_size=size, min_conf=MEDIAPIPE_MIN_VISIBILITY))
    return out


_READERS = {"openpose": _openpose, "coco": _coco, "mmpose": _mmpose, "mediapipe": _mediapipe}


def _detect(data: Any, path: Path, where: str) -> str:
    """The format of one frame's JSON, from its keys."""
    first = data[0] if isinstance(data, list) and data else None
    if isinstance(data, dict):
        if "people" in data:
            return "openpose"
        if "annotations" in data:
            return "coco"
        if {"instance_info", "instances", "keypoint_scores"} & data.keys():
            return "mmpose"
        if "landmarks" in data:
            return "mediapipe"
        if "keypoints" in data:
            return "coco"
    elif isinstance(first, dict):
        if "keypoint_scores" in first:
            return "mmpose"
        if "keypoints" in first:
            return "coco"
        if {"x", "y"} <= first.keys():
            return "mediapipe"
    elif isinstance(first, list) and first and isinstance(first[0], dict) and {"x", "y"} <= first[0].keys():
        return "mediapipe"
    raise InputError(f"{where or 'the file'} is {_describe(data)}: not a keypoint format this reads; expected "
                     "OpenPose ('people'), COCO ('annotations' or 'keypoints' of 17 x 3 numbers), MMPose "
                     "('keypoints' with 'keypoint_scores') or MediaPipe (33 landmarks)", path)


def _frame_people(data: Any, path: Path, where: str, *, fmt: str | None,
                  image_size: tuple[int, int] | None) -> list[_Person]:
    if isinstance(data, list) and not data:  # a detector's "nobody here"
        return []
    return _READERS[fmt or _detect(data, path, where)](data, path, where, image_size)


def _json_frames(data: Any, path: Path) -> tuple[list[Any], str] | None:
    """The frames of a JSON file of several (with the key they sit under), or None for one frame.

    Several frames: ``{"frames": [...]}``; MMPose's ``{"predictions": [[...], ...]}`` and its video
    demo's ``{"instance_info": [{"frame_id": t, "instances": [...]}, ...]}``; a list of OpenPose /
    MediaPipe frame objects; a list of lists (of MMPose instances, say).
    """
    if isinstance(data, dict):
        if "frames" in data or "predictions" in data:
            key = "frames" if "frames" in data else "predictions"
            items = data[key]
            per_image = key == "predictions"  # MMPose: a list of instances per image
            if not isinstance(items, list) or (per_image and not all(isinstance(f, list) for f in items)):
                expected = "a list of per-image lists of instances" if per_image else "a list of frames"
                raise InputError(f"{key!r} is {_describe(items)}, expected {expected}", path)
            return items, key
        info = data.get("instance_info")
        if isinstance(info, list) and info and all(isinstance(f, dict) and "instances" in f for f in info):
            return info, "instance_info"
        return None
    if isinstance(data, list) and data:
        if all(isinstance(item, list) for item in data):
            return data, ""
        if all(isinstance(item, dict) and {"people", "landmarks", "instances"} & item.keys() for item in data):
            return data, ""
    return None


def _read_json(path: Path, max_bytes: int) -> Any:
    path = checked_file(path, max_bytes=max_bytes)
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", path) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text, expected a JSON keypoint file", path) from None
    except RecursionError:
        raise InputError("JSON nested too deeply to be a keypoint file", path) from None


def _read_npz(path: Path, max_bytes: int, max_frames: int) -> list[_Frame]:
    """Our own layout: ``keypoints (N, 3)`` or ``(T, N, 3)`` x, y, confidence, one person, with N
    naming the layout (:data:`_NPZ_LAYOUTS`), and an optional ``image_size (2,)``."""
    with open_npz(path, max_bytes=max_bytes) as npz:
        counts = "23 (ours), 17 (COCO), 18 (OpenPose COCO-18), 25 (BODY_25), 33 (MediaPipe) or 133 (WholeBody)"
        shape = npz.shape("keypoints")  # from the header: a forged frame count is refused before it is read
        if len(shape) not in (2, 3) or shape[-1] != 3 or shape[-2] not in _NPZ_LAYOUTS:
            raise InputError(f"'keypoints' has shape {shape}, expected (N, 3) or (T, N, 3) x, y, confidence "
                             f"with N = {counts}", path)
        if len(shape) == 3 and not 1 <= shape[0] <= max_frames:
            raise InputError(f"'keypoints' has {shape[0]} frames, expected 1 to {max_frames}", path)
        raw = npz.raw("keypoints")
        if not real_numbers(raw.dtype):
            raise InputError(f"'keypoints' has dtype {raw.dtype}, expected numbers", path)
        points = raw.astype(np.float64).reshape(-1, *shape[-2:])
        size = None
        if "image_size" in npz:
            value = npz.raw("image_size")
            if value.shape != (2,) or not real_numbers(value.dtype):
                raise InputError(f"'image_size' has shape {value.shape} and dtype {value.dtype}, expected "
                                 "(2,) width, height in pixels", path)
            size = _size(*value.tolist(), "'image_size'", path)
    layout = _NPZ_LAYOUTS[shape[-2]]
    _checked_points(points, "'keypoints'", path)
    min_conf = MEDIAPIPE_MIN_VISIBILITY if layout is _MEDIAPIPE else 0.0
    xy, conf = _to_ours(points, layout, min_conf=min_conf)
    frames = [_Frame([_Person(xy[t], conf[t], None, size)], path) for t in range(len(points))]
    if len(shape) == 2:
        return frames
    return [_Frame(f.people, path, f"frame {t}") for t, f in enumerate(frames)]


def _read_frames(path: Path, *, fmt: str | None, image_size: tuple[int, int] | None, max_bytes: int,
                 max_frames: int) -> list[_Frame]:
    """Every frame ``path`` holds (one for most files), each with all its people."""
    if fmt is not None and fmt not in KEYPOINT_FORMATS:
        raise InputError(f"unknown keypoint format {fmt!r}, expected one of {', '.join(KEYPOINT_FORMATS)}")
    path = checked_file(path, max_bytes=max_bytes)
    with path.open("rb") as f:
        zipped = f.read(2) == b"PK"
    if fmt == "npz" or (fmt is None and zipped):
        return _read_npz(path, max_bytes, max_frames)
    data = _read_json(path, max_bytes)
    found = _json_frames(data, path)
    if found is None:
        return [_Frame(_frame_people(data, path, "", fmt=fmt, image_size=image_size), path)]
    items, key = found
    if not items:
        raise InputError(f"{repr(key) if key else 'the list'} holds no frames", path)
    if len(items) > max_frames:
        raise InputError(f"holds {len(items)} frames, over the {max_frames} limit", path)
    frames = []
    for t, item in enumerate(items):
        label = f"{key}[{t}]"
        frames.append(_Frame(_frame_people(item, path, label, fmt=fmt, image_size=image_size), path, label))
    return frames


# ----------------------------------------------------------------------------------------------
# Choosing the person


def _count(n: int) -> str:
    return f"{n} person" if n == 1 else f"{n} people"


def _person_arg(person: Any) -> int | None:
    if person is not None and (isinstance(person, bool) or not isinstance(person, (int, np.integer)) or person < 0):
        raise InputError(f"person must be a whole number from 0 (the first the file lists), got {person!r}")
    return None if person is None else int(person)


def _in(frame: _Frame) -> str:
    return f"{frame.label}: " if frame.label else ""


def _pick(frame: _Frame, person: int | None) -> _Person | None:
    """The ``person``-th of the frame (from 0, as the file lists them), else the largest seen
    (:meth:`_Person.area`; the first of equals); None when nobody has a seen point."""
    people = frame.people
    if person is not None:
        if person >= len(people):
            holder = "the frame" if frame.label else "the file"
            raise InputError(f"{_in(frame)}person {person} requested, {holder} has {_count(len(people))}",
                             frame.path)
        if not people[person].seen.any():
            raise InputError(f"{_in(frame)}person {person} has no seen point (all confidences 0)", frame.path)
        return people[person]
    candidates = [p for p in people if p.seen.any()]
    return max(candidates, key=_Person.area) if candidates else None


def _closest(people: list[_Person], previous: _Person) -> _Person | None:
    """The person whose seen points lie nearest ``previous``'s: mean distance over the points both
    see, else (no point in common) the distance of the centres of their seen points."""
    def distance(p: _Person) -> tuple[int, float]:
        common = p.seen & previous.seen
        if common.any():
            return 0, float(np.linalg.norm(p.xy[common] - previous.xy[common], axis=-1).mean())
        centre = p.xy[p.seen].mean(axis=0) - previous.xy[previous.seen].mean(axis=0)
        return 1, float(np.linalg.norm(centre))

    candidates = [p for p in people if p.seen.any()]
    return min(candidates, key=distance) if candidates else None


def _choose(frames: list[_Frame], person: int | None, *, track: bool) -> list[_Person | None]:
    """Who is taken in each frame (None: nobody seen); see :func:`load_keypoint_sequence`'s ``track``."""
    chosen: list[_Person | None] = []
    previous: _Person | None = None
    for frame in frames:
        if not any(p.seen.any() for p in frame.people):
            pick = None
        elif track and previous is not None:
            pick = _closest(frame.people, previous)
        elif track or person is None:
            pick = _pick(frame, person)  # the start of the track, or the largest of every frame
        else:  # the person-th of every frame that lists one
            listed = frame.people[person] if person < len(frame.people) else None
            pick = listed if listed is not None and listed.seen.any() else None
        chosen.append(pick)
        previous = pick if pick is not None else previous
    return chosen


def _no_one(frame: _Frame) -> InputError:
    n = len(frame.people)
    found = "no person" if n == 0 else f"{_count(n)} but no seen point (all confidences 0)"
    return InputError(f"{_in(frame)}found {found}; expected at least one person with a seen point", frame.path)


def _settled_size(chosen: list[tuple[_Frame, _Person]], image_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """The one image size of the chosen people's frames and the ``image_size`` argument."""
    size = image_size
    for frame, p in chosen:
        if p.image_size is None:
            continue
        if size is None:
            size = p.image_size
        elif p.image_size != size:
            given = "image_size" if size == image_size else "an earlier frame"
            raise InputError(f"{_in(frame)}the image is {p.image_size[0]}x{p.image_size[1]}, but {given} says "
                             f"{size[0]}x{size[1]}", frame.path)
    return size


# ----------------------------------------------------------------------------------------------
# Public readers and writer


def load_keypoints(
    path: str | os.PathLike,
    *,
    person: int | None = None,
    image_size: tuple[int, int] | None = None,
    format: str | None = None,
    max_bytes: int = MAX_KEYPOINT_FILE_BYTES,
) -> Keypoints:
    """One person's keypoints from a photo's keypoint file, in our 23-point set.

    Formats, detected from the content unless ``format`` (one of :data:`KEYPOINT_FORMATS`) names one:

    - OpenPose JSON, ``{"people": [{"pose_keypoints_2d": [x, y, c, ...]}]}``: 75 numbers (BODY_25)
      or 54 (COCO-18, no feet); Neck and MidHip are dropped; 0, 0, 0 is "not found".
    - COCO / COCO-WholeBody JSON (key ``annotations``, or ``keypoints`` of 51 numbers): a whole
      file, a list of annotations or one; ``foot_kpts`` adds the feet; visibility 2 gives
      confidence 1, 1 (labelled but occluded) 0.5 and 0 (not labelled) 0; an annotation with a
      ``score`` (COCO's results format) holds confidences instead. ``images``' width and height
      give the image size.
    - MMPose / ViTPose JSON (``keypoint_scores``): a list of instances, ``{"instance_info": [...]}``
      or ``{"predictions": [[...]]}``, each ``keypoints (K, 2)``, ``keypoint_scores (K,)`` and an
      optional ``bbox``; K = 17 (COCO), 23, or 133 (COCO-WholeBody: face and hands ignored).
    - MediaPipe Pose JSON: 33 landmarks ``{"x", "y", "z", "visibility"}`` normalised to 0..1, a list
      or ``{"landmarks": [...], "image_width": W, "image_height": H}``; without a size in the file,
      ``image_size`` is needed. Read as :func:`from_mediapipe` reads pixels.
    - ``.npz`` (a zip): ``keypoints (N, 3)`` x, y, confidence in pixels, the layout by N: 23 ours,
      17 COCO, 18 OpenPose COCO-18, 25 BODY_25, 33 MediaPipe (confidence = visibility), 133
      COCO-WholeBody; an optional ``image_size (2,)`` (what :func:`save_keypoints` writes).

    Confidences above 1 (heatmap scores) are clipped to 1; points a format lacks get confidence 0.

    Args:
        path: the file.
        person: which person (from 0, in the file's order); None picks the largest (bounding-box
            area: the file's box, else that of the seen points).
        image_size: ``(width, height)`` of the photo in pixels, when the file does not say (it
            must agree when the file does).
        format: the file's format, when detection is not wanted.
        max_bytes: largest file read.

    Raises:
        InputError: one line naming the file, for a file that cannot be read as keypoints, with
            several frames (see :func:`load_keypoint_sequence`), without the requested person or
            with nobody seen.
    """
    person, size = _person_arg(person), _image_size_arg(image_size)
    frames = _read_frames(Path(path), fmt=format, image_size=size, max_bytes=max_bytes, max_frames=MAX_KEYPOINT_FRAMES)
    if len(frames) != 1:
        raise InputError(f"holds {len(frames)} frames, expected one photo's; read it with load_keypoint_sequence",
                         path)
    chosen = _pick(frames[0], person)
    if chosen is None:
        raise _no_one(frames[0])
    return Keypoints(chosen.xy, chosen.conf, _settled_size([(frames[0], chosen)], size), str(path))


def natural_key(path: Path) -> tuple:
    """Sort key putting ``frame_2`` before ``frame_10``: digit runs compare as numbers."""
    parts = re.split(r"(\d+)", path.name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), path.name


def _sequence_files(paths: str | os.PathLike | Sequence[str | os.PathLike], max_frames: int) -> list[Path]:
    """The files of a sequence: a folder's ``*.json`` / ``*.npz`` (natural order), a list of files
    (its order) or one file."""
    if isinstance(paths, (str, os.PathLike)):
        folder = Path(paths)
        if not folder.is_dir():
            return [folder]
        # dot files: editors' and macOS's "._frame.json" companions, not frames
        files = [p for p in folder.iterdir() if p.suffix.lower() in (".json", ".npz") and p.is_file()
                 and not p.name.startswith(".")]
        if not files:
            raise InputError("no .json or .npz keypoint files in the folder", folder)
        if len(files) > max_frames:
            raise InputError(f"holds {len(files)} keypoint files, over the {max_frames} frame limit", folder)
        return sorted(files, key=natural_key)
    files = [Path(p) for p in paths]
    if not files:
        raise InputError("no keypoint files given")
    if len(files) > max_frames:
        raise InputError(f"{len(files)} keypoint files given, over the {max_frames} frame limit", files[0])
    return files


def load_keypoint_sequence(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    person: int | None = None,
    image_size: tuple[int, int] | None = None,
    format: str | None = None,
    track: bool = True,
    max_bytes: int = MAX_KEYPOINT_FILE_BYTES,
    max_frames: int = MAX_KEYPOINT_FRAMES,
) -> Keypoints:
    """One person's keypoints through a video: ``xy (T, 23, 2)``, ``conf (T, 23)``.

    Args:
        paths: a folder (its ``*.json`` and ``*.npz`` files, one frame each, in natural order:
            ``frame_2`` before ``frame_10``; dot files skipped), a list of such files (in the
            order given), or one file of several frames: ``{"frames": [<frame>, ...]}``, a list of
            OpenPose frame objects, MMPose's ``{"predictions": [[...], ...]}`` or video demo's
            ``instance_info``, or an ``.npz`` with ``keypoints (T, N, 3)``. A frame is anything
            :func:`load_keypoints` reads.
        person: who, in the first frame with anyone seen (from 0, as the file lists them); None
            picks the largest there.
        image_size: ``(width, height)`` of the video in pixels, when the files do not say.
        format: the files' format (see :func:`load_keypoints`), when detection is not wanted.
        track: after the first pick, take in each frame the person nearest the last one taken
            (their points' mean distance), so a bigger passer-by does not steal the track. False
            picks every frame on its own: the largest, or the ``person``-th (a frame with fewer
            people then counts as empty).
        max_bytes: largest file read.
        max_frames: most frames read.

    A frame with nobody seen has all confidences 0; a sequence with nobody in any frame is an
    :class:`InputError`, as is any unreadable file (named, with the frame where there are several).
    """
    person, size = _person_arg(person), _image_size_arg(image_size)
    files = _sequence_files(paths, max_frames)
    frames: list[_Frame] = []
    for file in files:
        read = _read_frames(file, fmt=format, image_size=size, max_bytes=max_bytes, max_frames=max_frames)
        if len(read) > 1 and len(files) > 1:
            raise InputError(f"holds {len(read)} frames; in a folder or list, each file is one frame", file)
        frames += read
    chosen = _choose(frames, person, track=track)
    source = paths if isinstance(paths, (str, os.PathLike)) else frames[0].path
    if all(pick is None for pick in chosen):
        which = f"none of the {len(frames)} frames has a" if len(frames) > 1 else "the one frame has no"
        raise InputError(f"{which} person with a seen point", source)
    xy = np.zeros((len(frames), NUM_KEYPOINTS, 2), np.float32)
    conf = np.zeros((len(frames), NUM_KEYPOINTS), np.float32)
    for t, pick in enumerate(chosen):
        if pick is not None:
            xy[t], conf[t] = pick.xy, pick.conf
    found = _settled_size([(f, p) for f, p in zip(frames, chosen) if p is not None], size)
    return Keypoints(xy, conf, found, str(source))


def from_mediapipe(
    landmarks: np.ndarray,
    *,
    image_size: tuple[int, int] | None = None,
    source: str | None = None,
    min_visibility: float = MEDIAPIPE_MIN_VISIBILITY,
) -> Keypoints:
    """Our 23 points from MediaPipe Pose's 33 landmarks in pixels.

    Args:
        landmarks: ``(33, 3)`` x, y, visibility or ``(33, C >= 4)`` x, y, z, visibility, ... with x,
            y in pixels (MediaPipe's normalised values times the image width and height).
        image_size: ``(width, height)`` of the image, kept on the result.
        source: what the points came from (named in errors and kept on the result).
        min_visibility: landmarks less visible than this are not seen (confidence 0); the others
            have confidence = visibility.

    MediaPipe has no big and small toe: its ``foot_index`` (the tip of the foot) stands in for the
    big toe, and the small toes stay unseen. Bad input is an :class:`InputError` (naming ``source``).
    """
    arr = np.asarray(landmarks)
    if not real_numbers(arr.dtype) or arr.ndim != 2 or arr.shape[0] != 33 or arr.shape[1] < 3:
        raise InputError(f"MediaPipe landmarks must be numbers of shape (33, 3) or (33, 4+), "
                         f"got {arr.shape} {arr.dtype}", source)
    vis = arr[:, 2] if arr.shape[1] == 3 else arr[:, 3]
    points = np.column_stack([arr[:, :2], vis]).astype(np.float64)
    _checked_points(points, "MediaPipe landmarks", source)
    xy, conf = _to_ours(points, _MEDIAPIPE, min_conf=float(min_visibility))
    return Keypoints(xy, conf, _image_size_arg(image_size), source)


def save_keypoints(kp: Keypoints, path: str | os.PathLike) -> Path:
    """Write ``kp`` to ``path`` as an ``.npz`` that :func:`load_keypoints` (one image) and
    :func:`load_keypoint_sequence` (``(T, ...)``) read back: ``keypoints (..., 23, 3)`` float32
    x, y, confidence, and ``image_size (2,)`` int64 when known. Atomic: a failed write leaves
    ``path`` as it was."""
    arrays = {"keypoints": np.concatenate([kp.xy, kp.conf[..., None]], axis=-1).astype(np.float32)}
    if kp.image_size is not None:
        arrays["image_size"] = np.asarray(kp.image_size, dtype=np.int64)
    return save_npz(path, arrays)


__all__ = [
    "COCO_FLAG_CONF",
    "KEYPOINT_FORMATS",
    "KEYPOINT_NAMES",
    "MAX_KEYPOINT_FILE_BYTES",
    "MAX_KEYPOINT_FRAMES",
    "MEDIAPIPE_MIN_VISIBILITY",
    "NUM_KEYPOINTS",
    "Keypoints",
    "from_mediapipe",
    "load_keypoint_sequence",
    "load_keypoints",
    "natural_key",
    "save_keypoints",
]
