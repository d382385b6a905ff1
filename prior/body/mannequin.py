"""The mannequin-x wooden mannequin as a :class:`BodyModel`: the only module that touches
mannequin-x's internals."""

from __future__ import annotations

import numpy as np
import torch

from ..parts import SMPLX_JOINT_NAMES, SMPLX_PARENTS
from .labels import labels_from_weights
from .model import JOINT_NAMES, BodyModel


def load_mannequin(*, dtype: torch.dtype) -> BodyModel:
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


__all__ = ["load_mannequin"]
