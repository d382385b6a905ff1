"""Synthetic photos of the default body (the mannequin) at known poses and cameras, for tests and
benchmarks of the photo -> keypoints -> fit chain.

A small pure-numpy z-buffer rasteriser (:func:`rasterize`, :func:`render`), clothing colours that
make the mannequin read as a dressed person (:func:`person_colors`), a plain room behind it
(:func:`room_background`), one call for a whole photo (:func:`photo`) and the benchmark's camera
protocol (:func:`random_view`).

Pixel convention (the same as :meth:`prior.camera.Camera.project`'s continuous coordinates): pixel
``(u, v)`` (column, row) covers ``[u, u + 1) x [v, v + 1)`` and its centre is at ``(u + 0.5,
v + 0.5)``; a pixel is drawn by a triangle when its centre lies inside the projected triangle. So
a point that ``camera.project`` sends to ``(x, y)`` lands in pixel ``(floor(x), floor(y))``, and
with the default principal point (the image centre) the optical axis meets the corner between the
four central pixels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from prior.camera import Camera

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
        background: ``(H, W, 3)`` uint8 behind the mesh; None = black.
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


# ---- the dressed mannequin --------------------------------------------------------------------
SKIN = (224, 172, 138)
HAIR = (52, 36, 28)
BROWS = (60, 42, 32)
EYE_WHITE = (235, 230, 225)
IRIS = (35, 28, 26)
LIPS = (176, 96, 92)
EAR = (206, 150, 120)
SHIRT = (48, 92, 168)
TROUSERS = (70, 62, 52)
SHOES = (28, 26, 26)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


class PersonTexture:
    """The clothes and face of the dressed mannequin as a function of rest-pose surface points: a
    callable ``(faces (N,), bary (N, 3)) -> (N, 3)`` albedo for :func:`render` (evaluated per pixel,
    so the eyes and clothing borders stay sharp whatever the mesh resolution), and the same
    colours at the vertices (:meth:`at_vertices`)."""

    def __init__(self, body, *, face_details: bool = True) -> None:
        self.labels = body.vertex_labels.cpu().numpy()
        self.faces = body.faces.cpu().numpy()
        self.rest = body.rest_vertices().detach().cpu().numpy().astype(np.float64)
        self.joints = body.rest_joints().detach().cpu().numpy().astype(np.float64)
        self.face_details = face_details
        head = self.rest[self.labels == 15]
        self.top = head[:, 1].max()
        self.chin = self.rest[np.isin(self.labels, (12, 15)) & (self.rest[:, 2] > self.joints[15, 2] + 0.03), 1].min()
        self.head_center = np.array([self.joints[15, 0], 0.0, 0.5 * (head[:, 2].max() + head[:, 2].min())])

    def colors(self, labels: np.ndarray, p: np.ndarray) -> np.ndarray:
        """``(N, 3)`` float albedo of rest-pose points ``p (N, 3)`` on parts ``labels (N,)``."""
        out = np.empty((len(labels), 3))
        out[:] = SHIRT
        out[np.isin(labels, (12, 15, 20, 21))] = SKIN
        legs = np.isin(labels, (0, 1, 2, 4, 5, 7, 8)) | ((labels == 3) & (p[:, 1] < self.joints[0, 1] + 0.09))
        out[legs] = TROUSERS
        feet = np.isin(labels, (10, 11))
        for ankle in (7, 8):
            feet |= (labels == ankle) & (p[:, 1] < self.joints[ankle, 1] + 0.01)
        out[feet] = SHOES
        if self.face_details:
            self._face(labels, p, out)
        return out

    def _face(self, labels: np.ndarray, p: np.ndarray, out: np.ndarray) -> None:
        head = labels == 15
        if not head.any():
            return
        hp = p[head]
        col = out[head]
        size = self.top - self.chin  # chin to crown, about 0.23 m
        rel = hp - self.head_center
        phi = np.degrees(np.abs(np.arctan2(rel[:, 0], rel[:, 2])))  # 0 = straight ahead, 180 = behind
        # Hairline: high on the forehead, at eye level over the ears, low at the back.
        front_line, back_line = self.top - 0.24 * size, self.top - 0.62 * size
        hairline = front_line + (back_line - front_line) * _smoothstep(phi, 35, 125)
        hair = hp[:, 1] > hairline
        facing = (rel[:, 2] > 0) & (phi < 60)
        x = hp[:, 0] - self.head_center[0]
        y = hp[:, 1]
        eye_y = self.top - 0.5 * size
        for side in (-1.0, 1.0):
            ex = x - side * 0.031
            white = facing & ((ex / 0.014) ** 2 + ((y - eye_y) / 0.0075) ** 2 < 1)
            col[white] = EYE_WHITE
            col[facing & (ex ** 2 + (y - eye_y) ** 2 < 0.0065 ** 2)] = IRIS
            arch = eye_y + 0.017 + 0.004 * (1 - (ex / 0.017) ** 2)
            brow = facing & (np.abs(ex) < 0.017) & (np.abs(y - arch) < 0.003)
            col[brow] = BROWS
            # Ears: slightly darker patches on the sides at eye level.
            ear = (np.abs(phi - 90) < 14) & (np.sign(x) == side) & (np.abs(y - (eye_y - 0.01)) < 0.028)
            col[ear & ~hair] = EAR
        mouth_y = self.chin + 0.2 * size
        lips = facing & ((x / 0.022) ** 2 + ((y - mouth_y) / 0.006) ** 2 < 1)
        col[lips] = LIPS
        col[hair] = HAIR
        out[head] = col

    def at_vertices(self) -> np.ndarray:
        """``(V, 3)`` uint8: the colours at the mesh vertices."""
        return np.clip(np.rint(self.colors(self.labels, self.rest)), 0, 255).astype(np.uint8)

    def __call__(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        corners = self.faces[face]
        points = np.einsum("nk,nkc->nc", bary, self.rest[corners])
        labels = self.labels[corners[np.arange(len(face)), bary.argmax(1)]]
        return self.colors(labels, points)


def person_colors(body, *, face_details: bool = True) -> np.ndarray:
    """``(V, 3)`` uint8 per-vertex colours that dress the mannequin (from ``body.vertex_labels`` and
    its rest shape): skin on the head, neck and hands; a blue long-sleeved shirt on the chest, belly
    and arms; brown trousers from the waist to the ankles; dark shoes below the ankles; with
    ``face_details``, hair, eyes, brows, ears and lips (coarse at the vertices: :func:`photo` uses
    :class:`PersonTexture` per pixel instead)."""
    return PersonTexture(body, face_details=face_details).at_vertices()


@functools.lru_cache(maxsize=4)
def _texture(body) -> PersonTexture:
    return PersonTexture(body)


def room_background(camera: Camera, *, floor_y: float = -1.0, size: float = 6.0, seed: int = 0,
                    shadow: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8: the inside of a plain room seen through ``camera`` (a ray cast per
    pixel): a wooden floor at world ``y = floor_y``, off-white walls ``size`` metres from the world
    origin to the sides, front and back, with a soft vertical light gradient and a skirting board, a
    ceiling 2.6 m above the floor, and a little noise. ``shadow``: ``(H, W)`` 0..1, how much of the
    light the floor loses at each pixel (a contact shadow, see :func:`photo`)."""
    w, h = camera.width, camera.height
    cx, cy = camera.center
    u = (np.arange(w) + 0.5 - cx) / camera.focal
    v = (np.arange(h) + 0.5 - cy) / camera.focal
    rays_cam = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), -1)  # (H, W, 3)
    rays = rays_cam @ camera.rotation  # camera -> world directions (R^T r, row-vector form)
    origin = camera.position
    half, ceiling = float(size), floor_y + 2.6
    big = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[..., 1] < 0, (floor_y - origin[1]) / rays[..., 1], big)
        t_ceil = np.where(rays[..., 1] > 0, (ceiling - origin[1]) / rays[..., 1], big)
        tx = np.where(rays[..., 0] != 0, (np.sign(rays[..., 0]) * half - origin[0]) / rays[..., 0], big)
        tz = np.where(rays[..., 2] != 0, (np.sign(rays[..., 2]) * half - origin[2]) / rays[..., 2], big)
    t_wall = np.minimum(tx, tz)
    t = np.minimum(np.minimum(t_floor, t_ceil), t_wall)
    hit = origin + rays * t[..., None]
    img = np.empty((h, w, 3))
    # Walls: warm off-white, brighter towards the ceiling, a skirting board near the floor.
    height = np.clip((hit[..., 1] - floor_y) / 2.6, 0, 1)
    wall = np.array([214.0, 206.0, 192.0]) * (0.78 + 0.22 * height[..., None])
    board = (hit[..., 1] - floor_y) < 0.1
    wall[board] = (236, 234, 228)
    img[:] = wall
    # Floor: wooden planks along the view direction, darker with distance.
    on_floor = t == t_floor
    plank = np.floor(hit[..., 0] / 0.18)
    tone = 0.9 + 0.1 * np.sin(plank * 12.9898) ** 2
    seam = np.abs(hit[..., 0] / 0.18 - np.round(hit[..., 0] / 0.18)) < 0.03
    floor = np.array([150.0, 112.0, 78.0]) * tone[..., None] * np.where(seam, 0.8, 1.0)[..., None]
    floor *= np.clip(1.05 - 0.03 * t, 0.6, 1.0)[..., None]
    if shadow is not None:
        floor *= 1 - np.asarray(shadow, dtype=np.float64)[..., None]
    img[on_floor] = floor[on_floor]
    img[t == t_ceil] = (236, 236, 232)
    # Corners: a slight darkening where walls meet (ambient occlusion, roughly).
    edge = np.minimum(half - np.abs(hit[..., 0]), half - np.abs(hit[..., 2]))
    img *= np.clip(0.85 + 0.15 * edge / 0.5, 0.85, 1.0)[..., None]
    rng = np.random.default_rng(seed)
    img += rng.normal(0, 2.5, size=(h, w, 1))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _box_blur(img: np.ndarray, radius: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * img.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(img, pad, mode="edge"), axis=axis)
    n = img.shape[axis]
    return (np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
            - np.take(c, np.arange(n), axis=axis)) / (2 * radius + 1)


