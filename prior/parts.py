"""The one joint and part table: SMPL-X body joints as DPoser orders them.

``pose_body: (B, 63)`` holds 21 axis-angle rotations for SMPL-X joints 1..21
(the pelvis, joint 0, is the root orientation and is not part of it), so body
pose joint ``i`` is SMPL-X joint ``i + 1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

NUM_BODY_JOINTS = 21
POSE_DIM = 3 * NUM_BODY_JOINTS
# SMPL-X joints 0..21: the pelvis and the 21 body-pose joints (SMPL and SMPL+H share them).
NUM_SKELETON_JOINTS = NUM_BODY_JOINTS + 1

# SMPL-X joints 0..21 (pelvis + the 21 body-pose joints).
SMPLX_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
)
# Names of the 21 body-pose joints, in pose_body order.
BODY_JOINT_NAMES: tuple[str, ...] = SMPLX_JOINT_NAMES[1:]

# DPoser's part table (indices into the 21 body-pose joints) plus head and neck.
PARTS: dict[str, tuple[int, ...]] = {
    "left_leg": (0, 3, 6, 9),
    "right_leg": (1, 4, 7, 10),
    "left_arm": (12, 15, 17, 19),
    "right_arm": (13, 16, 18, 20),
    "trunk": (2, 5, 8, 15, 16),
    "hands": (19, 20),
    "legs": (0, 3, 6, 9, 1, 4, 7, 10),
    "arms": (12, 15, 17, 19, 13, 16, 18, 20),
    "head": (14,),
    "neck": (11,),
}


def part_joints(part: str) -> tuple[int, ...]:
    """Body-pose joint indices (0..20) of a named part; raises ``ValueError`` naming the valid parts."""
    try:
        return PARTS[part]
    except KeyError:
        raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}") from None


def parse_joints(spec: str | Iterable[int | str]) -> tuple[int, ...]:
    """Joint indices from ``"0,3,6"``, a list of ints, or joint names (``"left_knee"``)."""
    items: Iterable[int | str] = spec.split(",") if isinstance(spec, str) else spec
    out: list[int] = []
    for item in items:
        token = str(item).strip()
        if not token:
            continue
        if token.lstrip("-").isdigit():
            idx = int(token)
        elif token in BODY_JOINT_NAMES:
            idx = BODY_JOINT_NAMES.index(token)
        else:
            raise ValueError(f"unknown joint {token!r}; use indices 0..20 or names like 'left_knee'")
        if not 0 <= idx < NUM_BODY_JOINTS:
            raise ValueError(f"joint index {idx} out of range 0..{NUM_BODY_JOINTS - 1}")
        if idx not in out:
            out.append(idx)
    if not out:
        raise ValueError("no joints given")
    return tuple(out)


def joint_mask(joints: Sequence[int]) -> np.ndarray:
    """``(63,)`` bool mask over pose dims; True on the given joints' three axis-angle dims."""
    mask = np.zeros(POSE_DIM, dtype=bool)
    for j in joints:
        mask[3 * j : 3 * j + 3] = True
    return mask
