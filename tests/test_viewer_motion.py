"""The Motion panel: the error plot counts frames and marks the one shown, clips report their
length and known rate, stand up and face the camera, overlaid bodies let each other show through,
a frame goes to Edit, a set of poses goes to the samples panel, and forged GUI values are checked.
Unit tests drive a ClientSession over a fake client (no browser); one test reads the plot in
headless Chromium."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import viser
from fake_tab import press, send_as_the_browser, settle

from prior.data import is_pose_set
from prior.files import asset_path
from prior.motion import DenoiseOptions
from prior.motion_fit import fit_motion
from prior.rotations import axis_angle_to_matrix, wxyz_to_matrix_np
from viewer.panels.motion import (
    BACKGROUND_OPACITY,
    EXAMPLE_CLIP,
    EXAMPLE_FPS,
    MAX_NOISE_M,
    error_summary,
    length_text,
    plot_data,
)

from browser import click, open_panel, save_shot, set_gui_number, wait_until


# -- a session without a browser: conftest's ``app`` and ``session``, with Motion open ------------
@pytest.fixture
def session(session):
    session.activate("motion")
    return session


@pytest.fixture(scope="module")
def gesture() -> dict[str, np.ndarray]:
    with np.load(asset_path(EXAMPLE_CLIP), allow_pickle=False) as f:
        return {k: f[k].astype(np.float32) for k in f.files}








def load(session, path: Path):
    motion = session.panels["motion"]
    session.timings.pop("clip_loaded", None)
    motion.load_file(path)
    wait_until(lambda: "clip_loaded" in session.timings, timeout=60,
               what=lambda: f"the clip to load; notifications: {session.notifications}")
    settle(session)
    return motion


def add_noise(session) -> None:
    session.timings.pop("noise_added", None)
    press(session, session.panels["motion"].add_noise)
    wait_until(lambda: "noise_added" in session.timings, timeout=60, what="the noise")
    settle(session)


def denoise(session) -> None:
    session.timings.pop("denoise_done", None)
    press(session, session.panels["motion"].denoise)
    wait_until(lambda: "denoise_done" in session.timings, timeout=180,
               what=lambda: f"denoising; notifications: {session.notifications}")
    settle(session)


def marker_frame(data: tuple[np.ndarray, ...]) -> float:
    """The frame the plot's marker stands at: where the marker series rises above the plot."""
    frames, marker = data[0], data[-1]
    top = np.flatnonzero(marker > 1.0)
    assert len(top) == 1 and frames[top[0] - 1] == frames[top[0]] == frames[top[0] + 1], "not a vertical line"
    return float(frames[top[0]])


