"""Rotation conversions: axis-angle, rotation matrices and unit quaternions.

Torch functions (differentiable, any batch shape) have plain names; their numpy twins end in
``_np`` (float64 inside). Axis-angle vectors are ``(..., 3)`` in radians (the angle is the
norm); quaternions are ``(..., 4)`` in ``(w, x, y, z)`` order, viser's convention.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# ----------------------------------------------------------------------------------------------
# torch


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` from axis-angle vectors ``(..., 3)`` (radians).

    Rodrigues' formula written as ``I + a K + b K^2`` with ``K`` the cross-product matrix of the
    unnormalised vector, so there is no division by the angle: exact at zero and with finite
    gradients there (a Taylor series is used below 0.01 rad, where the closed forms cancel).
    """
    theta2 = (axis_angle * axis_angle).sum(-1)[..., None, None]
    small = theta2 < 1e-4
    # Keep the unused branch finite so torch.where does not leak NaN gradients.
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()
    half_sin = torch.sin(0.5 * theta)
    a = torch.where(small, 1 - theta2 / 6 + theta2 * theta2 / 120, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24 + theta2 * theta2 / 720, 2 * half_sin * half_sin / (theta * theta))
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), -1).unflatten(-1, (3, 3))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(rot: Tensor) -> Tensor:
    """Axis-angle vectors ``(..., 3)`` (radians, angle in [0, pi]) from rotation matrices ``(..., 3, 3)``.

    Through a unit quaternion built from the largest of its four components (Shepperd's method),
    so it is accurate at every angle, zero and pi included.
    """
    m = rot.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    # 4 q_i^2 for q = (w, x, y, z); row i of ``rows`` is 4 q_i q.
    squares = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    rows = torch.stack([
        torch.stack([squares[:, 0], m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
        torch.stack([m[:, 2, 1] - m[:, 1, 2], squares[:, 1], m[:, 1, 0] + m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0]], -1),
        torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] + m[:, 0, 1], squares[:, 2], m[:, 2, 1] + m[:, 1, 2]], -1),
        torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 2, 1] + m[:, 1, 2], squares[:, 3]], -1),
    ], 1)
    best = squares.argmax(-1)
    q = rows[torch.arange(len(m), device=m.device), best]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)  # w >= 0: angle in [0, pi]
    sin_half = q[:, 1:].norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[:, :1])
    scale = torch.where(sin_half > 1e-8, angle / sin_half.clamp_min(1e-12), torch.full_like(angle, 2.0))
    return (q[:, 1:] * scale).reshape(*rot.shape[:-2], 3)


# ----------------------------------------------------------------------------------------------
# numpy


