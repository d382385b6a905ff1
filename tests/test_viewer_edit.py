"""The Edit and Complete panels: pinned joints hold while IK drags a wrist, the plausibility readout
agrees with its label, poses come from an uploaded file, forged GUI values are refused or clamped,
joint names read as words and every control has a tooltip. Unit tests drive a ClientSession over a
fake client (no browser); one test pins joints in headless Chromium and keeps a screenshot."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fake_tab import run_coroutine, send_as_the_browser, settle, upload_as_the_browser

from prior.plausibility import Plausibility, calibrate, label_for, plausibility
from viewer.body_handle import BODY_COLOR
from viewer.panels.complete import MAX_HYPOTHESES
from viewer.panels.edit import PIN_COLOR, plausibility_text
from viewer.widgets import MAX_POSE_FILE_BYTES

from browser import BODY_BOX, click, colour_fraction, gui_row, project, save_shot, screenshot_array, wait_until

SPINE3, NECK, HEAD, R_WRIST = 9, 12, 15, 21  # SMPL-X joints
UPPER = [SPINE3, NECK, HEAD]


# -- a session without a browser: conftest's ``app`` and ``session`` ------------------------------
@pytest.fixture(scope="module")
def val_poses(shared_data) -> np.ndarray:
    with np.load(shared_data / "amass_body_poses.npz") as f:
        return f["val"][:8].astype(np.float32)










def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def joints(session) -> np.ndarray:
    """``(22, 3)`` joints of the session's current pose (metres, body frame)."""
    return session.rig.pose(session.pose[None]).positions[0]


def drag_wrist(session, offset: np.ndarray, steps: int = 5) -> None:
    """Drag the right wrist's IK handle by ``offset`` (metres), one solve per step as a mouse drag does."""
    edit = session.panels["edit"]
    start = joints(session)[R_WRIST]
    for k in range(1, steps + 1):
        edit.solve_ik({R_WRIST: start + offset * k / steps}, final=k == steps)
        settle(session)


def errors(session) -> list[tuple[str, str]]:
    return [(t, b) for t, b in session.notifications if t.startswith(("Unknown", "Cannot", "Not"))]


# -- pins --------------------------------------------------------------------------------------
def test_pinned_spine_neck_and_head_hold_while_a_wrist_is_dragged(session, val_poses):
    """Without pins a wrist drag bends the spine by centimetres; pinned by clicks on the body, spine3,
    neck and head move less than a millimetre while the wrist reaches its target. Pinned joints are
    drawn in the pin colour with a label while Edit is shown, and the wrist's handle stays."""
    edit = session.panels["edit"]
    session.activate("edit")
    offset = np.array([0.1, 0.12, -0.05])
    session.set_pose(val_poses[0], label="start")
    settle(session)
    before = joints(session)
    drag_wrist(session, offset)
    assert np.linalg.norm(joints(session)[R_WRIST] - before[R_WRIST] - offset) < 1e-3
    assert np.linalg.norm(joints(session)[UPPER] - before[UPPER], axis=-1).max() > 0.01, "no pin needed"

    session.set_pose(val_poses[0], label="start again")
    send_as_the_browser(session, edit.ik, value=True)
    send_as_the_browser(session, edit.pin_click, value=True)
    for joint in UPPER:
        session.on_joint_click(joint)  # a click on the body, in "Pin on click" mode
    settle(session)
    assert edit.pins == set(UPPER)
    assert edit.pinned.content == "**pinned** spine3, neck, head"
    assert all(session.main.joint_color(j) == PIN_COLOR for j in UPPER)
    assert session.main.joint_color(R_WRIST) == BODY_COLOR
    assert all(edit.pin_labels[j].visible and np.allclose(edit.pin_labels[j].position, before[j]) for j in UPPER)
    assert edit.handles[R_WRIST].visible
    drag_wrist(session, offset)
    after = joints(session)
    assert np.linalg.norm(after[R_WRIST] - before[R_WRIST] - offset) < 1e-3, "the wrist reaches its target"
    assert np.linalg.norm(after[UPPER] - before[UPPER], axis=-1).max() < 1e-3, "the pinned joints stay put"
    assert session.history.label == "IK drag"

    session.activate("complete")  # pins are Edit's: elsewhere the body shows the mask's colours alone
    settle(session)
    assert session.main.joint_color(HEAD) == BODY_COLOR and not edit.pin_labels[HEAD].visible


