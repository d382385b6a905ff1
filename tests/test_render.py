"""The offscreen renderer (prior.render): the viewer's scene drawn headless, one camera for a whole
render, bodies on the floor, stills that match the video's frames, and cancel that leaves no file."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from prior import Cancelled, load_body_model
from prior.camera import Camera
from prior.data import load_clip
from prior.errors import InputError
from prior.exports.video import source_frames
from prior.render import (
    FLOOR_COLORS,
    MARGIN,
    SQUARE_M,
    backdrop,
    grid_places,
    is_trajectory,
    load_trajectory,
    render_frames,
    render_poses,
    render_trajectory,
    write_render,
)

from prior_helpers import DATA

WIDTH, HEIGHT = 320, 240


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def gesture():
    return load_clip(DATA / "gesture_clip.npz")


@pytest.fixture(scope="module")
def demo_poses():
    with np.load(DATA / "dposer_demo_poses.npz", allow_pickle=False) as f:
        return f["pose_body"][:12].astype(np.float32)


@pytest.fixture(scope="module")
def clip_frames(body, gesture):
    """The gesture clip at 5 fps (40 frames) and its progress reports."""
    reports = []
    frames = list(render_frames(body, gesture, width=WIDTH, height=HEIGHT, fps=5, progress=reports.append))
    return frames, reports


def tan(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the body's pixels (tan, lit or in shade: red well above blue; floor and sky are grey)."""
    rgb = image.astype(np.int64)
    return rgb[..., 0] - rgb[..., 2] > 25


