"""A person's 2D keypoints from a bare photo: MediaPipe's BlazePose models, run by LiteRT.

The two-stage pipeline of MediaPipe's ``pose_landmark_cpu`` graph for a single image, in numpy:

1. the pose detector (``pose_detection.tflite``) finds people in the photo letterboxed to 224x224;
   the highest-scoring one is kept;
2. its hip centre and full-body scale point give a rotated square region of interest, the body
   upright in it (``pose_detection_to_roi``);
3. the region is cropped to 256x256 and the full landmark model (``pose_landmark_full.tflite``,
   "BlazePose GHUM 3D") gives 33 landmarks, refined by its heatmap;
4. the landmarks are mapped back to photo pixels and renamed to our 23 points by
   :func:`prior.keypoints.from_mediapipe`.

Both models ship in ``assets/blazepose/`` (Apache-2.0, see the NOTICE there): nothing is
downloaded. The interpreters are loaded once per process, on first use (:func:`blazepose`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError
from .files import asset_path, checked_file
from .keypoints import Keypoints, from_mediapipe

MAX_IMAGE_BYTES = 100 * 2**20
"""Largest photo file :func:`load_image` reads."""
MAX_IMAGE_PIXELS = 50_000_000
"""Most pixels a photo may declare (a 50-megapixel camera's); more is refused before decoding
(a decompression bomb: a few KiB of PNG can declare gigapixels)."""

DETECTOR_FILE = "blazepose/pose_detection.tflite"
LANDMARK_FILE = "blazepose/pose_landmark_full.tflite"
NUM_THREADS = 2

# Pose detector, as mediapipe/modules/pose_detection/pose_detection_cpu.pbtxt configures it.
DETECTOR_SIZE = 224
MIN_DETECTION_SCORE = 0.5
SCORE_CLIPPING = 100.0
NMS_IOU = 0.3
# Region of interest, as pose_landmark/pose_detection_to_roi.pbtxt: keypoint 0 is the hip centre,
# keypoint 1 a point on the circle around the whole body.
ROI_SCALE = 1.25
# Landmark model, as pose_landmark_by_roi_cpu.pbtxt and tensors_to_pose_landmarks_and_segmentation.pbtxt.
LANDMARK_SIZE = 256
NUM_LANDMARKS = 39  # 33 body landmarks, then auxiliary ones (MediaPipe tracks the ROI with them), not kept
NUM_BODY_LANDMARKS = 33
MIN_PRESENCE = 0.5
HEATMAP_KERNEL = 7
MIN_HEATMAP_CONFIDENCE = 0.5


# ----------------------------------------------------------------------------------------------
# Public API


def load_image(path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The photo at ``path`` as ``(H, W, 3)`` uint8 RGB, turned upright by its EXIF orientation.

    Transparent pixels are put on white. A missing, empty or oversized file, one that is not an
    image, a truncated one, and one declaring no pixels or more than ``max_pixels`` are each an
    :class:`InputError` naming the file.
    """
    path = checked_file(path, max_bytes=max_bytes)
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past twice its own limit refuses) at open; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width <= 0 or height <= 0:
                    raise InputError(f"image has no pixels ({width}x{height})", path)
                if width * height > max_pixels:
                    raise InputError(
                        f"image is {width}x{height} ({width * height / 1e6:.0f} megapixels), over the "
                        f"{max_pixels / 1e6:.0f} megapixel limit", path)
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb = _rgb(im)
    except UnidentifiedImageError:
        raise InputError("not an image Pillow can read (expected a photo: JPEG, PNG, WebP, ...)", path) from None
    except Image.DecompressionBombError as exc:  # Pillow's own limit, past twice its warning, hit at open
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)) / 1e6:.0f} megapixels" if declared else "too many pixels"
        raise InputError(f"image declares {size}, over the {max_pixels / 1e6:.0f} megapixel limit", path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, InputError):
            raise
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"image could not be decoded, truncated or damaged ({reason})", path) from None
    return rgb


