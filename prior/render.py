"""Offscreen rendering: bodies drawn to images and videos on the CPU, on any server (pure numpy: no
browser, no GPU), the way the viewer shows them.

A small z-buffer rasteriser (:func:`rasterize`, :func:`render`), a soft contact shadow
(:func:`contact_shadow`) and the viewer's scene: tan bodies on a light checkered floor that fades
into a soft sky, seen from the front and a little above by one fixed camera that frames every frame
of the render. :func:`render_frames` (a clip), :func:`render_poses` (a set of poses side by side)
and :func:`render_trajectory` (``dposer generate --trajectory``'s replay) yield the frames;
:func:`write_render` writes them as a PNG, an MP4 or a GIF, atomically.

Pixel convention (the same as :meth:`prior.camera.Camera.project`'s continuous coordinates): pixel
``(u, v)`` (column, row) covers ``[u, u + 1) x [v, v + 1)`` and its centre is at ``(u + 0.5,
v + 0.5)``; a pixel is drawn by a triangle when its centre lies inside the projected triangle. So
a point that ``camera.project`` sends to ``(x, y)`` lands in pixel ``(floor(x), floor(y))``, and
with the default principal point (the image centre) the optical axis meets the corner between the
four central pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .body import BodyModel
from .camera import Camera
from .data import DEFAULT_FPS, MAX_FILE_BYTES, MAX_POSE_SET, Clip
from .errors import InputError
from .exports.skeleton import display_turn
from .exports.video import IMAGE_FORMATS, VIDEO_FORMATS, VideoEncoder, png_bytes, source_frames
from .files import ANGLES, atomic_write, checked_floats, open_npz
from .progress import CancelFlag, Progress, ProgressFn, check_cancel

NEAR = 0.05
"""Metres: a triangle with any vertex nearer than this to the camera plane is dropped (no clipping)."""

DEFAULT_LIGHT = (0.35, -0.6, -1.0)
"""Camera coordinates (x right, y down, z forward): the direction from the surface towards the key
light: above, a little right of and behind the camera."""

_CHUNK_CELLS = 1 << 20  # pixel tests per vectorised batch (memory ~ 100 bytes a cell)
_TILE = 128  # larger triangles are rasterised in tiles of this many pixels square
_SIZES = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128])  # bbox sides, rounded up


@dataclass(frozen=True)
class Fragments:
    """What :func:`rasterize` finds at each pixel of an ``H x W`` image."""

    face: np.ndarray
    """``(H, W)`` int64: the nearest triangle's index into ``faces``, -1 where none covers the pixel."""
    bary: np.ndarray
    """``(H, W, 3)`` float64: perspective-correct barycentric weights of its three vertices (0 where empty)."""
    depth: np.ndarray
    """``(H, W)`` float64: camera depth (metres, camera z) of the surface, ``inf`` where empty."""

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool: pixels some triangle covers."""
        return self.face >= 0


def _to_camera(vertices: np.ndarray, camera: Camera) -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    return v @ camera.rotation.T + camera.translation


def _rasterize_sparse(
    vertices: np.ndarray, faces: np.ndarray, camera: Camera, scale: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The covered pixels only: ``(pixel index v * W + u, face, bary (N, 3), depth)``."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    width, height = camera.width * scale, camera.height * scale
    focal = camera.focal * scale
    cx, cy = (c * scale for c in camera.center)
    pc = _to_camera(vertices, camera)
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = focal * pc[:, 0] / z + cx
        y = focal * pc[:, 1] / z + cy
    zt = z[faces]
    xt, yt = x[faces], y[faces]
    keep = (zt >= NEAR).all(1) & np.isfinite(xt).all(1) & np.isfinite(yt).all(1)
    face_ids = np.flatnonzero(keep)
    xt, yt, zt = xt[keep], yt[keep], zt[keep]

    # Pixels whose centre u + 0.5 lies in [min, max]: u in [ceil(min - 0.5), floor(max - 0.5)].
    u0 = np.maximum(np.ceil(xt.min(1) - 0.5), 0)
    u1 = np.minimum(np.floor(xt.max(1) - 0.5), width - 1)
    v0 = np.maximum(np.ceil(yt.min(1) - 0.5), 0)
    v1 = np.minimum(np.floor(yt.max(1) - 0.5), height - 1)
    (x0, x1, x2), (y0, y1, y2) = xt.T, yt.T
    det = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)  # twice the signed area
    ok = (u1 >= u0) & (v1 >= v0) & (np.abs(det) > 1e-12)
    face_ids, det = face_ids[ok], det[ok]
    u0, u1, v0, v1 = u0[ok].astype(np.int64), u1[ok].astype(np.int64), v0[ok].astype(np.int64), v1[ok].astype(np.int64)
    x0, x1, x2, y0, y1, y2 = (a[ok] for a in (x0, x1, x2, y0, y1, y2))
    inv_z = 1.0 / zt[ok]
    if not len(face_ids):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0)
    # Large triangles are cut into tiles of at most _TILE x _TILE pixels (one entry per tile);
    # ``entry`` maps an entry to its triangle.
    ntx, nty = (u1 - u0) // _TILE + 1, (v1 - v0) // _TILE + 1
    entry = np.repeat(np.arange(len(u0)), ntx * nty)
    k = np.arange(len(entry)) - np.repeat(np.cumsum(ntx * nty) - ntx * nty, ntx * nty)
    tu0, tv0 = u0[entry] + (k % ntx[entry]) * _TILE, v0[entry] + (k // ntx[entry]) * _TILE
    tu1, tv1 = np.minimum(tu0 + _TILE - 1, u1[entry]), np.minimum(tv0 + _TILE - 1, v1[entry])
    u0, v0, u1, v1 = tu0, tv0, tu1, tv1
    x0, x1, x2, y0, y1, y2, det = (a[entry] for a in (x0, x1, x2, y0, y1, y2, det))
    # Barycentric weights as affine functions of the pixel centre relative to the tile's corner:
    # l0 = a0 du + b0 dv + c0, l1 likewise, l2 = 1 - l0 - l1.
    ox, oy = u0 + 0.5, v0 + 0.5
    a0, b0 = (y1 - y2) / det, (x2 - x1) / det
    c0 = ((y1 - y2) * (ox - x2) + (x2 - x1) * (oy - y2)) / det
    a1, b1 = (y2 - y0) / det, (x0 - x2) / det
    c1 = ((y2 - y0) * (ox - x2) + (x0 - x2) * (oy - y2)) / det

    # Group triangles by (rounded-up) bounding-box size and test each group's pixels in one go.
    bw = np.searchsorted(_SIZES, u1 - u0 + 1)
    bh = np.searchsorted(_SIZES, v1 - v0 + 1)
    key = bw * len(_SIZES) + bh
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    pix_parts, iz_parts, idx_parts, l0_parts, l1_parts = [], [], [], [], []
    eps = -1e-9
    for group in np.split(order, bounds):
        gw, gh = int(_SIZES[bw[group[0]]]), int(_SIZES[bh[group[0]]])
        du = np.arange(gw, dtype=np.float64)
        dv = np.arange(gh, dtype=np.float64)
        step = max(1, _CHUNK_CELLS // (gw * gh))
        for start in range(0, len(group), step):
            g = group[start:start + step]
            px, py = du[None, None, :], dv[None, :, None]
            l0 = a0[g, None, None] * px + b0[g, None, None] * py + c0[g, None, None]
            l1 = a1[g, None, None] * px + b1[g, None, None] * py + c1[g, None, None]
            l2 = 1.0 - l0 - l1
            inside = (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
            inside &= (du[None, None, :] <= (u1[g] - u0[g])[:, None, None])
            inside &= (dv[None, :, None] <= (v1[g] - v0[g])[:, None, None])
            t, r, c = np.nonzero(inside)
            if not len(t):
                continue
            ent = g[t]
            tri = entry[ent]
            w0, w1 = l0[t, r, c], l1[t, r, c]
            w2 = 1.0 - w0 - w1
            iz = w0 * inv_z[tri, 0] + w1 * inv_z[tri, 1] + w2 * inv_z[tri, 2]
            pix_parts.append((v0[ent] + r) * width + (u0[ent] + c))
            iz_parts.append(iz)
            idx_parts.append(tri)
            l0_parts.append(w0)
            l1_parts.append(w1)

    if not pix_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0)
    pix, iz, tri = np.concatenate(pix_parts), np.concatenate(iz_parts), np.concatenate(idx_parts)
    w0, w1 = np.concatenate(l0_parts), np.concatenate(l1_parts)
    # The nearest fragment (largest 1/z) of each pixel; ties go to the lower triangle index.
    best = np.lexsort((tri, -iz, pix))
    first = best[np.r_[True, pix[best[1:]] != pix[best[:-1]]]]
    t = tri[first]
    screen = np.stack([w0[first], w1[first], 1.0 - w0[first] - w1[first]], 1)
    persp = screen * inv_z[t]  # perspective-correct weights: (l_i / z_i) / sum_j (l_j / z_j)
    return pix[first], face_ids[t], persp / persp.sum(1, keepdims=True), 1.0 / iz[first]


def rasterize(vertices: np.ndarray, faces: np.ndarray, camera: Camera, *, scale: int = 1) -> Fragments:
    """Z-buffer the triangles ``faces (F, 3)`` of ``vertices (V, 3)`` (world metres) through ``camera``.

    ``scale`` > 1 rasterises at ``scale`` times the resolution (for supersampling): pixel ``(u, v)``
    of the result then covers ``[u, u + 1) / scale`` of the camera's pixels. Triangles with a vertex
    nearer than :data:`NEAR` metres are dropped; both sides of a triangle are drawn.
    """
    width, height = camera.width * scale, camera.height * scale
    pix, face, bary, depth = _rasterize_sparse(vertices, faces, camera, scale)
    face_map = np.full(height * width, -1, dtype=np.int64)
    bary_map = np.zeros((height * width, 3))
    depth_map = np.full(height * width, np.inf)
    face_map[pix], bary_map[pix], depth_map[pix] = face, bary, depth
    return Fragments(face_map.reshape(height, width), bary_map.reshape(height, width, 3),
                     depth_map.reshape(height, width))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(V, 3)`` unit area-weighted vertex normals (zero for unused vertices)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.stack([np.bincount(f.ravel(), np.repeat(fn[:, k], 3), minlength=len(v)) for k in range(3)], 1)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def render(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera: Camera,
    *,
    colors: np.ndarray | None = None,
    background: np.ndarray | None = None,
    light_dir: tuple[float, float, float] | np.ndarray = DEFAULT_LIGHT,
    ambient: float = 0.35,
    smooth: bool = True,
    supersample: int = 1,
) -> np.ndarray:
    """Render a triangle mesh through ``camera``: ``(H, W, 3)`` uint8 RGB.

    Args:
        vertices: ``(V, 3)`` world metres; faces: ``(F, 3)`` vertex indices.
        colors: ``(V, 3)`` per-vertex (interpolated) or ``(F, 3)`` per-face uint8 albedo; None = light
            grey; or a texture: a callable ``(face (N,), bary (N, 3)) -> (N, 3)`` albedo per pixel.
        background: ``(H, W, 3)`` uint8 (or float 0..255) behind the mesh; None = black.
        light_dir: camera-frame direction towards a directional light (see :data:`DEFAULT_LIGHT`).
        ambient: the unlit share of the albedo; the light adds ``(1 - ambient) * max(0, n . l)``.
        smooth: interpolate vertex normals (Gouraud-style, per pixel); False = flat face normals.
        supersample: rasterise at this many times the resolution and average down (antialiasing).
    """
    w, h, s = camera.width, camera.height, int(supersample)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    if background is None:
        background = np.zeros((h, w, 3), dtype=np.uint8)
    background = np.asarray(background)
    if background.shape != (h, w, 3):
        raise ValueError(f"background must be ({h}, {w}, 3), got {background.shape}")
    pix, fid, bary, _ = _rasterize_sparse(vertices, faces, camera, s)
    corners = faces[fid]  # (N, 3)

    if colors is None:
        albedo = np.full((len(fid), 3), 200.0)
    elif callable(colors):
        albedo = np.asarray(colors(fid, bary), dtype=np.float64)
    else:
        colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
        if len(colors) == len(vertices):
            albedo = np.einsum("nk,nkc->nc", bary, colors[corners])
        elif len(colors) == len(faces):
            albedo = colors[fid]
        else:
            raise ValueError(f"colors must be per vertex ({len(vertices)}) or per face ({len(faces)}), "
                             f"got {len(colors)}")

    pc = _to_camera(vertices, camera)
    if smooth:
        normals = np.einsum("nk,nkc->nc", bary, vertex_normals(pc, faces)[corners])
    else:
        a, b, c = pc[corners[:, 0]], pc[corners[:, 1]], pc[corners[:, 2]]
        normals = np.cross(b - a, c - a)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    # Face the camera: flip normals that point away from the viewer along the pixel's ray.
    rows, cols = np.divmod(pix, w * s)
    cx, cy = camera.center
    rays = np.stack([((cols + 0.5) / s - cx) / camera.focal, ((rows + 0.5) / s - cy) / camera.focal,
                     np.ones(len(rows))], 1)
    normals *= np.where((normals * rays).sum(1) > 0, -1.0, 1.0)[:, None]
    light = np.asarray(light_dir, dtype=np.float64)
    light = light / np.linalg.norm(light)
    shade = ambient + (1 - ambient) * np.clip(normals @ light, 0, None)
    lit = np.clip(albedo * shade[:, None], 0, 255)

    # Average the s x s samples of each output pixel: covered ones bring their colour, the rest
    # the background's.
    out_pix = (rows // s) * w + cols // s
    cover = np.bincount(out_pix, minlength=w * h) / (s * s)
    fg = np.stack([np.bincount(out_pix, lit[:, k], minlength=w * h) for k in range(3)], 1) / (s * s)
    out = background.reshape(-1, 3).astype(np.float64)
    touched = cover > 0
    out[touched] = fg[touched] + (1 - cover[touched, None]) * out[touched]
    out = out.reshape(h, w, 3)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _box_blur(img: np.ndarray, radius: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * img.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(img, pad, mode="edge"), axis=axis)
    n = img.shape[axis]
    return (np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
            - np.take(c, np.arange(n), axis=axis)) / (2 * radius + 1)


def _box_max(img: np.ndarray, radius: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * img.ndim
    pad[axis] = (radius, radius)
    return np.lib.stride_tricks.sliding_window_view(np.pad(img, pad), 2 * radius + 1, axis=axis).max(-1)


def contact_shadow(vertices: np.ndarray, faces: np.ndarray, camera: Camera, floor_y: float, *,
                   strength: float = 0.45, softness_m: float = 0.04, fade_m: float | None = None) -> np.ndarray:
    """``(H, W)`` 0..1: the shadow a mesh casts on the floor ``y = floor_y`` under a light straight
    above (the mesh flattened onto the floor, rasterised, and blurred by about ``softness_m``
    metres at its distance). ``fade_m``: only the triangles less than that above the floor cast
    it, darker the nearer (a contact shadow under the feet, cheap to draw: few triangles); None:
    the whole mesh, evenly."""
    flat = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if fade_m is None:
        weight = np.ones(len(faces))
        flat = flat.copy()
        flat[:, 1] = floor_y
    else:
        above = (flat[:, 1] - floor_y)[faces].min(1)
        near = above < fade_m
        weight = 1.0 - np.maximum(above[near], 0.0) / fade_m
        # Each triangle on its own copy of its corners, flattened a hair above the floor by its
        # weight: seen from above (a camera over the floor), the darkest over a pixel is the nearest
        # and wins the z-buffer.
        flat = flat[faces[near].ravel()]
        flat[:, 1] = floor_y + 1e-4 * np.repeat(weight, 3)
        faces = np.arange(len(flat)).reshape(-1, 3)
    pix, face, _, _ = _rasterize_sparse(flat, faces, camera, 1)
    shadow = np.zeros(camera.height * camera.width)
    shadow[pix] = weight[face]
    shadow = shadow.reshape(camera.height, camera.width)
    if not len(pix):
        return shadow
    depth = float(np.median(_to_camera(flat, camera)[:, 2]))
    radius = max(1, int(round(softness_m * camera.focal / max(depth, NEAR))))
    # Growing and blurring widen the shadow by at most 3 radius each way: working in that window is the same.
    rows, cols = np.divmod(pix, camera.width)
    top, left = max(rows.min() - 3 * radius - 1, 0), max(cols.min() - 3 * radius - 1, 0)
    window = (slice(top, rows.max() + 3 * radius + 2), slice(left, cols.max() + 3 * radius + 2))
    part = shadow[window]
    if fade_m is not None:  # grow the footprint first: a camera sees the floor around a foot, seldom beneath it
        for axis in (0, 1):
            part = _box_max(part, radius, axis)
    for axis in (0, 1, 0, 1):
        part = _box_blur(part, radius, axis)
    shadow[window] = part
    return strength * shadow


# ---- the scene ----------------------------------------------------------------------------------
BODY_COLOR = (196, 160, 120)
"""The viewer's body colour (``viewer.body_handle.BODY_COLOR``)."""
FLOOR_COLORS = ((236, 236, 233), (214, 215, 214))
"""The floor's checkerboard: its light and dark squares."""
SQUARE_M = 0.5
"""The side of a floor square, metres."""
HORIZON_COLOR = (222, 225, 230)
"""What the floor fades into in the distance, and the sky at the horizon."""
SKY_COLOR = (246, 247, 250)
"""The sky straight up."""
FOV_DEG = 50.0
"""Vertical field of view: the viewer's default camera's."""
PITCH_DEG = math.degrees(math.atan(0.25))
"""How far down the camera looks at one row of bodies: the viewer's default view (its camera
stands a quarter of its distance above what it looks at)."""
GRID_PITCH_DEG = 35.0
"""... and at several rows: from higher up, so each row behind shows above the heads in front."""
MARGIN = 0.06
"""Of the image's half-size, kept free around the bodies."""
GRID_COLUMNS = 6
GRID_SPACING_M = 1.0
"""Between the bodies of a row of a set of poses."""
GRID_ROW_M = 2.0
"""From one row to the next, going back: the viewer's, so that a row behind shows above the heads in front."""
TRAJECTORY_SECONDS = 4.0
"""A trajectory's replay lasts this long (the viewer's Generate tab plays it in as long)."""
SHADOW_FADE_M = 0.12
"""Only the parts of a body nearer the floor than this cast the contact shadow, darker the nearer."""
SHADOW_SOFTNESS_M = 0.04
"""How far the contact shadow spreads past the feet (a third of its reach) and blurs."""
SUPERSAMPLE = 1
"""Rasterise the bodies at this many times the resolution (antialiasing): 2 takes twice as long,
over the 60 s that 240 frames at 640x480 may take on 2 CPU cores (benchmarks/bench_render.py)."""
MIN_FPS = 0.1
"""The lowest frame rate :class:`prior.exports.video.VideoEncoder` records."""
_CHUNK_BODIES = 32  # bodies posed per call of the body model


