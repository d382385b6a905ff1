"""``dposer export``: the installed command writes what the library's exporters make, for a clip
and for a set of poses, and refuses what it cannot write in one line, writing nothing."""

from __future__ import annotations

import numpy as np
import pytest

from prior import load_body_model
from prior.data import Clip, load_clip
from prior.exports import export_bytes

from prior_helpers import DATA, assert_one_line_error, run

GESTURE = DATA / "gesture_clip.npz"


@pytest.mark.parametrize("suffix", [".bvh", ".glb", ".npz"])
def test_a_clip_exports_to_each_format_as_the_library_writes_it(tmp_path, suffix):
    out = tmp_path / f"clip{suffix}"
    proc = run("export", "--clip", GESTURE, "--out", out)
    assert f"wrote {out}: 240 frames" in proc.stderr
    expected = export_bytes([load_clip(GESTURE)], load_body_model(), suffix)
    assert out.read_bytes() == expected
    if suffix == ".npz":  # the AMASS file reads back as the same motion
        back = load_clip(out)
        np.testing.assert_array_equal(back.pose_body, load_clip(GESTURE).pose_body.astype(np.float32))
        assert back.num_frames == 240


def test_a_set_of_poses_is_frames_of_a_bvh_and_bodies_side_by_side_in_a_glb(tmp_path):
    with np.load(DATA / "dposer_demo_poses.npz", allow_pickle=False) as f:
        poses = f["pose_body"][:3].astype(np.float32)
    src = tmp_path / "poses.npz"
    np.savez(src, pose_body=poses)
    clips = [Clip(pose_body=p[None], root_orient=np.zeros((1, 3), np.float32)) for p in poses]
    body = load_body_model()
    for suffix in (".bvh", ".glb"):
        out = tmp_path / f"poses{suffix}"
        proc = run("export", "--poses", src, "--out", out)
        assert "3 poses" in proc.stderr
        assert out.read_bytes() == export_bytes(clips, body, suffix)
    assert b"Frames: 3" in (tmp_path / "poses.bvh").read_bytes()


def test_bad_requests_are_one_line_errors_and_write_nothing(tmp_path):
    out = tmp_path / "clip.fbx"
    proc = run("export", "--clip", GESTURE, "--out", out, ok=False)
    assert_one_line_error(proc, "clip.fbx", ".bvh, .glb or .npz")
    proc = run("export", "--out", tmp_path / "x.bvh", ok=False)
    assert_one_line_error(proc, "exactly one of --clip")
    broken = tmp_path / "broken.npz"
    np.savez(broken, pose_body=np.full((4, 63), np.nan, np.float32))
    proc = run("export", "--clip", broken, "--out", tmp_path / "x.glb", ok=False)
    assert_one_line_error(proc, str(broken))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.npz"]
