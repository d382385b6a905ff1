"""dposer-view's Fit tab in headless Chromium: a photo (uploaded or by path) is fitted, the body
streams in over the photo seen from its camera, bad files are reported, settings refit live, and
a keypoint sequence plays on a timeline. Without a browser: what files load as, and the fitted
shape as it is drawn and exported.

The app serves the shipped prior (the conformance checkpoint of the other browser tests is random
weights: its fits would say nothing). Screenshots go to ``$TMPDIR/dposer-view-e2e`` for a human.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import photo_render as pr
import pytest
import torch
from PIL import Image

from prior.keypoints import KEYPOINT_NAMES, Keypoints, save_keypoints
from prior.metrics import pa_mpjpe_mm

from browser import (
    click,
    colour_fraction,
    gui_row,
    open_panel,
    project,
    screenshot_array,
    set_gui_number,
    upload_file,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "tests" / "data" / "astronaut.png"
FIT_RGB = (110, 195, 140)  # viewer.panels.fit.FIT_COLOR
CANVAS = (1280, 800)
ARTIFACTS = Path(tempfile.gettempdir()) / "dposer-view-e2e"
ARTIFACTS.mkdir(exist_ok=True)
FACE = [KEYPOINT_NAMES.index(n) for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
HEAD = 15  # SMPL-X's head joint


@pytest.fixture(scope="module")
def viewer_app(tmp_path_factory):
    """The viewer with the shipped prior (overrides conftest's, whose checkpoint is random weights)."""
    from viewer.app import ViewerApp

    app = ViewerApp(ckpt=None, port=0, export_dir=tmp_path_factory.mktemp("exports"),
                    read_dir=tmp_path_factory.getbasetemp(), verbose=False)  # the tests type paths of their tmp files
    yield app
    app.stop()


def fitted_joints(body, fit, frame: int = 0) -> np.ndarray:
    """``(22, 3)`` the fitted body's SMPL-X joints (its shape too), in the fit's world."""
    def row(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a[frame : frame + 1], np.float32))

    return body.skeleton_joints(row(fit.pose_body), global_orient=row(fit.root_orient), transl=row(fit.trans),
                                betas=row(fit.betas))[0].numpy()


def posed(call, pose: np.ndarray, root: np.ndarray, trans: np.ndarray):
    """``call`` (a body model's ``skeleton`` or ``skeleton_joints``) of one body, as float32 rows."""
    def row(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, np.float32)[None])

    return call(row(pose), global_orient=row(root), transl=row(trans))


def photo_point(panel, uv: np.ndarray) -> np.ndarray:
    """``(K, 3)`` scene points on the shown photo's plane at its pixels ``uv (K, 2)``."""
    cam = panel.loaded.observation.camera
    on_plane = panel.on_plane(np.asarray(uv, np.float64), panel.depth).astype(np.float64)
    return panel.anchor + (on_plane - cam.translation) @ cam.rotation  # camera -> world, then the scene's anchor


def wait_for_fit(session, *, after: float = 0.0) -> None:
    wait_until(lambda: session.timings.get("fit_done", -1.0) > after and session.pacer.idle(), timeout=120,
               what=lambda: f"the fit to finish (notifications {session.notifications[-2:]}, "
                            f"running {session.app.worker.running})")


def set_path(page, label: str, value: str, check) -> None:
    box = gui_row(page, label).locator("input").first
    box.fill(value)
    box.press("Enter")
    wait_until(check, what=f"the {label} box to reach the server")


