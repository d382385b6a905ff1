"""A clip (or a set of poses) as an animated skeleton in a Y-up world: what every animation
exporter (BVH, glTF) writes, computed once from the body model.

AMASS clips live in a Z-up world (their root orientation stands the body up along +Z); Blender's
importers, game engines and viser are Y-up, so a Z-up clip is turned -90 degrees about X
(:data:`Z_UP_TO_Y_UP`). The turn is applied to the root only: the rest skeleton is the body
model's own (Y-up, a T-pose), so the exported rest pose is the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..body import BodyModel
from ..data import Clip
from ..rotations import axis_angle_to_matrix

Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""-90 degrees about X: AMASS's Z-up world onto a Y-up one."""


def is_z_up(root_orient: np.ndarray) -> bool:
    """Whether root orientations ``(T, 3)`` stand the body up along +Z (AMASS world) rather than +Y."""
    up = axis_angle_to_matrix(torch.as_tensor(root_orient, dtype=torch.float32))[:, :, 1].mean(0).numpy()
    return bool(up[2] > up[1])


def display_turn(root_orient: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation that shows a clip with root orientations ``root_orient: (T, 3)`` standing
    up (+Y) and facing the camera (+Z): a Z-up (AMASS) clip is turned -90 degrees about X, then
    every clip about the vertical so that its mean heading (the pelvis' forward, +Z of the body)
    points at the camera. For display only: the clip, and what is saved from it, keep the file's frame."""
    tilt = Z_UP_TO_Y_UP if is_z_up(root_orient) else np.eye(3)
    rot = axis_angle_to_matrix(torch.as_tensor(root_orient, dtype=torch.float64)).numpy()
    forward = rot[:, :, 2] @ tilt.T  # (T, 3) in the Y-up frame
    flat = forward[:, [0, 2]]
    flat = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-9)
    heading = float(np.arctan2(*flat.mean(0)))  # from +Z towards +X
    c, s = np.cos(heading), np.sin(heading)
    yaw = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])  # -heading about +Y
    return yaw @ tilt


@dataclass(frozen=True, eq=False)
class Skeleton:
    """An animated skeleton, float64, metres, Y up.

    ``local_rotations[t, j]`` rotates joint ``j``'s children about it relative to its parent (the
    root's: relative to the world); joint ``j`` sits at ``offsets[j]`` from its parent in the rest
    pose (the root's offset is its rest position); the root is at ``root_positions[t]`` in frame
    ``t``. Forward kinematics of these gives :attr:`world_positions`, equal to the body model's
    joints (turned Y-up) at every frame.
    """

    names: tuple[str, ...]
    parents: np.ndarray
    """``(J,)`` parent index, -1 for the root (joint 0, the pelvis); parents come before children."""
    rest: np.ndarray
    """``(J, 3)`` rest joint positions (the body model's T-pose at the clip's betas)."""
    local_rotations: np.ndarray
    """``(T, J, 3, 3)``."""
    root_positions: np.ndarray
    """``(T, 3)`` the root joint's world position."""
    fps: float
    turn: np.ndarray
    """``(3, 3)`` the rotation applied to the file's world (:data:`Z_UP_TO_Y_UP` or identity)."""
    lift: float = 0.0
    """Metres the clip was raised (+Y) after the turn so it stands on the floor y = 0: a clip
    without a translation (its pelvis at the origin) has its lowest vertex over the clip there;
    a clip with one keeps its world (0)."""

    @property
    def offsets(self) -> np.ndarray:
        """``(J, 3)`` each joint's rest offset from its parent (the root's: its rest position)."""
        out = self.rest.copy()
        out[1:] -= self.rest[self.parents[1:]]
        return out

    @property
    def num_frames(self) -> int:
        return int(self.local_rotations.shape[0])

    def world_transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """World rotations ``(T, J, 3, 3)`` and positions ``(T, J, 3)`` by forward kinematics."""
        frames, joints = self.local_rotations.shape[:2]
        rot = np.empty_like(self.local_rotations)
        pos = np.empty((frames, joints, 3))
        offsets = self.offsets
        rot[:, 0], pos[:, 0] = self.local_rotations[:, 0], self.root_positions
        for j in range(1, joints):
            p = self.parents[j]
            rot[:, j] = rot[:, p] @ self.local_rotations[:, j]
            pos[:, j] = pos[:, p] + (rot[:, p] @ offsets[j])
        return rot, pos

    @property
    def world_positions(self) -> np.ndarray:
        """``(T, J, 3)`` joint positions in the Y-up world."""
        return self.world_transforms()[1]


