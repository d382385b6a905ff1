"""The installed ``dposer`` command on real data: generate and complete, and its error contract."""

from __future__ import annotations

import numpy as np
import pytest

from prior_helpers import DATA, OFFICIAL_CKPT, assert_one_line_error, run


@pytest.fixture(scope="module")
def demo_subset(tmp_path_factory) -> tuple:
    with np.load(DATA / "dposer_demo_poses.npz", allow_pickle=False) as f:
        poses = f["pose_body"][:6]
    path = tmp_path_factory.mktemp("in") / "demo6.npz"
    np.savez(path, pose_body=poses)
    return path, poses


def test_generate_with_trajectory(tmp_path):
    out = tmp_path / "gen.npz"
    run("generate", "--ckpt", OFFICIAL_CKPT, "--num", 3, "--steps", 20, "--seed", 1, "--trajectory", "--out", out)
    with np.load(out, allow_pickle=False) as f:
        assert f["pose_body"].shape == (3, 63)
        assert f["trajectory"].shape == (20, 3, 63) and f["t"].shape == (20,)
        assert f["joints"].shape == (3, 22, 3)
        first = f["pose_body"].copy()
    run("generate", "--ckpt", OFFICIAL_CKPT, "--num", 3, "--steps", 20, "--seed", 1, "--out", out, "--device", "cpu")
    with np.load(out, allow_pickle=False) as f:
        assert np.array_equal(f["pose_body"], first)  # same seed, same samples
        assert "trajectory" not in f.files


def test_complete_a_part_keeps_observed_joints_exactly(tmp_path, demo_subset):
    src, poses = demo_subset
    out = tmp_path / "comp.npz"
    proc = run("complete", "--ckpt", OFFICIAL_CKPT, "--poses", src, "--part", "left_leg", "--hypotheses", 4,
               "--seed", 0, "--out", out)
    assert "complete" in proc.stderr  # progress bar on stderr
    with np.load(out, allow_pickle=False) as f:
        pose_body, mask = f["pose_body"], f["mask"]
        joints = f["joints"]
    assert pose_body.shape == (6, 4, 63) and mask.shape == (63,) and mask.dtype == bool
    assert joints.shape == (6, 4, 22, 3)
    # the completed leg moved the left knee/ankle/foot, the observed right leg stayed put
    assert np.abs(joints[:, :, [4, 7, 10]] - joints[:, :1, [4, 7, 10]]).max() > 1e-3
    assert np.allclose(joints[:, :, [5, 8, 11]], joints[:, :1, [5, 8, 11]], atol=1e-6)
    assert mask.sum() == 12 and mask[0:3].all() and mask[9:12].all()  # left hip and left knee among them
    assert np.array_equal(pose_body[:, :, ~mask], np.broadcast_to(poses[:, None, ~mask], (6, 4, 51)))
    assert np.abs(pose_body[:, :, mask] - poses[:, None, mask]).max() > 1e-3


def test_complete_joint_list_scoresde_on_an_amass_clip(tmp_path):
    out = tmp_path / "clip_comp.npz"
    run("complete", "--ckpt", OFFICIAL_CKPT, "--poses", DATA / "gesture_clip.npz", "--joints", "17,left_wrist",
        "--solver", "scoresde", "--steps", 10, "--hypotheses", 1, "--out", out)
    with np.load(out, allow_pickle=False) as f:
        assert f["pose_body"].shape == (240, 1, 63)
        assert np.flatnonzero(f["mask"]).tolist() == [51, 52, 53, 57, 58, 59]


def test_bad_checkpoint_is_one_line_exit_2_and_nothing_written(tmp_path, demo_subset):
    src, _ = demo_subset
    bad = tmp_path / "bad.pth"
    bad.write_bytes(OFFICIAL_CKPT.read_bytes()[:5000])
    out = tmp_path / "never.npz"
    proc = run("complete", "--ckpt", bad, "--poses", src, "--part", "legs", "--out", out, ok=False)
    assert_one_line_error(proc, str(bad), "truncated")
    assert not out.exists()


def test_bad_pose_files_are_one_line_exit_2(tmp_path):
    out = tmp_path / "never.npz"
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pose_body=np.zeros((4, 62)))
    proc = run("complete", "--ckpt", OFFICIAL_CKPT, "--poses", wrong, "--part", "legs", "--out", out, ok=False)
    assert_one_line_error(proc, str(wrong), "62")
    nan = tmp_path / "nan.npz"
    np.savez(nan, pose_body=np.full((2, 63), np.nan))
    proc = run("complete", "--ckpt", OFFICIAL_CKPT, "--poses", nan, "--part", "legs", "--out", out, ok=False)
    assert_one_line_error(proc, str(nan), "NaN")
    proc = run("complete", "--ckpt", OFFICIAL_CKPT, "--poses", tmp_path / "missing.npz", "--part", "legs",
               "--out", out, ok=False)
    assert_one_line_error(proc, "missing.npz")
    assert not out.exists()


def test_bad_arguments_are_one_line_exit_2(tmp_path, demo_subset):
    src, _ = demo_subset
    out = tmp_path / "never.npz"
    proc = run("complete", "--ckpt", OFFICIAL_CKPT, "--poses", src, "--part", "tail", "--out", out, ok=False)
    assert_one_line_error(proc, "tail", "left_leg")
    proc = run("complete", "--ckpt", OFFICIAL_CKPT, "--poses", src, "--joints", "3,25", "--out", out, ok=False)
    assert_one_line_error(proc, "25")
    proc = run("complete", "--ckpt", OFFICIAL_CKPT, "--poses", src, "--out", out, ok=False)
    assert_one_line_error(proc, "--part", "--joints")
    assert not out.exists()
