"""The Generate panel's samples: a grid of labelled bodies framed to fill the free canvas, a click
selects one, "Edit this sample" edits it, a samples file opens as the grid, and forged GUI values
are clamped. Unit tests drive a ClientSession over a fake client (no browser); one test clicks a
sample in headless Chromium."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fake_tab import send_as_the_browser, settle

from prior.render import grid_positions
from viewer.panels.generate import MAX_SAMPLES, ROW_M, SAMPLE_COLOR, SELECTED_COLOR, SPACING_M

from browser import (
    VIEWPORT,
    click,
    colour_fraction,
    open_panel,
    project,
    save_shot,
    screenshot_array,
    set_gui_number,
    upload_file,
    wait_until,
)


# -- a session without a browser: conftest's ``app`` and ``session`` ------------------------------
@pytest.fixture(scope="module")
def demo_poses(shared_data) -> np.ndarray:
    with np.load(shared_data / "dposer_demo_poses.npz") as f:
        return f["pose_body"].astype(np.float32)




def open_samples(session, path: Path) -> None:
    session.timings.pop("samples_loaded", None)
    session.open_file("samples", path)
    wait_until(lambda: "samples_loaded" in session.timings, timeout=60,
               what=lambda: f"the samples to load; notifications: {session.notifications}")
    settle(session)




def click_mesh(session, body) -> None:
    """Run the click callbacks of the mesh a click on ``body`` hits (the handle its scene name holds now)."""
    for mesh in body.meshes:
        current = session.scene._handle_from_node_name[mesh.name]
        for entry in list(current._impl.click_cb):
            entry.callback(SimpleNamespace(client=None, target=current))


# -- layout ------------------------------------------------------------------------------------
@pytest.mark.parametrize("count, rows, columns", [(1, 1, 1), (3, 1, 3), (5, 2, 3), (12, 3, 4), (16, 3, 6), (36, 6, 6)])
def test_the_grid_is_wider_than_deep_and_no_body_hides_behind_another(count, rows, columns):
    spots = grid_positions(count, SPACING_M, ROW_M)
    zs = sorted({z for _, z in spots}, reverse=True)
    assert len(spots) == count and len(set(spots)) == count
    assert len(zs) == rows and zs[0] == 0.0 and np.allclose(np.diff(zs), -ROW_M), "rows go back from z = 0"
    per_row = [sum(1 for _, z in spots if z == row) for row in zs]
    assert max(per_row) == columns <= 6 and columns >= rows
    assert per_row == sorted(per_row, reverse=True), "the front rows are the full ones"
    xs = np.array([x for x, _ in spots])
    assert abs(xs.min() + xs.max()) <= 0.5 * SPACING_M + 1e-9, "the block is centred on x = 0"
    for back, front in zip(zs[1:], zs):
        for x, z in spots:
            if z == back:
                gap = min(abs(x - fx) for fx, fz in spots if fz == front)
                assert gap >= 0.4 * SPACING_M, f"body at x={x:.2f} stands right behind one in front"


def test_framing_skins_the_samples_as_the_body_model_does(demo_poses):
    """The meshes the grid is framed on are those drawn: the body model's own vertices."""
    import torch

    from prior.body import load_body_model
    from viewer.panels.generate import skinned_vertices
    from viewer.rig import BodyRig

    rig = BodyRig(load_body_model())
    poses = demo_poses[:6]
    body = rig.body
    want = body.forward(torch.as_tensor(poses), hand_pose=body.hand_mean[None].expand(6, -1)).vertices.numpy()
    np.testing.assert_allclose(skinned_vertices(rig, rig.pose(poses)), want, atol=1e-4)