def contact_shadow(vertices: np.ndarray, faces: np.ndarray, camera: Camera, floor_y: float, *,
                   strength: float = 0.45, softness_m: float = 0.04) -> np.ndarray:
    """``(H, W)`` 0..1: the shadow a mesh casts on the floor ``y = floor_y`` under a light straight
    above (the mesh flattened onto the floor, rasterised, and blurred by about ``softness_m``
    metres at its distance)."""
    flat = np.asarray(vertices, dtype=np.float64).copy()
    flat[:, 1] = floor_y
    mask = rasterize(flat, faces, camera).mask.astype(np.float64)
    if not mask.any():
        return mask
    depth = float(np.median(_to_camera(flat, camera)[:, 2]))
    radius = max(1, int(round(softness_m * camera.focal / max(depth, NEAR))))
    for axis in (0, 1, 0, 1):
        mask = _box_blur(mask, radius, axis)
    return strength * mask


def posed_vertices(body, pose_body, *, root_orient, trans, betas=None) -> np.ndarray:
    """``(V, 3)`` world vertices (metres, float64) of ``pose_body (63,)``."""
    dtype = body.v_template.dtype
    pose = torch.as_tensor(np.asarray(pose_body, dtype=np.float64).reshape(1, 63), dtype=dtype)
    kw = {"global_orient": torch.as_tensor(np.asarray(root_orient, dtype=np.float64).reshape(1, 3), dtype=dtype),
          "transl": torch.as_tensor(np.asarray(trans, dtype=np.float64).reshape(1, 3), dtype=dtype)}
    if betas is not None:
        kw["betas"] = torch.as_tensor(np.asarray(betas, dtype=np.float64), dtype=dtype)
    with torch.no_grad():
        return body.vertices(pose, **kw)[0].double().numpy()


