"""Vertex labels: which SMPL-X body joint (0..21) each mesh vertex belongs to, for per-part
colours, masks and click-to-select."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..files import asset_path, checked_file
from ..parts import SMPLX_JOINT_NAMES, SMPLX_PARENTS

# The 27 part names of ``smplx_vert_segmentation.json`` (Mixamo names) -> SMPL-X joint 0..21.
SEGMENTATION_TO_JOINT: dict[str, str] = {
    "hips": "pelvis", "spine": "spine1", "spine1": "spine2", "spine2": "spine3", "neck": "neck",
    "head": "head", "eyeballs": "head", "leftEye": "head", "rightEye": "head",
    "leftUpLeg": "left_hip", "leftLeg": "left_knee", "leftFoot": "left_ankle", "leftToeBase": "left_foot",
    "rightUpLeg": "right_hip", "rightLeg": "right_knee", "rightFoot": "right_ankle", "rightToeBase": "right_foot",
    "leftShoulder": "left_collar", "leftArm": "left_shoulder", "leftForeArm": "left_elbow",
    "leftHand": "left_wrist", "leftHandIndex1": "left_wrist",
    "rightShoulder": "right_collar", "rightArm": "right_shoulder", "rightForeArm": "right_elbow",
    "rightHand": "right_wrist", "rightHandIndex1": "right_wrist",
}
SMPLX_LABELS_ASSET = "smplx_vertex_labels.npz"
# smplx_vert_segmentation.json is 180 KB; the limit keeps a wrong file from being parsed whole.
MAX_SEGMENTATION_BYTES = 16 * 2**20


def fold_to_body_joint(joint: int, parents: Sequence[int]) -> int:
    """The nearest ancestor of ``joint`` (itself included) among SMPL-X joints 0..21."""
    while joint > 21:
        joint = parents[joint]
    return joint


def labels_from_weights(skin_weights: np.ndarray, parents: Sequence[int]) -> np.ndarray:
    """``(V,)`` vertex labels: the dominant skin joint of each vertex, folded to joints 0..21."""
    table = np.array([fold_to_body_joint(j, parents) for j in range(len(parents))], dtype=np.int64)
    return table[np.asarray(skin_weights).argmax(1)]


def smplx_labels_from_segmentation(segmentation: Mapping[str, Sequence[int]], num_vertices: int = 10475) -> np.ndarray:
    """``(V,)`` SMPL-X vertex labels (joints 0..21) from ``smplx_vert_segmentation.json``.

    Border vertices listed under several parts go to the most distal one (deepest in the
    kinematic tree: they move with the limb); the six unlisted vertices (on the face) go to the head.
    """
    depth = [0] * len(SMPLX_PARENTS)
    for j in range(1, len(SMPLX_PARENTS)):
        depth[j] = depth[SMPLX_PARENTS[j]] + 1
    labels = np.full(num_vertices, SMPLX_JOINT_NAMES.index("head"), dtype=np.int64)
    best = np.full(num_vertices, -1)
    for name, indices in segmentation.items():
        joint = SMPLX_JOINT_NAMES.index(SEGMENTATION_TO_JOINT[name])
        idx = np.asarray(indices, dtype=np.int64)
        take = depth[joint] > best[idx]
        labels[idx[take]] = joint
        best[idx[take]] = depth[joint]
    return labels


def smplx_vertex_labels() -> np.ndarray:
    """``(10475,)`` SMPL-X vertex labels (joints 0..21), read from the shipped :data:`SMPLX_LABELS_ASSET`."""
    with asset_path(SMPLX_LABELS_ASSET).open("rb") as f, np.load(f, allow_pickle=False) as data:
        return data["labels"].astype(np.int64)


def write_smplx_labels_asset(segmentation_json: str | Path, out: str | Path) -> None:
    """Regenerate ``assets/smplx_vertex_labels.npz`` from ``smplx_vert_segmentation.json``."""
    with checked_file(segmentation_json, max_bytes=MAX_SEGMENTATION_BYTES).open(encoding="utf-8") as f:
        labels = smplx_labels_from_segmentation(json.load(f))
    np.savez_compressed(out, labels=labels.astype(np.uint8))


__all__ = [
    "SEGMENTATION_TO_JOINT",
    "SMPLX_LABELS_ASSET",
    "fold_to_body_joint",
    "labels_from_weights",
    "smplx_labels_from_segmentation",
    "smplx_vertex_labels",
    "write_smplx_labels_asset",
]
