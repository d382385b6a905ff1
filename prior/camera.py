"""The pinhole camera a photo is fitted with, in OpenCV's conventions.

Camera frame: x right, y down, z forward (into the scene), as OpenCV and viser use. The body lives
in its own world frame (SMPL-X's: Y up, the body faces +Z); ``rotation`` and ``translation`` map
world points into the camera, ``p_cam = R p_world + t``, and ``K`` projects them to pixels.

The default camera of a fit (DPoser's ``demo_fit``, after CLIFF) sits at the world origin, upright,
looking along world -Z (``R = diag(1, -1, -1)``, ``t = 0``), with the principal point at the image
centre and the focal length ``sqrt(W^2 + H^2)`` pixels (a diagonal field of view of about 53
degrees); the fitted root orientation and translation absorb the rest of the extrinsics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

WORLD_TO_CAMERA = np.diag([1.0, -1.0, -1.0])
"""The default camera's rotation: world Y up -> camera y down, the camera looks along world -Z."""


def default_focal(width: int, height: int) -> float:
    """DPoser's focal length for a photo of ``width x height`` pixels: its diagonal, ``sqrt(W^2 + H^2)``."""
    return math.hypot(width, height)


def focal_from_fov(fov_deg: float, width: int, height: int) -> float:
    """Focal length (pixels) for a horizontal field of view of ``fov_deg`` degrees."""
    if not 1.0 <= fov_deg <= 170.0:
        raise ValueError(f"field of view must be 1..170 degrees, got {fov_deg}")
    return 0.5 * width / math.tan(math.radians(fov_deg) / 2)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: square pixels, no distortion, OpenCV axes (see the module docstring)."""

    width: int
    height: int
    focal: float
    """Focal length in pixels (fx = fy)."""
    principal_point: tuple[float, float] | None = None
    """``(cx, cy)`` pixels; None = the image centre."""
    rotation: np.ndarray = field(default_factory=lambda: WORLD_TO_CAMERA.copy())
    """``(3, 3)`` world -> camera rotation."""
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """``(3,)`` metres: ``p_cam = rotation @ p_world + translation``."""

    def __post_init__(self) -> None:
        if not (self.width >= 1 and self.height >= 1):
            raise ValueError(f"image size must be positive, got {self.width} x {self.height}")
        if not (math.isfinite(self.focal) and self.focal > 0):
            raise ValueError(f"focal length must be a positive number of pixels, got {self.focal}")
        object.__setattr__(self, "rotation", np.asarray(self.rotation, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "translation", np.asarray(self.translation, dtype=np.float64).reshape(3))

    @classmethod
    def for_image(cls, width: int, height: int, *, focal: float | None = None, fov_deg: float | None = None) -> Camera:
        """The default camera of a ``width x height`` photo: ``focal`` pixels, else a horizontal
        ``fov_deg``, else :func:`default_focal`."""
        if focal is not None and fov_deg is not None:
            raise ValueError("give the focal length or the field of view, not both")
        if fov_deg is not None:
            focal = focal_from_fov(fov_deg, width, height)
        return cls(int(width), int(height), float(default_focal(width, height) if focal is None else focal))

    @property
    def center(self) -> tuple[float, float]:
        """``(cx, cy)`` in pixels."""
        if self.principal_point is not None:
            return self.principal_point
        return (self.width / 2.0, self.height / 2.0)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the standard name
        """``(3, 3)`` intrinsic matrix."""
        cx, cy = self.center
        return np.array([[self.focal, 0.0, cx], [0.0, self.focal, cy], [0.0, 0.0, 1.0]])

    @property
    def position(self) -> np.ndarray:
        """``(3,)`` the camera centre in world coordinates."""
        return -self.rotation.T @ self.translation

    @property
    def fov_deg(self) -> tuple[float, float]:
        """Horizontal and vertical fields of view, degrees."""
        return (2 * math.degrees(math.atan(self.width / (2 * self.focal))),
                2 * math.degrees(math.atan(self.height / (2 * self.focal))))

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points ``(..., 3)`` -> camera coordinates ``(..., 3)`` (same dtype and device)."""
        r = torch.as_tensor(self.rotation, dtype=points.dtype, device=points.device)
        t = torch.as_tensor(self.translation, dtype=points.dtype, device=points.device)
        return points @ r.T + t

    def project(self, points: torch.Tensor, *, min_depth: float = 1e-3) -> torch.Tensor:
        """World points ``(..., 3)`` -> pixels ``(..., 2)`` (x right, y down); depth is clamped to
        ``min_depth`` metres so points behind the camera stay finite (and far off the image)."""
        p = self.to_camera(points)
        z = p[..., 2:].clamp_min(min_depth)
        cx, cy = self.center
        c = torch.tensor([cx, cy], dtype=points.dtype, device=points.device)
        return self.focal * p[..., :2] / z + c

    def as_arrays(self) -> dict[str, np.ndarray]:
        """What a fit file stores about the camera (``focal``, ``principal_point``, ``image_size``,
        ``camera_rotation``, ``camera_translation``)."""
        return {
            "focal": np.float32(self.focal),
            "principal_point": np.asarray(self.center, dtype=np.float32),
            "image_size": np.asarray([self.width, self.height], dtype=np.int32),
            "camera_rotation": self.rotation.astype(np.float32),
            "camera_translation": self.translation.astype(np.float32),
        }


__all__ = ["WORLD_TO_CAMERA", "Camera", "default_focal", "focal_from_fov"]
