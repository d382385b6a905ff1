"""dposer-view end to end in headless Chromium: the user's clicks, the server's state, the pixels.

One in-process app serves the tests; each test opens its own browser tab (its own session), so
no test depends on another's state or order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from browser import (
    BODY_BOX,
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

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DENOISED_RGB = (110, 195, 140)  # viewer.panels.motion.DENOISED_COLOR
ARTIFACTS = Path(tempfile.gettempdir()) / "dposer-view-e2e"  # screenshots, for a human to look at
ARTIFACTS.mkdir(exist_ok=True)


def shown_bones(body) -> tuple[np.ndarray, np.ndarray]:
    """``(wxyz (22, 4), positions (22, 3))`` the server last sent for a body's bones."""
    mesh = body.meshes[0]
    return np.stack([b.wxyz for b in mesh.bones]), np.stack([b.position for b in mesh.bones])


def download_denoised(page, session) -> Path:
    """Click the Motion tab's Download (opening its folder) and return the downloaded file."""
    motion = session.panels["motion"]
    button = page.get_by_role("button", name="Download", exact=True)
    if not button.is_visible():
        click(page.get_by_text("Save denoised", exact=True))  # open the folder
    button.wait_for(state="visible", timeout=10_000)
    wait_until(lambda: not motion.download.disabled and button.is_enabled(), what="Download enabled")
    session.timings.pop("motion_download", None)
    with page.expect_download(timeout=60_000) as download:
        for _ in range(3):  # a click the busy page drops is clicked again; one download is sent
            click(button)
            try:
                wait_until(lambda: "motion_download" in session.timings, timeout=10, what="the download click")
                break
            except AssertionError:
                continue
    return Path(download.value.path())


def test_body_is_drawn_upright_and_framed(viewer_tab):
    page, session = viewer_tab
    wait_until(lambda: session.main.pose is not None, what="the first pose")
    wait_until(lambda: np.all(np.asarray(session.client.camera.look_at)[1] > 0.3), what="the camera framing")
    shots: list[np.ndarray] = []

    def body_pixels() -> float:
        shots.append(screenshot_array(page))
        return colour_fraction(shots[-1], (196, 160, 120), box=BODY_BOX)

    wait_until(lambda: body_pixels() > 0.05, timeout=60, what="the body to be drawn")
    with_body = shots[-1]
    session.main.visible = False
    wait_until(lambda: body_pixels() < 0.01, what="the body to disappear when hidden")
    empty = shots[-1]
    session.main.visible = True
    # Upright: the head (top of the body colour) is above the feet, in the middle of the free canvas.
    mask = np.zeros(with_body.shape[:2], bool)
    x0, y0, x1, y1 = BODY_BOX
    diff = np.abs(with_body.astype(int) - empty.astype(int)).sum(-1) > 40
    mask[y0:y1, x0:x1] = diff[y0:y1, x0:x1]
    ys, xs = np.nonzero(mask)
    assert ys.max() - ys.min() > 0.5 * (y1 - y0), "the body is not standing (too short on screen)"
    assert abs(xs.mean() - 640 * 0.75) < 200, "the body is not in the middle of the free canvas"