def clip_file(tmp_path: Path, name: str, **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# -- the error plot ----------------------------------------------------------------------------
def test_the_error_plot_counts_frames_and_its_marker_follows_scrubbing_and_playback(session):
    motion = load(session, asset_path(EXAMPLE_CLIP))
    add_noise(session)
    plot = motion.plot
    assert plot.visible and plot.scales["x"]["time"] is False, "the x axis would show clock times"
    assert plot.axes[0]["label"] == "frame" and plot.axes[1]["label"] == "mm"
    assert marker_frame(plot.data) == 0
    # The noisy curve is the clip's per-frame error, whatever the marker's extra points.
    frames, noisy = plot.data[0], plot.data[1]
    assert np.allclose(noisy, motion.errors_mm["noisy"][frames.astype(int)])
    assert plot.scales["y"]["range"][0] == 0 and plot.scales["y"]["range"][1] >= np.nanmax(noisy)
    send_as_the_browser(session, motion.timeline, value=137)  # scrubbing
    settle(session)
    assert motion.frame == 137 and marker_frame(plot.data) == 137
    press(session, motion.play)
    wait_until(lambda: motion.frame not in (137, 0) and marker_frame(plot.data) not in (137, 0), timeout=30,
               what="the marker to move with playback")
    press(session, motion.play)  # pause
    settle(session)
    assert not motion.playing and marker_frame(plot.data) == motion.frame, "the marker stops where playback stopped"


def test_the_plot_data_marks_a_frame_with_a_vertical_line_and_keeps_the_curves():
    errors = {"noisy": np.array([5.0, 6.0, 7.0, 8.0])}
    frames, noisy, denoised, marker = plot_data(errors, 4, 2)
    assert list(frames) == [0, 1, 2, 2, 2, 3] and list(noisy) == [5, 6, 7, 7, 7, 8]
    assert np.isnan(denoised).all(), "no denoised curve before denoising"
    assert list(marker) == [-1, -1, -1, 2, -1, -1], "below the plot, up through it at frame 2, down again"
    assert marker_frame(plot_data(errors, 4, 0)) == 0 and marker_frame(plot_data(errors, 4, 3)) == 3


def test_the_errors_are_summed_up_in_words(session, gesture, tmp_path):
    both = {"noisy": np.array([50.0, 70.0]), "denoised": np.array([10.0, np.nan, 12.0])}
    want = "noisy **60 mm** → denoised **11 mm** (MPJPE vs the clean clip, mean over frames)"
    assert error_summary(both, truth=True) == want
    fit = error_summary({"denoised": np.array([20.0, 26.0])}, truth=False)
    assert fit.startswith("fit **23 mm** from the observed")
    motion = load(session, clip_file(tmp_path, "short.npz", pose_body=gesture["pose_body"][:12],
                                     root_orient=gesture["root_orient"][:12]))
    add_noise(session)
    noisy_mm = np.nanmean(motion.errors_mm["noisy"])
    assert motion.summary.visible and motion.summary.content.startswith(f"noisy **{noisy_mm:.0f} mm** (MPJPE")
    denoise(session)
    denoised_mm = np.nanmean(motion.errors_mm["denoised"])
    assert f"noisy **{noisy_mm:.0f} mm** → denoised **{denoised_mm:.0f} mm**" in motion.summary.content
    assert marker_frame(motion.plot.data) == motion.frame
    assert np.allclose(motion.plot.data[2], motion.errors_mm["denoised"][motion.plot.data[0].astype(int)])


# -- length, rate and orientation --------------------------------------------------------------
def test_a_two_frame_clip_reports_its_length_and_the_example_its_known_rate(session, gesture, tmp_path):
    assert length_text(2, 30.0) == "2 frames at 30 fps, 0.07 s"
    assert length_text(240, 120.0) == "240 frames at 120 fps, 2.00 s"
    assert length_text(1, 30.0, assumed=True) == "1 frame at 30 fps (assumed: the file has no frame rate), 0.03 s"
    motion = load(session, clip_file(tmp_path, "two.npz", pose_body=gesture["pose_body"][:2],
                                     root_orient=gesture["root_orient"][:2]))
    assert "2 frames at 30 fps (assumed: the file has no frame rate), 0.07 s" in motion.info.content
    motion = load(session, clip_file(tmp_path, "rated.npz", pose_body=gesture["pose_body"][:2],
                                     root_orient=gesture["root_orient"][:2], mocap_frame_rate=np.array(60.0)))
    assert "2 frames at 60 fps, 0.03 s" in motion.info.content
    motion = load(session, asset_path(EXAMPLE_CLIP))
    assert motion.clip.fps == EXAMPLE_FPS == 120.0 and not motion.clip.fps_assumed
    assert "240 frames at 120 fps, 2.00 s" in motion.info.content and "assumed" not in motion.info.content


def shown_axes(motion, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(up, forward)``, each ``(T, 3)``: the pelvis' up (+Y) and forward (+Z) in the scene, as the
    body ``key`` is drawn (the clip's root orientations turned by the body's frame)."""
    turn = wxyz_to_matrix_np(np.asarray(motion.bodies[key].wxyz))
    rot = axis_angle_to_matrix(torch.as_tensor(motion.clip.root_orient, dtype=torch.float64)).numpy()
    return rot[:, :, 1] @ turn.T, rot[:, :, 2] @ turn.T


def test_the_example_and_amass_clips_stand_up_and_face_the_camera(session, gesture, tmp_path):
    """The camera looks from +Z at -Z with +Y up: a shown body's pelvis points up +Y and forward +Z.
    The example is an AMASS (Z-up) clip facing away; a Y-up clip facing +X is turned too."""
    motion = load(session, asset_path(EXAMPLE_CLIP))
    up, forward = shown_axes(motion, "original")
    assert up[:, 1].mean() > 0.95, "the example does not stand up"
    assert forward[:, 2].mean() > 0.9, f"the example faces {forward.mean(0).round(2)}, not the camera"
    assert "Y-up (the file is Z-up)" in motion.info.content
    sideways = np.tile([0.0, math.pi / 2, 0.0], (10, 1)).astype(np.float32)  # +Z turned to +X about +Y
    motion = load(session, clip_file(tmp_path, "sideways.npz", pose_body=gesture["pose_body"][:10],
                                     root_orient=sideways))
    up, forward = shown_axes(motion, "original")
    assert up[:, 1].min() > 0.99 and forward[:, 2].min() > 0.99
    assert "Z-up" not in motion.info.content
    # For display only: what is exported keeps the file's frame.
    shown = motion.shown_bodies()[0]
    assert np.allclose(shown.root_orient, sideways[0])


# -- overlaid bodies, the selected body, to Edit -----------------------------------------------
def opacity(body) -> float | None:
    return body.meshes[0].opacity


def test_overlaid_bodies_other_than_the_selected_one_are_see_through(session, gesture, tmp_path):
    motion = load(session, clip_file(tmp_path, "short.npz", pose_body=gesture["pose_body"][:12],
                                     root_orient=gesture["root_orient"][:12]))
    add_noise(session)
    denoise(session)
    original, denoised = motion.bodies["original"], motion.bodies["denoised"]
    assert opacity(original) is None and opacity(denoised) is None, "side by side, all are opaque"
    send_as_the_browser(session, motion.layout, value="overlaid")
    settle(session)
    assert np.allclose(original.position, denoised.position)
    assert opacity(original) is None and opacity(denoised) == BACKGROUND_OPACITY
    send_as_the_browser(session, motion.selected, value="denoised")
    settle(session)
    assert opacity(original) == BACKGROUND_OPACITY and opacity(denoised) is None
    assert {b.name.split("_")[0]: b.opacity for b in motion.shown_bodies()} == {"original": BACKGROUND_OPACITY,
                                                                                 "denoised": None}
    send_as_the_browser(session, motion.layout, value="side by side")
    settle(session)
    assert opacity(original) is None and opacity(denoised) is None


def test_send_frame_to_edit_makes_the_selected_bodys_pose_the_edited_one(session, gesture, tmp_path):
    motion = load(session, clip_file(tmp_path, "short.npz", pose_body=gesture["pose_body"][:12],
                                     root_orient=gesture["root_orient"][:12]))
    assert not motion.to_edit.disabled
    send_as_the_browser(session, motion.timeline, value=7)
    settle(session)
    press(session, motion.to_edit)
    settle(session)
    assert session.active_panel.name == "edit" and session.history.label == "frame 7 of short.npz"
    assert np.allclose(session.pose, gesture["pose_body"][7])
    session.activate("motion")
    add_noise(session)
    denoise(session)
    send_as_the_browser(session, motion.selected, value="denoised")
    press(session, motion.to_edit)
    settle(session)
    assert session.history.label == "frame 7 of short.npz (denoised)"
    assert np.allclose(session.pose, motion.denoised[7]) and not np.allclose(session.pose, gesture["pose_body"][7])


# -- sets of poses -----------------------------------------------------------------------------
def test_a_set_of_poses_is_told_from_a_clip(gesture, tmp_path):
    poses = gesture["pose_body"][:16]
    generated = clip_file(tmp_path, "gen.npz", pose_body=poses, joints=np.zeros((16, 22, 3), np.float32))
    assert is_pose_set(generated), "dposer generate's output"
    assert is_pose_set(clip_file(tmp_path, "samples.npz", pose_samples=poses))
    assert not is_pose_set(clip_file(tmp_path, "rooted.npz", pose_body=poses, root_orient=gesture["root_orient"][:16]))
    assert not is_pose_set(clip_file(tmp_path, "rated.npz", pose_body=poses, mocap_frame_rate=np.array(30.0)))
    assert not is_pose_set(clip_file(tmp_path, "moving.npz", pose_body=poses, trans=np.zeros((16, 3))))
    assert not is_pose_set(clip_file(tmp_path, "long.npz", pose_body=gesture["pose_body"][:65]))
    assert not is_pose_set(clip_file(tmp_path, "joints.npz", joints=np.zeros((16, 22, 3))))
    assert not is_pose_set(asset_path(EXAMPLE_CLIP))


def upload(session, name: str, path: Path) -> None:
    motion = session.panels["motion"]
    motion.upload._impl.value = viser.UploadedFile(name, path.read_bytes())
    press(session, motion.upload)
    settle(session)


def test_a_set_of_poses_opens_in_the_samples_panel(session, gesture, tmp_path, monkeypatch):
    motion = session.panels["motion"]
    handed: list[tuple[str, Path, bytes]] = []
    monkeypatch.setattr(session, "open_file", lambda kind, path: handed.append((kind, path, path.read_bytes())))
    if not any("samples" in p.file_kinds for p in session.panels.values()):  # until the Generate panel takes them
        monkeypatch.setattr(session.panels["generate"], "file_kinds", ("samples",))
    path = clip_file(tmp_path, "gen.npz", pose_body=gesture["pose_body"][:16])
    motion.load_file(path)
    settle(session)
    assert handed == [("samples", path, path.read_bytes())] and motion.clip is None
    # An upload is kept (under its own name) for the samples panel to read, until the next one.
    upload(session, "my samples.npz", path)
    kind, kept, data = handed[-1]
    assert kind == "samples" and kept.name == "my_samples.npz" and data == path.read_bytes() and kept.exists()
    upload(session, "other.npz", path)
    assert not kept.exists() and handed[-1][1].name == "other.npz" and motion.clip is None


def test_a_set_of_poses_no_panel_opens_is_an_error_naming_the_file(session, gesture, tmp_path, monkeypatch):
    motion = session.panels["motion"]
    for panel in session.panels.values():
        monkeypatch.setattr(panel, "file_kinds", tuple(k for k in panel.file_kinds if k != "samples"))
    path = clip_file(tmp_path, "gen.npz", pose_body=gesture["pose_body"][:16])
    upload(session, "gen.npz", path)
    title, body = session.notifications[-1]
    assert title == "Cannot load clip" and body.startswith("gen.npz: is a set of poses") and motion.clip is None


# -- controls ----------------------------------------------------------------------------------
def controls(panel) -> list:
    kinds = (viser.GuiButtonHandle, viser.GuiSliderHandle, viser.GuiDropdownHandle, viser.GuiNumberHandle,
             viser.GuiTextHandle, viser.GuiUploadButtonHandle, viser.GuiCheckboxHandle)
    return [v for v in vars(panel).values() if isinstance(v, kinds)]


def test_every_control_has_a_tooltip(session):
    handles = controls(session.panels["motion"])
    assert len(handles) >= 15
    for handle in handles:
        assert handle.hint, f"{handle.label!r} has no hint"


def test_forged_values_from_the_browser_are_checked(session, gesture, tmp_path):
    motion = load(session, clip_file(tmp_path, "short.npz", pose_body=gesture["pose_body"][:12],
                                     root_orient=gesture["root_orient"][:12]))
    for handle, forged, kept in ((motion.layout, "sideways", "side by side"), (motion.speed, "100x", "1x"),
                                 (motion.selected, "noisy", "original"), (motion.method, "fast", "ours")):
        send_as_the_browser(session, handle, value=forged)
        title, body = session.notifications[-1]
        assert title.startswith("Unknown") and "is not one of" in body and handle.value == kept
    send_as_the_browser(session, motion.timeline, value=10**9)
    settle(session)
    assert motion.frame == 11, "the timeline stops at the last frame"
    send_as_the_browser(session, motion.noise, value=50.0)
    send_as_the_browser(session, motion.noise_seed, value=1e30)
    add_noise(session)
    noise_m = (motion.noisy_joints - motion.gt_joints).std()
    assert noise_m < 1.2 * MAX_NOISE_M, f"noise of {noise_m:.2f} m: the slider stops at {MAX_NOISE_M} m"


def test_the_method_dropdown_runs_the_papers_denoising_as_the_cli_does(session, gesture, tmp_path):
    """Method "paper" and Smooth: the fit is ``fit_motion(..., DenoiseOptions.paper(noise, smooth=True))``
    (what ``dposer denoise --method paper --smooth`` runs), not our defaults'."""
    motion = load(session, clip_file(tmp_path, "short.npz", pose_body=gesture["pose_body"][:12],
                                     root_orient=gesture["root_orient"][:12]))
    add_noise(session)
    send_as_the_browser(session, motion.method, value="paper")
    send_as_the_browser(session, motion.smooth, value=True)
    settle(session)
    assert motion.denoise_options() == DenoiseOptions.paper(0.04, smooth=True)
    denoise(session)
    res = session.app.resources
    expected = fit_motion(res.prior, res.body, motion.motion, motion.observations,
                          options=DenoiseOptions.paper(0.04, smooth=True), seed=0)
    np.testing.assert_allclose(motion.fit.clip.pose_body, expected.clip.pose_body, rtol=0, atol=1e-5)
    ours = fit_motion(res.prior, res.body, motion.motion, motion.observations, seed=0)
    assert np.abs(ours.clip.pose_body - motion.fit.clip.pose_body).max() > 1e-3


# -- in the browser ----------------------------------------------------------------------------
CHART = "() => Object.values(window.__viserTestpoints?.uplots ?? {})[0]?.chart"


def test_the_plot_in_the_browser_counts_frames_and_marks_the_scrubbed_one(viewer_tab):
    """uPlot draws its ticks on a canvas: they are read from the chart the page made (viser's test
    hook), as drawn. A time scale would show clock times (1970) there."""
    page, session = viewer_tab
    motion = session.panels["motion"]
    open_panel(page, "Motion")
    click(page.get_by_role("button", name="Load example clip"))
    wait_until(lambda: motion.bodies.get("original") is not None and motion.bodies["original"].pose is not None,
               timeout=60, what="the example clip")
    click(page.get_by_role("button", name="Add noise"))
    wait_until(lambda: motion.plot.visible, timeout=60, what="the error plot")
    ticks = wait_until(lambda: page.evaluate(f"() => ({CHART})()?.axes[0]._values"), timeout=30,
                       what="the plot's x ticks drawn")
    page.evaluate("() => document.querySelector('.uplot').scrollIntoView()")  # the chart may be rebuilt: no handle
    assert ticks and all(re.fullmatch(r"\d+", str(t)) for t in ticks), f"x ticks {ticks} are not frame numbers"
    assert page.evaluate(f"() => [({CHART})().scales.x.time, ({CHART})().axes[0].label]") == [False, "frame"]
    set_gui_number(page, "Frame", 200)
    wait_until(lambda: motion.frame == 200, what="the scrubbed frame")
    at = "() => { const d = (" + CHART + ")().data; const i = d[3].findIndex(v => v > 1); return d[0][i]; }"
    wait_until(lambda: page.evaluate(at) == 200, timeout=30, what="the marker at frame 200 in the page")
    page.get_by_text("MPJPE vs the clean clip").first.wait_for(timeout=30_000)  # the summary under the plot
    save_shot(page, "motion_plot.png")
