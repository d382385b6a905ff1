"""The body model every backend shares: :class:`BodyModel` (pose, shape -> joints, joint
transforms, skinned mesh) and what its forward returns, :class:`BodyOutput`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..parts import NUM_BODY_JOINTS, NUM_SKELETON_JOINTS, SMPLX_JOINT_NAMES, part_joints
from ..rotations import axis_angle_to_matrix
from .kinematics import (
    blend_shapes,
    depth_order,
    forward_kinematics,
    pose_offsets,
    skin_dense,
    skin_sparse,
    sparse_skin_layout,
)

BodyKind = Literal["mannequin", "smplx", "smplh", "smpl"]

NUM_HAND_JOINTS = 30  # 15 per hand

_SMPLH_FINGERS = (
    "index1", "index2", "index3", "middle1", "middle2", "middle3", "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3", "thumb1", "thumb2", "thumb3",
)
_HAND_NAMES = tuple(f"{side}_{f}" for side in ("left", "right") for f in _SMPLH_FINGERS)
JOINT_NAMES: dict[str, tuple[str, ...]] = {
    "smplx": SMPLX_JOINT_NAMES + ("jaw", "left_eye", "right_eye") + _HAND_NAMES,
    "smplh": SMPLX_JOINT_NAMES + _HAND_NAMES,
    "mannequin": SMPLX_JOINT_NAMES + _HAND_NAMES,
    "smpl": SMPLX_JOINT_NAMES + ("left_hand", "right_hand"),
}


@dataclass(frozen=True)
class BodyOutput:
    """What :meth:`BodyModel.forward` returns (torch tensors, metres)."""

    joints: Tensor
    """``(*, J, 3)`` joint positions, translation included."""
    rotations: Tensor
    """``(*, J, 3, 3)`` joint world rotations."""
    vertices: Tensor | None
    """``(*, V, 3)`` skinned mesh vertices, or None when not asked for."""

    @property
    def transforms(self) -> Tensor:
        """``(*, J, 4, 4)`` joint world transforms (the viewer's bone transforms)."""
        top = torch.cat([self.rotations, self.joints[..., None]], -1)
        bottom = torch.zeros_like(top[..., :1, :])
        bottom[..., 0, 3] = 1
        return torch.cat([top, bottom], -2)


class BodyModel(nn.Module):
    """A skinned, shape-able body with SMPL-X's first 22 joints; all backends share this class.

    Buffers (float unless noted; move with ``.to(device)``):
        ``parents (J,)`` long, ``faces (F, 3)`` long, ``v_template (V, 3)``,
        ``shapedirs (V, 3, NB)``, ``joint_template (J, 3)``, ``joint_shapedirs (J, 3, NB)``,
        ``skin_weights (V, J)`` (rows sum to 1), ``vertex_labels (V,)`` long (the SMPL-X body
        joint 0..21 each vertex belongs to), ``hand_mean (90,)``; SMPL families also
        ``posedirs (9 (J-1), 3 V)``, SMPL-X ``expr_dirs (V, 3, NE)`` / ``joint_expr_dirs (J, 3, NE)``.

    Shapes are linear in ``betas`` for every backend. For the mannequin, joints are exactly
    linear (SMPL-X's own calibration); its vertex shape directions are a linearisation of the
    mannequin's shape fit (within a few mm for |betas| <= 3).
    """

    parents: Tensor
    faces: Tensor
    v_template: Tensor
    shapedirs: Tensor
    joint_template: Tensor
    joint_shapedirs: Tensor
    skin_weights: Tensor
    vertex_labels: Tensor
    hand_mean: Tensor
    posedirs: Tensor | None
    expr_dirs: Tensor | None
    joint_expr_dirs: Tensor | None

    def __init__(
        self,
        *,
        kind: BodyKind,
        parents: Sequence[int],
        v_template: np.ndarray,
        faces: np.ndarray,
        shapedirs: np.ndarray,
        joint_template: np.ndarray,
        joint_shapedirs: np.ndarray,
        skin_weights: np.ndarray,
        vertex_labels: np.ndarray,
        posedirs: np.ndarray | None = None,
        expr_dirs: np.ndarray | None = None,
        joint_expr_dirs: np.ndarray | None = None,
        hand_mean: np.ndarray | None = None,
        source: str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.kind: BodyKind = kind
        self.source = source
        self.joint_names: tuple[str, ...] = JOINT_NAMES[kind]
        if len(parents) != len(self.joint_names):
            raise ValueError(f"{kind} has {len(self.joint_names)} joints, got {len(parents)} parents")
        order, bounds = depth_order(parents)
        self._bounds = bounds
        body_order, self._body_bounds = depth_order(list(parents)[:NUM_SKELETON_JOINTS])

        def buf(name: str, value: np.ndarray | None, as_dtype: torch.dtype = dtype) -> None:
            self.register_buffer(name, None if value is None else torch.as_tensor(np.asarray(value), dtype=as_dtype))

        buf("parents", np.asarray(parents), torch.long)
        buf("_order", order, torch.long)
        buf("_body_order", body_order, torch.long)
        buf("faces", faces, torch.long)
        buf("v_template", v_template)
        buf("shapedirs", shapedirs)
        buf("joint_template", joint_template)
        buf("joint_shapedirs", joint_shapedirs)
        buf("skin_weights", skin_weights)
        buf("vertex_labels", vertex_labels, torch.long)
        buf("hand_mean", np.zeros(3 * NUM_HAND_JOINTS) if hand_mean is None else hand_mean)
        buf("posedirs", posedirs)
        buf("expr_dirs", expr_dirs)
        buf("joint_expr_dirs", joint_expr_dirs)
        # The skin's sparsity for :func:`skin_sparse`, as buffers so that it moves with the model.
        layout = sparse_skin_layout(skin_weights, len(parents))
        for name, value in layout.items():
            buf(f"_skin_{name}", value, dtype if name == "values" else torch.long)
        self._skin_keys = tuple(layout)

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    @property
    def num_expression(self) -> int:
        return 0 if self.expr_dirs is None else self.expr_dirs.shape[-1]

    @property
    def has_hands(self) -> bool:
        """Whether ``hand_pose: (B, 90)`` drives finger joints (SMPL-X, SMPL-H, the mannequin)."""
        return self.kind != "smpl"

    @property
    def label_names(self) -> tuple[str, ...]:
        """Names of the values in ``vertex_labels``: SMPL-X joints 0..21."""
        return SMPLX_JOINT_NAMES

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, joints={self.num_joints}, vertices={self.num_vertices}, betas={self.num_betas}"

    # ---- shape -------------------------------------------------------------------------------
    def _coeffs(self, value: Tensor | None, count: int, lead: tuple[int, ...]) -> Tensor | None:
        """``(*, N')`` or ``(N',)`` coefficients -> ``(B, count)``, truncated or zero-padded
        (AMASS stores 16 betas; components a model lacks are dropped)."""
        if value is None:
            return None
        value = torch.as_tensor(value, device=self.v_template.device).to(self.v_template.dtype)
        if value.shape[-1] >= count:
            value = value[..., :count]
        else:
            value = nn.functional.pad(value, (0, count - value.shape[-1]))
        if value.ndim == 1:
            return value[None]  # one shape for the whole batch: (1, count), broadcast later
        return value.expand(*lead, count).reshape(-1, count)

    def _shape_inputs(
        self, betas: Tensor | None, expression: Tensor | None, lead: tuple[int, ...]
    ) -> tuple[Tensor | None, Tensor | None]:
        if expression is not None and self.expr_dirs is None:
            raise ValueError(f"the {self.kind} body model has no expression space")
        return self._coeffs(betas, self.num_betas, lead), self._coeffs(expression, self.num_expression, lead)

    def _rest(self, betas: Tensor | None, expression: Tensor | None, vertices: bool) -> Tensor:
        given = [x.shape[:-1] for x in (betas, expression) if x is not None]
        lead = tuple(torch.broadcast_shapes(*given)) if given else ()
        b, e = self._shape_inputs(betas, expression, lead)
        if vertices:
            return blend_shapes(self.v_template, self.shapedirs, self.expr_dirs, b, e).reshape(*lead, -1, 3)
        return blend_shapes(self.joint_template, self.joint_shapedirs, self.joint_expr_dirs, b, e).reshape(*lead, -1, 3)

    def rest_joints(self, betas: Tensor | None = None, *, expression: Tensor | None = None) -> Tensor:
        """Rest-pose joint positions (metres): ``(J, 3)``, or ``(*, J, 3)`` for ``betas (*, NB)``."""
        return self._rest(betas, expression, vertices=False)

    def rest_vertices(self, betas: Tensor | None = None, *, expression: Tensor | None = None) -> Tensor:
        """Rest-pose mesh vertices (metres): ``(V, 3)``, or ``(*, V, 3)`` for ``betas (*, NB)``."""
        return self._rest(betas, expression, vertices=True)

    # ---- pose --------------------------------------------------------------------------------
    def forward(
        self,
        body_pose: Tensor,
        *,
        global_orient: Tensor | None = None,
        transl: Tensor | None = None,
        betas: Tensor | None = None,
        hand_pose: Tensor | None = None,
        jaw_pose: Tensor | None = None,
        expression: Tensor | None = None,
        vertices: bool = True,
    ) -> BodyOutput:
        """Pose the body.

        Args:
            body_pose: ``(*, 63)`` or ``(*, 21, 3)`` axis-angle (radians) of SMPL-X joints 1..21
                (DPoser's ``pose_body``); ``*`` is any batch shape, shared by the other inputs
                (which broadcast).
            global_orient: ``(*, 3)`` axis-angle of the root (pelvis), rotating about the pelvis.
            transl: ``(*, 3)`` translation, metres, added to joints and vertices.
            betas: ``(*, NB')`` or ``(NB',)`` shape coefficients; truncated or zero-padded to
                ``num_betas``.
            hand_pose: ``(*, 90)`` absolute axis-angle of the 15 left then 15 right finger joints
                (SMPL-X order); SMPL-X, SMPL-H and the mannequin only.
            jaw_pose: ``(*, 3)``; SMPL-X only.
            expression: ``(*, NE')``; SMPL-X only.
            vertices: also skin the mesh (costs most of the time; joints alone are cheap).

        Returns:
            :class:`BodyOutput` with ``joints (*, J, 3)``, ``rotations (*, J, 3, 3)``,
            ``transforms (*, J, 4, 4)`` and ``vertices (*, V, 3)`` (metres).
        """
        body_pose = self._body_pose(body_pose)
        lead = tuple(body_pose.shape[:-1])
        batch = int(np.prod(lead, dtype=np.int64))
        rotations = self.local_rotations(body_pose, global_orient=global_orient, hand_pose=hand_pose,
                                         jaw_pose=jaw_pose).reshape(batch, -1, 3, 3)
        coeffs, expr = self._shape_inputs(betas, expression, lead)
        rest = blend_shapes(self.joint_template, self.joint_shapedirs, self.joint_expr_dirs, coeffs, expr)
        world_r, world_p = forward_kinematics(rotations, rest, self.parents, self._order, self._bounds)
        verts = None
        if vertices:
            v_shaped = blend_shapes(self.v_template, self.shapedirs, self.expr_dirs, coeffs, expr)
            if self.posedirs is not None:
                v_shaped = v_shaped + pose_offsets(rotations, self.posedirs)
            verts = self._skin(world_r, world_p - (world_r @ rest[..., None])[..., 0], v_shaped)
        if transl is not None:
            shift = self._part(transl, 3, "transl", lead, body_pose)[:, None]
            world_p = world_p + shift
            verts = None if verts is None else verts + shift
        return BodyOutput(
            joints=world_p.reshape(*lead, -1, 3),
            rotations=world_r.reshape(*lead, -1, 3, 3),
            vertices=None if verts is None else verts.reshape(*lead, -1, 3),
        )

    def _body_pose(self, body_pose: Tensor) -> Tensor:
        body_pose = torch.as_tensor(body_pose, device=self.v_template.device).to(self.v_template.dtype)
        if body_pose.shape[-2:] == (NUM_BODY_JOINTS, 3):
            body_pose = body_pose.flatten(-2)
        if body_pose.shape[-1] != 3 * NUM_BODY_JOINTS:
            raise ValueError(f"body_pose must be (*, 63) or (*, 21, 3), got {tuple(body_pose.shape)}")
        return body_pose

    def _part(self, value: Tensor | None, width: int, name: str, lead: tuple[int, ...], like: Tensor) -> Tensor:
        """``value (*, width)`` broadcast to ``lead`` and flattened to ``(B, width)``; zeros for None."""
        batch = int(np.prod(lead, dtype=np.int64))
        if value is None:
            return like.new_zeros(batch, width)
        value = torch.as_tensor(value, device=like.device).to(like.dtype)
        if value.shape[-1] != width:
            raise ValueError(f"{name} must be (*, {width}), got {tuple(value.shape)}")
        return value.expand(*lead, width).reshape(batch, width)

    def local_rotations(
        self,
        body_pose: Tensor,
        *,
        global_orient: Tensor | None = None,
        hand_pose: Tensor | None = None,
        jaw_pose: Tensor | None = None,
    ) -> Tensor:
        """``(*, J, 3, 3)`` every joint's rotation relative to its parent (the root's: in the world),
        in ``joint_names`` order, as :meth:`forward` poses them (eyes, and SMPL's hand joints, at rest;
        inputs as there): what a skeleton exporter writes."""
        body_pose = self._body_pose(body_pose)
        lead = tuple(body_pose.shape[:-1])
        batch = int(np.prod(lead, dtype=np.int64))

        def part(value: Tensor | None, width: int, name: str) -> Tensor:
            return self._part(value, width, name, lead, body_pose)

        if hand_pose is not None and not self.has_hands:
            raise ValueError("the SMPL body model has no finger joints; hand_pose is not supported")
        if jaw_pose is not None and self.kind != "smplx":
            raise ValueError(f"the {self.kind} body model has no jaw; jaw_pose is SMPL-X only")
        pieces = [part(global_orient, 3, "global_orient"), body_pose.reshape(batch, -1)]
        if self.kind == "smplx":
            pieces += [part(jaw_pose, 3, "jaw_pose"), body_pose.new_zeros(batch, 6)]  # eyes stay at rest
        if self.kind == "smpl":
            pieces.append(body_pose.new_zeros(batch, 6))  # SMPL's two hand joints stay at rest
        else:
            pieces.append(part(hand_pose, 3 * NUM_HAND_JOINTS, "hand_pose"))
        return axis_angle_to_matrix(torch.cat(pieces, -1).reshape(batch, -1, 3)).reshape(*lead, -1, 3, 3)

    def _skin(self, rot: Tensor, trans: Tensor, v_rest: Tensor) -> Tensor:
        """Linear blend skinning: ``rot (B, J, 3, 3)``, ``trans (B, J, 3)`` map ``v_rest
        (B or 1, V, 3)`` to posed vertices ``(B, V, 3)``.

        With one rest mesh for the whole batch (no pose correctives, one shape) and no gradient
        wanted for it, one sparse product (:func:`skin_sparse`); otherwise :func:`skin_dense`.
        """
        if v_rest.shape[0] == 1 and not (v_rest.requires_grad and torch.is_grad_enabled()):
            layout = {name: getattr(self, f"_skin_{name}") for name in self._skin_keys}
            return skin_sparse(rot, trans, v_rest[0], layout)
        return skin_dense(rot, trans, v_rest, self.skin_weights)

    def joints(self, body_pose: Tensor, **kwargs: Any) -> Tensor:
        """``(*, J, 3)`` joint positions (metres) for ``body_pose (*, 63)``; options as :meth:`forward`."""
        return self.forward(body_pose, vertices=False, **kwargs).joints

    def skeleton_joints(
        self,
        body_pose: Tensor,
        *,
        global_orient: Tensor | None = None,
        transl: Tensor | None = None,
        betas: Tensor | None = None,
    ) -> Tensor:
        """Joints ``(*, 22, 3)`` (SMPL-X 0..21, metres) of ``body_pose (*, 63)``: FK on the first
        22 joints only.

        Equal to ``joints(...)[..., :22, :]`` (the finger, jaw and eye joints never move these), at
        a fraction of the cost of the backward pass: solvers that differentiate joints every step
        (motion denoising, IK) use it.
        """
        return self.skeleton(body_pose, global_orient=global_orient, transl=transl, betas=betas)[1]

    def skeleton(
        self,
        body_pose: Tensor,
        *,
        global_orient: Tensor | None = None,
        transl: Tensor | None = None,
        betas: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """World rotations ``(*, 22, 3, 3)`` and positions ``(*, 22, 3)`` of SMPL-X joints 0..21:
        :meth:`skeleton_joints` with the rotations too (for points fixed to a bone, e.g. the nose
        on the head)."""
        lead = body_pose.shape[:-1]
        batch = int(np.prod(lead, dtype=np.int64))
        zeros = body_pose.new_zeros(batch, 3)
        root = zeros if global_orient is None else global_orient.expand(*lead, 3).reshape(batch, 3)
        pose = torch.cat([root, body_pose.reshape(batch, -1)], -1).reshape(batch, NUM_SKELETON_JOINTS, 3)
        if betas is not None and betas.ndim > 1:
            betas = betas.expand(*lead, betas.shape[-1])
        rest = self.rest_joints(betas).reshape(-1, self.num_joints, 3)[:, :NUM_SKELETON_JOINTS]
        parents = self.parents[:NUM_SKELETON_JOINTS]
        rotations, joints = forward_kinematics(
            axis_angle_to_matrix(pose), rest, parents, self._body_order, self._body_bounds)
        if transl is not None:
            joints = joints + transl.expand(*lead, 3).reshape(batch, 1, 3)
        return (rotations.reshape(*lead, NUM_SKELETON_JOINTS, 3, 3), joints.reshape(*lead, NUM_SKELETON_JOINTS, 3))

    def joint_transforms(self, body_pose: Tensor, **kwargs: Any) -> Tensor:
        """``(*, J, 4, 4)`` joint world transforms; options as :meth:`forward`."""
        return self.forward(body_pose, vertices=False, **kwargs).transforms

    def vertices(self, body_pose: Tensor, **kwargs: Any) -> Tensor:
        """``(*, V, 3)`` skinned vertices (metres); options as :meth:`forward`."""
        out = self.forward(body_pose, vertices=True, **kwargs).vertices
        assert out is not None
        return out

    # ---- for the viewer and metrics ----------------------------------------------------------
    def skin_topk(self, k: int = 4) -> tuple[Tensor, Tensor]:
        """The ``k`` strongest skin weights per vertex, renormalised to sum to 1.

        Returns ``(indices (V, k) long, weights (V, k))``; for viser's skinned meshes, whose
        bones are the joints with :attr:`BodyOutput.transforms` as their poses.
        """
        weights, indices = torch.topk(self.skin_weights, k, dim=1)
        return indices, weights / weights.sum(1, keepdim=True)

    def part_vertex_mask(self, part: str) -> Tensor:
        """``(V,)`` bool: the vertices of a ``prior.parts.PARTS`` part (those whose label is one
        of the part's joints); raises ``ValueError`` for an unknown part."""
        smplx_joints = torch.tensor([j + 1 for j in part_joints(part)], device=self.vertex_labels.device)
        return torch.isin(self.vertex_labels, smplx_joints)


__all__ = ["JOINT_NAMES", "NUM_HAND_JOINTS", "BodyKind", "BodyModel", "BodyOutput"]