@dataclass(frozen=True)
class _Shots:
    """What is rendered: ``F`` frames of ``N`` bodies, in the body model's parameters, each body
    turned by ``turn (3, 3)`` and stood at ``places (N, 3)`` on the floor, seen looking down
    ``pitch_deg``; ``times (F,)``: seconds into the recording."""

    pose_body: np.ndarray  # (F, N, 63)
    root_orient: np.ndarray  # (F, N, 3)
    trans: np.ndarray  # (F, N, 3)
    times: np.ndarray  # (F,)
    betas: np.ndarray | None
    turn: np.ndarray
    places: np.ndarray
    pitch_deg: float

    def take(self, frames: np.ndarray) -> _Shots:
        """The same bodies at ``frames`` (indices) only."""
        return _Shots(self.pose_body[frames], self.root_orient[frames], self.trans[frames], self.times[frames],
                      self.betas, self.turn, self.places, self.pitch_deg)


def grid_positions(count: int, spacing_m: float, row_m: float, *, max_columns: int = 6) -> list[tuple[float, float]]:
    """``(x, z)`` ground positions (metres) of ``count`` bodies in rows, the block wider than deep.

    Index order runs left to right along the front row (z = 0, nearest a camera on +Z), then each
    row ``row_m`` further back (-Z). Rows hold at most ``max_columns`` and are balanced (12 bodies
    are three rows of 4, 16 are 6 + 6 + 4); a shorter last row is centred on the columns. With several
    rows, every other one is shifted by half a column, so that each body behind stands in a gap
    between two in front rather than hidden behind one."""
    if count <= 0:
        return []
    columns = min(max_columns, math.ceil(math.sqrt(1.6 * count)))
    rows = math.ceil(count / columns)
    columns = math.ceil(count / rows)
    out = []
    for k in range(count):
        row, column = divmod(k, columns)
        column += (columns - min(columns, count - row * columns)) // 2  # centre a short row, on the columns
        shift = 0.0 if rows == 1 else (0.25 if row % 2 else -0.25)
        out.append(((column - (columns - 1) / 2 + shift) * spacing_m, -row * row_m))
    return out