def test_generate_streams_then_scrubs_the_trajectory(viewer_tab):
    page, session = viewer_tab
    gen = session.panels["generate"]
    open_panel(page, "Generate")
    # 300 steps (about 2 s here): long enough that the first streamed update is drawn in the first
    # half even when the display thread starts late on a loaded machine (60 steps ran out under load).
    set_gui_number(page, "Steps", 300)
    set_gui_number(page, "Samples", 3)
    wait_until(lambda: gen.steps.value == 300 and gen.num.value == 3, what="the settings to reach the server")
    click(page.get_by_role("button", name="Generate", exact=True))
    wait_until(lambda: "generate_done" in session.timings, timeout=120, what="generation to finish")
    assert session.stage == "samples"
    assert gen.first_streamed_t is not None and gen.first_streamed_t > 0.5, "the bodies did not move while sampling"
    assert gen.trajectory.shape == (300, 3, 63) and gen.t[0] > 0.95 and gen.t[-1] == 0.0
    # The bodies show the final samples.
    final = session.rig.pose(gen.trajectory[-1])
    wait_until(lambda: np.allclose(shown_bones(gen.bodies[1])[1], final.positions[1], atol=1e-5), what="final poses")
    # Scrub to t = 0.5: the bodies jump to the recorded step nearest that time.
    set_gui_number(page, "Timestep t", 0.5)
    i = int(np.abs(gen.t - 0.5).argmin())
    want = session.rig.pose(gen.trajectory[i])
    wait_until(lambda: abs(gen.t_shown - gen.t[i]) < 1e-6, what="the scrubbed timestep")
    wait_until(lambda: np.allclose(shown_bones(gen.bodies[0])[1], want.positions[0], atol=1e-5), what="scrubbed poses")
    assert not np.allclose(want.positions, final.positions, atol=1e-3)
    # Play animates from t = 1 back to 0.
    click(page.get_by_role("button", name="Play trajectory"))
    wait_until(lambda: gen.played_t_max is not None, timeout=30, what="playback to start")
    wait_until(lambda: gen.t_shown == 0.0 and not gen.player.playing, timeout=30, what="playback end")
    assert gen.played_t_max > 0.9, "playback starts from the noise end (t ~ 1)"
    # Take sample #1 (0-based, as labelled) as the pose to work on.
    set_gui_number(page, "Sample to edit", 1)
    wait_until(lambda: gen.pick.value == 1, what="the sample choice")
    click(page.get_by_role("button", name="Edit this sample"))
    wait_until(lambda: session.stage == "pose" and np.allclose(session.pose, gen.trajectory[-1, 1]), what="the pose")
    assert session.active_panel is session.panels["edit"], "the chosen sample opens in the Edit panel"


def test_click_a_leg_to_mask_it_and_complete(viewer_tab):
    page, session = viewer_tab
    open_panel(page, "Complete")
    # Start from the rest pose so the thigh is where the camera expects it.
    session.set_pose(np.zeros(63, np.float32), label="test rest")
    wait_until(lambda: session.pacer.idle() and np.allclose(session.main.joints[4, 1], session.rig.rest_joints[4, 1]),
               what="rest pose")
    session.frame_camera()
    wait_until(lambda: abs(session.client.camera.look_at[1] - 0.5 * session.rig.height_m) < 0.05, what="framing")
    thigh = 0.5 * (session.rig.rest_joints[1] + session.rig.rest_joints[4]) + np.array([0.0, session.ground_y, 0.0])
    x, y = project(session.client.camera, thigh, (1280, 800))
    session.timings.pop("part_clicked", None)
    for _ in range(3):  # a click the busy page drops (taken for the start of a drag) is clicked again
        page.mouse.click(x, y)
        try:
            wait_until(lambda: "part_clicked" in session.timings, timeout=10, what="the click")
            break
        except AssertionError:
            continue
    wait_until(lambda: session.mask == {0, 3, 6, 9}, timeout=15, what="the left leg to be masked by a click")
    assert session.panels["complete"].parts["left_leg"].value
    wait_until(lambda: session.main.joint_color(4) != session.main.joint_color(5), what="the masked leg colour")
    image = screenshot_array(page)
    assert colour_fraction(image, (225, 75, 50), min_sat=0.4, box=BODY_BOX) > 0.003, "the masked leg is not orange"

    set_gui_number(page, "Hypotheses", 4)
    wait_until(lambda: session.panels["complete"].num.value == 4, what="hypotheses setting")
    click(page.get_by_role("button", name="Complete", exact=True))
    panel = session.panels["complete"]
    wait_until(lambda: "complete_done" in session.timings, timeout=120, what="completion")
    hyps = panel.hypotheses
    assert hyps.shape == (4, 63)
    observed = np.ones(63, bool)
    for j in (0, 3, 6, 9):
        observed[3 * j : 3 * j + 3] = False
    assert np.allclose(hyps[:, observed], session.pose[observed]), "observed joints must be copied exactly"
    assert not np.allclose(hyps[:, ~observed], 0.0), "the masked leg was not completed"
    assert len(panel.ghosts) == 4 and all(g.pose is not None for g in panel.ghosts)
    assert all(m.opacity is not None and m.opacity < 1 for g in panel.ghosts for m in g.meshes), "ghosts are opaque"
    # Pick hypothesis 3 and adopt it: it becomes the pose, undoable.
    set_gui_number(page, "Hypothesis", 3)
    wait_until(lambda: panel.picked == 2, what="the pick")
    click(page.get_by_role("button", name="Adopt hypothesis"))
    wait_until(lambda: np.allclose(session.pose, hyps[2]) and not panel.ghosts, what="the adopted hypothesis")
    open_panel(page, "Edit")
    for name, want in (("Undo", np.zeros(63)), ("Redo", hyps[2])):
        click(page.get_by_role("button", name=name))
        wait_until(lambda want=want: np.allclose(session.pose, want), what=name.lower())


