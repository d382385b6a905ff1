"""Synthetic SMPL-X / SMPL-H / SMPL model files in the exact layouts the ``smplx`` package reads.

The real model files are licensed and never in the repository, so tests and benchmarks write
stand-ins with the right keys, shapes and dtypes and random-but-sane values: a skeleton at
SMPL-X's rest joints (from mannequin-x's SMPL-X calibration), vertices scattered around the
bones, skin weights on each vertex's joint and its ancestors, small shape and pose
blend shapes. Geometry is not a human body; only the maths is exercised.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

SMPLX_PARENTS_FULL = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)
SIZES = {"smplx": (10475, 20908), "smplh": (6890, 13776), "smpl": (6890, 13776)}


def _parents(kind: str) -> list[int]:
    body = list(SMPLX_PARENTS_FULL[:22])
    if kind == "smplx":
        return list(SMPLX_PARENTS_FULL)
    if kind == "smpl":
        return body + [20, 21]
    # SMPL-H: SMPL-X without jaw and eyes, finger indices shifted down by 3.
    return body + [p if p < 22 else p - 3 for p in SMPLX_PARENTS_FULL[25:]]


def _rest_joints(kind: str) -> np.ndarray:
    from mannequin._io import load_calibration

    rest = load_calibration().joint_rest  # (54, 3): SMPL-X body 0..21, L_Hand, R_Hand, 30 fingers
    body, hands, fingers = rest[:22], rest[22:24], rest[24:]
    if kind == "smpl":
        return np.concatenate([body, hands])
    if kind == "smplh":
        return np.concatenate([body, fingers])
    head = body[15]
    face = head + np.array([[0.0, -0.02, 0.05], [0.03, 0.05, 0.08], [-0.03, 0.05, 0.08]])
    return np.concatenate([body, face, fingers])


def _local_faces(owner: np.ndarray, along: np.ndarray, num_faces: int) -> np.ndarray:
    """Faces joining vertices that are neighbours along the same bone: small triangles, so the
    mesh draws quickly in a software-rendered browser (random faces would span the whole body)."""
    order = np.lexsort((along, owner))
    k = np.arange(num_faces) % (len(order) - 2)
    return np.stack([order[k], order[k + 1], order[k + 2]], 1).astype(np.uint32)


def synthetic_model_arrays(kind: str, *, seed: int = 0, num_shape: int | None = None) -> dict[str, np.ndarray]:
    """Arrays of a synthetic ``kind`` ("smplx", "smplh", "smpl") model file.

    ``num_shape`` is the number of ``shapedirs`` columns (SMPL-X: 400 = 300 shape + 100
    expression, as in SMPL-X v1.1; SMPL-H: 16, as AMASS's; SMPL: 10).
    """
    rng = np.random.default_rng(seed)
    num_vertices, num_faces = SIZES[kind]
    parents = _parents(kind)
    joints = _rest_joints(kind)
    num_joints = len(parents)
    num_shape = num_shape or {"smplx": 400, "smplh": 16, "smpl": 10}[kind]

    # Every joint owns a group of vertices around the bone to its first child.
    owner = np.concatenate([np.arange(num_joints), rng.integers(0, num_joints, num_vertices - num_joints)])
    child = {p: j for j, p in reversed(list(enumerate(parents))) if p >= 0}
    tip = np.array([joints[child.get(j, j)] for j in range(num_joints)])
    along = rng.uniform(0, 1, (num_vertices, 1))
    v_template = joints[owner] + along * (tip[owner] - joints[owner]) + rng.normal(0, 0.02, (num_vertices, 3))

    # The regressor averages each joint's vertex group, shifted so that it lands on the joint.
    regressor = np.zeros((num_joints, num_vertices))
    for j in range(num_joints):
        group = owner == j
        v_template[group] += joints[j] - v_template[group].mean(0)
        regressor[j, group] = 1.0 / group.sum()

    # Skin: the owner, its parent and grandparent, random convex weights.
    # (The root's parent is taken as the root itself, so its weights simply add up there.)
    up = np.maximum(np.array(parents), 0)
    chain = np.stack([owner, up[owner], up[up[owner]]], 1)
    weights = np.zeros((num_vertices, num_joints))
    np.add.at(weights, (np.arange(num_vertices)[:, None], chain), rng.dirichlet((6.0, 3.0, 1.0), num_vertices))

    kintree = np.stack([np.array(parents), np.arange(num_joints)]).astype(np.int64)
    kintree[0, 0] = 4294967295  # the real files store the root's parent as uint32 -1
    arrays: dict[str, np.ndarray] = {
        "v_template": v_template,
        "f": _local_faces(owner, along[:, 0], num_faces),
        "shapedirs": 0.004 * rng.standard_normal((num_vertices, 3, num_shape), dtype=np.float32),
        "posedirs": 0.002 * rng.standard_normal((num_vertices, 3, 9 * (num_joints - 1)), dtype=np.float32),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": kintree,
    }
    if kind in ("smplx", "smplh"):
        arrays |= {
            "hands_meanl": rng.normal(0, 0.2, 45),
            "hands_meanr": rng.normal(0, 0.2, 45),
            "hands_componentsl": np.linalg.qr(rng.normal(size=(45, 45)))[0],
            "hands_componentsr": np.linalg.qr(rng.normal(size=(45, 45)))[0],
        }
    if kind == "smplx":
        arrays |= {
            "lmk_faces_idx": rng.integers(0, num_faces, 51),
            "lmk_bary_coords": rng.dirichlet((1.0, 1.0, 1.0), 51),
            "dynamic_lmk_faces_idx": rng.integers(0, num_faces, (79, 17)),
            "dynamic_lmk_bary_coords": rng.dirichlet((1.0, 1.0, 1.0), (79, 17)),
        }
    return arrays


def write_synthetic_model(path: str | Path, kind: str, *, seed: int = 0, num_shape: int | None = None) -> Path:
    """Write a synthetic model: ``.npz`` (as SMPL-X and AMASS's SMPL-H ship) or ``.pkl`` (as SMPL).

    Real SMPL-X ``.npz`` files also carry pickled dicts (``joint2num``, ``part2num``); one is
    written too, so readers that refuse pickles must skip it.
    """
    path = Path(path)
    arrays = synthetic_model_arrays(kind, seed=seed, num_shape=num_shape)
    if path.suffix == ".pkl":
        with path.open("wb") as f:
            pickle.dump(arrays, f)
    else:
        part2num = np.empty((), dtype=object)
        part2num[()] = {"global": 0, "head": 1}
        np.savez(path, part2num=part2num, **arrays)
    return path