def shadowed(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: grey floor darker than any floor square in the open (the contact shadow)."""
    rgb = image.astype(np.int64)
    grey = np.abs(rgb[..., 0] - rgb[..., 2]) < 8
    return grey & (rgb.max(-1) < min(map(min, FLOOR_COLORS)) - 10)


def test_a_clip_is_the_tan_body_standing_and_moving_on_the_floor(clip_frames):
    frames, reports = clip_frames
    assert len(frames) == len(source_frames(240, 30.0, 5)) == 40
    assert all(f.shape == (HEIGHT, WIDTH, 3) and f.dtype == np.uint8 for f in frames)
    masks = [tan(f) for f in frames]
    for mask in masks:
        rows, cols = np.nonzero(mask)
        assert mask[HEIGHT // 3: 2 * HEIGHT // 3, WIDTH // 3: 2 * WIDTH // 3].any()  # drawn in the middle
        assert np.ptp(rows) > 1.5 * np.ptp(cols)  # the Z-up clip stands up: taller than wide
    # The body moves: many of its pixels change from the first frame to the middle one.
    assert (masks[0] ^ masks[20]).sum() > 0.1 * masks[0].sum()
    # Feet on the floor: in every frame a soft contact shadow spans the body's lowest row, close around it.
    for frame, mask in zip(frames, masks):
        lowest = np.nonzero(mask.any(1))[0].max()
        shadow_rows = np.nonzero(shadowed(frame).any(1))[0]
        assert shadow_rows.min() < lowest < shadow_rows.max(), (shadow_rows, lowest)
        assert lowest - 0.15 * HEIGHT < shadow_rows.min() and shadow_rows.max() < lowest + 0.15 * HEIGHT
    assert [r.step for r in reports] == list(range(1, 41)) and {r.total for r in reports} == {40}
    assert reports[0].task == "render" and tuple(reports[0].pose_body.shape) == (1, 63)
    assert reports[-1].t == pytest.approx(39 / 5)


def test_one_camera_frames_every_frame_of_the_clip_and_its_shadows(clip_frames):
    frames, _ = clip_frames
    union = np.logical_or.reduce([tan(f) for f in frames])
    shadows = np.logical_or.reduce([shadowed(f) for f in frames])
    rows, cols = np.nonzero(union | shadows)
    # Every frame's body and shadow stay inside the margin ...
    top, bottom = MARGIN * HEIGHT / 2, HEIGHT - MARGIN * HEIGHT / 2
    left, right = MARGIN * WIDTH / 2, WIDTH - MARGIN * WIDTH / 2
    assert rows.min() >= top - 1 and rows.max() <= bottom and cols.min() >= left - 1 and cols.max() <= right
    # ... and the framing is tight: the head reaches the top margin in some frame.
    assert np.nonzero(union)[0].min() <= top + 2


def test_the_camera_does_not_follow_the_body(body, gesture):
    # Frames 0, 60 and 0 again: the camera frames both poses once, so the first and last images are the same.
    clip = gesture.frames(0, 61)
    back = type(clip)(pose_body=clip.pose_body[[0, 60, 0]], root_orient=clip.root_orient[[0, 60, 0]], fps=30.0)
    first, middle, last = render_frames(body, back, width=WIDTH, height=HEIGHT)
    np.testing.assert_array_equal(first, last)
    assert (first != middle).any(-1).sum() > 500
    # A still of one frame is that frame of the video (the same camera: the whole clip framed).
    still = next(render_frames(body, back, width=WIDTH, height=HEIGHT, frame=1))
    np.testing.assert_array_equal(still, middle)


def test_a_set_of_poses_stands_side_by_side_in_one_image(body, demo_poses):
    frames = list(render_poses(body, demo_poses[:3], width=WIDTH, height=HEIGHT))
    assert len(frames) == 1
    columns = np.nonzero(tan(frames[0]).any(0))[0]
    # Three bodies in a row, 1 m apart: the body's columns fall into three runs.
    runs = 1 + int((np.diff(columns) > 1).sum())
    assert runs == 3, runs
    assert np.ptp(columns) > WIDTH / 2


def test_grid_places_rows_like_the_viewer():
    places = grid_places(12)  # three rows of 4, 1 m apart, rows 2 m back, every other one shifted half a column
    assert places.shape == (12, 3) and (places[:, 1] == 0).all()
    np.testing.assert_allclose(places[:4, 0], [-1.75, -0.75, 0.25, 1.25])
    np.testing.assert_allclose(places[4:8, 0], [-1.25, -0.25, 0.75, 1.75])
    np.testing.assert_allclose(np.unique(places[:, 2]), [-4.0, -2.0, 0.0])
    np.testing.assert_allclose(grid_places(3)[:, 0], [-1.0, 0.0, 1.0])
    assert len(np.unique(grid_places(36)[:, 2])) == 6  # at most 6 a row


def test_a_trajectory_replays_in_four_seconds_and_its_still_is_its_frame(body, demo_poses):
    # 10 steps from one pose to another, for 2 samples.
    mix = np.linspace(0, 1, 10)[:, None, None]
    trajectory = ((1 - mix) * demo_poses[None, :2] + mix * demo_poses[None, 2:4]).astype(np.float32)
    frames = list(render_trajectory(body, trajectory, width=WIDTH, height=HEIGHT, fps=3))
    assert len(frames) == 12  # 4 s at 3 fps
    still = next(render_trajectory(body, trajectory, width=WIDTH, height=HEIGHT, fps=3, step=9))
    np.testing.assert_array_equal(still, frames[-1])
    assert (frames[0] != frames[-1]).any()


def test_cancel_mid_render_leaves_no_file(tmp_path, body, gesture):
    cancel = threading.Event()
    reports = []

    def progress(p):
        reports.append(p.step)
        if p.step == 3:
            cancel.set()

    out = tmp_path / "clip.mp4"
    with pytest.raises(Cancelled):
        write_render(out, render_frames(body, gesture, width=WIDTH, height=HEIGHT, cancel=cancel, progress=progress))
    assert reports == [1, 2, 3]
    assert list(tmp_path.iterdir()) == []


def test_write_render_writes_one_png_or_a_video(tmp_path):
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 200
    assert write_render(tmp_path / "a.png", [red]) == 1
    with Image.open(tmp_path / "a.png") as image:
        assert image.size == (64, 48)
    assert write_render(tmp_path / "a.gif", [red, red[..., ::-1]], fps=10) == 2
    with Image.open(tmp_path / "a.gif") as image:
        assert image.n_frames == 2
    with pytest.raises(ValueError, match="one image"):
        write_render(tmp_path / "b.png", [red, red])
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        write_render(tmp_path / "b.txt", [red])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "a.png"]


def test_the_floor_is_a_checkerboard_of_half_metre_squares():
    # Straight down from 4 m above (0.1, 0.2): image right is world +X, image down world +Z.
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    position = np.array([0.1, 4.0, 0.2])
    camera = Camera(64, 64, 80.0, rotation=rotation, translation=-rotation @ position)
    image = backdrop(camera, center=np.zeros(3), radius=1.0, supersample=1)
    offset = (np.arange(64) + 0.5 - 32) / 80.0 * 4.0  # metres from below the camera, per pixel
    x, z = position[0] + offset[None, :], position[2] + offset[:, None]
    light = (np.floor(x / SQUARE_M) + np.floor(z / SQUARE_M)) % 2 == 0
    bright = image.mean(-1) > np.mean(FLOOR_COLORS)
    assert light.mean() == pytest.approx(0.5, abs=0.1)
    assert (bright == light).mean() > 0.97


def test_a_trajectory_file_is_read_and_checked(tmp_path, demo_poses):
    path = tmp_path / "traj.npz"
    trajectory = np.repeat(demo_poses[None, :3], 5, 0)
    np.savez(path, pose_body=demo_poses[:3], trajectory=trajectory, t=np.linspace(1, 0, 5))
    assert is_trajectory(path) and not is_trajectory(DATA / "gesture_clip.npz")
    np.testing.assert_array_equal(load_trajectory(path), trajectory)
    np.savez(path, trajectory=np.zeros((5, 63), np.float32))
    with pytest.raises(InputError, match=r"traj.npz: 'trajectory' has shape \(5, 63\), expected \(S, N, 63\)"):
        load_trajectory(path)
    np.savez(path, trajectory=np.zeros((2, 65, 63), np.float32))
    with pytest.raises(InputError, match="65 samples; at most 64"):
        load_trajectory(path)
    bad = np.zeros((2, 1, 63), np.float32)
    bad[1, 0, 5] = np.nan
    np.savez(path, trajectory=bad)
    with pytest.raises(InputError, match="NaN"):
        load_trajectory(path)