def photo(
    body,
    pose_body: np.ndarray,
    *,
    camera: Camera,
    root_orient: np.ndarray,
    trans: np.ndarray,
    betas: np.ndarray | None = None,
    background: str | np.ndarray = "room",
    supersample: int = 2,
    shadow: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """``(H, W, 3)`` uint8: the dressed mannequin in ``pose_body (63,)`` (root ``root_orient (3,)``
    axis-angle and ``trans (3,)`` metres, as ``body.vertices`` takes them) photographed by ``camera``.

    ``background``: ``"room"`` (:func:`room_background`, its floor just under the body's lowest
    point, with a soft shadow of the body under an overhead light when ``shadow``), ``"plain"`` (a
    soft grey vertical gradient) or an ``(H, W, 3)`` uint8 image. ``supersample``: antialiasing
    (:func:`render`); ``seed``: the background's noise.
    """
    verts = posed_vertices(body, pose_body, root_orient=root_orient, trans=trans, betas=betas)
    faces = body.faces.cpu().numpy()
    if isinstance(background, str):
        if background == "room":
            floor_y = float(verts[:, 1].min()) - 0.005
            size = max(6.0, float(np.abs(verts[:, [0, 2]]).max()) + 2.0)  # the walls well behind the body
            shadow = contact_shadow(verts, faces, camera, floor_y) if shadow else None
            background = room_background(camera, floor_y=floor_y, size=size, seed=seed, shadow=shadow)
        elif background == "plain":
            ramp = np.linspace(190, 150, camera.height)[:, None, None]
            background = np.broadcast_to(np.rint(ramp), (camera.height, camera.width, 3)).astype(np.uint8)
        else:
            raise ValueError(f"background must be 'room', 'plain' or an image, got {background!r}")
    return render(verts, faces, camera, colors=_texture(body), background=background,
                  supersample=supersample)


# ---- the benchmark's views --------------------------------------------------------------------
def _rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


@functools.lru_cache(maxsize=2)
def _default_body():
    from prior.body import load_body_model

    return load_body_model()


def random_view(
    rng: np.random.Generator,
    *,
    width: int = 1000,
    height: int = 1000,
    yaw_deg: tuple[float, float] = (0, 360),
    pitch_deg: tuple[float, float] = (-15, 15),
    depth_m: tuple[float, float] = (3, 6),
    body=None,
    pose_body: np.ndarray | None = None,
    betas: np.ndarray | None = None,
    margin: float = 0.02,
    max_tries: int = 200,
) -> tuple[Camera, np.ndarray, np.ndarray]:
    """The benchmark protocol: ``(camera, root_orient (3,), trans (3,))``.

    The camera is :meth:`Camera.for_image` (at the world origin looking along -Z, focal
    ``sqrt(W^2 + H^2)``). The root is rotated by ``R = R_x(pitch) R_y(yaw)`` (yaw 0: the body faces
    the camera; 180: its back) and placed so its pelvis sits ``depth`` metres in front of the camera
    (world ``z = -depth``) near the optical axis: 0.15 m above it (which centres a standing body)
    plus a random offset of up to 4 % of the field of view each way. A draw is kept when every
    projected point of the body lies inside the image, ``margin`` (a fraction of its size) from the
    edges: the mesh of ``pose_body`` when given, else the 22 rest-pose joints; otherwise all of
    yaw, pitch, depth and offset are drawn again (so tall poses are seen a little farther away).
    """
    body = _default_body() if body is None else body
    camera = Camera.for_image(width, height)
    b = None if betas is None else torch.as_tensor(np.asarray(betas), dtype=body.v_template.dtype)
    j_rest = body.rest_joints(b).detach().double().cpu().numpy().reshape(-1, 3)
    pelvis = j_rest[0]
    if pose_body is None:
        points = j_rest[:22] - pelvis
    else:
        points = posed_vertices(body, pose_body, root_orient=np.zeros(3), trans=np.zeros(3), betas=betas) - pelvis
    half_w, half_h = width / (2 * camera.focal), height / (2 * camera.focal)  # tan of the half fields of view
    from prior.rotations import matrix_to_axis_angle

    for _ in range(max_tries):
        yaw = rng.uniform(*yaw_deg)
        pitch = rng.uniform(*pitch_deg)
        depth = rng.uniform(*depth_m)
        offset = rng.uniform(-0.04, 0.04, size=2) * 2 * np.array([half_w, half_h]) * depth
        target = np.array([offset[0], 0.15 + offset[1], -depth])
        rot = _rot_x(pitch) @ _rot_y(yaw)
        world = points @ rot.T + target
        pix = camera.project(torch.as_tensor(world)).numpy()
        depth_ok = (world[:, 2] < -NEAR).all()
        mx, my = margin * width, margin * height
        if depth_ok and (pix[:, 0] >= mx).all() and (pix[:, 0] <= width - mx).all() \
                and (pix[:, 1] >= my).all() and (pix[:, 1] <= height - my).all():
            root = matrix_to_axis_angle(torch.as_tensor(rot)).numpy()
            return camera, root, target - pelvis
    raise RuntimeError(f"no view in {max_tries} draws keeps the body inside a {width} x {height} image")


def projected_joints(body, pose_body, *, camera: Camera, root_orient, trans, betas=None) -> np.ndarray:
    """``(22, 2)`` pixels: SMPL-X joints 0..21 of the posed body through ``camera`` (the truth a
    detector's keypoints are checked against)."""
    dtype = body.v_template.dtype
    kw = {"global_orient": torch.as_tensor(np.asarray(root_orient).reshape(1, 3), dtype=dtype),
          "transl": torch.as_tensor(np.asarray(trans).reshape(1, 3), dtype=dtype)}
    if betas is not None:
        kw["betas"] = torch.as_tensor(np.asarray(betas), dtype=dtype)
    with torch.no_grad():
        joints = body.joints(torch.as_tensor(np.asarray(pose_body).reshape(1, 63), dtype=dtype), **kw)[0, :22]
    return camera.project(joints.double()).numpy()


__all__ = [
    "NEAR", "Fragments", "PersonTexture", "contact_shadow", "person_colors", "photo", "posed_vertices",
    "projected_joints", "random_view", "rasterize", "render", "room_background", "vertex_normals",
]