@pytest.mark.browser
@pytest.mark.slow
def test_an_uploaded_photo_is_fitted_streaming_and_overlays_the_person(viewer_tab):
    page, session = viewer_tab
    panel = session.panels["fit"]
    open_panel(page, "Fit")
    upload_file(page, "Upload photo", ASTRONAUT)
    wait_for_fit(session)
    assert session.stage == "fit"
    assert panel.streamed_updates > 0 and session.timings["fit_first_update"] < session.timings["fit_done"], \
        "the body did not stream in while fitting"
    fit = panel.fit
    assert panel.loaded.observation.detected and fit.num_images == 1
    assert fit.mean_reprojection_px < 8.0, f"reprojection error {fit.mean_reprojection_px:.1f} px"
    page.get_by_text("reprojection error").first.wait_for(timeout=30_000)
    assert f"{fit.mean_reprojection_px:.1f} px" in panel.result.content
    assert fit.hypotheses is not None and panel.ghosts, "no hypotheses shown for the unseen limbs"

    # The fit: its head lies on the face the detector found.
    kp = panel.loaded.observation.keypoints
    face = kp.xy[FACE][kp.conf[FACE] > 0]
    lo, hi = face.min(0), face.max(0)
    pad = 0.5 * (hi - lo).max()
    head = fit.camera.project(torch.from_numpy(fitted_joints(session.app.resources.body, fit)[HEAD])).numpy()
    assert np.all(head > lo - pad) and np.all(head < hi + pad), f"head at {head}, face box {lo} .. {hi}"

    # View from the photo's camera (the first framing already is): the browser takes its view.
    click(page.get_by_role("button", name="View from camera"))
    cam = session.client.camera
    want = panel.anchor + fit.camera.position
    wait_until(lambda: np.allclose(cam.position, want, atol=1e-3) and abs(cam.fov - panel.view(cam.aspect)[3]) < 1e-3,
               what="the browser's camera at the photo's")
    head_px = np.array(project(cam, panel.anchor + fitted_joints(session.app.resources.body, fit)[HEAD], CANVAS))
    box = tuple(int(v) for v in (*(head_px - 25), *(head_px + 25)))
    shots: list[np.ndarray] = []

    def body_on_the_face() -> bool:
        shots.append(screenshot_array(page))
        return colour_fraction(shots[-1], FIT_RGB, box=box) > 0.5

    try:
        wait_until(body_on_the_face, timeout=60, what="the fitted body drawn over the face")
    finally:
        Image.fromarray(shots[-1]).save(ARTIFACTS / "fit_camera_view.png")
    # Through the browser's camera the photo's face is where the body's head is drawn.
    face_px = np.array(project(cam, photo_point(panel, face.mean(0, keepdims=True))[0], CANVAS))
    assert np.linalg.norm(face_px - head_px) < 0.1 * CANVAS[1], f"face at {face_px}, head at {head_px} on the canvas"

    # With the body, ghosts and keypoints hidden, the canvas shows the photo, pixel for pixel.
    for node in (panel.body, *panel.ghosts, *panel.keypoint_nodes.values()):
        node.visible = False
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB")).astype(np.float64)
    (x0, y0), (x1, y1) = (np.array(project(cam, p, CANVAS)) for p in photo_point(panel, [[0, 0], [512, 512]]))
    xs, ys = np.meshgrid(np.arange(int(x0) + 12, min(int(x1) - 12, 930)), np.arange(int(y0) + 12, int(y1) - 12))
    keep = ~((xs < 330) & (ys < 170))  # the "software rendering" notification's corner
    u = ((xs - x0) / (x1 - x0) * 512).astype(int)[keep]
    v = ((ys - y0) / (y1 - y0) * 512).astype(int)[keep]

    def photo_difference() -> float:
        shots.append(screenshot_array(page))
        return float(np.abs(shots[-1][ys[keep], xs[keep]].astype(np.float64) - photo[v, u]).mean())

    try:
        wait_until(lambda: photo_difference() < 20.0, timeout=60,
                   what=lambda: f"the photo behind the body (mean difference {photo_difference():.1f})")
    finally:
        Image.fromarray(shots[-1]).save(ARTIFACTS / "fit_camera_view_photo_only.png")
    for node in (panel.body, *panel.ghosts, *panel.keypoint_nodes.values()):
        node.visible = True

    # Hand the pose to the Edit panel.
    click(page.get_by_role("button", name="Edit this fit"))
    wait_until(lambda: session.active_panel is session.panels["edit"] and np.allclose(session.pose, fit.pose_body[0]),
               what="the fitted pose in the Edit panel")


