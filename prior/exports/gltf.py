"""glTF 2.0 binary (``.glb``): skinned, animated bodies that Blender, three.js, Unity, Unreal and
Godot read.

What the file holds: one mesh (the body's rest vertices at the clip's betas, normals, four joints
and weights per vertex), and per skeleton a ``body_<i>`` node standing it in the scene (side by side
along +X), one node per joint under it (translation: the rest offset, rotation: identity at rest),
a skin (inverse bind matrices: the inverse of each joint's rest transform under the body node) and
a node that draws the mesh with that skin. One animation drives every body: per joint a LINEAR
rotation channel (``local_rotations`` as xyzw quaternions at ``frame / fps`` seconds), the root a
translation channel too. The bodies share the mesh and its inverse bind matrices, so a set of
poses costs a few kilobytes per body on top of one mesh.

glTF skins by linear blend skinning only: SMPL-X's pose correctives (``posedirs``) have no glTF
equivalent and are left out, so an SMPL-family body is the model's skinning without them (the
mannequin has none: its file reproduces :meth:`BodyModel.forward` exactly).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np
import torch

from ..body import BodyModel
from ..rotations import matrix_to_wxyz_np
from .skeleton import Skeleton

ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TRIANGLES = 4
_COMPONENT_TYPES = {np.dtype(np.uint8): 5121, np.dtype(np.uint16): 5123, np.dtype(np.uint32): 5125,
                    np.dtype(np.float32): 5126}
_ELEMENT_TYPES = {1: "SCALAR", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
REST_TOLERANCE_M = 1e-5
"""How far a skeleton's rest joints may lie from the body model's at the given betas."""


class _Binary:
    """The GLB's binary chunk as it is written, with the bufferViews and accessors over it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, data: np.ndarray, *, target: int | None = None, normalized: bool = False,
            bounds: bool = False) -> int:
        """One accessor over ``data (N, C)`` in a bufferView of its own; returns its index."""
        return self.stack(data[None], target=target, normalized=normalized, bounds=bounds)[0]

    def stack(self, data: np.ndarray, *, target: int | None = None, normalized: bool = False,
              bounds: bool = False) -> list[int]:
        """``data (K, N, C)`` as ``K`` accessors of ``N`` elements over one bufferView (what an
        animation's many same-sized outputs share); ``bounds`` adds the min/max glTF requires of
        positions and animation inputs."""
        data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
        raw = data.tobytes()
        view: dict = {"buffer": 0, "byteOffset": self.size, "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        self.parts += [raw, bytes(-len(raw) % 4)]  # every bufferView starts 4-byte aligned
        self.size += len(raw) + (-len(raw) % 4)
        step = data[0].nbytes
        out = []
        for k, block in enumerate(data):
            accessor: dict = {"bufferView": len(self.views) - 1, "componentType": _COMPONENT_TYPES[data.dtype],
                              "count": int(block.shape[0]), "type": _ELEMENT_TYPES[block.shape[1]]}
            if k:
                accessor["byteOffset"] = k * step
            if normalized:
                accessor["normalized"] = True
            if bounds:
                accessor["min"], accessor["max"] = block.min(0).tolist(), block.max(0).tolist()
            self.accessors.append(accessor)
            out.append(len(self.accessors) - 1)
        return out

    def chunk(self) -> bytes:
        return b"".join(self.parts)


def glb_bytes(skeletons: Sequence[Skeleton], body: BodyModel, *, betas: np.ndarray | None = None,
              spacing_m: float = 1.0) -> bytes:
    """A GLB of ``skeletons`` skinning ``body``'s mesh: one skeleton (a clip, or one pose) is one
    animated body; several are several bodies, body ``i`` moved ``i * spacing_m`` metres along +X,
    all played by one animation (each at its own frame rate; a shorter one holds its last frame).

    Args:
        skeletons: from :func:`~prior.exports.skeleton.clip_skeleton` with this ``body``, Y up.
        body: the body model whose mesh and skin weights are written.
        betas: ``(NB,)`` the shape every skeleton was posed at (None: the mean shape); the mesh is
            ``body.rest_vertices(betas)``.
        spacing_m: the distance between neighbouring bodies.

    Raises:
        ValueError: no skeleton, a skeleton of another body model or shape (``betas``), a
            non-finite value, or a bad frame rate or spacing.
    """
    betas = _check(skeletons, body, betas, spacing_m)
    binary = _Binary()
    with torch.no_grad():
        vertices = body.rest_vertices(betas).double().cpu().numpy()
    doc: dict = {
        "asset": {"version": "2.0", "generator": "dposer-view prior.exports.gltf"},
        "scene": 0,
        "scenes": [{"nodes": []}],
        "nodes": [],
        "meshes": [_mesh(binary, body, vertices)],
        "materials": [{"name": "body", "pbrMetallicRoughness": {
            "baseColorFactor": [0.8, 0.8, 0.8, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.8}}],
        "skins": [],
        "animations": [{"name": "motion", "samplers": [], "channels": []}],
    }
    inverse_binds = _inverse_binds(binary, skeletons[0].rest)
    times: dict[tuple[int, float], int] = {}
    for index, skeleton in enumerate(skeletons):
        _add_body(doc, binary, skeleton, index, index * spacing_m, inverse_binds, times)
    doc["bufferViews"], doc["accessors"] = binary.views, binary.accessors
    chunk = binary.chunk()
    doc["buffers"] = [{"byteLength": len(chunk)}]
    return _glb(doc, chunk)


def _check(skeletons: Sequence[Skeleton], body: BodyModel, betas: np.ndarray | None,
           spacing_m: float) -> torch.Tensor | None:
    """Refuse what the file cannot hold faithfully; ``betas`` as the tensor the body model takes."""
    if len(skeletons) == 0:
        raise ValueError("no skeleton to export")
    if not np.isfinite(spacing_m):
        raise ValueError(f"spacing_m must be a finite number of metres, got {spacing_m}")
    if betas is not None:
        betas = torch.as_tensor(np.asarray(betas, dtype=np.float64))
        if betas.ndim != 1 or not torch.isfinite(betas).all():
            raise ValueError(f"betas must be one finite shape vector (NB,), got shape {tuple(betas.shape)}")
    with torch.no_grad():
        rest = body.rest_joints(betas).double().cpu().numpy()
    parents = body.parents.cpu().numpy()
    for i, s in enumerate(skeletons):
        label = f"skeleton {i}"
        frames = s.local_rotations.shape[0]
        if tuple(s.names) != body.joint_names or not np.array_equal(s.parents, parents):
            raise ValueError(f"{label} has {len(s.names)} joints that are not the {body.kind} body model's "
                             f"{body.num_joints}: make it with clip_skeleton(clip, body) for this body")
        shapes = (s.local_rotations.shape, s.root_positions.shape)
        if frames == 0 or shapes != ((frames, len(s.names), 3, 3), (frames, 3)):
            raise ValueError(f"{label} has rotations {s.local_rotations.shape} and root positions "
                             f"{s.root_positions.shape}: expected (T >= 1, {len(s.names)}, 3, 3) and (T, 3)")
        if not (np.isfinite(s.local_rotations).all() and np.isfinite(s.root_positions).all()):
            raise ValueError(f"{label} has NaN or Inf rotations or positions")
        if not (np.isfinite(s.fps) and s.fps > 0):
            raise ValueError(f"{label} has frame rate {s.fps}: expected a positive number")
        error = float(np.abs(s.rest - rest).max())
        if not error <= REST_TOLERANCE_M:
            raise ValueError(f"{label}'s rest joints lie up to {error * 1000:.1f} mm from the body model's at "
                             "these betas: pass the betas the clips were posed with")
    return betas


def _mesh(binary: _Binary, body: BodyModel, vertices: np.ndarray) -> dict:
    """The body's one triangle primitive: rest ``vertices (V, 3)``, normals, top-4 skin."""
    faces = body.faces.cpu().numpy()
    joints, weights = _skin_attributes(body)
    attributes = {
        "POSITION": binary.add(vertices.astype(np.float32), target=ARRAY_BUFFER, bounds=True),
        "NORMAL": binary.add(vertex_normals(vertices, faces).astype(np.float32), target=ARRAY_BUFFER),
        "JOINTS_0": binary.add(joints, target=ARRAY_BUFFER),
        "WEIGHTS_0": binary.add(weights, target=ARRAY_BUFFER, normalized=True),
    }
    # 65535 is the primitive restart value of 16-bit indices, so it may not be an index.
    index_type = np.uint16 if len(vertices) < 65535 else np.uint32
    indices = binary.add(faces.reshape(-1, 1).astype(index_type), target=ELEMENT_ARRAY_BUFFER)
    return {"name": "body", "primitives": [{"attributes": attributes, "indices": indices, "material": 0,
                                            "mode": TRIANGLES}]}


def _inverse_binds(binary: _Binary, rest: np.ndarray) -> int:
    """The accessor of every skin's inverse bind matrices: the inverse of each joint's rest transform
    ``rest (J, 3)`` under its body node (the rotations are identity at rest, so a translation by
    ``-rest``), column-major as glTF stores matrices. One for every body: each one's shift is on its
    body node."""
    matrices = np.tile(np.eye(4), (len(rest), 1, 1))
    matrices[:, :3, 3] = -rest
    return binary.add(matrices.transpose(0, 2, 1).reshape(-1, 16).astype(np.float32))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(V, 3)`` unit normals of a triangle mesh, each the area-weighted mean of its faces'
    (a vertex on no face gets +Y)."""
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # 2 x area
    sums = np.stack([np.bincount(faces.ravel(), np.repeat(face_normals[:, k], 3), len(vertices))
                     for k in range(3)], 1)
    length = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.where(length > 0, sums / np.maximum(length, 1e-30), [0.0, 1.0, 0.0])


def _skin_attributes(body: BodyModel) -> tuple[np.ndarray, np.ndarray]:
    """``JOINTS_0 (V, 4)`` (uint8, or uint16 past 256 joints) and ``WEIGHTS_0 (V, 4)`` as normalized
    uint16 that sum to exactly 65535 (largest remainders round up); a joint slot without weight
    holds joint 0, as the glTF validator expects."""
    indices, weights = body.skin_topk(4)
    indices, weights = indices.cpu().numpy(), weights.double().cpu().numpy()
    scaled = weights / weights.sum(1, keepdims=True) * 65535
    quantized = np.floor(scaled)
    short = np.rint(65535 - quantized.sum(1)).astype(np.int64)  # 0..3 units to hand out
    rank = np.argsort(np.argsort(quantized - scaled, axis=1, kind="stable"), axis=1)  # 0: largest remainder
    quantized += rank < short[:, None]
    quantized = quantized.astype(np.uint16)
    joint_type = np.uint8 if body.num_joints <= 256 else np.uint16
    return np.where(quantized > 0, indices, 0).astype(joint_type), quantized


def _add_body(doc: dict, binary: _Binary, skeleton: Skeleton, index: int, shift_x_m: float,
              inverse_binds: int, times: dict[tuple[int, float], int]) -> None:
    """Body ``index``'s nodes (``body_<index>``, its joints, its mesh node), skin and channels."""
    nodes = doc["nodes"]
    base = len(nodes)  # the body node; joint j is node base + 1 + j
    joint_nodes = [base + 1 + j for j in range(len(skeleton.names))]
    placement: dict = {"name": f"body_{index}", "children": [joint_nodes[0]]}
    if shift_x_m:
        placement["translation"] = [float(shift_x_m), 0.0, 0.0]
    nodes.append(placement)
    children: list[list[int]] = [[] for _ in skeleton.names]
    for j, parent in enumerate(skeleton.parents[1:], start=1):
        children[parent].append(joint_nodes[j])
    for name, offset, kids in zip(skeleton.names, skeleton.offsets, children):
        node: dict = {"name": name, "translation": offset.tolist()}
        if kids:
            node["children"] = kids
        nodes.append(node)
    nodes.append({"name": f"body_{index}_mesh", "mesh": 0, "skin": len(doc["skins"])})
    doc["skins"].append({"name": f"body_{index}", "joints": joint_nodes, "skeleton": joint_nodes[0],
                         "inverseBindMatrices": inverse_binds})
    doc["scenes"][0]["nodes"] += [base, len(nodes) - 1]  # the mesh node is a root, not under a joint
    _add_channels(doc["animations"][0], binary, skeleton, joint_nodes, times)


def _add_channels(animation: dict, binary: _Binary, skeleton: Skeleton, joint_nodes: list[int],
                  times: dict[tuple[int, float], int]) -> None:
    """A rotation channel per joint and a translation channel for the root; key times shared by
    every body with the same frame count and rate."""
    frames = skeleton.num_frames
    key = (frames, skeleton.fps)
    if key not in times:
        seconds = (np.arange(frames) / skeleton.fps).astype(np.float32)[:, None]
        times[key] = binary.add(seconds, bounds=True)
    rotations = binary.stack(quaternions_xyzw(skeleton.local_rotations).transpose(1, 0, 2))
    translation = binary.add(skeleton.root_positions.astype(np.float32))  # the body node is at the origin + shift
    targets = [(node, "rotation", out) for node, out in zip(joint_nodes, rotations)]
    for node, path, output in targets + [(joint_nodes[0], "translation", translation)]:
        animation["channels"].append({"sampler": len(animation["samplers"]), "target": {"node": node, "path": path}})
        animation["samplers"].append({"input": times[key], "output": output, "interpolation": "LINEAR"})


def quaternions_xyzw(rotations: np.ndarray) -> np.ndarray:
    """``(T, J, 4)`` float32 unit quaternions (x, y, z, w, glTF's order) of ``rotations (T, J, 3, 3)``,
    each frame's on the same side as the previous one's (readers slerp between keys as given, so a
    sign flip would spin the joint the long way round), the first with ``w >= 0``."""
    q = matrix_to_wxyz_np(rotations)[..., [1, 2, 3, 0]]
    q[0] *= np.where(q[0, :, 3:] < 0, -1.0, 1.0)
    flips = np.where(np.sum(q[1:] * q[:-1], -1) < 0, -1.0, 1.0)
    q[1:] *= np.cumprod(flips, 0)[..., None]
    return q.astype(np.float32)


def _glb(doc: dict, binary: bytes) -> bytes:
    """The GLB container: a 12-byte header, the JSON chunk (padded with spaces) and the binary
    chunk (already 4-byte aligned), little-endian."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(text), b"JSON"), text,
                     struct.pack("<I4s", len(binary), b"BIN\0"), binary])


__all__ = ["glb_bytes", "quaternions_xyzw", "vertex_normals"]