def test_pin_the_selected_joint_unpin_and_clear(session):
    edit = session.panels["edit"]
    session.activate("edit")
    send_as_the_browser(session, edit.joint, value="right wrist")
    assert edit.selected_joint == R_WRIST and edit.pin.label == "Pin right wrist"
    send_as_the_browser(session, edit.pin, value=True)
    send_as_the_browser(session, edit.ik, value=True)
    settle(session)
    assert edit.pins == {R_WRIST} and edit.pin.label == "Unpin right wrist"
    assert not edit.handles[R_WRIST].visible, "a pinned wrist has no drag handle"
    session.on_joint_click(HEAD)  # not in "Pin on click" mode: selects
    assert edit.selected_joint == HEAD and edit.pins == {R_WRIST}
    send_as_the_browser(session, edit.pin, value=True)
    assert edit.pins == {R_WRIST, HEAD} and not edit.clear_pins.disabled and edit.pin.label == "Unpin head"
    send_as_the_browser(session, edit.pin, value=True)  # the selected head again: unpinned
    assert edit.pins == {R_WRIST}
    send_as_the_browser(session, edit.pin_click, value=True)
    session.on_joint_click(0)
    assert edit.pins == {R_WRIST} and session.notifications[-1][0] == "Not pinnable"
    send_as_the_browser(session, edit.clear_pins, value=True)
    settle(session)
    assert edit.pins == set() and edit.clear_pins.disabled and edit.handles[R_WRIST].visible
    assert edit.pinned.content == "*No joint pinned.*"


# -- the plausibility readout --------------------------------------------------------------------
def shown_percentile(text: str) -> int | None:
    """The percentile the readout states (None for "beyond every real pose")."""
    found = re.search(r"(\d+)(st|nd|rd|th) percentile of real poses", text)
    return None if found is None else int(found.group(1))


def test_the_readout_agrees_with_its_label_in_every_band(app, val_poses):
    """'typical · worse than 64% of real poses' read as a contradiction: the readout gives the
    percentile (lower is more typical) and the bands, and the number always falls in the label's
    band, at the band edges too."""
    prior = app.resources.prior
    cal = calibrate(prior)
    middle = 0.5 * (cal.typical_max + cal.implausible_min)
    assert label_for(float(np.median(cal.real)), cal) == "typical"
    assert label_for(middle, cal) == "unusual" and label_for(cal.implausible_min + 1.0, cal) == "implausible"
    edges = [cal.typical_max, cal.implausible_min]
    near = [float(f(np.float64(e))) for e in edges for f in (lambda x: np.nextafter(x, -np.inf), lambda x: x,
                                                                  lambda x: np.nextafter(x, np.inf))]
    seen = set()
    for energy in [float(cal.real[0]) - 1.0, *cal.real.tolist(), middle, *near, cal.implausible_min + 1.0]:
        score = Plausibility(energy, cal.percentile(energy), label_for(energy, cal))
        seen.add(score.label)
        text = plausibility_text(score)
        assert f"**{score.label}**" in text and "worse than" not in text
        assert "typical: up to the 90th percentile · unusual: above it · implausible: the 99th or above" in text
        shown = shown_percentile(text)
        if score.label == "typical":
            assert "beyond every real pose" not in text and (shown is None or shown <= 90), text
        else:
            assert shown is None or shown >= (91 if score.label == "unusual" else 99), text
    assert seen == {"typical", "unusual", "implausible"}
    # Through the prior: a real pose reads typical, a random one implausible beyond every real pose.
    real_text = plausibility_text(plausibility(prior, torch.from_numpy(val_poses[0])))
    assert "**typical**" in real_text and shown_percentile(real_text) <= 90
    noise = torch.from_numpy(np.random.default_rng(0).normal(0, 1.5, 63).astype(np.float32))
    noise_text = plausibility_text(plausibility(prior, noise))
    assert "**implausible**" in noise_text and "beyond every real pose" in noise_text


def test_edit_shows_the_score_of_the_current_pose(session, val_poses):
    edit = session.panels["edit"]
    session.activate("edit")
    session.set_pose(val_poses[1], label="real")
    settle(session)
    assert edit.score_value is not None and edit.score.content == plausibility_text(edit.score_value)