@pytest.mark.browser
@pytest.mark.slow
def test_bad_files_are_reported_then_a_rendered_photo_by_path_fits_its_known_pose(viewer_tab, tmp_path):
    page, session = viewer_tab
    panel = session.panels["fit"]
    body = session.app.resources.body
    open_panel(page, "Fit")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a photo")
    upload_file(page, "Upload photo", broken)
    wait_until(lambda: any("broken.png" in body for _, body in session.notifications), timeout=30,
               what="an error notification naming the photo")
    page.get_by_text("Cannot load photo").first.wait_for(timeout=10_000)
    notes = tmp_path / "notes.json"
    notes.write_text('{"people": "nobody"}')
    upload_file(page, "Upload keypoints", notes)
    wait_until(lambda: any("notes.json" in body for _, body in session.notifications), timeout=30,
               what="an error notification naming the keypoint file")
    assert panel.loaded is None, "a bad file must not replace the photo"

    # Still working: a photo of the mannequin in a known pose, by path, is fitted close to that pose.
    pose = np.load(ROOT.parent / "shared" / "data" / "amass_body_poses.npz")["val"][37]
    camera, root, trans = pr.random_view(np.random.default_rng(1), width=640, height=640, body=body, pose_body=pose,
                                         yaw_deg=(-60, 60))
    path = tmp_path / "mannequin.png"
    Image.fromarray(pr.photo(body, pose, camera=camera, root_orient=root, trans=trans)).save(path)
    set_path(page, "Photo file", str(path), lambda: panel.photo_path.value == str(path))
    click(page.get_by_role("button", name="Load path"))
    wait_for_fit(session)
    fit = panel.fit
    assert (panel.loaded.observation.keypoints.conf > 0).sum() >= 15, "the detector missed the rendered person"
    truth = posed(body.skeleton_joints, pose, root, trans)[0].numpy()
    error = float(pa_mpjpe_mm(fitted_joints(body, fit), truth))
    assert error < 80.0, f"PA-MPJPE {error:.0f} mm (measured 42 mm when written)"
    assert np.linalg.norm(fit.trans[0] - trans) < 0.5, "the body is not where the photo's person stands"
    wait_until(lambda: colour_fraction(screenshot_array(page), FIT_RGB) > 0.01, timeout=60, what="the fitted body")
    page.screenshot(path=str(ARTIFACTS / "fit_rendered_photo.png"))


@pytest.mark.browser
@pytest.mark.slow
def test_a_keypoint_sequence_plays_on_a_timeline_and_the_prior_weight_refits(viewer_tab, tmp_path):
    """Three frames of keypoints (a folder of files) with a folder of their photos: one fit ties
    them; the Frame slider shows each frame's body and photo; a new prior weight fits again."""
    from prior.body.landmarks import keypoint_rig

    page, session = viewer_tab
    panel = session.panels["fit"]
    body = session.app.resources.body
    poses = np.load(ROOT.parent / "shared" / "data" / "amass_body_poses.npz")["val"][[37, 38, 39]]
    camera, root, trans = pr.random_view(np.random.default_rng(1), width=480, height=480, body=body,
                                         pose_body=poses[0], yaw_deg=(-30, 30))
    photos, keypoints = tmp_path / "photos", tmp_path / "keypoints"
    photos.mkdir()
    keypoints.mkdir()
    rig = keypoint_rig(body)
    for t, pose in enumerate(poses):
        Image.fromarray(pr.photo(body, pose, camera=camera, root_orient=root, trans=trans, supersample=1)).save(
            photos / f"frame_{t}.png")
        rot, joints = posed(body.skeleton, pose, root, trans)
        xy = camera.project(rig.points(rot, joints)[0].double()).numpy().astype(np.float32)
        save_keypoints(Keypoints(xy, np.ones(len(xy), np.float32), (480, 480)), keypoints / f"frame_{t}.npz")
    open_panel(page, "Fit")
    set_path(page, "Photo file", str(photos), lambda: panel.photo_path.value == str(photos))
    set_path(page, "Keypoint file", str(keypoints), lambda: panel.keypoints_path.value == str(keypoints))
    click(page.get_by_role("button", name="Load path"))
    wait_for_fit(session)
    fit = panel.fit
    assert panel.loaded.sequence and fit.num_images == 3 and len(panel.loaded.frame_photos) == 3
    assert fit.mean_reprojection_px < 8.0
    # Frame 2 on the timeline: its body and its photo.
    set_gui_number(page, "Frame", 2)
    wait_until(lambda: panel.frame == 2 and panel.photo_frame == 2 and session.pacer.idle(), what="frame 2")
    assert np.allclose(panel.body.joints, fitted_joints(body, fit, 2), atol=1e-5), "the body does not show frame 2"
    assert "**frame 2**" in panel.result.content
    page.screenshot(path=str(ARTIFACTS / "fit_sequence_frame2.png"))
    # A new prior weight fits again (a new job that finishes), with that weight.
    done = session.timings["fit_done"]
    set_gui_number(page, "Prior weight", 0.25)
    wait_until(lambda: panel.weight.value == 0.25, what="the prior weight to reach the server")
    wait_for_fit(session, after=done)
    assert panel.fit is not fit and panel.settings[1] == 0.25
    assert not np.allclose(panel.fit.pose_body, fit.pose_body), "the weight changed nothing"
    assert "× 0.25" in panel.result.content


