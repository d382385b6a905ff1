"""Exports of poses and clips that other programs read: BVH (Blender, MotionBuilder, game engines'
retargeting), glTF binary (a skinned, animated mesh: Blender, three.js, Unity, Unreal, Godot) and
the AMASS npz (the SMPL-X Blender add-on, aitviewer). One entry point for every front end:
:func:`export_bytes` (format from the file name's suffix).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..body import BodyModel
from ..data import Clip, clip_arrays
from .skeleton import Skeleton, clip_skeleton, is_z_up

FORMATS = {".bvh": "BVH motion", ".glb": "glTF binary (skinned mesh + animation)", ".npz": "AMASS SMPL-X npz"}


def export_bytes(clips: Sequence[Clip], body: BodyModel, suffix: str) -> bytes:
    """The file of ``clips`` for ``suffix`` (``.bvh``, ``.glb``, ``.npz``). One clip: one animated
    body. Several (a set of poses or samples, one clip each): BVH and npz need one skeleton, so
    they must have one frame each and become the frames of one clip; glTF places them side by side.

    Raises:
        ValueError: an unknown suffix, no clip, or clips the format cannot hold.
    """
    suffix = suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unknown export format {suffix!r}; expected {', '.join(FORMATS)}")
    if not clips:
        raise ValueError("nothing to export")
    for clip in clips:
        check_finite(clip)
    if suffix == ".glb":
        from .gltf import glb_bytes

        return glb_bytes([clip_skeleton(c, body) for c in clips], body, betas=clips[0].betas)
    clip = clips[0] if len(clips) == 1 else as_frames(clips)
    if suffix == ".bvh":
        from .bvh import bvh_bytes

        return bvh_bytes(clip_skeleton(clip, body))
    return clip_npz(clip)


def check_finite(clip: Clip) -> None:
    """Refuse (``ValueError``) a clip holding NaN or Inf: no exporter writes one."""
    for name, value in clip._per_frame().items():
        if not np.isfinite(value).all():
            raise ValueError(f"refusing to export a clip whose {name!r} contains NaN or Inf")


def clip_npz(clip: Clip) -> bytes:
    """A clip as the bytes of an AMASS SMPL-X npz (:func:`prior.data.clip_arrays`); refuses NaN/Inf."""
    check_finite(clip)
    buffer = io.BytesIO()
    np.savez(buffer, **clip_arrays(clip))
    return buffer.getvalue()


def as_frames(clips: Sequence[Clip]) -> Clip:
    """One-frame clips (a set of poses) as the frames of one clip (the first one's shape and rate)."""
    if any(c.num_frames != 1 for c in clips):
        raise ValueError("several clips go into one BVH or npz only as the frames of one clip: "
                         "each must have one frame (a set of poses)")
    fields = {}
    for name in ("pose_body", "root_orient", "trans", "hands", "jaw", "eyes", "expression"):
        values = [getattr(c, name) for c in clips]
        fields[name] = None if any(v is None for v in values) else np.concatenate(values, 0)
    return dataclasses.replace(clips[0], **fields)


def format_of(path: str | Path) -> str:
    """The export suffix of ``path`` (``.bvh``, ``.glb``, ``.npz``) or a ValueError naming the choices."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the format from {Path(path).name!r}: name it .bvh, .glb or .npz")
    return suffix


__all__ = ["FORMATS", "Skeleton", "as_frames", "check_finite", "clip_npz", "clip_skeleton", "export_bytes",
           "format_of", "is_z_up"]
