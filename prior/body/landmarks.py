"""Where a body's 2D keypoints are: each of the 23 COCO-WholeBody body and foot points
(:data:`prior.keypoints.KEYPOINT_NAMES`) as a point fixed to one of SMPL-X's 22 body bones.

Shoulders, elbows, wrists, hips, knees and ankles are the SMPL-X joints themselves (SMPLify-X's
mapping of OpenPose's points). The face points (nose, eyes, ears) ride on the head bone and the
feet points on the foot (toes) and ankle (heel) bones, as the surface points the ``smplx``
package's ``vertex_ids`` name: for an SMPL-X or SMPL-H file those vertices of the rest mesh,
for the mannequin (whose mesh is not SMPL-X's) the matching points of its wooden surface, found
from its geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..keypoints import KEYPOINT_NAMES
from .model import BodyModel

# Keypoints that are SMPL-X joints, by keypoint name.
JOINT_KEYPOINTS: dict[str, int] = {
    "left_shoulder": 16, "right_shoulder": 17, "left_elbow": 18, "right_elbow": 19,
    "left_wrist": 20, "right_wrist": 21, "left_hip": 1, "right_hip": 2,
    "left_knee": 4, "right_knee": 5, "left_ankle": 7, "right_ankle": 8,
}
# The others: the bone they ride on, and the smplx package's vertex_ids name.
SURFACE_KEYPOINTS: dict[str, tuple[int, str]] = {
    "nose": (15, "nose"), "left_eye": (15, "leye"), "right_eye": (15, "reye"),
    "left_ear": (15, "lear"), "right_ear": (15, "rear"),
    "left_big_toe": (10, "LBigToe"), "left_small_toe": (10, "LSmallToe"), "left_heel": (7, "LHeel"),
    "right_big_toe": (11, "RBigToe"), "right_small_toe": (11, "RSmallToe"), "right_heel": (8, "RHeel"),
}


@dataclass(frozen=True)
class KeypointRig:
    """The 23 keypoints of a body as ``bone`` + ``offset``: keypoint k is at
    ``J[bone[k]] + R[bone[k]] @ offset[k]`` for the posed bone's world position ``J`` and rotation ``R``."""

    bone: torch.Tensor
    """``(23,)`` long: the SMPL-X body joint (0..21) each keypoint is fixed to."""
    offset: torch.Tensor
    """``(23, 3)`` metres, in the bone's rest frame (zero for the keypoints that are joints)."""

    def points(self, rotations: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """``(*, 23, 3)`` keypoints from a skeleton's ``rotations (*, 22, 3, 3)`` and ``joints (*, 22, 3)``
        (:meth:`BodyModel.skeleton`)."""
        r = rotations[..., self.bone, :, :]
        offset = self.offset.to(joints)
        return joints[..., self.bone, :] + (r @ offset[..., None])[..., 0]


def keypoint_rig(body: BodyModel) -> KeypointRig:
    """The :class:`KeypointRig` of ``body`` (surface points at the mean shape)."""
    rest_v = body.rest_vertices().detach().cpu().double().numpy()
    rest_j = body.rest_joints().detach().cpu().double().numpy()
    surface = _mannequin_points(body, rest_v, rest_j) if body.kind == "mannequin" else _vertex_points(body, rest_v)
    bone, offset = [], []
    for name in KEYPOINT_NAMES:
        if name in JOINT_KEYPOINTS:
            bone.append(JOINT_KEYPOINTS[name])
            offset.append(np.zeros(3))
        else:
            j = SURFACE_KEYPOINTS[name][0]
            bone.append(j)
            offset.append(surface[name] - rest_j[j])
    device = body.joint_template.device
    return KeypointRig(torch.tensor(bone, device=device),
                       torch.tensor(np.stack(offset), dtype=body.joint_template.dtype, device=device))


def _vertex_points(body: BodyModel, rest_v: np.ndarray) -> dict[str, np.ndarray]:
    from smplx.vertex_ids import vertex_ids

    ids = vertex_ids["smplx" if body.kind == "smplx" else "smplh"]
    return {name: rest_v[ids[key]] for name, (_, key) in SURFACE_KEYPOINTS.items()}


def _mannequin_points(body: BodyModel, v: np.ndarray, joints: np.ndarray) -> dict[str, np.ndarray]:
    """The face and feet points on the mannequin's surface: the same anatomical spots as SMPL-X's
    vertices (nose tip, eye centres, ear openings, big and small toe tips, back of the heel),
    found on its egg-shaped head and wooden feet. Both sides are mirrored images (x -> -x)."""
    labels = body.vertex_labels.cpu().numpy()
    head = v[labels == 15]
    hj = joints[15]
    top = head[:, 1].max()
    # Nose: the most forward point of the head's front, at 45% of the way from the head joint to
    # the crown (SMPL-X's nose tip sits about 6 cm above its head joint on an adult head).
    nose_y = hj[1] + 0.45 * (top - hj[1])
    band = head[np.abs(head[:, 1] - nose_y) < 0.015]
    nose = band[np.argmax(band[:, 2] - 4 * np.abs(band[:, 0] - hj[0]))]
    out = {"nose": nose}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        # Eyes: 3.2 cm to the side and 3.5 cm above the nose tip, on the face's surface.
        eye_at = np.array([hj[0] + sign * 0.032, nose[1] + 0.035])
        near = head[np.linalg.norm(head[:, :2] - eye_at, axis=1) < 0.012]
        out[f"{side}_eye"] = near[np.argmax(near[:, 2])]
        # Ears: the widest point of the head at eye height, in its middle third front to back.
        level = head[(np.abs(head[:, 1] - (nose[1] + 0.02)) < 0.02)]
        mid = level[np.abs(level[:, 2] - np.median(level[:, 2])) < 0.03]
        out[f"{side}_ear"] = mid[np.argmax(sign * (mid[:, 0] - hj[0]))]
        foot_j, ankle_j = (10, 7) if side == "left" else (11, 8)
        # Toes: at the front of the sole, the innermost (big) and outermost (small) of its points
        # within 2 and 4 cm of the tip.
        foot = v[labels == foot_j]
        sole = foot[foot[:, 1] < np.percentile(foot[:, 1], 50)]
        tip = sole[:, 2].max()
        inward = -sign * (sole[:, 0] - joints[foot_j, 0])  # > 0 toward the body's midline
        front = sole[:, 2] > tip - 0.02
        out[f"{side}_big_toe"] = sole[front][np.argmax(inward[front] + sole[front, 2])]
        ahead = sole[:, 2] > tip - 0.04
        out[f"{side}_small_toe"] = sole[ahead][np.argmax(-inward[ahead] + sole[ahead, 2])]
        # Heel: the backmost point of the lower ankle region.
        ankle = v[labels == ankle_j]
        heel_band = ankle[ankle[:, 1] < joints[ankle_j, 1] - 0.04]
        out[f"{side}_heel"] = heel_band[np.argmin(heel_band[:, 2] + 2 * np.abs(heel_band[:, 0] - joints[ankle_j, 0]))]
    return out


__all__ = ["JOINT_KEYPOINTS", "SURFACE_KEYPOINTS", "KeypointRig", "keypoint_rig"]
