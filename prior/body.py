"""Body models: pose parameters -> joints, joint transforms and skinned meshes.

One small interface, :class:`BodyModel`, for every backend:

- ``"mannequin"`` (the default): the licence-free SMPL-X-rigged wooden mannequin from the
  ``mannequin-x`` package. Its skeleton is calibrated to SMPL-X (rest joints are exactly linear
  in the first ten SMPL-X betas), so joints 0..21 match SMPL-X's for the same pose and shape.
- ``"smplx"``, ``"smplh"``, ``"smpl"``: the licensed model files the user owns, read from
  ``.npz`` (or, opted in, ``.pkl``) files in the layout the ``smplx`` package reads.

Every backend is driven by the same torch forward kinematics and linear blend skinning
(:func:`forward_kinematics`, :meth:`BodyModel.forward`), so it is differentiable and batched.
Coordinates are metres in the SMPL-X model frame (Y up, the body faces +Z). The first 22
joints of every backend are SMPL-X joints 0..21 in SMPL-X order (``prior.parts.SMPLX_JOINT_NAMES``).

Joint layouts (``J``): SMPL-X 55 (22 body, jaw, two eyes, 15 + 15 finger joints); SMPL-H 52
(22 body, 15 + 15 fingers); the mannequin 52 in the SMPL-H layout; SMPL 24 (22 body, two hands).
Hand poses are absolute (``flat_hand_mean`` semantics, as AMASS stores them): zeros are flat
hands; ``BodyModel.hand_mean`` holds the relaxed pose where the model has one.
"""

from __future__ import annotations

import itertools
import json
import pickle
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .errors import InputError
from .files import asset_path, checked_file
from .parts import (
    NUM_BODY_JOINTS,
    NUM_SKELETON_JOINTS,
    SMPLX_JOINT_NAMES,
    SMPLX_PARENTS,
    part_joints,
)
from .rotations import axis_angle_to_matrix

BodyKind = Literal["mannequin", "smplx", "smplh", "smpl"]

NUM_HAND_JOINTS = 30  # 15 per hand
# Model files are a few hundred MB at most (SMPL-X with 300 betas is ~ 170 MB uncompressed).
MAX_MODEL_BYTES = 2 * 2**30

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
# (vertices, joints) of each licensed model family, used to tell them apart from the file alone.
_MODEL_SIZES: dict[tuple[int, int], BodyKind] = {(10475, 55): "smplx", (6890, 52): "smplh", (6890, 24): "smpl"}

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

# Skinning uses torch's sparse CSR matmul (only CSR @ dense, covered by our tests), whose first use
# in a process warns that CSR is "beta". Take that one-time warning here, quietly, so users never see it.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.sparse_csr_tensor(torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1), size=(1, 1))


# ----------------------------------------------------------------------------------------------
# Kinematics (torch, differentiable, any batch shape)


