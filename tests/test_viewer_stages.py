"""Each panel shows its own stage; results that no longer match their input go; the camera stays
the user's. In headless Chromium, one fresh tab per test (see conftest's ``viewer_tab``)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from browser import (
    BODY_BOX,
    BODY_RGB,
    click,
    colour_fraction,
    open_panel,
    screenshot_array,
    set_gui_number,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PICKED_RGB = (40, 200, 140)  # viewer.panels.complete.PICKED_COLOR


@pytest.fixture(scope="module")
def viewer_app():
    """The viewer on the shipped prior (plausible hypotheses stay near the body, where the
    pixels are checked) in this process on a free port."""
    from viewer.app import ViewerApp

    app = ViewerApp(port=0, verbose=False)
    yield app
    app.stop()


def complete_left_arm(page, session, hypotheses: int = 3) -> None:
    """Mask the left arm and complete it through the page."""
    panel = session.panels["complete"]
    open_panel(page, "Complete")
    if not panel.parts["left_arm"].value:
        click(page.get_by_text("left arm", exact=True))
    wait_until(lambda: session.mask == {12, 15, 17, 19}, what="the left arm masked")
    set_gui_number(page, "Hypotheses", hypotheses)
    wait_until(lambda: panel.num.value == hypotheses, what="the hypotheses setting")
    session.timings.pop("complete_done", None)
    click(page.get_by_role("button", name="Complete", exact=True))
    wait_until(lambda: "complete_done" in session.timings, timeout=120, what="completion")
    adopt = page.get_by_role("button", name="Adopt hypothesis")
    wait_until(lambda: adopt.is_enabled(), what="Adopt enabled in the page")


def camera_view(session) -> np.ndarray:
    cam = session.client.camera
    return np.concatenate([np.asarray(cam.position), np.asarray(cam.look_at)])


def orbit_as_a_user(page, session) -> np.ndarray:
    """Drag on the canvas (an orbit) and return the camera the browser reports afterwards."""
    before = camera_view(session)
    page.mouse.move(300, 400)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(300 + 12 * k, 400 - 3 * k)
    page.mouse.up()
    wait_until(lambda: np.abs(camera_view(session) - before).max() > 0.05, what="the orbit to reach the server")
    wait_until(lambda: _steady(session), what="the camera to settle")
    return camera_view(session)


def _steady(session) -> bool:
    a = camera_view(session)
    import time

    time.sleep(0.4)
    return bool(np.abs(camera_view(session) - a).max() < 1e-6)


def test_each_panel_shows_its_own_stage_and_acts_on_it(viewer_tab):
    page, session = viewer_tab
    motion = session.panels["motion"]
    open_panel(page, "Motion")
    click(page.get_by_role("button", name="Load example clip"))
    wait_until(lambda: motion.clip is not None and motion.bodies.get("original") is not None
               and motion.bodies["original"].pose is not None, timeout=60, what="the example clip")
    assert session.stage == "motion" and session.groups["motion"].visible and not session.groups["pose"].visible
    # Export while the clip is on screen exports the clip's body at the shown frame, with its root.
    open_panel(page, "Export")
    assert session.stage == "motion", "Export leaves the scene as it is"
    data = np.load(io.BytesIO(session.panels["export"].export_bytes("poses")), allow_pickle=False)
    frame = motion.frame
    assert list(data["body_names"]) == [f"original_frame_{frame}"]
    assert np.allclose(data["root_orient"][0], motion.clip.root_orient[frame])
    assert np.allclose(data["pose_body"][0], motion.clip.pose_body[frame])
    # Edit shows the edited body, and its gizmo appears on it.
    open_panel(page, "Edit")
    assert session.stage == "pose" and session.groups["pose"].visible and not session.groups["motion"].visible
    click(page.get_by_text("Rotation gizmo", exact=True))
    edit = session.panels["edit"]
    wait_until(lambda: edit.gizmo is not None, what="the gizmo")
    wait_until(lambda: colour_fraction(screenshot_array(page), BODY_RGB, box=BODY_BOX) > 0.05, timeout=60,
               what="the edited body on screen")
    # Inspect's bodies are on screen beside the pose, and in the .viser export.
    open_panel(page, "Inspect")
    assert edit.gizmo is None, "the gizmo only shows in the Edit panel"
    inspect = session.panels["inspect"]
    click(page.get_by_text("Show x_t and x̂₀", exact=True))
    wait_until(lambda: inspect.x_t is not None and len(session.shown_bodies()) == 3, timeout=60, what="x_t drawn")
    open_panel(page, "Export")
    assert [b.name for b in session.shown_bodies()] == ["pose", "x_t", "x0_hat"]
    assert len(session.panels["export"].export_bytes("scene")) > 10_000


def test_completions_are_cleared_when_their_input_changes(viewer_tab):
    page, session = viewer_tab
    panel = session.panels["complete"]
    adopt = page.get_by_role("button", name="Adopt hypothesis")
    # A mask change drops the hypotheses of the old mask.
    complete_left_arm(page, session)
    assert len(panel.ghosts) == 3
    click(page.get_by_text("right leg", exact=True))
    wait_until(lambda: not panel.ghosts and panel.hypotheses is None, what="the stale hypotheses to go")
    wait_until(lambda: not adopt.is_enabled(), what="Adopt disabled in the page")
    # Clear mask drops them too.
    click(page.get_by_text("right leg", exact=True))  # back to the left arm alone
    wait_until(lambda: session.mask == {12, 15, 17, 19}, what="the left arm alone")
    complete_left_arm(page, session)
    click(page.get_by_role("button", name="Clear mask"))
    wait_until(lambda: not panel.ghosts and not adopt.is_enabled(), what="Clear mask to drop the hypotheses")
    # An edit of the pose (Rest pose after a change, in the Edit panel) drops them.
    session.set_pose(np.full(63, 0.05, np.float32), label="test pose")
    complete_left_arm(page, session)
    open_panel(page, "Edit")
    click(page.get_by_role("button", name="Rest pose"))
    wait_until(lambda: np.allclose(session.pose, 0.0), what="the rest pose")
    open_panel(page, "Complete")
    wait_until(lambda: not panel.ghosts and not adopt.is_enabled(), what="the edit to drop the hypotheses")


def test_the_masked_limb_is_see_through_while_hypotheses_are_shown(viewer_tab):
    page, session = viewer_tab
    complete_left_arm(page, session)
    masked = [j + 1 for j in session.mask if j + 1 in session.main.joint_labels]  # SMPL-X joints drawn
    assert masked
    wait_until(lambda: all(session.main.joint_opacity(j) is not None and session.main.joint_opacity(j) < 0.5
                           for j in masked), what="the masked limb to be see-through")
    assert session.main.joint_opacity(1) is None, "the rest of the body stays opaque"
    # The picked hypothesis is seen through the limb.
    wait_until(lambda: colour_fraction(screenshot_array(page), PICKED_RGB, min_sat=0.3) > 0.001, timeout=60,
               what="the picked hypothesis on screen")
    page.screenshot(path="/tmp/dposer-view-e2e/see_through_limb.png")
    open_panel(page, "Edit")  # the hypotheses are Complete's: elsewhere they go, and the limb is solid
    wait_until(lambda: all(session.main.joint_opacity(j) is None for j in masked), what="the limb solid again")


def test_the_camera_stays_where_the_user_put_it(viewer_tab, chromium, viewer_app):
    from conftest import open_tab

    page, session = viewer_tab
    user_view = orbit_as_a_user(page, session)
    complete_left_arm(page, session)
    assert np.abs(camera_view(session) - user_view).max() < 1e-4, "Complete moved the camera"
    # A stage shown for the first time is framed once; actions there leave the camera alone.
    motion = session.panels["motion"]
    open_panel(page, "Motion")
    click(page.get_by_role("button", name="Load example clip"))
    wait_until(lambda: motion.clip is not None and "motion" in session.framed, timeout=60, what="the clip framed")
    wait_until(lambda: _steady(session), what="the camera to settle")
    motion_view = camera_view(session)
    click(page.get_by_role("button", name="Add noise"))
    wait_until(lambda: motion.noisy_joints is not None, what="noise")
    assert np.abs(camera_view(session) - motion_view).max() < 1e-4, "Add noise moved the camera"
    # Back on the pose: the user's view of it again.
    open_panel(page, "Complete")
    wait_until(lambda: np.abs(camera_view(session) - user_view).max() < 1e-3, what="the user's view restored")
    # A second tab, opened while this one is open, starts framed on the body.
    context, page2, session2 = open_tab(chromium, viewer_app)
    try:
        look = np.asarray(session2.client.camera.look_at)
        assert abs(look[1] - 0.5 * session2.rig.height_m) < 0.05
        wait_until(lambda: colour_fraction(screenshot_array(page2), BODY_RGB, box=BODY_BOX) > 0.05, timeout=60,
                   what="the body framed in the second tab")
    finally:
        context.close()


def test_a_shaped_clip_is_denoised_against_its_own_shape(viewer_tab, tmp_path):
    """A clip with betas: its ground-truth joints are the shaped body's, the same joints the fit
    is made with (the error plot shows no offset from a shape mismatch)."""
    import torch

    page, session = viewer_tab
    motion = session.panels["motion"]
    body = session.app.resources.body
    with np.load(_example(), allow_pickle=False) as d:
        pose, root = d["pose_body"][:30].astype(np.float32), d["root_orient"][:30].astype(np.float32)
    betas = np.random.default_rng(3).normal(0, 1, 10).astype(np.float32)
    path = tmp_path / "shaped.npz"
    np.savez(path, pose_body=pose, root_orient=root, betas=betas)
    open_panel(page, "Motion")
    from browser import upload_file

    upload_file(page, "Upload clip", path)
    wait_until(lambda: motion.clip is not None and motion.clip.num_frames == 30, timeout=60, what="the shaped clip")
    with torch.no_grad():
        shaped = body.skeleton_joints(torch.from_numpy(pose), global_orient=torch.from_numpy(root),
                                      betas=torch.from_numpy(betas)).numpy()
        mean = body.skeleton_joints(torch.from_numpy(pose), global_orient=torch.from_numpy(root)).numpy()
    assert 1000 * np.linalg.norm(shaped - mean, axis=-1).mean() > 5, "the betas should change the joints"
    assert np.allclose(motion.gt_joints, shaped, atol=1e-5), "ground truth without the clip's shape"
    click(page.get_by_role("button", name="Add noise"))
    wait_until(lambda: motion.noisy_joints is not None, what="noise")
    session.timings.pop("denoise_done", None)
    click(page.get_by_role("button", name="Denoise", exact=True).last)
    wait_until(lambda: "denoise_done" in session.timings, timeout=120, what="denoising")
    noisy_mm, denoised_mm = motion.errors_mm["noisy"].mean(), motion.errors_mm["denoised"].mean()
    assert denoised_mm < 0.5 * noisy_mm, f"{noisy_mm:.1f} -> {denoised_mm:.1f} mm"


def _example():
    from prior.files import asset_path

    return asset_path("gesture_clip.npz")
