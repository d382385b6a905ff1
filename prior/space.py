"""Pose spaces: what a prior's vector means (which joints, which body-model parameters it sets).

A :class:`PoseSpace` describes the ``(B, dim)`` vectors a prior models: ``dim / 3`` axis-angle
rotations of the joints ``joint_names``, in that order, which set the body-model parameters
``drives``. Tasks read sizes and parts from ``prior.space`` rather than assuming the body's 63.
The only space so far is DPoser's body space, :data:`BODY_SPACE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .parts import BODY_JOINT_NAMES, PARTS, POSE_DIM


@dataclass(frozen=True)
class PoseSpace:
    """The space of a prior's pose vectors ``(B, dim)``: ``num_joints`` axis-angle rotations."""

    name: str
    """Identifier stored in checkpoints (``"body"``)."""
    dim: int
    """Length of a pose vector: 3 per joint."""
    joint_names: tuple[str, ...]
    """The rotated joints in vector order: joint ``i`` is dims ``3 i .. 3 i + 2``."""
    parts: Mapping[str, tuple[int, ...]] = field(hash=False)
    """Named groups of joints (indices into ``joint_names``)."""
    drives: tuple[str, ...]
    """The body-model parameters a pose vector sets, e.g. ``("body_pose",)``."""

    def __post_init__(self) -> None:
        if self.dim != 3 * len(self.joint_names):
            raise ValueError(f"pose space {self.name!r}: dim {self.dim} is not 3 x {len(self.joint_names)} joints")
        for part, joints in self.parts.items():
            if not all(0 <= j < len(self.joint_names) for j in joints):
                raise ValueError(
                    f"pose space {self.name!r}: part {part!r} lists a joint outside 0..{len(self.joint_names) - 1}")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def part(self, name: str) -> tuple[int, ...]:
        """Joint indices of a named part; raises ``ValueError`` naming the valid parts."""
        try:
            return self.parts[name]
        except KeyError:
            raise ValueError(f"unknown part {name!r}; expected one of {', '.join(self.parts)}") from None

    def joint_mask(self, joints: Sequence[int]) -> np.ndarray:
        """``(dim,)`` bool mask, True on the given joints' three axis-angle dims."""
        mask = np.zeros(self.dim, dtype=bool)
        for j in joints:
            mask[3 * j : 3 * j + 3] = True
        return mask


BODY_SPACE = PoseSpace(
    name="body",
    dim=POSE_DIM,
    joint_names=BODY_JOINT_NAMES,
    parts=MappingProxyType(dict(PARTS)),
    drives=("body_pose",),
)
"""DPoser's space: SMPL-X body joints 1..21 (no root, no hands), ``pose_body: (B, 63)``."""

SPACES: dict[str, PoseSpace] = {BODY_SPACE.name: BODY_SPACE}
"""Every pose space a checkpoint may name."""


def space_named(name: str) -> PoseSpace:
    """The pose space called ``name``; raises ``ValueError`` naming the known ones."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown pose space {name!r}; known: {', '.join(SPACES)}") from None


__all__ = ["BODY_SPACE", "SPACES", "PoseSpace", "space_named"]