def _rgb(im: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 (a writable copy) of a decoded Pillow image of any mode."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):  # 16-bit / float grey: Pillow's RGB conversion clips
        grey = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or grey.max() > 255 else 255.0
        grey8 = np.clip(grey * (255 / top) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=2)
    if "A" in im.getbands() or "transparency" in im.info:  # transparent pixels on white, not black
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.array(im.convert("RGB"), dtype=np.uint8)


def detect_keypoints(image: np.ndarray, *, source: str | None = None, min_visibility: float = 0.5) -> Keypoints:
    """The 2D keypoints of the most prominent person in ``image``.

    ``image``: ``(H, W, 3)`` uint8 RGB (as from :func:`load_image`). ``source`` names the photo
    in errors and in the result. Landmarks BlazePose gives a visibility below ``min_visibility``
    are not seen (confidence 0). No person found is an :class:`InputError`.
    """
    image = _checked_image(image, source)
    landmarks = blazepose().landmarks(image)
    if landmarks is None:
        raise InputError("no person found in the photo", source)
    height, width = image.shape[:2]
    return from_mediapipe(landmarks[:, :4], image_size=(width, height), source=source, min_visibility=min_visibility)


@functools.lru_cache(maxsize=1)
def _shared_blazepose() -> BlazePose:
    return BlazePose()


_load_lock = threading.Lock()


def blazepose() -> BlazePose:
    """The process's :class:`BlazePose`, loaded on the first call (a fraction of a second)."""
    with _load_lock:  # two threads' first calls load it once
        return _shared_blazepose()


# ----------------------------------------------------------------------------------------------
# The two models


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Detection:
    """One person the detector found, in photo pixels."""

    score: float
    box: np.ndarray
    """``(4,)`` xmin, ymin, xmax, ymax."""
    points: np.ndarray
    """``(4, 2)`` x, y: hip centre, full-body scale point, then the upper body's centre and scale point."""


@dataclass(frozen=True, eq=False)
class Roi:
    """A rotated square in photo pixels: the landmark model's crop."""

    center: np.ndarray
    """``(2,)`` x, y."""
    size: float
    rotation: float
    """Radians; positive turns the crop's axes clockwise on the photo (y down)."""

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """``(..., 2)`` crop coordinates in 0..1 to photo pixels ``(..., 2)``."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        du = (uv[..., 0] - 0.5) * self.size
        dv = (uv[..., 1] - 0.5) * self.size
        return np.stack([self.center[0] + c * du - s * dv, self.center[1] + s * du + c * dv], axis=-1)


class BlazePose:
    """MediaPipe's pose detector and full pose landmark model, each in a LiteRT interpreter.

    Safe to share between threads: each interpreter runs one image at a time.
    """

    def __init__(self, detector_path: str | Path | None = None, landmark_path: str | Path | None = None, *,
                 num_threads: int = NUM_THREADS) -> None:
        from ai_edge_litert.interpreter import Interpreter

        paths = [Path(p) if p is not None else asset_path(name)
                 for p, name in ((detector_path, DETECTOR_FILE), (landmark_path, LANDMARK_FILE))]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: BlazePose model missing (reinstall dposer-view)")
        with _quiet_stderr():  # LiteRT's C++ prints an INFO line per process: errors must stay one line
            self._detector = Interpreter(model_path=str(paths[0]), num_threads=num_threads)
            self._landmarker = Interpreter(model_path=str(paths[1]), num_threads=num_threads)
            self._detector.allocate_tensors()
            self._landmarker.allocate_tensors()
        self._detector_lock = threading.Lock()
        self._landmarker_lock = threading.Lock()
        self._anchors = ssd_anchors()

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """``(33, 5)`` landmarks of the most prominent person in ``image`` (``(H, W, 3)`` uint8 RGB):
        x, y in photo pixels (MediaPipe's normalised coordinates times the photo's size), z (depth
        relative to the hips in photo pixels, smaller is nearer the camera), visibility and presence
        in 0..1; None when no person is found."""
        detection = self.detect(image)
        if detection is None:
            return None
        return self.landmarks_in(image, detection_roi(detection))

    def detect(self, image: np.ndarray) -> Detection | None:
        """The highest-scoring person the pose detector finds in ``image``, or None."""
        height, width = image.shape[:2]
        side = max(width, height)
        letterbox = Roi(np.array([width / 2, height / 2]), float(side), 0.0)
        tensor = crop(image, letterbox, DETECTOR_SIZE, border="zero") * (2 / 255) - 1
        outputs = _run(self._detector, self._detector_lock, tensor)
        raw_boxes = next(o for o in outputs if o.shape[-1] == 12).reshape(-1, 12)
        raw_scores = next(o for o in outputs if o.shape[-1] == 1).reshape(-1)
        best = decode_detections(raw_boxes, raw_scores, self._anchors)
        if best is None:
            return None
        score, box, points = best
        # Letterbox removal: the tensor's 0..1 is the square of side `side` centred on the photo.
        offset = np.array([(width - side) / 2, (height - side) / 2])
        points = points * side + offset
        box = box * side + np.tile(offset, 2)
        return Detection(score, box, points)

    def landmarks_in(self, image: np.ndarray, roi: Roi) -> np.ndarray | None:
        """``(33, 5)`` landmarks (as :meth:`landmarks`) of the person in ``roi``; None when the
        landmark model says no person is there."""
        tensor = crop(image, roi, LANDMARK_SIZE, border="replicate") * (1 / 255)
        outputs = _run(self._landmarker, self._landmarker_lock, tensor)
        raw = next(o for o in outputs if o.size == NUM_LANDMARKS * 5).reshape(NUM_LANDMARKS, 5)
        presence = float(next(o for o in outputs if o.size == 1).reshape(()))
        heatmap = next(o for o in outputs if o.shape[-1] == NUM_LANDMARKS and o.ndim == 4)[0]
        if not presence >= MIN_PRESENCE:
            return None
        uv = raw[:, :2] / LANDMARK_SIZE
        uv = refine_from_heatmap(uv, heatmap)
        xy = roi.to_image(uv)
        z = raw[:, 2] / LANDMARK_SIZE * roi.size
        out = np.column_stack([xy, z, _sigmoid(raw[:, 3]), _sigmoid(raw[:, 4])]).astype(np.float32)
        return out[:NUM_BODY_LANDMARKS]


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null meanwhile (native code's messages bypass ``sys.stderr``)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. captured by a test runner): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _run(interpreter, lock: threading.Lock, tensor: np.ndarray) -> list[np.ndarray]:
    """The interpreter's outputs (copies) for one ``(S, S, 3)`` float image."""
    with lock:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor[None].astype(np.float32))
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


