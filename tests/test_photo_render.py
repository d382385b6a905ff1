"""The synthetic-photo renderer of tests/photo_render.py: consistent with ``Camera.project``, a
correct z-buffer, and photos whose body is where the known pose and camera put it."""

from __future__ import annotations

import numpy as np
import photo_render as pr
import pytest
import torch

from prior.body import load_body_model
from prior.camera import Camera
from prior.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def val_poses(shared_data):
    return np.load(shared_data / "amass_body_poses.npz")["val"]


def _project(camera: Camera, points: np.ndarray) -> np.ndarray:
    return camera.project(torch.as_tensor(np.asarray(points, dtype=np.float64))).numpy()


def _inside(pix: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Signed-area test of points ``(N, 2)`` against the 2D triangle ``(3, 2)`` (either winding)."""
    def edge(a, b):
        return (b[0] - a[0]) * (pix[:, 1] - a[1]) - (b[1] - a[1]) * (pix[:, 0] - a[0])
    e = np.stack([edge(tri[0], tri[1]), edge(tri[1], tri[2]), edge(tri[2], tri[0])], 1)
    return (e >= 0).all(1) | (e <= 0).all(1)


CAMERAS = [
    Camera.for_image(640, 480),
    Camera(320, 240, 400.0, principal_point=(150.3, 130.7),
           rotation=axis_angle_to_matrix(torch.tensor([0.1, -0.3, 0.05], dtype=torch.float64)).numpy()
           @ np.diag([1.0, -1.0, -1.0]),
           translation=np.array([0.2, -0.1, 0.4])),
]


@pytest.mark.parametrize("camera", CAMERAS)
def test_a_triangle_covers_exactly_the_pixel_centres_inside_its_projection(camera):
    # A big tilted triangle about 3 m in front of the camera, in world coordinates.
    cam_pts = np.array([[-0.6, -0.5, 2.5], [0.7, -0.2, 3.5], [0.1, 0.6, 3.0]])
    world = (cam_pts - camera.translation) @ camera.rotation  # camera -> world
    frags = pr.rasterize(world, np.array([[0, 1, 2]]), camera)
    tri2d = _project(camera, world)
    rows, cols = np.mgrid[:camera.height, :camera.width]
    centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], 1)
    expected = _inside(centres, tri2d).reshape(camera.height, camera.width)
    assert expected.sum() > 5000
    # Pixel centres within a hair of an edge may go either way; nothing else may differ.
    assert (frags.mask != expected).sum() <= 2
    covered = centres[frags.mask.ravel()]
    assert np.abs(covered.mean(0) - tri2d.mean(0)).max() < 0.5  # the area centroid of the projection
    # Every vertex lands in pixel floor(project(vertex)) (or next to it, on the triangle's edge).
    for x, y in tri2d:
        u, v = int(np.floor(x)), int(np.floor(y))
        assert frags.mask[max(v - 1, 0):v + 2, max(u - 1, 0):u + 2].any()
    # Depth is perspective-correct: the distance along each pixel's ray to the triangle's plane.
    normal = np.cross(cam_pts[1] - cam_pts[0], cam_pts[2] - cam_pts[0])
    cx, cy = camera.center
    r, c = np.nonzero(frags.mask)
    rays = np.stack([(c + 0.5 - cx) / camera.focal, (r + 0.5 - cy) / camera.focal, np.ones(len(r))], 1)
    z_plane = (normal @ cam_pts[0]) / (rays @ normal)
    np.testing.assert_allclose(frags.depth[r, c], z_plane, rtol=1e-9)
    # ... and so are the barycentric weights: they rebuild the 3D point on the ray.
    point = np.einsum("nk,kc->nc", frags.bary[r, c], cam_pts)
    np.testing.assert_allclose(point, rays * z_plane[:, None], atol=1e-9)


def test_a_vertex_projects_to_the_pixel_it_is_drawn_in():
    camera = Camera.for_image(200, 200)
    # A tiny triangle (well under a pixel) around a point whose projection lies at (123.7, 61.2).
    x, y, z = (123.7 - 100) / camera.focal * 3, -(61.2 - 100) / camera.focal * 3, -3.0
    d = 0.5 * 3 / camera.focal  # half a pixel at 3 m
    world = np.array([[x - d, y - d, z], [x + d, y - d, z], [x, y + d, z]])
    frags = pr.rasterize(world, np.array([[0, 1, 2]]), camera)
    assert list(zip(*np.nonzero(frags.mask))) == [(61, 123)]


def test_a_nearer_triangle_is_never_overwritten_by_a_farther_one():
    camera = Camera.for_image(200, 160)
    near = np.array([[-0.5, -0.4, -2.0], [0.5, -0.4, -2.0], [0.0, 0.5, -2.0]])
    far = np.array([[-2.0, -1.5, -4.0], [2.0, -1.5, -4.0], [0.0, 2.0, -4.0]])  # covers the near one's pixels
    colors = np.array([[255, 0, 0], [0, 255, 0]], dtype=np.uint8)
    for order in ((near, far), (far, near)):
        verts = np.concatenate(order)
        faces = np.array([[0, 1, 2], [3, 4, 5]])
        face_colors = colors if order[0] is near else colors[::-1]
        img = pr.render(verts, faces, camera, colors=face_colors, ambient=1.0)
        near_mask = pr.rasterize(near, np.array([[0, 1, 2]]), camera).mask
        far_mask = pr.rasterize(far, np.array([[0, 1, 2]]), camera).mask
        assert near_mask.sum() > 1000 and (far_mask & ~near_mask).sum() > 1000
        assert (img[near_mask] == (255, 0, 0)).all()
        assert (img[far_mask & ~near_mask] == (0, 255, 0)).all()
        assert (img[~far_mask] == 0).all()


def test_interpenetrating_triangles_split_where_they_cross():
    camera = Camera.for_image(200, 200)
    a = np.array([[-1.0, -1.0, -2.0], [1.0, -1.0, -4.0], [0.0, 1.0, -3.0]])  # tilted: nearer on the left
    b = np.array([[-1.0, -1.0, -4.0], [1.0, -1.0, -2.0], [0.0, 1.0, -3.0]])  # nearer on the right
    frags = pr.rasterize(np.concatenate([a, b]), np.array([[0, 1, 2], [3, 4, 5]]), camera)
    row = frags.face[150]
    cols = np.flatnonzero(row >= 0)
    assert (row[cols[cols < 95]] == 0).all() and (row[cols[cols > 105]] == 1).all()


def test_triangles_behind_or_too_near_the_camera_are_dropped(body):
    camera = Camera.for_image(300, 300)
    background = np.full((300, 300, 3), 77, dtype=np.uint8)
    # The mannequin 3 m behind the camera (which looks along -Z).
    verts = pr.posed_vertices(body, np.zeros(63), root_orient=np.zeros(3), trans=np.array([0.0, 0.0, 3.0]))
    img = pr.render(verts, body.faces.numpy(), camera, background=background)
    np.testing.assert_array_equal(img, background)
    # A triangle with one vertex 1 cm in front of the camera (and the rest well in front) is dropped.
    tri = np.array([[0.0, 0.0, -0.01], [1.0, 0.0, -3.0], [0.0, 1.0, -3.0]])
    assert not pr.rasterize(tri, np.array([[0, 1, 2]]), camera).mask.any()
    assert pr.rasterize(tri + [0, 0, -0.05], np.array([[0, 1, 2]]), camera).mask.any()


def test_the_rendered_silhouette_spans_the_projected_mesh(body, val_poses):
    rng = np.random.default_rng(3)
    pose = val_poses[17]
    camera, root, trans = pr.random_view(rng, width=400, height=400, body=body, pose_body=pose)
    verts = pr.posed_vertices(body, pose, root_orient=root, trans=trans)
    mask = pr.rasterize(verts, body.faces.numpy(), camera).mask
    rows, cols = np.nonzero(mask)
    pix = _project(camera, verts)
    got = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    want = np.concatenate([pix.min(0), pix.max(0)])
    assert np.abs(got - want).max() <= 2, (got, want)
    # The same from the photo itself: the body's pixels are those that differ from the background.
    img = pr.render(verts, body.faces.numpy(), camera, colors=pr.person_colors(body), supersample=1)
    assert (img.any(2) == mask).mean() > 0.999


def test_random_views_keep_the_body_in_the_picture(body, val_poses):
    rng = np.random.default_rng(0)
    pelvis_rest = body.rest_joints()[0].double().numpy()
    for i in range(10):
        pose = val_poses[i]
        camera, root, trans = pr.random_view(rng, body=body, pose_body=pose)
        assert (camera.width, camera.height) == (1000, 1000)
        assert camera.focal == pytest.approx(np.sqrt(2) * 1000)
        joints = pr.projected_joints(body, pose, camera=camera, root_orient=root, trans=trans)
        assert ((joints > 0) & (joints < 1000)).all()
        verts = _project(camera, pr.posed_vertices(body, pose, root_orient=root, trans=trans))
        assert ((verts >= 20) & (verts <= 980)).all()
        pelvis = pelvis_rest + trans  # the root rotates about the pelvis, so trans alone places it
        assert 3 <= -pelvis[2] <= 6 and np.abs(pelvis[:2] - [0, 0.15]).max() < 0.2
        with torch.no_grad():
            posed_pelvis = body.joints(torch.as_tensor(pose[None], dtype=torch.float32),
                                       global_orient=torch.as_tensor(root[None], dtype=torch.float32),
                                       transl=torch.as_tensor(trans[None], dtype=torch.float32))[0, 0].numpy()
        np.testing.assert_allclose(posed_pelvis, pelvis, atol=1e-5)
    # Yaw 0, pitch 0: the body faces the camera (its +Z, forward, points at the camera: world +Z).
    _, root, _ = pr.random_view(rng, body=body, yaw_deg=(0, 0), pitch_deg=(0, 0))
    np.testing.assert_allclose(root, 0, atol=1e-12)
    _, root, _ = pr.random_view(rng, body=body, yaw_deg=(90, 90), pitch_deg=(0, 0))
    np.testing.assert_allclose(root, [0, np.pi / 2, 0], atol=1e-9)


def test_person_colors_dress_the_mannequin(body):
    colors = pr.person_colors(body)
    labels = body.vertex_labels.numpy()
    rest = body.rest_vertices().numpy()
    assert colors.shape == (body.num_vertices, 3) and colors.dtype == np.uint8

    def share(mask, color):
        return (colors[mask] == color).all(1).mean()

    assert share(np.isin(labels, (20, 21)), pr.SKIN) == 1  # hands
    assert share(labels == 12, pr.SKIN) == 1  # neck
    assert share(np.isin(labels, (16, 17, 18, 19)), pr.SHIRT) == 1  # sleeves
    assert share(labels == 9, pr.SHIRT) == 1  # chest
    assert share(np.isin(labels, (1, 2, 4, 5)), pr.TROUSERS) == 1
    assert share(np.isin(labels, (10, 11)), pr.SHOES) == 1
    ankles = np.isin(labels, (7, 8))
    assert share(ankles & (rest[:, 1] < -1.26), pr.SHOES) == 1 and share(ankles & (rest[:, 1] > -1.2), pr.TROUSERS) == 1
    head = labels == 15
    assert 0.2 < share(head, pr.HAIR) < 0.7 and share(head, pr.SKIN) > 0.2
    assert share(head & (rest[:, 2] < -0.08), pr.HAIR) > 0.9  # the back of the head


def test_photo_of_the_dressed_mannequin(body, val_poses):
    camera = Camera.for_image(320, 240)
    pelvis = body.rest_joints()[0].double().numpy()
    trans = np.array([0.0, 0.15, -4.0]) - pelvis
    img = pr.photo(body, val_poses[0], camera=camera, root_orient=np.zeros(3), trans=trans)
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    room = pr.room_background(camera, floor_y=-1.0)
    assert room.std() > 5  # not uniform: a wall, a floor and noise
    plain = pr.photo(body, val_poses[0], camera=camera, root_orient=np.zeros(3), trans=trans, background="plain")
    verts = pr.posed_vertices(body, val_poses[0], root_orient=np.zeros(3), trans=trans)
    mask = pr.rasterize(verts, body.faces.numpy(), camera).mask
    # Inside the silhouette the body, not the background; far outside it the background alone.
    shirt = (np.abs(plain.astype(int) - pr.SHIRT).sum(2) < 150) & mask
    assert shirt.sum() > 200
    near = mask.copy()
    for k in range(1, 4):  # the silhouette grown by 3 px (antialiasing blends its edge pixels)
        near |= np.roll(mask, k, 0) | np.roll(mask, -k, 0) | np.roll(mask, k, 1) | np.roll(mask, -k, 1)
    far = ~near
    ramp = np.rint(np.linspace(190, 150, 240))
    np.testing.assert_array_equal(plain[far], np.repeat(ramp[:, None], 320, 1)[far][:, None].repeat(3, 1))
    with pytest.raises(ValueError, match="background"):
        pr.photo(body, val_poses[0], camera=camera, root_orient=np.zeros(3), trans=trans, background="sky")
