"""What the Export panel writes, built from the bodies on screen (:class:`ShownBody`).

Every function here runs on the prior worker (posed meshes need the body model's full skinning).
Meshes are in scene coordinates: metres, Y up, each body where it stands in the view.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import viser

from prior import exports as prior_exports
from prior.body import BodyModel
from prior.data import Clip, clip_arrays
from prior.errors import InputError
from prior.files import atomic_write
from prior.rotations import wxyz_to_matrix_np

from .panels.base import ShownBody

MAX_NAME_CHARS = 128


def export_path(folder: Path, name: str, suffixes: Sequence[str]) -> Path:
    """Where "Save" writes ``name``: ``folder / name``, for a plain file name (no folders, not
    hidden) ending in one of ``suffixes``; anything else is an :class:`InputError`.

    The viewer writes files only here: a tab can name a file, never a place (so no page can make
    the server overwrite a file elsewhere, whatever the name says)."""
    shown = name if len(name) <= 40 else name[:40] + "..."
    if not name or name != name.strip() or len(name) > MAX_NAME_CHARS:
        raise InputError(f"{shown!r} is not a file name (1 to {MAX_NAME_CHARS} characters, no spaces around it)")
    if any(c in name for c in '/\\\0') or any(ord(c) < 32 for c in name) or name.startswith("."):
        raise InputError(f"{shown!r} is not a plain file name: files are saved in the export folder {folder}, "
                         "so give a name without folders (and not starting with '.')")
    if Path(name).suffix.lower() not in suffixes:
        raise InputError(f"{shown!r}: expected a file name ending in {', '.join(suffixes)}")
    return folder / name


def save_export(folder: Path, name: str, data: bytes, suffixes: Sequence[str]) -> Path:
    """Write ``data`` to :func:`export_path` atomically (the folder is made when first used)."""
    path = export_path(folder, name, suffixes)
    try:
        with atomic_write(path) as f:
            f.write(data)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", path) from None
    return path


def clip_npz(clip: Clip) -> bytes:
    """A clip as the bytes of an AMASS SMPL-X npz (:func:`prior.exports.clip_npz`); NaN/Inf is an
    :class:`InputError` (a notification in the tab)."""
    try:
        return prior_exports.clip_npz(clip)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def shown_vertices(body: BodyModel, shown: Sequence[ShownBody]) -> np.ndarray:
    """``(N, V, 3)`` the shown bodies' meshes (the body model's own skinning, pose correctives
    included) placed as they are in the scene."""

    def stack(key: str) -> torch.Tensor:  # a missing root or translation is zero
        rows = [np.zeros(3) if getattr(b, key) is None else getattr(b, key) for b in shown]
        return torch.as_tensor(np.stack(rows), dtype=torch.float32)

    given = next((b.betas for b in shown if b.betas is not None), None)
    betas = None if given is None else torch.as_tensor(  # a body without a shape has the mean shape (zeros)
        np.stack([np.zeros_like(given) if b.betas is None else b.betas for b in shown]), dtype=torch.float32)
    with torch.inference_mode():
        hands = body.hand_mean[None].expand(len(shown), -1) if body.has_hands else None
        verts = body.forward(stack("pose_body"), global_orient=stack("root_orient"), transl=stack("transl"),
                             betas=betas, hand_pose=hands).vertices.numpy()
    turn = wxyz_to_matrix_np(np.stack([np.asarray(b.wxyz, np.float64) for b in shown]))  # (N, 3, 3)
    shift = np.stack([np.asarray(b.position, np.float64) for b in shown])
    return (verts @ turn.transpose(0, 2, 1) + shift[:, None]).astype(np.float32)


def poses_npz(shown: Sequence[ShownBody]) -> bytes:
    """The shown bodies as frames of an AMASS SMPL-X stageii npz (``body_names`` names them); they
    share one shape (AMASS's ``betas``)."""
    poses = np.stack([b.pose_body for b in shown]).astype(np.float32)
    root = np.stack([np.zeros(3) if b.root_orient is None else b.root_orient for b in shown]).astype(np.float32)
    trans = None
    if any(b.transl is not None for b in shown):
        trans = np.stack([np.zeros(3) if b.transl is None else b.transl for b in shown]).astype(np.float32)
    shapes = {None if b.betas is None else tuple(np.asarray(b.betas, np.float32).tolist()) for b in shown}
    if len(shapes) > 1:
        raise InputError("the bodies on screen have different shapes (betas); an AMASS file holds one")
    betas = next(iter(shapes))
    buf = io.BytesIO()
    np.savez(buf, **clip_arrays(Clip(pose_body=poses, root_orient=root, trans=trans,
                                     betas=None if betas is None else np.array(betas, np.float32))),
             body_names=np.array([b.name for b in shown]))
    return buf.getvalue()


def animation_clips(body: BodyModel, motion: Clip | None, shown: Sequence[ShownBody]) -> list[Clip]:
    """What an animation export (BVH, glTF, AMASS npz) writes: the clip on screen, or else each
    body on screen as a one-frame clip; hands as the screen shows them (the body's relaxed
    ``hand_mean`` where the pose has none)."""
    hands = body.hand_mean.cpu().numpy().astype(np.float32) if body.has_hands else None

    def with_hands(clip: Clip) -> Clip:
        if hands is None or clip.hands is not None:
            return clip
        return dataclasses.replace(clip, hands=np.repeat(hands[None], clip.num_frames, 0))

    if motion is not None:
        return [with_hands(motion)]
    def row(value: np.ndarray | None) -> np.ndarray | None:
        return None if value is None else np.asarray(value, np.float32)[None]

    return [with_hands(Clip(pose_body=row(b.pose_body), root_orient=row(b.root_orient) if b.root_orient is not None
                            else np.zeros((1, 3), np.float32), trans=row(b.transl),
                            betas=None if b.betas is None else np.asarray(b.betas, np.float32))) for b in shown]


def mesh_file(body: BodyModel, shown: ShownBody, fmt: str) -> bytes:
    """One shown body's mesh as ``.obj`` or ``.ply`` bytes (scene coordinates)."""
    import trimesh  # 0.7 s of imports: paid at the first mesh export, not at start-up

    mesh = trimesh.Trimesh(shown_vertices(body, [shown])[0], body.faces.numpy(), process=False)
    data = mesh.export(file_type=fmt)
    return data.encode() if isinstance(data, str) else data


def scene_recording(body: BodyModel, shown: Sequence[ShownBody]) -> bytes:
    """A ``.viser`` file of the shown bodies as meshes on a ground grid, for viser's offline player.

    viser serialises the *server-wide* scene while this app draws each tab in its own client
    scene, so the bodies are drawn into a private, throw-away server on a free local port."""
    verts = shown_vertices(body, shown)
    faces = body.faces.numpy()
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        server.scene.set_up_direction("+y")
        server.scene.add_grid("/ground", width=20.0, height=20.0, plane="xz", cell_size=0.25)
        for b, v in zip(shown, verts):
            server.scene.add_mesh_simple(f"/{b.name}", v, faces, color=b.color, opacity=b.opacity)
        return server.get_scene_serializer().serialize()
    finally:
        server.stop()