def test_a_samples_file_opens_as_a_labelled_grid(session, demo_poses, tmp_path):
    path = tmp_path / "samples.npz"
    np.savez(path, pose_body=demo_poses[:12], joints=np.zeros((12, 22, 3), np.float32))
    open_samples(session, path)
    gen = session.panels["generate"]
    assert session.active_panel is gen and session.stage == "samples"
    np.testing.assert_array_equal(gen.samples, demo_poses[:12])
    y, rig = session.ground_y, session.rig
    heads = rig.pose(demo_poses[:12]).positions[:, 15]  # SMPL-X joint 15: the head
    head_to_top = rig.whole.vertices[:, 1].max() - rig.rest_joints[15, 1]
    for k, (body, (x, z)) in enumerate(zip(gen.bodies, grid_positions(12, SPACING_M, ROW_M))):
        np.testing.assert_allclose(body.position, (x, y, z))
        label, head = gen.labels[k], heads[k] + body.position
        assert label.visible and label.text == ("#0 selected" if k == 0 else f"#{k}")
        assert np.allclose(label.position[[0, 2]], head[[0, 2]]) and label.position[1] > head[1] + head_to_top, \
            "each label stands just above its body's head"
    assert gen.selected == 0 and tuple(gen.bodies[0].meshes[0].color) == SELECTED_COLOR
    assert all(tuple(b.meshes[0].color) == SAMPLE_COLOR for b in gen.bodies[1:])
    assert "12 samples from samples" in gen.info.content
    xs = [x for x, _ in grid_positions(12, SPACING_M, ROW_M)]
    assert gen.extent() == (min(xs), max(xs))


def test_a_large_file_shows_its_first_samples_and_a_bad_one_leaves_them(session, demo_poses, tmp_path):
    gen = session.panels["generate"]
    big = tmp_path / "many.npz"
    np.savez(big, pose_body=demo_poses[:100])
    open_samples(session, big)
    assert len(gen.bodies) == 36 and "the first 36 of 100" in gen.info.content
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"PK not really a zip")
    session.open_file("samples", bad)
    wait_until(lambda: any(t == "Cannot load samples" for t, _ in session.notifications), what="the error")
    settle(session)
    title, body = next(n for n in session.notifications if n[0] == "Cannot load samples")
    assert body.startswith(str(bad)) or "broken.npz" in body
    assert len(gen.bodies) == 36 and gen.samples is not None, "the shown samples stay"


@pytest.mark.parametrize("count", [3, 12, 36])
@pytest.mark.parametrize("aspect", [1.6, 1.0])
def test_the_view_holds_every_sample_in_the_free_canvas_and_fills_it(session, demo_poses, tmp_path, count, aspect):
    """Each body's real mesh, projected with the panel's view, lies left of the control panel
    (the right 25% of the canvas) and inside the canvas; the grid fills the free part."""
    from viewer.exports import shown_vertices
    from viewer.page import PANEL_FRACTION

    path = tmp_path / "grid.npz"
    np.savez(path, pose_body=demo_poses[100:100 + count])
    open_samples(session, path)
    gen = session.panels["generate"]
    position, look_at, up, fov = gen.view(aspect)
    camera = SimpleNamespace(position=position, look_at=look_at, up_direction=up, fov=fov)
    size = (1000 * aspect, 1000.0)
    free_w = (1 - PANEL_FRACTION) * size[0]
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for k, verts in enumerate(shown_vertices(session.rig.body, gen.shown_bodies())):
        px = np.stack(project(camera, verts, size), 1)
        assert px[:, 0].min() >= 0 and px[:, 0].max() <= free_w, f"sample #{k} is not left of the control panel"
        assert px[:, 1].min() >= 0 and px[:, 1].max() <= size[1], f"sample #{k} is cut at the top or bottom"
        lo, hi = np.minimum(lo, px.min(0)), np.maximum(hi, px.max(0))
    span = (hi - lo) / np.array([free_w, size[1]])
    assert span.max() > 0.8, f"the grid fills only {span} of the free canvas"
    for label in gen.labels[:count]:
        lx, ly = project(camera, label.position, size)
        assert 0 <= lx <= free_w and 0.02 * size[1] <= ly <= size[1], "a label is out of view"
    session.frame_camera()  # Frame view takes the panel's view
    cam = session.client.camera
    expect = gen.view(cam.aspect)
    assert np.allclose(cam.position, expect[0]) and np.allclose(cam.look_at, expect[1])