def test_rotate_a_joint_with_the_gizmo_state(viewer_tab):
    page, session = viewer_tab
    edit = session.panels["edit"]
    open_panel(page, "Edit")
    click(page.get_by_text("Rotation gizmo", exact=True))
    wait_until(lambda: edit.gizmo is not None, what="the gizmo")
    j = edit.selected_joint
    assert np.allclose(edit.gizmo.position, session.main.joints[j], atol=1e-6), "the gizmo sits on the joint"
    assert np.allclose(np.abs(edit.gizmo.wxyz @ session.main.pose.wxyz[0, j]), 1.0, atol=1e-6)
    # The prior scores the pose shown.
    wait_until(lambda: edit.score_value is not None, timeout=120, what="a plausibility score")
    assert edit.score_value.label in ("typical", "unusual", "implausible")
    page.get_by_text(edit.score_value.label).first.wait_for(timeout=30_000)


def test_ik_handles_move_the_wrist(viewer_tab):
    page, session = viewer_tab
    edit = session.panels["edit"]
    open_panel(page, "Edit")
    click(page.get_by_text("Drag hands and feet (IK)", exact=True))
    wait_until(lambda: len(edit.handles) == 4 and all(h.visible for h in edit.handles.values()), what="IK handles")
    wrist = session.main.joints[20]
    assert np.allclose(edit.handles[20].position, wrist, atol=1e-6)
    # What a drag of the left-wrist handle ends with (playwright cannot drag a 3D gizmo reliably).
    target = wrist + np.array([0.0, 0.25, 0.1])
    runs = edit.ik_runs
    edit.solve_ik({20: target}, final=True)
    wait_until(lambda: edit.ik_runs > runs and session.pacer.idle(), timeout=60, what="the IK solve")
    joints = session.rig.pose(session.pose[None]).positions[0]
    assert np.linalg.norm(joints[20] - target) < 0.02, "the wrist did not reach the target"
    assert session.history.label == "IK drag"


def test_motion_clip_loads_plays_and_gets_noise(viewer_tab):
    page, session = viewer_tab
    motion = session.panels["motion"]
    open_panel(page, "Motion")
    click(page.get_by_role("button", name="Load example clip"))
    wait_until(lambda: motion.clip is not None and session.stage == "motion", timeout=30, what="the example clip")
    assert motion.clip.num_frames == 240
    wait_until(lambda: "original" in motion.bodies and motion.bodies["original"].pose is not None,
               what="the first frame")
    click(page.get_by_role("button", name="Play", exact=True))
    wait_until(lambda: motion.frame > 10, timeout=20, what="playback to advance")
    click(page.get_by_role("button", name="Pause"))
    wait_until(lambda: not motion.playing, what="pause")
    frame, clip = motion.frame, motion.clip
    pose = motion.bodies["original"].pose
    want = session.rig.pose(clip.pose_body[frame : frame + 1], root_orient=clip.root_orient[frame : frame + 1])
    assert np.allclose(pose.positions, want.positions), "the body shows the clip's frame on the timeline"
    click(page.get_by_role("button", name="Add noise"))
    wait_until(lambda: motion.noisy_joints is not None and "noisy" in motion.errors_mm, what="noisy joints")
    err = motion.errors_mm["noisy"]
    assert 40 < err.mean() < 80, f"std 0.04 m noise should give ~64 mm MPJPE, got {err.mean():.1f}"
    wait_until(lambda: colour_fraction(screenshot_array(page), (196, 160, 120)) > 0.01, what="the clip's body drawn")
    wait_until(lambda: colour_fraction(screenshot_array(page), (225, 70, 60), min_sat=0.4) > 0.0005,
               what="the noisy joints drawn")
    page.screenshot(path=str(ARTIFACTS / "motion.png"))


