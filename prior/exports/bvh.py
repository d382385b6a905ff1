"""BVH (Biovision Hierarchy) export of an animated skeleton: the motion-capture file that
Blender (File > Import > Motion Capture), MotionBuilder, retargeting tools and game-engine
pipelines read.

The file written here:

- is Y up, in metres: Blender imports it at its true size with the importer's defaults (scale 1,
  forward -Z, up Y, which turn our Y up into Blender's Z up: ``(x, y, z) -> (x, -z, y)``);
- has the body model's joints and names (SMPL-X names; fingers, jaw and eyes when the body has
  them), its rest T-pose as OFFSETs (the rest is the model's, not the first frame) and an End
  Site on each leaf, along its bone;
- gives the root 6 channels, ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, the
  root's world position (absolute, as Blender, bvhio and three.js read root position channels),
  and every other joint 3, ``Zrotation Xrotation Yrotation``: degrees, intrinsic Z then X then Y,
  so a joint's rotation is ``Rz @ Rx @ Ry``;
- writes each frame's angles nearest the previous frame's (of the two Euler solutions and their
  360-degree turns), so the channels are continuous curves for tools that interpolate them.
"""

from __future__ import annotations

import numpy as np

from .skeleton import Skeleton

ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
JOINT_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
DECIMALS = 6
"""Digits after the point of offsets (metres: 1 micrometre) and angles (degrees)."""
END_SITE_FRACTION = 0.5
"""A leaf's End Site, as a fraction of its bone (the offset from its parent)."""
END_SITE_FALLBACK_M = 0.05
"""A leaf without a bone (a lone root, or a zero offset) gets an End Site this far up +Y."""
ROTATION_TOLERANCE = 1e-4
"""How far ``R^T R`` may be from the identity for ``R`` to count as a rotation (float32 models)."""


def matrix_to_euler_zxy(rot: np.ndarray) -> np.ndarray:
    """Euler angles ``(..., 3)`` (radians, in the order z, x, y) with ``rot = Rz(z) @ Rx(x) @ Ry(y)``
    for rotations ``rot (..., 3, 3)``; x lies in [-pi/2, pi/2].

    z comes from the matrix alone; x and y from ``Rz(z)^T @ rot = Rx(x) @ Ry(y)``, whose entries
    are never small together, so at and near gimbal lock (x = +-90 degrees, where z is only
    defined up to a trade with y) the angles still compose back to ``rot`` to float precision.
    """
    z = np.arctan2(-rot[..., 0, 1], rot[..., 1, 1])
    cz, sz = np.cos(z), np.sin(z)
    x = np.arctan2(rot[..., 2, 1], cz * rot[..., 1, 1] - sz * rot[..., 0, 1])
    y = np.arctan2(cz * rot[..., 0, 2] + sz * rot[..., 1, 2], cz * rot[..., 0, 0] + sz * rot[..., 1, 0])
    return np.stack([z, x, y], -1)


def _continuous(angles: np.ndarray) -> np.ndarray:
    """``angles (T, J, 3)`` (z, x, y radians) with frame ``t`` of each joint replaced by whichever of
    its two equivalent solutions, (z, x, y) or (z + pi, pi - x, y + pi), each angle turned by whole
    turns, lies nearest frame ``t - 1``: the same rotations, without jumps between frames."""
    turn = 2 * np.pi
    other = angles * np.array([1.0, -1.0, 1.0]) + np.pi
    out = np.empty_like(angles)
    out[0] = angles[0]
    for t in range(1, len(angles)):
        options = np.stack([angles[t], other[t]])  # (2, J, 3)
        options += turn * np.round((out[t - 1] - options) / turn)
        distance = np.abs(options - out[t - 1]).sum(-1)  # (2, J)
        out[t] = np.where((distance[1] < distance[0])[:, None], options[1], options[0])
    return out


def _where(index: np.ndarray, axes: tuple[str, ...], names: tuple[str, ...]) -> str:
    """``"frame 3, joint 'left_knee'"`` for the leading ``axes`` of an array ``index``."""
    parts = (f"joint {names[i]!r}" if axis == "joint" else f"frame {i}" for axis, i in zip(axes, index.tolist()))
    return ", ".join(parts)