def depth_order(parents: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    """Non-root joints sorted by tree depth, and the boundaries of each depth level.

    ``order[bounds[d]:bounds[d + 1]]`` are the joints at depth ``d + 1``; all their parents
    are at depth ``d``, so one batched matmul per level replaces one per joint.
    """
    parents = list(parents)
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        if not 0 <= parents[j] < j:
            raise ValueError(f"joint {j} has parent {parents[j]}; parents must come before their children")
        depth[j] = depth[parents[j]] + 1
    order = np.array(sorted(range(1, len(parents)), key=lambda j: (depth[j], j)), dtype=np.int64)
    bounds = [0]
    for d in range(1, max(depth) + 1):
        bounds.append(bounds[-1] + depth.count(d))
    return order, bounds


def forward_kinematics(
    rotations: Tensor, rest_joints: Tensor, parents: Tensor, order: Tensor, bounds: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """World rotations ``(B, J, 3, 3)`` and positions ``(B, J, 3)`` of every joint.

    Args:
        rotations: ``(B, J, 3, 3)`` local joint rotations (joint 0: the global orientation,
            about the root joint).
        rest_joints: ``(B or 1, J, 3)`` rest-pose joint positions, metres; rest joint frames
            have no rotation, as in SMPL-X.
        parents: ``(J,)`` parent index per joint (``-1`` for the root).
        order, bounds: from :func:`depth_order` (``order`` as a long tensor).

    The root stays at its rest position (translation is added by the caller).
    """
    batch, num_joints = rotations.shape[:2]
    offsets = rest_joints.clone()
    offsets[:, 1:] = rest_joints[:, 1:] - rest_joints[:, parents[1:]]
    offsets = offsets.expand(batch, -1, -1)
    world_r = rotations.new_empty(batch, num_joints, 3, 3)
    world_p = rotations.new_empty(batch, num_joints, 3)
    world_r[:, 0] = rotations[:, 0]
    world_p[:, 0] = offsets[:, 0]
    for start, stop in itertools.pairwise(bounds):
        joints = order[start:stop]
        parent_r = world_r[:, parents[joints]]
        world_r[:, joints] = parent_r @ rotations[:, joints]
        world_p[:, joints] = world_p[:, parents[joints]] + (parent_r @ offsets[:, joints, :, None])[..., 0]
    return world_r, world_p


class _SparseProduct(torch.autograd.Function):
    """``lhs @ rhs`` for a constant sparse ``lhs`` whose transpose is given, so the backward
    pass (``lhs^T @ grad``) does not re-sort the sparse matrix each call."""

    @staticmethod
    def forward(ctx: Any, lhs: Tensor, lhs_t: Tensor, rhs: Tensor) -> Tensor:
        ctx.lhs_t = lhs_t
        return lhs @ rhs

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor]:
        return None, None, ctx.lhs_t @ grad


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
        # Sparsity of the skin for :meth:`_skin`: the non-zero (vertex, joint) weights in row
        # order, and the CSR layout of the (V, 4 J) matrix with 4 columns per joint.
        rows, cols = np.nonzero(np.asarray(skin_weights))
        counts = np.bincount(rows, minlength=len(skin_weights))
        buf("_skin_counts", counts, torch.long)
        buf("_skin_values", np.asarray(skin_weights)[rows, cols])
        cols4 = (4 * cols[:, None] + np.arange(4)).reshape(-1)
        buf("_skin_crow4", 4 * np.concatenate([[0], np.cumsum(counts)]), torch.long)
        buf("_skin_cols4", cols4, torch.long)
        # The transposed (4 J, V) layout, for the backward pass (torch would sort it every call).
        rows4 = np.repeat(rows, 4)
        perm = np.lexsort((rows4, cols4))
        buf("_skin_t_perm", perm, torch.long)
        buf("_skin_t_crow", np.concatenate([[0], np.cumsum(np.bincount(cols4, minlength=4 * len(parents)))]), torch.long)
        buf("_skin_t_cols", rows4[perm], torch.long)

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

    @staticmethod
    def _blend(
        template: Tensor, dirs: Tensor, expr_dirs: Tensor | None, betas: Tensor | None, expression: Tensor | None
    ) -> Tensor:
        """``template (N, 3)`` plus linear shape (and expression) offsets: ``(B or 1, N, 3)``."""
        out = template[None]
        if betas is not None:
            out = out + torch.einsum("ncs,bs->bnc", dirs, betas)
        if expression is not None and expr_dirs is not None:
            out = out + torch.einsum("ncs,bs->bnc", expr_dirs, expression)
        return out

    def _rest(self, betas: Tensor | None, expression: Tensor | None, vertices: bool) -> Tensor:
        given = [x.shape[:-1] for x in (betas, expression) if x is not None]
        lead = tuple(torch.broadcast_shapes(*given)) if given else ()
        b, e = self._shape_inputs(betas, expression, lead)
        if vertices:
            return self._blend(self.v_template, self.shapedirs, self.expr_dirs, b, e).reshape(*lead, -1, 3)
        return self._blend(self.joint_template, self.joint_shapedirs, self.joint_expr_dirs, b, e).reshape(*lead, -1, 3)

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
        dtype, device = self.v_template.dtype, self.v_template.device
        body_pose = torch.as_tensor(body_pose, device=device).to(dtype)
        if body_pose.shape[-2:] == (NUM_BODY_JOINTS, 3):
            body_pose = body_pose.flatten(-2)
        if body_pose.shape[-1] != 3 * NUM_BODY_JOINTS:
            raise ValueError(f"body_pose must be (*, 63) or (*, 21, 3), got {tuple(body_pose.shape)}")
        lead = tuple(body_pose.shape[:-1])
        batch = int(np.prod(lead, dtype=np.int64))

        def part(value: Tensor | None, width: int, name: str) -> Tensor:
            if value is None:
                return body_pose.new_zeros(batch, width)
            value = torch.as_tensor(value, device=device).to(dtype)
            if value.shape[-1] != width:
                raise ValueError(f"{name} must be (*, {width}), got {tuple(value.shape)}")
            return value.expand(*lead, width).reshape(batch, width)

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
        rotations = axis_angle_to_matrix(torch.cat(pieces, -1).reshape(batch, -1, 3))

        coeffs, expr = self._shape_inputs(betas, expression, lead)
        rest = self._blend(self.joint_template, self.joint_shapedirs, self.joint_expr_dirs, coeffs, expr)
        world_r, world_p = forward_kinematics(rotations, rest, self.parents, self._order, self._bounds)
        verts = None
        if vertices:
            v_shaped = self._blend(self.v_template, self.shapedirs, self.expr_dirs, coeffs, expr)
            if self.posedirs is not None:
                eye = torch.eye(3, dtype=dtype, device=device)
                pose_feature = (rotations[:, 1:] - eye).reshape(batch, -1)
                v_shaped = v_shaped + (pose_feature @ self.posedirs).reshape(batch, -1, 3)
            verts = self._skin(world_r, world_p - (world_r @ rest[..., None])[..., 0], v_shaped)
        if transl is not None:
            shift = part(transl, 3, "transl")[:, None]
            world_p = world_p + shift
            verts = None if verts is None else verts + shift
        return BodyOutput(
            joints=world_p.reshape(*lead, -1, 3),
            rotations=world_r.reshape(*lead, -1, 3, 3),
            vertices=None if verts is None else verts.reshape(*lead, -1, 3),
        )

    def _skin(self, rot: Tensor, trans: Tensor, v_rest: Tensor) -> Tensor:
        """Linear blend skinning: ``rot (B, J, 3, 3)``, ``trans (B, J, 3)`` map ``v_rest
        (B or 1, V, 3)`` to posed vertices ``(B, V, 3)``.

        With one rest mesh for the whole batch (no pose correctives, one shape), skinning is one
        sparse product: ``out[b, v] = sum_{j, c} (w[v, j] h[v, c]) M[b, j, :, c]`` with ``h = (x,
        y, z, 1)`` and ``M = [R | t]``, a (V, 4 J) CSR matrix with 4 non-zeros per skin weight
        times (4 J, 3 B); no (B, V, 12) intermediate (4-10x faster on CPU, see bench_body).
        Otherwise the (B, J, 12) matrices are blended per vertex with one dense GEMM.
        """
        batch, num_joints = rot.shape[:2]
        if v_rest.shape[0] == 1 and not (v_rest.requires_grad and torch.is_grad_enabled()):
            # (The values of a sparse matrix get no gradient, hence the condition.)
            h = nn.functional.pad(v_rest[0], (0, 1), value=1.0)
            # Each vertex's h once per non-zero weight (rows are sorted): faster than indexing.
            h = h.repeat_interleave(self._skin_counts, 0, output_size=self._skin_values.shape[0])
            values = (self._skin_values[:, None] * h).reshape(-1)
            size = (self.num_vertices, 4 * num_joints)
            # Invariants hold by construction (built once in __init__), so skip the per-call check.
            lhs = torch.sparse_csr_tensor(
                self._skin_crow4, self._skin_cols4, values, size=size, check_invariants=False
            )
            rhs = torch.cat([rot, trans[..., None]], -1).permute(1, 3, 0, 2).reshape(4 * num_joints, 3 * batch)
            if torch.is_grad_enabled() and rhs.requires_grad:
                lhs_t = torch.sparse_csr_tensor(
                    self._skin_t_crow, self._skin_t_cols, values[self._skin_t_perm], size=size[::-1],
                    check_invariants=False,
                )
                out = _SparseProduct.apply(lhs, lhs_t, rhs)
            else:
                out = lhs @ rhs
            return out.reshape(self.num_vertices, batch, 3).transpose(0, 1)
        blended = self.skin_weights @ torch.cat([rot.flatten(-2), trans], -1)  # (B, V, 12)
        r = blended[..., :9].unflatten(-1, (3, 3))
        return (r @ v_rest.expand(batch, -1, -1)[..., None])[..., 0] + blended[..., 9:]

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
        lead = body_pose.shape[:-1]
        batch = int(np.prod(lead, dtype=np.int64))
        zeros = body_pose.new_zeros(batch, 3)
        root = zeros if global_orient is None else global_orient.expand(*lead, 3).reshape(batch, 3)
        pose = torch.cat([root, body_pose.reshape(batch, -1)], -1).reshape(batch, NUM_SKELETON_JOINTS, 3)
        if betas is not None and betas.ndim > 1:
            betas = betas.expand(*lead, betas.shape[-1])
        rest = self.rest_joints(betas).reshape(-1, self.num_joints, 3)[:, :NUM_SKELETON_JOINTS]
        parents = self.parents[:NUM_SKELETON_JOINTS]
        _, joints = forward_kinematics(axis_angle_to_matrix(pose), rest, parents, self._body_order, self._body_bounds)
        if transl is not None:
            joints = joints + transl.expand(*lead, 3).reshape(batch, 1, 3)
        return joints.reshape(*lead, NUM_SKELETON_JOINTS, 3)

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


# ----------------------------------------------------------------------------------------------
# Vertex labels


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


def _smplx_vertex_labels() -> np.ndarray:
    with asset_path(SMPLX_LABELS_ASSET).open("rb") as f, np.load(f, allow_pickle=False) as data:
        return data["labels"].astype(np.int64)


# ----------------------------------------------------------------------------------------------
# The mannequin


def _load_mannequin(*, dtype: torch.dtype) -> BodyModel:
    """The mannequin-x wooden mannequin as a :class:`BodyModel` (mean shape; betas move it linearly).

    mannequin-x has 54 joints: SMPL-H's 52 plus a ``L_Hand``/``R_Hand`` joint between each wrist
    and its fingers that never rotates. Those two are folded into the wrists (their skin weights
    move to the wrist, exact since they carry no rotation), giving the SMPL-H joint layout.
    """
    from mannequin import Mannequin  # imported here: it pulls in its own assets

    shape_dim = 10
    model = Mannequin("wooden", flat_hand_mean=True, shape=np.zeros(shape_dim, np.float32))
    names = model.joint_names
    keep = [i for i, name in enumerate(names) if name not in ("L_Hand", "R_Hand")]
    old_parents = list(model.parents)
    expected = [n.replace("L_", "left_").replace("R_", "right_").lower() for n in JOINT_NAMES["mannequin"]]
    ours = [names[i].replace("L_", "left_").replace("R_", "right_").lower() for i in keep]
    # mannequin-x names joints after body-models ("L_Hip", "Spine1"); SMPL-X's 0..21 are checked by order.
    if len(keep) != 52 or ours[22:] != expected[22:] or tuple(old_parents[:22]) != SMPLX_PARENTS:
        raise RuntimeError(f"unexpected mannequin-x joint layout: {names}")
    remap = {old: new for new, old in enumerate(keep)}
    remap[names.index("L_Hand")] = SMPLX_JOINT_NAMES.index("left_wrist")
    remap[names.index("R_Hand")] = SMPLX_JOINT_NAMES.index("right_wrist")
    parents = [-1] + [remap[old_parents[i]] for i in keep[1:]]

    # The skin, skeleton calibration and shape fit are mannequin-x internals (no public accessor);
    # tests check our FK and LBS against mannequin-x's own numpy, so a change there shows up.
    calibration = model._calibration
    joint_template = calibration.joint_rest[keep].astype(np.float64)
    joint_shapedirs = calibration.joint_dirs[keep].astype(np.float64)
    v_template = model._identity["skin_vertices"].astype(np.float64)
    num_vertices = v_template.shape[0]
    dense = np.zeros((num_vertices, len(names)))
    np.add.at(dense, (np.arange(num_vertices)[:, None], model._skin_joint_indices), model._skin_weights)
    weights = np.zeros((num_vertices, len(keep)))
    for old in range(len(names)):
        weights[:, remap[old]] += dense[:, old]
    # mannequin-x refits the mesh per shape (non-linear, ~20 ms); central differences at +-1
    # give linear shape directions within ~0.5 mm mean error at |betas| = 3.
    shapedirs = np.zeros((num_vertices, 3, shape_dim))
    for i in range(shape_dim):
        e = np.zeros(shape_dim, np.float32)
        e[i] = 1
        model.reshape(e)
        plus = model._identity["skin_vertices"].astype(np.float64)
        model.reshape(-e)
        shapedirs[:, :, i] = 0.5 * (plus - model._identity["skin_vertices"])
    return BodyModel(
        kind="mannequin",
        parents=parents,
        v_template=v_template,
        faces=np.asarray(model.faces),
        shapedirs=shapedirs,
        joint_template=joint_template,
        joint_shapedirs=joint_shapedirs,
        skin_weights=weights,
        vertex_labels=labels_from_weights(weights, parents),
        hand_mean=calibration.hand_mean.reshape(-1),
        source=None,
        dtype=dtype,
    )


# ----------------------------------------------------------------------------------------------
# SMPL-X / SMPL-H / SMPL model files

_REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


def _read_model_arrays(path: Path, *, allow_pickle: bool) -> dict[str, np.ndarray]:
    """The numeric arrays of a model file; pickled entries of ``.npz`` files are skipped."""
    if path.suffix == ".pkl":
        if not allow_pickle:
            raise InputError(
                ".pkl model files are Python pickles and are not loaded for safety; use the .npz "
                "version of the model or pass allow_pickle=True for a file you trust",
                path,
            )
        try:
            with path.open("rb") as f:
                raw = pickle.load(f, encoding="latin1")
        except ImportError as exc:  # e.g. the original SMPL files need the 'chumpy' package
            raise InputError(f"this .pkl file needs the Python package {exc.name!r} to be read", path) from None
        except (pickle.UnpicklingError, EOFError, AttributeError, IndexError, TypeError, ValueError) as exc:
            raise InputError(f"not a readable SMPL-family .pkl file ({type(exc).__name__}: {exc})", path) from None
        if not isinstance(raw, dict):
            raise InputError(f"expected a dict of arrays in the pickle, found {type(raw).__name__}", path)
        out = {}
        for key in _REQUIRED_KEYS + ("hands_meanl", "hands_meanr"):
            if key in raw:
                try:
                    value = raw[key]
                    # SMPL .pkl files hold J_regressor as scipy.sparse and some arrays as chumpy
                    # objects; both convert as smplx.utils.to_np converts them.
                    value = value.toarray() if "scipy.sparse" in str(type(value)) else value
                    out[key] = np.array(value)
                except (TypeError, ValueError):
                    raise InputError(f"{key!r} is not a numeric array", path) from None
        return out
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise InputError("not a valid .npz model file (truncated or wrong format)", path) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise InputError("expected an .npz archive of named arrays, found a single .npy array", path)
    out = {}
    with data:
        for key in _REQUIRED_KEYS + ("hands_meanl", "hands_meanr"):
            if key not in data.files:
                continue
            try:
                out[key] = data[key]
            except ValueError:
                raise InputError(f"{key!r} holds pickled objects, which are not loaded for safety", path) from None
            except (OSError, EOFError, zipfile.BadZipFile):
                raise InputError("not a valid .npz model file (truncated or wrong format)", path) from None
    return out


def _smpl_family_model(path: Path, *, num_betas: int | None, allow_pickle: bool, dtype: torch.dtype) -> BodyModel:
    """A :class:`BodyModel` from an SMPL-X / SMPL-H / SMPL file, read as the ``smplx`` package reads it."""
    arrays = _read_model_arrays(checked_file(path, max_bytes=MAX_MODEL_BYTES), allow_pickle=allow_pickle)
    missing = [key for key in _REQUIRED_KEYS if key not in arrays]
    if missing:
        raise InputError(f"not an SMPL-X/SMPL-H/SMPL model: missing {', '.join(map(repr, missing))}", path)
    for key, value in arrays.items():
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
            raise InputError(f"{key!r} is not numeric (dtype {value.dtype})", path)
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise InputError(f"{key!r} contains NaN or Inf", path)

    def check(key: str, shape: tuple[int | None, ...], described: str) -> np.ndarray:
        value = arrays[key]
        if value.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, value.shape)):
            raise InputError(f"{key!r} has shape {value.shape}, expected {described}", path)
        return value

    v_template = check("v_template", (None, 3), "(V, 3)")
    weights = check("weights", (None, None), "(V, J)")
    sizes = (v_template.shape[0], weights.shape[1])
    if sizes not in _MODEL_SIZES:
        raise InputError(
            f"has {sizes[0]} vertices and {sizes[1]} joints; expected SMPL-X (10475, 55), "
            "SMPL-H (6890, 52) or SMPL (6890, 24)",
            path,
        )
    kind = _MODEL_SIZES[sizes]
    num_vertices, num_joints = sizes
    check("weights", (num_vertices, num_joints), f"({num_vertices}, {num_joints})")
    faces = check("f", (None, 3), "(F, 3)").astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise InputError(f"'f' indexes vertices outside 0..{num_vertices - 1}", path)
    shapedirs = arrays["shapedirs"]
    if shapedirs.ndim == 2:
        shapedirs = shapedirs[:, :, None]
    check_shape = shapedirs.shape[:2] == (num_vertices, 3) and shapedirs.ndim == 3
    if not check_shape:
        raise InputError(f"'shapedirs' has shape {arrays['shapedirs'].shape}, expected ({num_vertices}, 3, S)", path)
    num_pose = 9 * (num_joints - 1)
    posedirs = arrays["posedirs"]
    if posedirs.size != num_vertices * 3 * num_pose or posedirs.shape[0] != num_vertices:
        raise InputError(f"'posedirs' has shape {posedirs.shape}, expected ({num_vertices}, 3, {num_pose})", path)
    regressor = check("J_regressor", (num_joints, num_vertices), f"({num_joints}, {num_vertices})")
    kintree = check("kintree_table", (2, num_joints), f"(2, {num_joints})")
    parents = [-1] + [int(p) for p in kintree[0, 1:]]
    try:
        depth_order(parents)
    except ValueError as exc:
        raise InputError(f"'kintree_table': {exc}", path) from None
    if tuple(parents[:22]) != SMPLX_PARENTS:
        raise InputError("'kintree_table' does not have the SMPL-X body joints 0..21", path)

    # smplx's conventions: SMPL-X keeps expressions in the same array (300 shape + 100
    # expression, or 10 + 10 in the older files); SMPL/SMPL-H use every column for shape.
    expr_dirs = None
    if kind == "smplx":
        shape_space = 300 if shapedirs.shape[-1] >= 400 else min(10, shapedirs.shape[-1])
        expr_dirs = shapedirs[:, :, shape_space : shape_space + 100]
        expr_dirs = expr_dirs if expr_dirs.shape[-1] else None
    else:
        shape_space = shapedirs.shape[-1]
    nb = min(shape_space, 16 if num_betas is None else num_betas)
    shapedirs = shapedirs[:, :, :nb].astype(np.float64)
    regressor = regressor.astype(np.float64)
    v_template = v_template.astype(np.float64)
    hand_mean = None
    if kind != "smpl" and "hands_meanl" in arrays and "hands_meanr" in arrays:
        hand_mean = np.concatenate([arrays["hands_meanl"].reshape(-1), arrays["hands_meanr"].reshape(-1)])
        hand_mean = hand_mean if hand_mean.shape == (90,) else None
    if kind == "smplx":
        labels = _smplx_vertex_labels()
    else:
        labels = labels_from_weights(weights, parents)
    return BodyModel(
        kind=kind,
        parents=parents,
        v_template=v_template,
        faces=faces,
        shapedirs=shapedirs,
        joint_template=regressor @ v_template,
        joint_shapedirs=np.einsum("jv,vcs->jcs", regressor, shapedirs),
        skin_weights=weights,
        vertex_labels=labels,
        # smplx's layout: posedirs (V, 3, P) -> (P, 3 V), so pose_feature @ posedirs is (B, 3 V).
        posedirs=np.reshape(posedirs, (-1, num_pose)).T,
        expr_dirs=expr_dirs,
        joint_expr_dirs=None if expr_dirs is None else np.einsum("jv,vcs->jcs", regressor, expr_dirs.astype(float)),
        hand_mean=hand_mean,
        source=str(path),
        dtype=dtype,
    )


