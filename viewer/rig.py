"""What the viewer needs from a body model: 22 bones, the rest mesh split per joint, and pose -> bones.

viser skins with up to four bones per vertex and sends bone poses, not vertices, per frame. The
body's finger joints never move relative to the wrist here (DPoser poses the 21 body joints), so
the hands are baked into the rest mesh (relaxed, ``BodyModel.hand_mean``) and their skin weights
are folded into the wrists: the mesh is driven by SMPL-X joints 0..21 only, exactly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from prior.body import BodyModel, depth_order, fold_to_body_joint
from prior.parts import NUM_SKELETON_JOINTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from prior.rotations import axis_angle_to_matrix_np, matrix_to_wxyz_np

FOOT_BONES = ((7, 10), (8, 11))  # SMPL-X left ankle + foot, right ankle + foot
NUM_BONES = NUM_SKELETON_JOINTS  # one bone per SMPL-X joint 0..21: the pelvis and the joints of ``pose_body``


@dataclass(frozen=True)
class SkinPiece:
    """One skinned submesh: the faces whose vertices carry one joint label (or the whole body).

    ``vertices: (v, 3)`` rest positions (metres, body frame); ``faces: (f, 3)``; ``bones: (b,)``
    the SMPL-X joints (0..21) that move it; ``skin_weights: (v, b)`` (top-4, rows sum to 1).
    """

    label: int | None
    vertices: np.ndarray
    faces: np.ndarray
    bones: np.ndarray
    skin_weights: np.ndarray


@dataclass(frozen=True)
class RigPose:
    """Bone poses of ``N`` bodies: ``wxyz: (N, 22, 4)`` world rotations as quaternions (and
    ``rotations: (N, 22, 3, 3)`` as matrices), ``positions: (N, 22, 3)`` joint positions
    (metres, body frame)."""

    wxyz: np.ndarray
    positions: np.ndarray
    rotations: np.ndarray

    def __len__(self) -> int:
        return self.wxyz.shape[0]

    def row(self, i: int) -> RigPose:
        return RigPose(self.wxyz[i : i + 1], self.positions[i : i + 1], self.rotations[i : i + 1])


class BodyRig:
    """A :class:`prior.body.BodyModel` prepared for viser skinned meshes.

    ``betas`` gives the rest shape (shape coefficients, e.g. a photo fit's); None: the mean shape.

    Attributes:
        body: the body model (FK runs through it).
        betas: ``(NB,)`` the shape drawn, or None (the mean shape).
        rest_joints: ``(22, 3)`` rest joint positions, the bones' bind pose (identity rotations).
        pieces: one :class:`SkinPiece` per joint label that owns vertices (for per-joint colours
            and click-to-mask).
        whole: the whole mesh as one piece with all 22 bones (for ghosts and samples).
        floor_y: lowest rest-mesh point (metres); bodies stand on a grid at this height.
        height_m: rest-mesh height.
    """

    def __init__(self, body: BodyModel, betas: np.ndarray | None = None) -> None:
        self.body = body
        self.betas = None if betas is None else np.asarray(betas, np.float32).reshape(-1)
        with torch.no_grad():
            hands = body.hand_mean[None] if body.has_hands else None
            shape = None if self.betas is None else torch.from_numpy(self.betas)
            verts = body.forward(torch.zeros(1, 63), hand_pose=hands, betas=shape).vertices[0].cpu().numpy()
            rest = body.rest_joints(shape).cpu().numpy()
            indices, weights = body.skin_topk(4)
        parents = body.parents.tolist()
        fold = np.array([fold_to_body_joint(j, parents) for j in range(body.num_joints)])
        dense = np.zeros((verts.shape[0], NUM_BONES), np.float32)
        np.add.at(dense, (np.arange(verts.shape[0])[:, None], fold[indices.cpu().numpy()]), weights.cpu().numpy())
        dense /= dense.sum(1, keepdims=True)
        faces = body.faces.cpu().numpy()
        labels = body.vertex_labels.cpu().numpy()
        self.rest_joints = rest[:NUM_BONES].astype(np.float32)
        parents_np = np.array(SMPLX_PARENTS)
        self._offsets = self.rest_joints.astype(np.float64) - self.rest_joints[np.maximum(parents_np, 0)]
        order, bounds = depth_order(SMPLX_PARENTS)  # FK one tree level at a time
        self._levels = [(order[a:b], parents_np[order[a:b]]) for a, b in itertools.pairwise(bounds)]
        self.floor_y = float(verts[:, 1].min())
        # Each foot's vertices (those its ankle or foot bone moves most), relative to that bone:
        # where its sole is, for the contact cue (viewer.contact).
        main_bone = dense.argmax(1)
        self._feet = []
        for bones in FOOT_BONES:
            sel = np.flatnonzero(np.isin(main_bone, bones))
            self._feet.append((main_bone[sel], verts[sel].astype(np.float64) - rest[main_bone[sel]]))
        self.height_m = float(verts[:, 1].max() - verts[:, 1].min())
        self.whole = SkinPiece(None, verts.astype(np.float32), faces.astype(np.uint32), np.arange(NUM_BONES), dense)
        # A face goes to the label most of its corners carry (ties: the first corner's); its
        # vertices are copied into that piece, so pieces meet without cracks (same skinning).
        face_labels = labels[faces]
        self._face_label = np.where(face_labels[:, 1] == face_labels[:, 2], face_labels[:, 1], face_labels[:, 0])
        self._merged: dict[frozenset[int], SkinPiece] = {}
        self.pieces: list[SkinPiece] = [
            piece for label in range(NUM_BONES) if (piece := self._piece(label, self._face_label == label)) is not None
        ]

    def _piece(self, label: int | None, face_sel: np.ndarray) -> SkinPiece | None:
        """The submesh of the selected faces (their vertices copied, bones that move them), or None."""
        sel = self.whole.faces[face_sel]
        if len(sel) == 0:
            return None
        used = np.unique(sel)
        local = np.full(self.whole.vertices.shape[0], -1, np.int64)
        local[used] = np.arange(len(used))
        w = self.whole.skin_weights[used]
        bones = np.flatnonzero(w.max(0) > 0)
        return SkinPiece(label, self.whole.vertices[used], local[sel].astype(np.uint32), bones, w[:, bones])

    def merged(self, labels: set[int] | frozenset[int]) -> SkinPiece:
        """One submesh of the faces of all joint ``labels`` (one colour, one mesh: for ghosts)."""
        key = frozenset(labels)
        if key not in self._merged:
            piece = self._piece(None, np.isin(self._face_label, sorted(key)))
            if piece is None:
                raise ValueError(f"no faces carry the joint labels {sorted(key)}")
            self._merged[key] = piece
        return self._merged[key]

    @property
    def joint_names(self) -> tuple[str, ...]:
        return SMPLX_JOINT_NAMES

    @property
    def parents(self) -> tuple[int, ...]:
        return SMPLX_PARENTS

    def soles(self, pose: RigPose) -> np.ndarray:
        """``(2, 3)`` where the left and the right foot of the first body of ``pose`` come
        nearest the ground: the middle of its lowest 3 cm, at its lowest height (metres, body frame)."""
        soles = []
        for bones, rel in self._feet:
            points = np.einsum("nij,nj->ni", pose.rotations[0, bones], rel) + pose.positions[0, bones]
            low = points[:, 1].min()
            sole = points[points[:, 1] < low + 0.03].mean(0)
            soles.append((sole[0], low, sole[2]))
        return np.array(soles)

    def pose(
        self,
        pose_body: np.ndarray | torch.Tensor,
        *,
        root_orient: np.ndarray | torch.Tensor | None = None,
        transl: np.ndarray | torch.Tensor | None = None,
    ) -> RigPose:
        """Bone poses for ``pose_body: (N, 63)`` (axis-angle), optional ``root_orient: (N, 3)``
        and ``transl: (N, 3)`` (metres). Joints only: no vertices are computed."""
        pose = np.asarray(pose_body.detach().cpu() if isinstance(pose_body, torch.Tensor) else pose_body,
                          np.float64).reshape(-1, 63)
        n = pose.shape[0]
        root = np.zeros((n, 3)) if root_orient is None else np.asarray(root_orient, np.float64).reshape(n, 3)
        # The body's FK over the 22 joints that move (fingers are baked into the wrists), in numpy:
        # for a handful of bodies per frame, torch's per-op overhead would cost 5x more.
        rot = axis_angle_to_matrix_np(np.concatenate([root, pose], 1).reshape(n, NUM_BONES, 3))
        rotations = np.empty_like(rot)
        positions = np.empty((n, NUM_BONES, 3))
        rotations[:, 0] = rot[:, 0]
        positions[:, 0] = self.rest_joints[0]
        for joints, parents in self._levels:
            parent_r = rotations[:, parents]
            rotations[:, joints] = parent_r @ rot[:, joints]
            positions[:, joints] = positions[:, parents] + (parent_r @ self._offsets[joints, :, None])[..., 0]
        if transl is not None:
            positions = positions + np.asarray(transl, np.float64).reshape(n, 1, 3)
        return RigPose(matrix_to_wxyz_np(rotations), positions, rotations)