def _check(skeleton: Skeleton) -> None:
    """Refuse a skeleton the file cannot hold: a ``ValueError`` saying what is wrong and where."""
    names, parents, rot, root = skeleton.names, skeleton.parents, skeleton.local_rotations, skeleton.root_positions
    joints = len(names)
    if joints == 0 or parents.shape != (joints,) or skeleton.rest.shape != (joints, 3):
        raise ValueError(f"BVH export: {joints} joint names, parents of shape {parents.shape}, "
                         f"rest of shape {skeleton.rest.shape}: expected ({joints},) and ({joints}, 3)")
    if parents[0] != -1 or any(not 0 <= parents[j] < j for j in range(1, joints)):
        raise ValueError("BVH export: parents must be -1 for joint 0 and an earlier joint for every other")
    for name in names:
        if not name.isascii() or name.split() != [name]:
            raise ValueError(f"BVH export: joint name {name!r} is empty, not ASCII or has white space")
    if len(set(names)) != joints:
        raise ValueError("BVH export: joint names are not unique")
    if rot.ndim != 4 or rot.shape[0] == 0 or rot.shape[1:] != (joints, 3, 3) or root.shape != (rot.shape[0], 3):
        raise ValueError(f"BVH export: local_rotations of shape {rot.shape} and root_positions of shape "
                         f"{root.shape}: expected (T, {joints}, 3, 3) and (T, 3) with T >= 1")
    if not (np.isfinite(skeleton.fps) and skeleton.fps > 0):
        raise ValueError(f"BVH export: fps must be a positive number, got {skeleton.fps}")
    for label, values, axes in (("rest", skeleton.rest, ("joint",)), ("local_rotations", rot, ("frame", "joint")),
                                ("root_positions", root, ("frame",))):
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            raise ValueError(f"BVH export: {label} has NaN or Inf values (first at {_where(bad[0], axes, names)})")
    error = np.abs(np.swapaxes(rot, -1, -2) @ rot - np.eye(3)).max((-1, -2))
    bad = np.argwhere((error > ROTATION_TOLERANCE) | (np.linalg.det(rot) <= 0))
    if len(bad):
        raise ValueError(f"BVH export: local_rotations at {_where(bad[0], ('frame', 'joint'), names)} "
                         "is not a rotation matrix")


def _numbers(values: np.ndarray) -> str:
    """``values`` as space-separated fixed-point numbers (no ``-0.000000``)."""
    return " ".join(f"{v:.{DECIMALS}f}" for v in (np.round(values, DECIMALS) + 0.0).tolist())


def _end_site(offsets: np.ndarray, joint: int) -> np.ndarray:
    """A leaf's End Site offset: along its bone, :data:`END_SITE_FRACTION` of its length."""
    bone = offsets[joint] if joint > 0 else np.zeros(3)
    if np.linalg.norm(bone) > 10.0 ** -DECIMALS:
        return END_SITE_FRACTION * bone
    return np.array([0.0, END_SITE_FALLBACK_M, 0.0])


def _hierarchy(skeleton: Skeleton) -> tuple[list[str], list[int]]:
    """The HIERARCHY section's lines and the joints in the order it lists them (depth first),
    which is the order of their channels in each MOTION line."""
    children: list[list[int]] = [[] for _ in skeleton.names]
    for j, p in enumerate(skeleton.parents[1:], start=1):
        children[p].append(j)
    offsets = skeleton.offsets
    lines: list[str] = []
    order: list[int] = []

    def joint(j: int, depth: int) -> None:
        pad = "\t" * depth
        channels = ROOT_CHANNELS if j == 0 else JOINT_CHANNELS
        order.append(j)
        lines.extend([f"{pad}{'ROOT' if j == 0 else 'JOINT'} {skeleton.names[j]}", f"{pad}{{",
                      f"{pad}\tOFFSET {_numbers(offsets[j])}",
                      f"{pad}\tCHANNELS {len(channels)} {' '.join(channels)}"])
        for child in children[j]:
            joint(child, depth + 1)
        if not children[j]:
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET {_numbers(_end_site(offsets, j))}",
                          f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    joint(0, 0)
    return lines, order


def bvh_bytes(skeleton: Skeleton) -> bytes:
    """The BVH file (ASCII) of ``skeleton``: its rest pose as the hierarchy, one MOTION line per frame.

    Raises:
        ValueError: the skeleton has NaN or Inf values, a matrix that is not a rotation, no
            frames, joint names a BVH file cannot hold, or a non-positive frame rate.
    """
    _check(skeleton)
    hierarchy, order = _hierarchy(skeleton)
    angles = np.degrees(_continuous(matrix_to_euler_zxy(skeleton.local_rotations[:, order])))
    motion = np.concatenate([skeleton.root_positions, angles.reshape(skeleton.num_frames, -1)], 1)
    header = ["HIERARCHY", *hierarchy, "MOTION", f"Frames: {skeleton.num_frames}",
              f"Frame Time: {float(1.0 / skeleton.fps)!r}"]
    return ("\n".join([*header, *map(_numbers, motion)]) + "\n").encode("ascii")


__all__ = ["JOINT_CHANNELS", "ROOT_CHANNELS", "bvh_bytes", "matrix_to_euler_zxy"]