def _find_model_file(folder: Path, gender: str) -> Path:
    """The model file in a folder laid out as smplx expects (``smplx/SMPLX_NEUTRAL.npz``) or as
    AMASS ships SMPL-H (``smplh/neutral/model.npz``); SMPL-X first, ``.npz`` before ``.pkl``."""
    g = gender.upper()
    names = [f"SMPLX_{g}", f"SMPLH_{g}", f"{gender.lower()}/model", f"SMPL_{g}"]
    tried = []
    for name in names:
        for ext in (".npz", ".pkl"):
            for sub in ("", "smplx/", "smplh/", "smpl/"):
                candidate = folder / f"{sub}{name}{ext}"
                tried.append(candidate)
                if candidate.is_file():
                    return candidate
    raise InputError(
        f"no {gender} SMPL-X/SMPL-H/SMPL model file here (looked for SMPLX_{g}.npz, SMPLH_{g}.npz, "
        f"{gender.lower()}/model.npz, SMPL_{g}.pkl, also under smplx/, smplh/, smpl/)",
        folder,
    )


def load_body_model(
    path: str | Path | None = None,
    *,
    gender: str = "neutral",
    num_betas: int | None = None,
    allow_pickle: bool = False,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> BodyModel:
    """Load a body model: the mannequin when ``path`` is None, else a user's model file.

    Args:
        path: None for the bundled mannequin; an SMPL-X / SMPL-H / SMPL ``.npz`` (or ``.pkl``)
            file, or a folder holding one (``SMPLX_NEUTRAL.npz``, ``smplx/SMPLX_MALE.npz``,
            AMASS's ``smplh/neutral/model.npz``, ...). The type is told from the file's
            vertex and joint counts.
        gender: which file to pick from a folder.
        num_betas: shape coefficients to use (default: up to 16, as AMASS fits).
        allow_pickle: read ``.pkl`` files (Python pickles: only for files you trust).
        dtype, device: of the model's buffers.

    Raises:
        InputError: ``"<file>: <problem>"`` when the file is missing or not a usable model.
    """
    if path is None:
        return _load_mannequin(dtype=dtype).to(device)
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError("no such file or folder", path)
    if path.is_dir():
        path = _find_model_file(path, gender)
    return _smpl_family_model(path, num_betas=num_betas, allow_pickle=allow_pickle, dtype=dtype).to(device)


def write_smplx_labels_asset(segmentation_json: str | Path, out: str | Path) -> None:
    """Regenerate ``assets/smplx_vertex_labels.npz`` from ``smplx_vert_segmentation.json``."""
    with open(segmentation_json, encoding="utf-8") as f:
        labels = smplx_labels_from_segmentation(json.load(f))
    np.savez_compressed(out, labels=labels.astype(np.uint8))


__all__ = [
    "JOINT_NAMES",
    "BodyKind",
    "BodyModel",
    "BodyOutput",
    "axis_angle_to_matrix",
    "forward_kinematics",
    "labels_from_weights",
    "load_body_model",
    "smplx_labels_from_segmentation",
]
