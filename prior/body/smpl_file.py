"""SMPL-X, SMPL-H and SMPL model files (the licensed ones users own), read as the ``smplx``
package reads them: ``.npz`` as data, ``.pkl`` only when opted in; every problem is an
:class:`prior.errors.InputError` naming the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..files import checked_file, open_npz
from ..parts import SMPLX_PARENTS
from .kinematics import depth_order
from .labels import labels_from_weights, smplx_vertex_labels
from .model import BodyKind, BodyModel

# Model files are a few hundred MB at most (SMPL-X with 300 betas is ~ 170 MB uncompressed,
# SMPL-H 30-100 MB). The .npz limit is on what the archive unpacks to: a 2 MB file of compressed
# zeros could otherwise unpack to gigabytes.
MAX_MODEL_BYTES = 2 * 2**30
MAX_MODEL_UNPACKED_BYTES = 2**30

# (vertices, joints) of each licensed model family, used to tell them apart from the file alone.
_MODEL_SIZES: dict[tuple[int, int], BodyKind] = {(10475, 55): "smplx", (6890, 52): "smplh", (6890, 24): "smpl"}
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
    # open_npz: no pickles, what the members unpack to is limited, and each array's header must fit
    # its member, all before anything is read.
    out = {}
    with open_npz(path, max_bytes=MAX_MODEL_BYTES, max_unpacked=MAX_MODEL_UNPACKED_BYTES) as archive:
        for key in _REQUIRED_KEYS + ("hands_meanl", "hands_meanr"):
            if key in archive:
                out[key] = archive.raw(key)
    return out


def smpl_family_model(path: Path, *, num_betas: int | None, allow_pickle: bool, dtype: torch.dtype) -> BodyModel:
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
        labels = smplx_vertex_labels()
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


def find_model_file(folder: Path, gender: str) -> Path:
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


__all__ = ["MAX_MODEL_BYTES", "MAX_MODEL_UNPACKED_BYTES", "find_model_file", "smpl_family_model"]
