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

Modules, as ``smplx`` splits them: :mod:`.kinematics` (pure FK and skinning kernels),
:mod:`.model` (:class:`BodyModel`), :mod:`.smpl_file` (reading SMPL-family files),
:mod:`.mannequin` (the mannequin-x adapter), :mod:`.labels` (vertex labels).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..files import user_path
from .kinematics import depth_order, forward_kinematics
from .labels import (
    SEGMENTATION_TO_JOINT,
    SMPLX_LABELS_ASSET,
    fold_to_body_joint,
    labels_from_weights,
    smplx_labels_from_segmentation,
    write_smplx_labels_asset,
)
from .mannequin import load_mannequin
from .model import JOINT_NAMES, NUM_HAND_JOINTS, BodyKind, BodyModel, BodyOutput
from .smpl_file import MAX_MODEL_BYTES, find_model_file, smpl_family_model


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
        return load_mannequin(dtype=dtype).to(device)
    path = user_path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    if path.is_dir():
        path = find_model_file(path, gender)
    return smpl_family_model(path, num_betas=num_betas, allow_pickle=allow_pickle, dtype=dtype).to(device)


__all__ = [
    "JOINT_NAMES",
    "MAX_MODEL_BYTES",
    "NUM_HAND_JOINTS",
    "SEGMENTATION_TO_JOINT",
    "SMPLX_LABELS_ASSET",
    "BodyKind",
    "BodyModel",
    "BodyOutput",
    "depth_order",
    "fold_to_body_joint",
    "forward_kinematics",
    "labels_from_weights",
    "load_body_model",
    "smplx_labels_from_segmentation",
    "write_smplx_labels_asset",
]