def grid_places(count: int) -> np.ndarray:
    """``(count, 3)`` floor positions (metres) of a set of bodies: :func:`grid_positions` (the viewer's
    Generate layout) with :data:`GRID_SPACING_M` between bodies and :data:`GRID_ROW_M` between rows."""
    out = np.zeros((count, 3))
    for k, (x, z) in enumerate(grid_positions(count, GRID_SPACING_M, GRID_ROW_M, max_columns=GRID_COLUMNS)):
        out[k, 0], out[k, 2] = x, z
    return out


def _posed(body: BodyModel, shots: _Shots) -> Iterator[np.ndarray]:
    """``(N, V, 3)`` float64 vertices of each frame's bodies, turned (not yet placed): the body
    model runs on a few frames at a time, so memory does not grow with the frames."""
    frames, count = shots.pose_body.shape[:2]
    dtype, device = body.v_template.dtype, body.v_template.device
    per_call = max(1, _CHUNK_BODIES // count)
    betas = None if shots.betas is None else torch.as_tensor(shots.betas, dtype=dtype, device=device)
    for start in range(0, frames, per_call):
        part = slice(start, start + per_call)

        def tensor(value: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(value[part], np.float64), dtype=dtype, device=device)

        with torch.inference_mode():
            verts = body.vertices(tensor(shots.pose_body), global_orient=tensor(shots.root_orient),
                                  transl=tensor(shots.trans), betas=betas)
        yield from verts.double().cpu().numpy() @ shots.turn.T


def _view_axes(pitch_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World ``(right, up, forward)`` of a camera on +Z looking towards -Z and down ``pitch_deg``."""
    pitch = math.radians(pitch_deg)
    forward = np.array([0.0, -math.sin(pitch), -math.cos(pitch)])
    right = np.array([1.0, 0.0, 0.0])
    return right, np.cross(right, forward), forward


@dataclass(frozen=True)
class _Stage:
    """Where a render's bodies stand and the camera that sees them all: ``offsets (N, 3)`` move each
    body to its place, onto the floor (``y = 0``: its lowest vertex over the frames touches it);
    ``center (3,)`` and ``radius`` (metres) bound the bodies' footprint on the floor."""

    camera: Camera
    offsets: np.ndarray
    center: np.ndarray
    radius: float


def _stage(body: BodyModel, shots: _Shots, width: int, height: int) -> _Stage:
    """The nearest camera from the front (+Z), looking down ``shots.pitch_deg``, that keeps every
    vertex of every frame, and the contact shadows around them, in the picture with
    :data:`MARGIN` to spare, its principal point at the image centre.

    In the camera's axes (right, up, forward) a point's screen x is ``(X - R) / ((Z - F) tan)``:
    for a fixed direction each bound is linear in the camera's position ``(R, U, F)``, so the
    nearest ``F`` at which the points fit horizontally (and vertically) has a closed form, and ``R``
    and ``U`` then centre them. Those bounds are extremes of linear functions of the points, so
    they are gathered frame by frame, per body: moving a body (onto the floor) shifts its own by a
    constant."""
    right, up, forward = _view_axes(shots.pitch_deg)
    tan_v = math.tan(math.radians(FOV_DEG) / 2)
    tan_h = tan_v * width / height
    lo, hi = -1.0 + MARGIN, 1.0 - MARGIN
    # Columns: the four bounds' functions (right and up, each at the low and the high edge), then world x, y, z.
    funcs = np.stack([right - lo * tan_h * forward, right - hi * tan_h * forward,
                      up - lo * tan_v * forward, up - hi * tan_v * forward, *np.eye(3)], 1)
    count = shots.pose_body.shape[1]
    low, high = np.full((count, funcs.shape[1]), np.inf), np.full((count, funcs.shape[1]), -np.inf)
    for verts in _posed(body, shots):
        values = funcs.T @ verts.transpose(0, 2, 1)  # (N, 7, V)
        low, high = np.minimum(low, values.min(2)), np.maximum(high, values.max(2))
    offsets = shots.places.copy()
    offsets[:, 1] -= low[:, 5]  # world y: the lowest vertex onto the floor
    low, high = (low + offsets @ funcs).min(0), (high + offsets @ funcs).max(0)
    # Room for the contact shadows, which spread that far past the feet: the bodies framed as if
    # as much wider on either side and lower (a point moved by d along the camera's right or up
    # moves its bound by d).
    reach = 3 * SHADOW_SOFTNESS_M
    low[[0, 2]] -= reach
    high[1] += reach

    def fit(a: float, b: float, tan: float) -> float:
        """The largest F (the nearest camera) with room for the points between the edges."""
        return (a - b) / ((hi - lo) * tan)

    f = min(fit(low[0], high[1], tan_h), fit(low[2], high[3], tan_v))
    r = 0.5 * (high[1] + low[0] + (hi + lo) * tan_h * f)
    u = 0.5 * (high[3] + low[2] + (hi + lo) * tan_v * f)
    position = r * right + u * up + f * forward
    rotation = np.stack([right, -up, forward])  # world -> camera: x right, y down, z forward
    camera = Camera(width, height, 0.5 * height / tan_v, rotation=rotation, translation=-rotation @ position)
    footprint = np.array([[low[4], high[4]], [low[6], high[6]]])
    center = np.array([footprint[0].mean(), 0.0, footprint[1].mean()])
    return _Stage(camera, offsets, center, float(0.5 * np.hypot(*np.diff(footprint, axis=1).ravel())))


def backdrop(camera: Camera, *, center: np.ndarray, radius: float, supersample: int = 2) -> np.ndarray:
    """``(H, W, 3)`` float RGB 0..255: what lies behind the bodies, seen through ``camera`` (a ray
    cast per sample, ``supersample`` squared samples a pixel): the floor ``y = 0``, a light
    checkerboard of :data:`SQUARE_M` squares that fades into :data:`HORIZON_COLOR` with the
    distance from the bodies' footprint (``center``, ``radius`` metres), like the viewer's ground
    grid; above the horizon a soft sky, lighter upwards.

    Each sample is :data:`HORIZON_COLOR` plus weights of the light square's, the dark square's and
    the sky's difference from it; the weights are averaged over the samples, then mixed once."""
    s = int(supersample)
    cx, cy = camera.center
    u = (np.arange(camera.width * s) + 0.5) / s - cx
    v = (np.arange(camera.height * s) + 0.5) / s - cy
    # World direction of each sample's ray: R^T (u / f, v / f, 1), one (rows, columns) array per axis.
    rx, ry, rz = (u[None, :] * r0 / camera.focal + v[:, None] * r1 / camera.focal + r2
                  for r0, r1, r2 in camera.rotation.T)
    origin = camera.position
    down = ry < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(down, -origin[1] / ry, 0.0)
    x, z = origin[0] + rx * t, origin[2] + rz * t
    light = (np.floor(x / SQUARE_M) + np.floor(z / SQUARE_M)) % 2 == 0
    near = down * np.exp(-(np.maximum(np.hypot(x - center[0], z - center[2]) - radius, 0.0)
                           / max(3.0, 2.0 * radius)) ** 2)
    up = np.sqrt(np.clip(ry / np.sqrt(rx * rx + ry * ry + rz * rz), 0.0, 1.0))
    weights = np.stack([near * light, near * ~light, up], -1)
    weights = weights.reshape(camera.height, s, camera.width, s, 3).mean((1, 3))
    horizon = np.asarray(HORIZON_COLOR, np.float64)
    colors = np.asarray([*FLOOR_COLORS, SKY_COLOR], np.float64) - horizon
    return horizon + weights @ colors


def _render(body: BodyModel, shots: _Shots, *, width: int, height: int, drawn: np.ndarray | None = None,
            cancel: CancelFlag | None = None, progress: ProgressFn | None = None) -> Iterator[np.ndarray]:
    """The frames of ``shots`` (only those at indices ``drawn``, when given), ``(H, W, 3)`` uint8,
    through the camera that frames all of them."""
    check_cancel(cancel)
    stage = _stage(body, shots, width, height)
    camera = stage.camera
    background = backdrop(camera, center=stage.center, radius=stage.radius)
    shown = shots if drawn is None else shots.take(drawn)
    count = shown.pose_body.shape[1]
    faces = body.faces.cpu().numpy().astype(np.int64)
    offsets = np.arange(count)[:, None, None] * body.num_vertices
    all_faces = (faces[None] + offsets).reshape(-1, 3)
    colors = np.broadcast_to(np.asarray(BODY_COLOR, np.float64), all_faces.shape)
    total = shown.pose_body.shape[0]
    for k, verts in enumerate(_posed(body, shown)):
        check_cancel(cancel)
        mesh = (verts + stage.offsets[:, None, :]).reshape(-1, 3)
        shadow = contact_shadow(mesh, all_faces, camera, 0.0, softness_m=SHADOW_SOFTNESS_M, fade_m=SHADOW_FADE_M)
        image = render(mesh, all_faces, camera, colors=colors, background=background * (1 - shadow[..., None]),
                       supersample=SUPERSAMPLE)
        if progress is not None:
            progress(Progress("render", k + 1, total, float(shown.times[k]),
                              torch.tensor(shown.pose_body[k], dtype=torch.float32)))
        yield image


def render_frames(body: BodyModel, clip: Clip, *, width: int = 640, height: int = 480, fps: float | None = None,
                  frame: int | None = None, cancel: CancelFlag | None = None,
                  progress: ProgressFn | None = None) -> Iterator[np.ndarray]:
    """``(H, W, 3)`` uint8 frames of ``clip``: one per ``1 / fps`` seconds of it (default its own
    rate; :func:`prior.exports.video.source_frames`), the body turned as the viewer shows it
    (:func:`prior.exports.skeleton.display_turn`: standing up, facing the camera) and standing on
    the floor at its lowest vertex over the clip; one camera frames every frame. ``frame``: only
    that frame of the clip (a still, framed as the whole clip at its own rate).

    ``progress`` gets ``Progress("render", k, total, seconds, pose_body (1, 63))`` after each frame;
    ``cancel.is_set()`` stops with :class:`prior.errors.Cancelled`.
    """
    if frame is not None and not 0 <= frame < clip.num_frames:
        raise ValueError(f"frame {frame} of a clip of {clip.num_frames} frames")
    rate = clip.fps if fps is None or frame is not None else fps
    picked = source_frames(clip.num_frames, clip.fps, rate)
    trans = np.zeros_like(clip.root_orient) if clip.trans is None else clip.trans
    shots = _Shots(clip.pose_body[picked, None], clip.root_orient[picked, None], trans[picked, None],
                   np.arange(len(picked)) / rate, clip.betas, display_turn(clip.root_orient), np.zeros((1, 3)),
                   PITCH_DEG)
    drawn = None if frame is None else np.array([frame])
    return _render(body, shots, width=width, height=height, drawn=drawn, cancel=cancel, progress=progress)


def _grid_shots(steps: np.ndarray, times: np.ndarray) -> _Shots:
    """``steps: (F, N, 63)`` poses of ``N`` bodies, upright (no root), side by side on a grid
    (:func:`grid_places`), seen from higher up when it has several rows."""
    frames, count = steps.shape[:2]
    zeros = np.zeros((frames, count, 3))
    places = grid_places(count)
    pitch = GRID_PITCH_DEG if (places[:, 2] < 0).any() else PITCH_DEG
    return _Shots(steps, zeros, zeros, times, None, np.eye(3), places, pitch)


def render_poses(body: BodyModel, poses: np.ndarray, *, width: int = 640, height: int = 480,
                 cancel: CancelFlag | None = None, progress: ProgressFn | None = None) -> Iterator[np.ndarray]:
    """One ``(H, W, 3)`` uint8 frame: the poses ``(N, 63)`` side by side (:func:`grid_places`), each
    upright, facing the camera and standing on the floor at its lowest vertex. Progress and cancel
    as :func:`render_frames`."""
    poses = np.asarray(poses).reshape(1, -1, 63)
    return _render(body, _grid_shots(poses, np.zeros(1)), width=width, height=height, cancel=cancel,
                   progress=progress)


def trajectory_steps(num_steps: int, fps: float = DEFAULT_FPS) -> np.ndarray:
    """The steps of a ``num_steps`` trajectory each frame of its replay shows: the replay lasts
    :data:`TRAJECTORY_SECONDS` at ``fps``, from the first step (noise) to the last (the samples)."""
    count = max(1, round(TRAJECTORY_SECONDS * fps))
    return np.rint(np.linspace(0, num_steps - 1, count)).astype(np.int64)


def render_trajectory(body: BodyModel, trajectory: np.ndarray, *, width: int = 640, height: int = 480,
                      fps: float = DEFAULT_FPS, step: int | None = None, cancel: CancelFlag | None = None,
                      progress: ProgressFn | None = None) -> Iterator[np.ndarray]:
    """``(H, W, 3)`` uint8 frames of the replay of ``trajectory: (S, N, 63)`` (the ``N`` samples
    after each of ``S`` reverse-diffusion steps, as ``dposer generate --trajectory`` saves them):
    the samples side by side as :func:`render_poses` places them, their steps resampled so the
    replay lasts :data:`TRAJECTORY_SECONDS` at ``fps`` (:func:`trajectory_steps`); each body stands
    on the floor at its lowest vertex over the replay. ``step``: only that step (a still, framed as
    the replay at ``fps``). Progress and cancel as :func:`render_frames`."""
    trajectory = np.asarray(trajectory)
    if step is not None and not 0 <= step < len(trajectory):
        raise ValueError(f"step {step} of a trajectory of {len(trajectory)} steps")
    replay = trajectory_steps(len(trajectory), fps)
    picked, drawn = replay, None
    if step is not None:  # the still's step, framed with the replay's
        picked = np.union1d(replay, [step])
        drawn = np.searchsorted(picked, [step])
    seconds = picked / max(len(trajectory) - 1, 1) * (len(replay) - 1) / fps  # each step's time in the replay
    shots = _grid_shots(trajectory[picked], seconds)
    return _render(body, shots, width=width, height=height, drawn=drawn, cancel=cancel, progress=progress)


def render_format(path: str | os.PathLike) -> str:
    """The suffix of ``path`` that :func:`write_render` writes (``.mp4``, ``.gif``, ``.png``), or a
    ValueError naming the choices."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS and suffix not in IMAGE_FORMATS:
        raise ValueError(f"cannot tell the format from {Path(path).name!r}: name it .mp4 or .gif (a video) "
                         "or .png (an image)")
    return suffix


def write_render(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: float = DEFAULT_FPS) -> int:
    """Write ``frames`` (``(H, W, 3)`` uint8, all one size) to ``path``, atomically: a ``.png`` takes
    the one frame there must be; ``.mp4`` and ``.gif`` are recordings at ``fps``
    (:class:`prior.exports.video.VideoEncoder`). Returns how many frames were written. A failure or a
    :class:`prior.errors.Cancelled` on the way leaves ``path`` as it was."""
    suffix = render_format(path)
    count = 0
    with atomic_write(path) as f:
        encoder = None
        for frame in frames:
            if suffix in IMAGE_FORMATS:
                if count:
                    raise ValueError("a PNG holds one image; render one frame")
                f.write(png_bytes(frame))
            else:
                if encoder is None:
                    encoder = VideoEncoder(f, suffix, fps=fps, width=frame.shape[1], height=frame.shape[0])
                encoder.add(frame)
            count += 1
        if count == 0:
            raise ValueError("nothing to write: no frames")
        if encoder is not None:
            encoder.finish()
    return count


# ---- what is rendered ---------------------------------------------------------------------------
def is_trajectory(path: str | os.PathLike) -> bool:
    """Whether an ``.npz`` holds a ``trajectory`` (``dposer generate --trajectory``'s output)."""
    with open_npz(path, max_bytes=MAX_FILE_BYTES) as archive:
        return "trajectory" in archive


def load_trajectory(path: str | os.PathLike) -> np.ndarray:
    """``(S, N, 63)`` float32: the ``trajectory`` of a ``dposer generate --trajectory`` file (the
    ``N`` samples after each of ``S`` steps), at most :data:`prior.data.MAX_POSE_SET` samples (they
    are drawn side by side). Every problem is an :class:`InputError` naming the file."""
    with open_npz(path, max_bytes=MAX_FILE_BYTES) as archive:
        shape = archive.shape("trajectory")
        if len(shape) == 4 and shape[2:] == (21, 3):
            shape = (*shape[:2], 63)
        if len(shape) != 3 or shape[2] != 63 or 0 in shape:
            raise InputError(f"'trajectory' has shape {archive.shape('trajectory')}, expected (S, N, 63)", archive.path)
        if shape[1] > MAX_POSE_SET:
            raise InputError(f"'trajectory' holds {shape[1]} samples; at most {MAX_POSE_SET} are drawn side by side",
                             archive.path)
        flat = checked_floats(archive.raw("trajectory").reshape(-1, 63), "trajectory", archive.path, 63,
                              bound=ANGLES, what="(S, N, 63)")
    return flat.reshape(shape)


__all__ = [
    "BODY_COLOR", "DEFAULT_LIGHT", "NEAR", "Fragments", "backdrop", "contact_shadow", "grid_places", "grid_positions",
    "is_trajectory",
    "load_trajectory", "rasterize", "render", "render_format", "render_frames", "render_poses", "render_trajectory",
    "trajectory_steps", "vertex_normals", "write_render",
]
