"""Synthetic photos of the default body (the mannequin) at known poses and cameras, for tests and
benchmarks of the photo -> keypoints -> fit chain.

On :mod:`prior.render`'s rasteriser (:func:`rasterize`, :func:`render`, :func:`contact_shadow`,
imported here under their names; its module docstring gives the pixel convention): clothing
colours that make the mannequin read as a dressed person (:func:`person_colors`), a plain room
behind it (:func:`room_background`), one call for a whole photo (:func:`photo`) and the
benchmark's camera protocol (:func:`random_view`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from prior.camera import Camera
from prior.render import DEFAULT_LIGHT, NEAR, Fragments, contact_shadow, rasterize, render, vertex_normals

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
    "DEFAULT_LIGHT", "NEAR", "Fragments", "PersonTexture", "contact_shadow", "person_colors", "photo", "posed_vertices",
    "projected_joints", "random_view", "rasterize", "render", "room_background", "vertex_normals",
]
