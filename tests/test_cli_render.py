"""``dposer render``: the installed command renders a clip, a set of poses and a generate
--trajectory file to MP4, GIF and PNG (read back with PyAV and Pillow), and refuses what it
cannot render in one line, writing nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import av
import numpy as np
import pytest
from PIL import Image

from prior_helpers import DATA, DPOSER, assert_one_line_error, run

GESTURE = DATA / "gesture_clip.npz"


@pytest.fixture(scope="module")
def poses(tmp_path_factory):
    """A set of 3 poses, as dposer generate writes one."""
    with np.load(DATA / "dposer_demo_poses.npz", allow_pickle=False) as f:
        pose_body = f["pose_body"][:3].astype(np.float32)
    path = tmp_path_factory.mktemp("poses") / "poses.npz"
    np.savez(path, pose_body=pose_body)
    return path


def read_video(path) -> tuple[int, int, int, float]:
    """``(frames, width, height, fps)`` of an MP4, decoded with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height, float(stream.average_rate)


def test_a_clip_renders_to_mp4_gif_and_png(tmp_path):
    out = tmp_path / "clip.mp4"
    proc = run("render", GESTURE, "--out", out, "--width", 320, "--height", 240, "--fps", 5)
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"wrote {out}: 40 frames 320x240, ") and line.endswith(" MB"), line
    assert read_video(out) == (40, 320, 240, 5.0)

    gif = tmp_path / "clip.gif"
    run("render", GESTURE, "--out", gif, "--width", 160, "--height", 120, "--fps", 4)
    with Image.open(gif) as image:
        assert image.size == (160, 120) and image.n_frames == 32
        assert image.info["duration"] == 250

    png = tmp_path / "clip.png"
    proc = run("render", GESTURE, "--out", png, "--width", 200, "--height", 150, "--frame", 120)
    assert f"wrote {png}: 1 frame 200x150" in proc.stderr
    with Image.open(png) as image:
        assert image.size == (200, 150) and image.format == "PNG"
        rgb = np.asarray(image.convert("RGB")).astype(int)
    assert (rgb[50:100, 70:130, 0] - rgb[50:100, 70:130, 2] > 25).any()  # the tan body in the middle


def test_a_set_of_poses_is_one_image_and_a_trajectory_a_replay(tmp_path, poses):
    png = tmp_path / "poses.png"
    run("render", poses, "--out", png, "--width", 320, "--height", 240)
    with Image.open(png) as image:
        assert image.size == (320, 240)
    with np.load(poses) as f:
        pose_body = f["pose_body"]
    traj = tmp_path / "traj.npz"
    mix = np.linspace(0, 1, 6)[:, None, None]
    np.savez(traj, pose_body=pose_body, trajectory=((1 - mix) * pose_body[::-1] + mix * pose_body).astype(np.float32),
             t=np.linspace(1, 0, 6))
    out = tmp_path / "traj.mp4"
    proc = run("render", traj, "--out", out, "--width", 160, "--height", 120, "--fps", 2)
    assert "8 frames 160x120" in proc.stderr  # the replay lasts 4 s
    assert read_video(out) == (8, 160, 120, 2.0)
    still = tmp_path / "step.png"
    run("render", traj, "--out", still, "--width", 160, "--height", 120, "--frame", 5)
    assert still.stat().st_size > 0


def test_a_clip_faster_than_a_video_records_at_the_fastest_rate(tmp_path):
    with np.load(GESTURE) as f:
        clip = {"pose_body": f["pose_body"][:10], "root_orient": f["root_orient"][:10]}
    fast = tmp_path / "fast.npz"
    np.savez(fast, **clip, mocap_frame_rate=np.array(500.0))
    out = tmp_path / "fast.mp4"
    run("render", fast, "--out", out, "--width", 64, "--height", 48)
    assert read_video(out) == (5, 64, 48, 240.0)  # 10 frames at 500 fps last 18 ms: 5 frames at 240 fps


def test_bad_requests_are_one_line_errors_and_write_nothing(tmp_path, poses):
    cases = [
        (("render", tmp_path / "missing.npz", "--out", tmp_path / "a.mp4"), ("missing.npz", "no such file")),
        (("render", GESTURE, "--out", tmp_path / "a.mp4", "--width", 321), ("a.mp4", "even width and height")),
        (("render", GESTURE, "--out", tmp_path / "a.mp4", "--fps", 0), ("--fps", "0.1..240")),
        (("render", GESTURE, "--out", tmp_path / "a.png", "--frame", 240), ("gesture_clip.npz", "--frame 240",
                                                                            "240 frames")),
        (("render", GESTURE, "--out", tmp_path / "a.txt"), ("a.txt", ".mp4 or .gif", ".png")),
        (("render", GESTURE, "--out", tmp_path / "a.mp4", "--width", 8), ("--width", "16..4096")),
        (("render", GESTURE, "--out", tmp_path / "a.mp4", "--frame", 3), ("--frame", ".png")),
        (("render", GESTURE, "--out", tmp_path / "a.png", "--fps", 10), ("--fps", "video")),
        (("render", poses, "--out", tmp_path / "a.gif"), ("poses.npz", "set of 3 poses", ".png")),
        (("render", GESTURE, "--out", tmp_path / "a.gif", "--width", 4096, "--height", 4096),
         ("GiB", "make an MP4")),
    ]
    for args, fragments in cases:
        assert_one_line_error(run(*args, ok=False), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_sigterm_mid_render_leaves_no_file(tmp_path):
    """Killed while the video is half encoded (its temporary file there): exit 143, one line, nothing left."""
    out = tmp_path / "clip.mp4"
    proc = subprocess.Popen([DPOSER, "render", str(GESTURE), "--out", str(out), "--width", "320", "--height", "240"],
                            stderr=subprocess.PIPE, cwd=tmp_path)
    seen = b""
    while not re.search(rb"render: +\d+%.*\| [3-9]/240", seen):  # a few frames are in the file
        chunk = os.read(proc.stderr.fileno(), 256)
        assert chunk, f"dposer ended before rendering: {seen.decode()}"
        seen += chunk
    partial = [p.name for p in tmp_path.iterdir()]
    assert len(partial) == 1 and partial[0].startswith(".clip.mp4.") and partial[0].endswith(".tmp"), partial
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=120)
    stderr = (seen + rest).decode()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and re.split(r"[\r\n]+", stderr.strip())[-1] == "dposer: terminated", stderr
    assert list(tmp_path.iterdir()) == []