# ----------------------------------------------------------------------------------------------
# Pieces of the graph (pure functions)


def ssd_anchors() -> np.ndarray:
    """``(2254, 2)`` anchor centres x, y in 0..1 of the pose detector (SsdAnchorsCalculator with
    pose_detection_cpu.pbtxt's options: 5 layers of strides 8, 16, 32, 32, 32, two anchors a cell,
    fixed anchor size 1, so only the centres matter)."""
    strides = [8, 16, 32, 32, 32]
    anchors = []
    layer = 0
    while layer < len(strides):
        last = layer
        per_cell = 0
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2  # aspect ratio 1.0 and the interpolated scale (aspect ratio 1.0)
            last += 1
        cells = math.ceil(DETECTOR_SIZE / strides[layer])
        y, x = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centres = np.stack([(x + 0.5) / cells, (y + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        anchors.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        layer = last
    return np.concatenate(anchors).astype(np.float32)


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
                      ) -> tuple[float, np.ndarray, np.ndarray] | None:
    """The best person among the detector's raw outputs, after weighted non-maximum suppression.

    ``raw_boxes: (N, 12)`` (x, y, w, h, then 4 keypoints' x, y, in tensor pixels relative to the
    anchor), ``raw_scores: (N,)`` logits, ``anchors: (N, 2)``. Returns the score, the box
    ``(4,)`` xmin, ymin, xmax, ymax and the keypoints ``(4, 2)`` in 0..1 of the tensor; None when
    no score reaches :data:`MIN_DETECTION_SCORE`.
    """
    scores = 1 / (1 + np.exp(-np.clip(raw_scores.astype(np.float64), -SCORE_CLIPPING, SCORE_CLIPPING)))
    keep = np.flatnonzero(scores >= MIN_DETECTION_SCORE)
    if keep.size == 0:
        return None
    raw = raw_boxes[keep].astype(np.float64) / DETECTOR_SIZE
    centre = raw[:, 0:2] + anchors[keep]
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    points = raw[:, 4:12].reshape(-1, 4, 2) + anchors[keep][:, None, :]
    scores = scores[keep]
    # MediaPipe's WEIGHTED suppression, first cluster only: the top box and every box overlapping it
    # by more than NMS_IOU, averaged by score.
    top = int(np.argmax(scores))
    overlap = _iou(boxes[top], boxes) > NMS_IOU
    overlap[top] = True
    weights = scores[overlap] / scores[overlap].sum()
    box = weights @ boxes[overlap]
    pts = np.tensordot(weights, points[overlap], axes=1)
    return float(scores[top]), box, pts


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def detection_roi(detection: Detection) -> Roi:
    """The landmark model's crop for a detected person (pose_detection_to_roi.pbtxt): centred on
    the hip centre, 2 x 1.25 times its distance to the full-body scale point on a side, turned so
    that the hips-to-head direction points up in the crop."""
    (x0, y0), (x1, y1) = detection.points[0], detection.points[1]
    size = 2 * math.hypot(x1 - x0, y1 - y0) * ROI_SCALE
    rotation = _normalize_radians(math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0))
    return Roi(np.array([x0, y0], dtype=np.float64), size, rotation)


def _normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def crop(image: np.ndarray, roi: Roi, size: int, *, border: str) -> np.ndarray:
    """``(size, size, 3)`` float32 0..255: the square ``roi`` of ``image`` (``(H, W, 3)`` uint8)
    resampled bilinearly, crop pixel centres at ``(i + 0.5) / size`` of the square.

    ``border``: ``"zero"`` (black outside the photo) or ``"replicate"`` (edge pixels repeated).
    Only the part of the photo the crop covers is read; when the crop shrinks it more than 4 times
    that part is first box-filtered down, so a big photo is not aliased.
    """
    height, width = image.shape[:2]
    grid = (np.arange(size, dtype=np.float64) + 0.5) / size
    xy = roi.to_image(np.stack(np.meshgrid(grid, grid, indexing="xy"), axis=-1))  # (size, size, 2) photo pixels
    factor = max(1, int(roi.size / size // 2))
    margin = 2 * factor
    x_lo = int(np.clip(np.floor(xy[..., 0].min()) - margin, 0, width - 1))
    y_lo = int(np.clip(np.floor(xy[..., 1].min()) - margin, 0, height - 1))
    x_hi = int(np.clip(np.ceil(xy[..., 0].max()) + margin, x_lo + 1, width))
    y_hi = int(np.clip(np.ceil(xy[..., 1].max()) + margin, y_lo + 1, height))
    region = image[y_lo:y_hi, x_lo:x_hi]
    if factor > 1:
        region = np.asarray(Image.fromarray(region).reduce(factor))  # box filter; a partial box at the far edges
    # Photo pixels (continuous, pixel p covering p..p+1) to the region's array indices (centres at integers).
    x = (xy[..., 0] - x_lo) / factor - 0.5
    y = (xy[..., 1] - y_lo) / factor - 0.5
    return bilinear(region, x, y, border=border)


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray, *, border: str) -> np.ndarray:
    """``image: (H, W, C)`` sampled bilinearly at array coordinates ``x, y: (...)`` (pixel centres
    at integers); outside it ``border`` ``"zero"`` or ``"replicate"``. Returns ``(..., C)`` float32."""
    if border not in ("zero", "replicate"):
        raise ValueError(f"border must be 'zero' or 'replicate', got {border!r}")
    height, width = image.shape[:2]
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0).astype(np.float32)[..., None]
    fy = (y - y0).astype(np.float32)[..., None]
    out = np.zeros((*x.shape, image.shape[2]), dtype=np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            weight = wx * wy
            if border == "zero":
                weight = weight * ((xi >= 0) & (xi < width) & (yi >= 0) & (yi < height))[..., None]
            out += image[np.clip(yi, 0, height - 1), np.clip(xi, 0, width - 1)] * weight
    return out


def refine_from_heatmap(uv: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """``uv: (39, 2)`` landmarks in 0..1 of the crop moved to the score-weighted mean of their
    heatmap's 7x7 window where that window's peak is at least 0.5 (RefineLandmarksFromHeatmap,
    MediaPipe's own arithmetic). ``heatmap: (64, 64, 39)`` logits."""
    rows, cols = heatmap.shape[:2]
    out = uv.copy()
    half = (HEATMAP_KERNEL - 1) // 2
    for k in range(uv.shape[0]):
        col, row = np.trunc(uv[k, 0] * cols), np.trunc(uv[k, 1] * rows)
        if not (0 <= col < cols and 0 <= row < rows):
            continue
        col, row = int(col), int(row)
        r0, r1 = max(0, row - half), min(rows, row + half + 1)
        c0, c1 = max(0, col - half), min(cols, col + half + 1)
        conf = _sigmoid(heatmap[r0:r1, c0:c1, k].astype(np.float64))
        total = conf.sum()
        if conf.max() >= MIN_HEATMAP_CONFIDENCE and total > 0:
            rr, cc = np.mgrid[r0:r1, c0:c1]
            out[k] = [(cc * conf).sum() / cols / total, (rr * conf).sum() / rows / total]
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x, -80, 80)))


def _checked_image(image: np.ndarray, source: str | None) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        what = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputError(f"expected an (H, W, 3) uint8 RGB image, got a {what}", source)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"image has no pixels ({image.shape[1]}x{image.shape[0]})", source)
    return image


__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "BlazePose",
    "Detection",
    "Roi",
    "blazepose",
    "detect_keypoints",
    "load_image",
]