def test_broken_upload_is_reported_and_the_app_keeps_working(viewer_tab, tmp_path):
    page, session = viewer_tab
    open_panel(page, "Motion")
    motion = session.panels["motion"]
    before = motion.clip
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 this is not a zip archive")
    upload_file(page, "Upload clip", broken)
    wait_until(lambda: any("broken.npz" in body for _, body in session.notifications), timeout=30,
               what="an error notification naming the file")
    page.get_by_text("Cannot load clip").first.wait_for(timeout=10_000)
    assert motion.clip is before, "a bad upload must not replace the clip"
    # Still working: a good upload (30 frames of the example clip) loads, takes noise, denoises.
    good = tmp_path / "fragment.npz"
    with np.load(Path(__file__).resolve().parents[1] / "assets" / "gesture_clip.npz") as data:
        np.savez(good, pose_body=data["pose_body"][:30], root_orient=data["root_orient"][:30])
    upload_file(page, "Upload clip", good)
    wait_until(lambda: motion.clip is not before and motion.clip.num_frames == 30, timeout=30, what="the good upload")
    click(page.get_by_role("button", name="Add noise"))
    wait_until(lambda: motion.noisy_joints is not None and len(motion.noisy_joints) == 30, what="noise")
    click(page.get_by_role("button", name="Denoise", exact=True).last)  # .last: not the folder header
    wait_until(lambda: "denoise_done" in session.timings, timeout=120,
               what=lambda: f"denoising (notifications {session.notifications[-3:]}, "
                            f"running {session.app.worker.running}, timings {sorted(session.timings)})")
    noisy_mm, denoised_mm = motion.errors_mm["noisy"].mean(), motion.errors_mm["denoised"].mean()
    assert denoised_mm < 0.6 * noisy_mm, f"denoising did not help: {noisy_mm:.1f} -> {denoised_mm:.1f} mm"
    assert motion.plot.visible and motion.bodies["denoised"].pose is not None
    path = download_denoised(page, session)
    with np.load(path, allow_pickle=False) as data:
        assert np.allclose(data["pose_body"], motion.denoised, atol=1e-6)