def test_a_run_is_framed_on_its_finished_samples_unless_the_camera_moved(session):
    """The grid is framed as a run starts (on its slots: the poses are not known yet), then on the
    finished samples; a camera the user has moved since stays where it is."""
    gen = session.panels["generate"]
    session.activate("generate")
    cam = session.client.camera
    send_as_the_browser(session, gen.steps, value=10)
    send_as_the_browser(session, gen.num, value=7)
    gen.start()
    wait_until(lambda: "generate_done" in session.timings, timeout=120, what="generation")
    settle(session)
    final = gen.view(cam.aspect)
    assert np.allclose(cam.position, final[0]) and np.allclose(cam.look_at, final[1])
    moved = cam.position + np.array([0.5, 0.2, 0.0])
    cam.position = moved
    session.timings.pop("generate_done")
    send_as_the_browser(session, gen.seed, value=5)
    gen.start()
    wait_until(lambda: "generate_done" in session.timings, timeout=120, what="generation")
    settle(session)
    assert np.allclose(cam.position, moved), "the user's camera was moved"


def test_a_click_selects_a_sample_and_edit_takes_it(session, demo_poses, tmp_path):
    path = tmp_path / "pick.npz"
    np.savez(path, pose_body=demo_poses[:8])
    open_samples(session, path)
    gen = session.panels["generate"]
    click_mesh(session, gen.bodies[5])
    settle(session)
    assert gen.selected == 5 and gen.pick.value == 5
    assert tuple(gen.bodies[5].meshes[0].color) == SELECTED_COLOR
    assert tuple(gen.bodies[0].meshes[0].color) == SAMPLE_COLOR, "only one sample is highlighted"
    assert gen.labels[5].text == "#5 selected" and gen.labels[0].text == "#0"
    send_as_the_browser(session, gen.use, value=True)
    settle(session)
    assert session.active_panel is session.panels["edit"]
    np.testing.assert_array_equal(session.pose, demo_poses[5])
    assert session.history.label == "sample #5"


def test_a_click_still_selects_after_a_body_model_switch(session, demo_poses, tmp_path):
    """A body redrawn for another body model has new mesh handles: the click moves to them."""
    path = tmp_path / "pick.npz"
    np.savez(path, pose_body=demo_poses[:4])
    open_samples(session, path)
    gen = session.panels["generate"]
    session.rebuild_bodies()  # what a body-model switch does (here with the same model)
    settle(session)
    click_mesh(session, gen.bodies[2])
    settle(session)
    assert gen.selected == 2


def test_forged_values_are_read_within_the_controls_bounds(session):
    """Samples = 400 runs 16 (the slider's max) at 10 steps; an unknown sampler is refused with a
    notification; a pick beyond the samples selects the last one."""
    gen = session.panels["generate"]
    session.activate("generate")
    send_as_the_browser(session, gen.sampler, value="<b>euler</b>")
    gen.start()
    assert any(t == "Unknown sampler" for t, _ in session.notifications)
    assert gen.trajectory is None and "generate_clicked" not in session.timings
    send_as_the_browser(session, gen.sampler, value="ODE")
    send_as_the_browser(session, gen.num, value=400)
    send_as_the_browser(session, gen.steps, value=-3)
    send_as_the_browser(session, gen.seed, value=1e40)
    assert gen.num.value == 400, "the forged value reached the server"
    gen.start()
    wait_until(lambda: "generate_done" in session.timings, timeout=120, what="generation")
    settle(session)
    assert gen.trajectory.shape == (10, MAX_SAMPLES, 63) and len(gen.bodies) == MAX_SAMPLES
    send_as_the_browser(session, gen.pick, value=999)
    settle(session)
    assert gen.selected == MAX_SAMPLES - 1
    send_as_the_browser(session, gen.pick, value=-5)
    settle(session)
    assert gen.selected == 0


def test_every_generate_and_inspect_control_has_a_tooltip(session):
    import viser

    for name in ("generate", "inspect"):
        panel = session.panels[name]
        handles = [v for v in vars(panel).values() if isinstance(v, viser.GuiInputHandle | viser.GuiButtonHandle
                                                                   | viser.GuiUploadButtonHandle)]
        assert handles, name
        for handle in handles:
            assert handle.hint, f"{name}: {handle.label!r} has no hint"