# -- poses from a file ---------------------------------------------------------------------------
@pytest.mark.parametrize("panel_name", ["edit", "complete"])
def test_an_uploaded_pose_file_sets_the_current_pose_row_by_row(session, val_poses, panel_name):
    panel = session.panels[panel_name]
    files = panel.pose_file
    session.activate(panel_name)
    assert (files.upload, MAX_POSE_FILE_BYTES) in panel.uploads()
    upload_as_the_browser(session, files.upload, "mine.npz", npz_bytes(pose_body=val_poses[:5]))
    settle(session)
    np.testing.assert_array_equal(session.pose, val_poses[0])
    assert session.history.label == "mine.npz row 0" and files.row.max == 4 and not files.row.disabled
    send_as_the_browser(session, files.row, value=3)
    np.testing.assert_array_equal(session.pose, val_poses[3])
    assert files.info.content == r"mine\.npz: row 3 of 5 poses"
    send_as_the_browser(session, files.row, value=1e9)  # a forged row: the last one
    np.testing.assert_array_equal(session.pose, val_poses[4])
    session.undo()
    np.testing.assert_array_equal(session.pose, val_poses[3])

    # An AMASS clip (SMPL-X 'poses' (T, 165)): a row is a frame.
    frames = np.zeros((6, 165), np.float32)
    frames[:, 3:66] = val_poses[2:8]
    upload_as_the_browser(session, files.upload, "clip.npz",
                          npz_bytes(poses=frames, trans=np.zeros((6, 3), np.float32), mocap_framerate=30.0))
    settle(session)
    send_as_the_browser(session, files.row, value=4)
    np.testing.assert_array_equal(session.pose, val_poses[6])


def test_a_bad_pose_file_is_one_line_and_keeps_the_pose(session, val_poses):
    files = session.panels["complete"].pose_file
    session.set_pose(val_poses[0], label="mine")
    upload_as_the_browser(session, files.upload, "wrong.npz", npz_bytes(joints=np.zeros((3, 22, 3))))
    settle(session)
    upload_as_the_browser(session, files.upload, "text.npz", b"not a zip file")
    settle(session)
    found = [b for t, b in session.notifications if t == "Cannot load poses"]
    assert len(found) == 2 and all("\n" not in b for b in found), found
    assert found[0].startswith("wrong.npz: no poses found") and found[1].startswith("text.npz: ")
    np.testing.assert_array_equal(session.pose, val_poses[0])


# -- forged values -----------------------------------------------------------------------------
def test_forged_complete_values_are_clamped_or_refused(session, val_poses):
    """Hypotheses = 400 (the slider stops at 20) ran 400; Solver = 'bogus' raised in the server. Now
    the count is read within the slider's bounds and an unknown solver is a notification."""
    panel = session.panels["complete"]
    session.activate("complete")
    session.set_pose(val_poses[0], label="start")
    panel.set_parts(["right_arm"])
    send_as_the_browser(session, panel.solver, value="bogus")
    assert errors(session)[-1][0] == "Unknown solver" and panel.solver.value == "DPS"
    panel.solver._impl.value = "<b>bogus</b>"  # no callback (it came in before the click)
    panel.start()
    settle(session)
    assert len([e for e in errors(session) if e[0] == "Unknown solver"]) == 2
    assert "&lt;b&gt;" in errors(session)[-1][1] and panel.hypotheses is None, "nothing ran"
    send_as_the_browser(session, panel.solver, value="ScoreSDE")
    send_as_the_browser(session, panel.num, value=400)
    send_as_the_browser(session, panel.sde_steps, value=1)
    send_as_the_browser(session, panel.seed, value=-1e40)
    assert panel.num.value == 400, "the forged value reached the server"
    panel.start()
    settle(session)
    assert panel.done and panel.hypotheses.shape == (MAX_HYPOTHESES, 63)
    send_as_the_browser(session, panel.pick, value=999)
    assert panel.picked == MAX_HYPOTHESES - 1