def test_observed_joints_upload_is_fitted_with_its_root(viewer_tab, tmp_path):
    """A file of 3D joints (no poses, no root; some joints unseen) loads as observations; Denoise
    fits poses and the root to them; the fit is close to the clean joints and can be exported."""
    page, session = viewer_tab
    open_panel(page, "Motion")
    motion = session.panels["motion"]
    with np.load(Path(__file__).resolve().parents[1] / "assets" / "gesture_clip.npz") as data:
        pose, root = torch.from_numpy(data["pose_body"][:40]), torch.from_numpy(data["root_orient"][:40])
    gt = session.app.resources.body.joints(pose, global_orient=root)[:, :22].numpy()
    rng = np.random.default_rng(0)
    observed = gt + rng.normal(0, 0.03, gt.shape)
    unseen = rng.random(gt.shape[:2]) < 0.05
    unseen[10:20, [18, 20]] = True  # the left elbow and wrist occluded for a third of a second
    observed[unseen] = np.nan
    path = tmp_path / "keypoints.npz"
    np.savez(path, joints=observed.astype(np.float32), mocap_frame_rate=np.array(30.0))
    upload_file(page, "Upload clip", path)
    wait_until(lambda: motion.track is not None and motion.clip.num_frames == 40, what="the observed joints")
    assert "no ground truth" in motion.info.content and motion.add_noise.disabled
    wait_until(lambda: colour_fraction(screenshot_array(page), (225, 70, 60), min_sat=0.4) > 0.0005,
               what="the observed joints drawn")
    session.timings.pop("denoise_done", None)
    click(page.get_by_role("button", name="Denoise", exact=True).last)  # .last: not the folder header
    wait_until(lambda: "denoise_done" in session.timings, timeout=120, what="the fit")
    assert motion.fitted_root is not None, "the root was not fitted"
    wait_until(lambda: motion.plot.visible, what="the error plot")  # shown by the display thread
    assert np.isfinite(motion.errors_mm["denoised"]).all()
    wait_until(lambda: colour_fraction(screenshot_array(page), DENOISED_RGB) > 0.01, what="the fitted body drawn")
    page.screenshot(path=str(ARTIFACTS / "observed_joints.png"))
    # The downloaded fit, read back and posed by the body model, lies on the clean joints.
    with np.load(download_denoised(page, session), allow_pickle=False) as data:
        fitted = session.app.resources.body.joints(
            torch.from_numpy(data["pose_body"]), global_orient=torch.from_numpy(data["root_orient"]),
            transl=torch.from_numpy(data["trans"]))[:, :22].numpy()
    in_mm = 1000 * np.linalg.norm(observed - gt, axis=-1)[~unseen].mean()
    out_mm = 1000 * np.linalg.norm(fitted - gt, axis=-1).mean()
    assert out_mm < 0.6 * in_mm, f"the fit is not closer to the clean joints: {in_mm:.1f} -> {out_mm:.1f} mm"


def test_bad_checkpoint_upload_keeps_the_prior(viewer_tab, tmp_path):
    page, session = viewer_tab
    prior = session.app.resources.prior
    open_panel(page, "Model")
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x80\x02 not a checkpoint")
    upload_file(page, "Upload checkpoint", bad)
    wait_until(lambda: any("weights.pth" in body for _, body in session.notifications), timeout=60,
               what="a notification about the checkpoint")
    assert session.app.resources.prior is prior
    page.get_by_text("Cannot load prior").first.wait_for(timeout=10_000)


def test_export_downloads(viewer_tab, tmp_path):
    page, session = viewer_tab
    open_panel(page, "Export")
    export = session.panels["export"]
    with page.expect_download(timeout=30_000) as download:
        click(page.get_by_role("button", name="Download poses (.npz)"))
    assert download.value.suggested_filename == "poses.npz"
    with np.load(download.value.path(), allow_pickle=False) as data:
        assert data["pose_body"].shape == (1, 63) and data["poses"].shape == (1, 165)
        assert list(data["body_names"]) == ["pose"]
    with page.expect_download(timeout=30_000) as download:  # the animation format's default: the GLB
        click(page.get_by_role("button", name="Download animation"))
    assert download.value.suggested_filename == "poses.glb"
    glb = Path(download.value.path()).read_bytes()
    assert glb[:4] == b"glTF" and glb == export.export_bytes("animation", mesh_format="glb")
    mesh = export.export_bytes("mesh", mesh_format="obj")
    assert mesh.count(b"\nf ") == session.app.resources.body.faces.shape[0]
    export.save_file("pose.ply")
    import trimesh

    saved = session.app.export_dir / "pose.ply"
    wait_until(lambda: saved.exists(), timeout=60, what="the saved mesh")
    assert len(trimesh.load(saved).faces) == session.app.resources.body.faces.shape[0]
    scene = export.export_bytes("scene")
    assert len(scene) > 10_000