# -- in the browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def viewer_app(tmp_path_factory):
    """The browser test's app (conftest's viewer_tab opens its tab): the shipped prior, for real
    poses; not the unit tests' app, whose fake tabs draw into the server's scene every tab sees."""
    from viewer.app import ViewerApp

    app = ViewerApp(port=0, verbose=False, export_dir=tmp_path_factory.mktemp("exports"))
    yield app
    app.stop()


@pytest.mark.browser
@pytest.mark.slow
def test_twelve_samples_in_the_page_a_click_selects_one(viewer_tab, demo_poses, tmp_path):
    page, session = viewer_tab
    page.set_default_timeout(120_000)  # a screenshot of 12 bodies rendered in software on a busy CPU
    gen = session.panels["generate"]
    open_panel(page, "Generate")
    set_gui_number(page, "Samples", 12)
    set_gui_number(page, "Steps", 100)
    wait_until(lambda: gen.num.value == 12 and gen.steps.value == 100, what="the settings on the server")
    click(page.get_by_role("button", name="Generate", exact=True))
    wait_until(lambda: "generate_done" in session.timings, timeout=180, what="generation")
    wait_until(lambda: session.pacer.idle() and session.client.camera.position is not None, what="drawing")
    cam = session.client.camera
    # The grid's view: of the finished samples, or of the grid's slots when the tab reported its
    # camera late (on a busy CPU) and the panel took that for the user's move.
    wait_until(lambda: gen._framed is not None and np.allclose(cam.position, gen._framed[0], atol=1e-3), timeout=30,
               what=lambda: f"the grid's view in the tab: camera at {cam.position}, the grid's view {gen._framed}")
    page.wait_for_timeout(1500)  # a few frames for the meshes
    save_shot(page, "samples_grid_12.png")
    image = screenshot_array(page)
    h, w = image.shape[:2]
    assert colour_fraction(image, SAMPLE_COLOR, box=(0, 0, int(0.75 * w), h)) > 0.02, "no samples in the free canvas"

    # Click sample #7's belly (between pelvis and spine) in the canvas.
    k = 7
    joints = session.rig.pose(gen.samples[k:k + 1]).positions[0] + gen.bodies[k].position
    x, y = project(cam, 0.5 * (joints[0] + joints[3]), (VIEWPORT["width"], VIEWPORT["height"]))
    page.mouse.click(x, y)
    wait_until(lambda: gen.selected == k, timeout=30, what=lambda: f"sample #{k} selected (now {gen.selected})")
    page.wait_for_timeout(1500)  # the labels are drawn in the canvas, not the page's text
    save_shot(page, "samples_grid_12_selected.png")
    image = screenshot_array(page)
    box = (int(x) - 40, int(y) - 80, int(x) + 40, int(y) + 80)
    assert colour_fraction(image, SELECTED_COLOR, box=box, hue_tol=12) > 0.2, "the clicked sample is not highlighted"
    click(page.get_by_role("button", name="Edit this sample"))
    wait_until(lambda: session.stage == "pose" and np.allclose(session.pose, gen.samples[k]), what="the sample to edit")
    assert session.history.label == f"sample #{k}"

    # A samples file through the upload button replaces the grid.
    path = tmp_path / "uploaded_samples.npz"
    np.savez(path, pose_body=demo_poses[:16])
    open_panel(page, "Generate")
    upload_file(page, "Load samples (.npz)", path)
    wait_until(lambda: "samples_loaded" in session.timings, timeout=60,
               what=lambda: f"the upload to load; notifications {session.notifications}")
    np.testing.assert_array_equal(gen.samples, demo_poses[:16])
    wait_until(lambda: len(gen.bodies) == 16 and session.pacer.idle(), what="the 16 samples drawn")
    page.wait_for_timeout(3000)
    save_shot(page, "samples_uploaded_16.png")