def test_forged_edit_values_are_refused(session, val_poses):
    edit = session.panels["edit"]
    session.activate("edit")
    session.set_pose(val_poses[0], label="start")
    send_as_the_browser(session, edit.joint, value="left wrist")
    send_as_the_browser(session, edit.joint, value="left_wrist; <script>")
    assert errors(session)[-1][0] == "Unknown joint" and edit.joint.value == "left wrist"
    assert edit.selected_joint == 20
    runs = edit.ik_runs
    handle = SimpleNamespace(phase="update", target=SimpleNamespace(position=(float("nan"), 0.0, 0.0)))
    edit._on_handle(handle, R_WRIST)  # not a position: no solve
    send_as_the_browser(session, edit.rotate, value=True)
    settle(session)
    pose = session.pose.copy()
    run_coroutine(edit._on_gizmo(SimpleNamespace(phase="end", target=SimpleNamespace(wxyz=(0.0, 0.0, 0.0, 0.0)))))
    settle(session)
    assert edit.ik_runs == runs and np.array_equal(session.pose, pose)
    far = SimpleNamespace(phase="end", target=SimpleNamespace(position=(1e9, 0.0, 0.0)))
    edit._on_handle(far, R_WRIST)  # clamped to arm's length beyond reach: solved, nothing blows up
    settle(session)
    assert edit.ik_runs == runs + 1 and np.isfinite(session.pose).all()


# -- words and tooltips ----------------------------------------------------------------------------
def controls(obj) -> list:
    """The GUI input handles and buttons an object (a panel, its pose-file controls) holds."""
    import viser

    kinds = viser.GuiInputHandle | viser.GuiButtonHandle | viser.GuiUploadButtonHandle
    found = []
    for value in vars(obj).values():
        values = value.values() if isinstance(value, dict) else [value]
        for item in values:
            if isinstance(item, kinds):
                found.append(item)
            elif type(item).__module__.startswith("viewer.panels"):
                found += controls(item)
    return found


def test_joint_names_read_as_words_and_every_control_has_a_tooltip(session):
    edit, complete = session.panels["edit"], session.panels["complete"]
    assert "left wrist" in edit.joint.options and not any("_" in o for o in edit.joint.options)
    assert all("_" not in box.label and "_" not in box.hint for box in complete.parts.values())
    assert complete.parts["left_arm"].hint == "Mask the joints left collar, left shoulder, left elbow, left wrist"
    for panel in (edit, complete):
        handles = controls(panel)
        assert len(handles) > 8, panel.name
        for handle in handles:
            assert handle.hint, f"{panel.name}: {handle.label!r} has no hint"


# -- in the browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def viewer_app(tmp_path_factory):
    """The browser test's app (conftest's viewer_tab opens its tab): the shipped prior; not the unit
    tests' app, whose fake tabs draw into the server's scene every tab sees."""
    from viewer.app import ViewerApp

    app = ViewerApp(port=0, verbose=False, export_dir=tmp_path_factory.mktemp("exports"))
    yield app
    app.stop()


@pytest.mark.browser
@pytest.mark.slow
def test_pins_in_the_page(viewer_tab, val_poses):
    """Tick "Pin on click", click the head in the canvas: it is pinned and drawn in the pin colour;
    with spine3 and neck pinned too, a wrist drag leaves them where they were."""
    page, session = viewer_tab
    edit = session.panels["edit"]
    session.activate("edit")  # the panel bar's click is other tests'; this one clicks the pin controls
    session.set_pose(val_poses[0], label="start")
    page.get_by_text("Pin on click", exact=True).wait_for(timeout=60_000)
    click(gui_row(page, "Pin on click").locator("input"))
    click(gui_row(page, "Drag hands and feet (IK)").locator("input"))
    wait_until(lambda: edit.pin_click.value and edit.ik.value, what="the checkboxes on the server")
    wait_until(lambda: session.pacer.idle() and session.main.pose is not None, what="drawing")
    page.wait_for_timeout(1000)
    head = joints(session)[HEAD] + np.array([0.0, 0.05, 0.0]) + session.main.position  # the face, above the joint
    cam = session.client.camera
    x, y = project(cam, head, (page.viewport_size["width"], page.viewport_size["height"]))
    page.mouse.click(x, y)
    wait_until(lambda: edit.pins == {HEAD}, what=lambda: f"the head pinned by the click (pins: {edit.pins})")
    for joint in (SPINE3, NECK):
        edit.toggle_pin(joint)
    page.get_by_text("spine3, neck, head").wait_for(timeout=30_000)
    before = joints(session)
    drag_wrist(session, np.array([0.1, 0.12, -0.05]))
    assert np.linalg.norm(joints(session)[UPPER] - before[UPPER], axis=-1).max() < 1e-3
    page.wait_for_timeout(1500)  # a few frames for the meshes
    save_shot(page, "edit_pins.png")
    image = screenshot_array(page)
    assert colour_fraction(image, PIN_COLOR, box=BODY_BOX) > 0.003, "no pinned joint in the pin colour"