def test_what_a_photo_and_keypoint_files_load_as(tmp_path):
    """Without a browser: a keypoint folder is a sequence (its photos one per frame), one frame is
    a photo; photos and frames that do not pair up are one error line naming the folder or file."""
    from prior.errors import InputError
    from viewer.panels.fit import read_photo

    photos, frames = tmp_path / "photos", tmp_path / "keypoints"
    photos.mkdir()
    frames.mkdir()
    rng = np.random.default_rng(0)
    for t in range(3):
        xy = rng.uniform(100, 300, (len(KEYPOINT_NAMES), 2)).astype(np.float32)
        save_keypoints(Keypoints(xy, np.ones(len(xy), np.float32), (400, 400)), frames / f"frame_{t}.npz")
    for t in range(2):
        Image.new("RGB", (400, 400), (120, 130, 140)).save(photos / f"frame_{t}.png")
    alone = read_photo(None, frames, name="keypoints")
    assert alone.sequence and alone.num_frames == 3 and not alone.frame_photos and alone.keypoints_name == "keypoints"
    one = read_photo(None, frames / "frame_1.npz", name="frame_1.npz")
    assert not one.sequence and one.observation.keypoints.xy.shape == (len(KEYPOINT_NAMES), 2)
    with pytest.raises(InputError, match="2 photos for 3 frames") as err:
        read_photo(photos, frames, name="photos")
    assert str(photos) in str(err.value)
    with pytest.raises(InputError, match="3 frames of keypoints for one photo"):
        read_photo(photos / "frame_0.png", frames, name="frame_0.png")
    with pytest.raises(InputError, match="needs its keypoint sequence"):
        read_photo(photos, None, name="photos")
    Image.new("RGB", (400, 400)).save(photos / "frame_2.png")
    paired = read_photo(photos, frames, name="photos")
    assert [p.name for p in paired.frame_photos] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    assert paired.observation.image.shape == (400, 400, 3)


def test_a_fitted_shape_is_drawn_and_exported_with_its_betas():
    """The Fit tab draws a body with the fit's shape (a rig of those betas) and exports it so."""
    from prior.body import load_body_model
    from viewer.exports import poses_npz, shown_vertices
    from viewer.panels.base import ShownBody
    from viewer.rig import BodyRig

    body = load_body_model()
    rng = np.random.default_rng(2)
    pose, root, trans = (rng.normal(0, s, n).astype(np.float32) for s, n in ((0.3, 63), (0.5, 3), (1.0, 3)))
    betas = rng.normal(0, 1.5, 10).astype(np.float32)
    drawn = BodyRig(body, betas).pose(pose[None], root_orient=root[None], transl=trans[None]).positions[0]
    shaped = body.skeleton_joints(torch.from_numpy(pose[None]), global_orient=torch.from_numpy(root[None]),
                                  transl=torch.from_numpy(trans[None]), betas=torch.from_numpy(betas[None]))[0]
    np.testing.assert_allclose(drawn, shaped.numpy(), atol=1e-5)
    shown = ShownBody("fit", pose, root, trans, betas, position=(0.5, 1.0, 0.0))
    with torch.no_grad():
        want = body.forward(torch.from_numpy(pose[None]), global_orient=torch.from_numpy(root[None]),
                            transl=torch.from_numpy(trans[None]), betas=torch.from_numpy(betas[None]),
                            hand_pose=body.hand_mean[None] if body.has_hands else None).vertices[0].numpy()
    np.testing.assert_allclose(shown_vertices(body, [shown])[0], want + np.array([0.5, 1.0, 0.0]), atol=1e-5)
    with np.load(io.BytesIO(poses_npz([shown])), allow_pickle=False) as data:
        np.testing.assert_allclose(data["betas"][:10], betas)