def test_switch_body_model_from_the_ui_and_back(viewer_tab, tmp_path):
    from synthetic_body import write_synthetic_model

    page, session = viewer_tab
    app = session.app
    model = write_synthetic_model(tmp_path / "SMPLX_NEUTRAL.npz", "smplx")
    open_panel(page, "Model")
    session.set_pose(np.random.default_rng(2).normal(0, 0.3, 63).astype(np.float32), label="test pose")
    pose = session.pose.copy()
    body_path = gui_row(page, "Path").locator("input").first  # the last "Path": the body model's
    body_path.fill(str(model))
    body_path.press("Enter")
    wait_until(lambda: session.panels["model"].body_path.value == str(model), what="the typed path")
    click(page.get_by_role("button", name="Load body model"))
    wait_until(lambda: app.resources.body.kind == "smplx" and session.rig is app.resources.rig, timeout=120,
               what=lambda: f"the SMPL-X body (notifications {session.notifications[-2:]})")
    page.get_by_text("Body model loaded").first.wait_for(timeout=30_000)
    # The same pose, re-drawn on the new skeleton: the bones sent are the new rig's FK of it.
    want = session.rig.pose(pose[None]).positions[0]

    def bones_sent_are_the_new_fk() -> bool:  # every bone of every submesh sits on a joint of the new FK
        sent = np.concatenate([np.stack([b.position for b in m.bones]) for m in session.main.meshes])
        return bool(np.abs(sent[:, None] - want[None]).max(-1).min(1).max() < 1e-5)

    wait_until(lambda: session.main.joints is not None and np.allclose(session.main.joints, want)
               and bones_sent_are_the_new_fk(), what="the pose on the new body")
    assert np.allclose(session.pose, pose)
    shots: list[np.ndarray] = []

    def body_pixels(box: tuple[int, int, int, int] | None = None) -> float:
        shots.append(screenshot_array(page))
        return colour_fraction(shots[-1], (196, 160, 120), box=box)

    try:
        wait_until(lambda: body_pixels() > 0.003, timeout=60, what="the SMPL-X body to be drawn")
    finally:
        if shots:
            from PIL import Image

            Image.fromarray(shots[-1]).save(ARTIFACTS / "body_switched_smplx.png")
    # Back to the mannequin (empty path): drawn again, the page still alive.
    body_path.fill("")
    body_path.press("Enter")
    wait_until(lambda: session.panels["model"].body_path.value == "", what="the cleared path")
    click(page.get_by_role("button", name="Load body model"))
    wait_until(lambda: app.resources.body.kind == "mannequin" and session.rig is app.resources.rig, timeout=120,
               what="the mannequin")
    wait_until(lambda: session.main.rig is app.resources.rig and session.pacer.idle(), what="the redraw")
    shots.clear()
    try:  # the mannequin's solid limbs cover far more of the body box than the spiky stand-in
        wait_until(lambda: body_pixels(BODY_BOX) > 0.05, timeout=60, what="the mannequin to be drawn again")
    finally:
        from PIL import Image

        Image.fromarray(shots[-1]).save(ARTIFACTS / "body_switched_back.png")


def test_console_script_starts_without_a_prior_and_says_so(chromium, tmp_path):
    """The installed `dposer-view` with a checkpoint and a body model that do not exist: it
    starts, draws the mannequin, and tells the user, in the tab and in the terminal (no crash)."""
    from browser import VIEWPORT, ViewerProcess, open_panel

    viewer = ViewerProcess("--ckpt", str(tmp_path / "missing.pth"), "--body-model", str(tmp_path / "nobody.npz"))
    try:
        assert viewer.url.startswith("http://127.0.0.1:")
        page = chromium.new_page(viewport=VIEWPORT)
        page.goto(viewer.url)
        page.get_by_text("No prior loaded").first.wait_for(timeout=60_000)
        page.get_by_text("missing.pth: no such file", exact=False).first.wait_for(timeout=30_000)
        page.get_by_text("none loaded").first.wait_for(timeout=30_000)
        wait_until(lambda: colour_fraction(screenshot_array(page), (196, 160, 120), box=BODY_BOX) > 0.05,
                   timeout=60, what="the body drawn")
        before = page.get_by_text("No prior loaded").count()
        open_panel(page, "Generate")
        click(page.get_by_role("button", name="Generate", exact=True))  # needs a prior: says so, keeps running
        wait_until(lambda: page.get_by_text("No prior loaded").count() > before, what="a second notification")
        assert viewer.alive()
        page.close()
    finally:
        viewer.stop()
    log = viewer.log()
    assert f"dposer-view: {tmp_path / 'missing.pth'}: no such file" in log, log
    assert f"dposer-view: {tmp_path / 'nobody.npz'}: " in log and "(showing the mannequin instead)" in log, log