def axis_angle_to_matrix_np(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` from axis-angle ``(..., 3)``: numpy twin of
    :func:`axis_angle_to_matrix` (``I + a K + b K^2``, Taylor terms near zero)."""
    theta2 = np.sum(axis_angle * axis_angle, -1)[..., None, None]
    small = theta2 < 1e-4
    theta = np.sqrt(np.where(small, 1.0, theta2))
    a = np.where(small, 1 - theta2 / 6 + theta2 * theta2 / 120, np.sin(theta) / theta)
    b = np.where(small, 0.5 - theta2 / 24 + theta2 * theta2 / 720, 2 * np.sin(0.5 * theta) ** 2 / (theta * theta))
    x, y, z = np.moveaxis(axis_angle, -1, 0)
    zero = np.zeros_like(x)
    k = np.stack((zero, -z, y, z, zero, -x, -y, x, zero), -1).reshape(*axis_angle.shape[:-1], 3, 3)
    return np.eye(3) + a * k + b * (k @ k)


def matrix_to_wxyz_np(rot: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` (w, x, y, z) from rotation matrices ``(..., 3, 3)``.

    Shepperd's method: the largest of the four candidate denominators is used, so no branch
    divides by a value near zero. The sign is not normalised (``w`` may be negative).
    """
    m = rot.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], 1)
    which = cand.argmax(1)
    q = np.empty((m.shape[0], 4))
    s = np.sqrt(np.maximum(1.0 + 2.0 * cand.max(1) - tr, 1e-12)) * 2  # 4 * |largest component|
    w = which == 0
    q[w] = np.stack(
        [0.25 * s[w], (m[w, 2, 1] - m[w, 1, 2]) / s[w],
         (m[w, 0, 2] - m[w, 2, 0]) / s[w], (m[w, 1, 0] - m[w, 0, 1]) / s[w]],
        1,
    )
    x = which == 1
    q[x] = np.stack(
        [(m[x, 2, 1] - m[x, 1, 2]) / s[x], 0.25 * s[x],
         (m[x, 0, 1] + m[x, 1, 0]) / s[x], (m[x, 0, 2] + m[x, 2, 0]) / s[x]],
        1,
    )
    y = which == 2
    q[y] = np.stack(
        [(m[y, 0, 2] - m[y, 2, 0]) / s[y], (m[y, 0, 1] + m[y, 1, 0]) / s[y],
         0.25 * s[y], (m[y, 1, 2] + m[y, 2, 1]) / s[y]],
        1,
    )
    z = which == 3
    q[z] = np.stack(
        [(m[z, 1, 0] - m[z, 0, 1]) / s[z], (m[z, 0, 2] + m[z, 2, 0]) / s[z],
         (m[z, 1, 2] + m[z, 2, 1]) / s[z], 0.25 * s[z]],
        1,
    )
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.reshape(*rot.shape[:-2], 4)


def wxyz_to_matrix_np(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` from quaternions ``(..., 4)`` (w, x, y, z; normalised here)."""
    q = np.asarray(q, np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(*q.shape[:-1], 3, 3)


def axis_angle_to_wxyz_np(aa: np.ndarray) -> np.ndarray:
    """``(..., 3)`` axis-angle -> ``(..., 4)`` unit quaternions ``(w, x, y, z)`` with ``w >= 0``
    for angles up to pi."""
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    # sin(angle/2)/angle, with its series near zero.
    scale = np.where(angle < 1e-6, 0.5 - angle**2 / 48, np.sin(0.5 * angle) / np.maximum(angle, 1e-12))
    return np.concatenate([np.cos(0.5 * angle), aa * scale], -1)


def wxyz_to_axis_angle_np(q: np.ndarray) -> np.ndarray:
    """``(..., 4)`` unit quaternions ``(w, x, y, z)`` -> ``(..., 3)`` axis-angle with angle in [0, pi]."""
    q = np.where(q[..., :1] < 0, -q, q)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2 * np.arctan2(sin_half, q[..., :1])
    scale = np.where(sin_half < 1e-6, 2 / np.maximum(q[..., :1], 1e-12), angle / np.maximum(sin_half, 1e-12))
    return q[..., 1:] * scale


def slerp_axis_angle_np(value: np.ndarray, lower: np.ndarray, upper: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Rotations between frames of ``value (T, 3 K)`` (``K`` axis-angle joints per frame), by
    slerp of each joint's quaternion, the shorter way round.

    Output frame ``n`` lies ``frac[n]`` of the way from frame ``lower[n]`` to frame ``upper[n]``;
    ``lower, upper (N,)`` are frame indices, ``frac (N,)`` in [0, 1). Returns ``(N, 3 K)``
    float64; where ``frac`` is 0 the lower frame is copied exactly.
    """
    frames = value.shape[0]
    aa = value.reshape(frames, -1, 3).astype(np.float64)
    q0, q1 = axis_angle_to_wxyz_np(aa[lower]), axis_angle_to_wxyz_np(aa[upper])
    dot = (q0 * q1).sum(-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)  # the shorter way round
    dot = np.abs(dot).clip(max=1.0)
    t = frac[:, None, None]
    omega = np.arccos(dot)
    sin_omega = np.sin(omega)
    near = sin_omega < 1e-6
    w0 = np.where(near, 1 - t, np.sin((1 - t) * omega) / np.where(near, 1, sin_omega))
    w1 = np.where(near, t, np.sin(t * omega) / np.where(near, 1, sin_omega))
    q = w0 * q0 + w1 * q1
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    out = wxyz_to_axis_angle_np(q)
    exact = frac < 1e-9
    out[exact] = aa[lower[exact]]  # keep the file's own representation where no blending happens
    return out.reshape(len(frac), -1)


__all__ = [
    "axis_angle_to_matrix",
    "axis_angle_to_matrix_np",
    "axis_angle_to_wxyz_np",
    "matrix_to_axis_angle",
    "matrix_to_wxyz_np",
    "slerp_axis_angle_np",
    "wxyz_to_axis_angle_np",
    "wxyz_to_matrix_np",
]