def clip_skeleton(clip: Clip, body: BodyModel, *, y_up: bool | None = None) -> Skeleton:
    """The skeleton of ``body`` (every joint it has: the 22 body joints, and the jaw, eyes and
    fingers when it has them) animated by ``clip`` at its betas and frame rate. ``y_up=None`` turns
    a Z-up clip Y-up (:func:`is_z_up`); True or False forces the turn or its absence."""
    dtype = body.v_template.dtype

    def tensor(x: np.ndarray | None) -> torch.Tensor | None:
        return None if x is None else torch.as_tensor(np.asarray(x), dtype=dtype, device=body.v_template.device)

    hands = clip.hands if body.has_hands else None
    jaw = clip.jaw if body.kind == "smplx" else None
    with torch.no_grad():
        local = body.local_rotations(tensor(clip.pose_body), global_orient=tensor(clip.root_orient),
                                     hand_pose=tensor(hands), jaw_pose=tensor(jaw))
        rest = body.rest_joints(tensor(clip.betas)).reshape(-1, body.num_joints, 3)[0]
    local = local.double().cpu().numpy()
    rest = rest.double().cpu().numpy()
    turn = Z_UP_TO_Y_UP if (is_z_up(clip.root_orient) if y_up is None else y_up) else np.eye(3)
    local[:, 0] = turn @ local[:, 0]
    trans = np.zeros((clip.num_frames, 3)) if clip.trans is None else clip.trans.astype(np.float64)
    root_positions = (rest[0] + trans) @ turn.T  # the body model rotates about the rest pelvis
    lift = 0.0 if clip.trans is not None else -lowest_point(clip, body, turn)
    root_positions[:, 1] += lift
    return Skeleton(names=tuple(body.joint_names), parents=body.parents.cpu().numpy().copy(), rest=rest,
                    local_rotations=local, root_positions=root_positions, fps=float(clip.fps), turn=turn, lift=lift)


GROUND_FRAMES = 240  # frames of a long clip looked at for its lowest point (evenly spread)


def lowest_point(clip: Clip, body: BodyModel, turn: np.ndarray) -> float:
    """The lowest vertex height (metres, after ``turn``) of ``clip`` posed with its own root and
    translation, over :data:`GROUND_FRAMES` frames at most."""
    frames = np.unique(np.linspace(0, clip.num_frames - 1, min(clip.num_frames, GROUND_FRAMES)).round().astype(int))
    dtype, device = body.v_template.dtype, body.v_template.device

    def rows(x: np.ndarray | None) -> torch.Tensor | None:
        return None if x is None else torch.as_tensor(np.asarray(x)[frames], dtype=dtype, device=device)

    betas = None if clip.betas is None else torch.as_tensor(np.asarray(clip.betas), dtype=dtype, device=device)
    with torch.no_grad():
        vertices = body.vertices(rows(clip.pose_body), global_orient=rows(clip.root_orient), transl=rows(clip.trans),
                                 betas=betas)
    return float((vertices.double().cpu().numpy() @ turn.T)[..., 1].min())


__all__ = ["Z_UP_TO_Y_UP", "Skeleton", "clip_skeleton", "display_turn", "is_z_up", "lowest_point"]
