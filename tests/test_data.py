"""Pose and motion files: every layout read, round-tripped through the writer, and refused when bad."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from prior.data import (
    DEFAULT_FPS,
    Clip,
    JointTrack,
    load_clip,
    load_motion,
    load_poses,
    save_clip,
)
from prior.errors import InputError

RNG = np.random.default_rng(0)


def rand(*shape: int, scale: float = 0.4) -> np.ndarray:
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def write(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)
    return path


def assert_same_clip(a: Clip, b: Clip) -> None:
    for name in ("pose_body", "root_orient", "trans", "hands", "jaw", "eyes", "expression", "betas"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    for name in ("gender", "fps", "fps_assumed", "surface_model_type"):
        assert getattr(a, name) == getattr(b, name), name


def round_trip(clip: Clip, tmp_path: Path) -> Clip:
    again = load_clip(save_clip(clip, tmp_path / "round_trip.npz"))
    assert_same_clip(clip, again)
    return again


# ---- layouts ------------------------------------------------------------------------------------


def test_gesture_clip_has_no_trans_and_an_assumed_frame_rate(shared_data: Path, tmp_path: Path) -> None:
    raw = np.load(shared_data / "gesture_clip.npz", allow_pickle=False)
    clip = load_clip(shared_data / "gesture_clip.npz")
    assert clip.num_frames == 240 and clip.pose_body.dtype == np.float32
    np.testing.assert_array_equal(clip.pose_body, raw["pose_body"].astype(np.float32))
    np.testing.assert_array_equal(clip.root_orient, raw["root_orient"].astype(np.float32))
    assert clip.trans is None and clip.hands is None and clip.betas is None
    assert clip.fps == DEFAULT_FPS == 30 and clip.fps_assumed
    assert clip.source == str(shared_data / "gesture_clip.npz")
    again = round_trip(clip, tmp_path)
    assert again.trans is None and again.fps_assumed  # written as zeros / 30, read back as unknown


def test_amass_smplx_stageii(tmp_path: Path) -> None:
    frames = 50
    poses, trans, betas = rand(frames, 165), rand(frames, 3), rand(16)
    # Real stageii files carry extra keys, some of them pickled (markers_latent_vids); unused ones are never read.
    vids = np.empty((), dtype=object)
    vids[()] = {"C7": 3832}
    path = write(
        tmp_path / "stageii.npz", poses=poses, trans=trans, betas=betas, gender=np.array("female"),
        mocap_frame_rate=np.array(120.0), surface_model_type=np.array("smplx"), markers_latent_vids=vids,
        num_betas=np.array(16), mocap_time_length=np.array(frames / 120),
    )
    clip = load_clip(path)
    np.testing.assert_array_equal(clip.root_orient, poses[:, :3])
    np.testing.assert_array_equal(clip.pose_body, poses[:, 3:66])
    np.testing.assert_array_equal(clip.jaw, poses[:, 66:69])
    np.testing.assert_array_equal(clip.eyes, poses[:, 69:75])
    np.testing.assert_array_equal(clip.hands, poses[:, 75:])
    np.testing.assert_array_equal(clip.trans, trans)
    np.testing.assert_array_equal(clip.betas, betas)
    assert (clip.gender, clip.fps, clip.fps_assumed, clip.surface_model_type) == ("female", 120.0, False, "smplx")
    round_trip(clip, tmp_path)


def test_amass_smplx_split_keys(tmp_path: Path) -> None:
    frames = 20
    arrays = {"pose_body": rand(frames, 63), "root_orient": rand(frames, 3), "pose_hand": rand(frames, 90),
              "pose_jaw": rand(frames, 3), "pose_eye": rand(frames, 6), "trans": rand(frames, 3)}
    clip = load_clip(write(tmp_path / "split.npz", **arrays, mocap_frame_rate=np.array(60)))
    for name, key in (("pose_body", "pose_body"), ("root_orient", "root_orient"), ("hands", "pose_hand"),
                      ("jaw", "pose_jaw"), ("eyes", "pose_eye"), ("trans", "trans")):
        np.testing.assert_array_equal(getattr(clip, name), arrays[key])
    assert clip.fps == 60 and not clip.fps_assumed
    round_trip(clip, tmp_path)


def test_amass_smplh(tmp_path: Path) -> None:
    frames = 30
    poses = rand(frames, 156)
    path = write(
        tmp_path / "smplh.npz", poses=poses, trans=rand(frames, 3), betas=rand(16), gender=np.array(b"male"),
        mocap_framerate=np.array(59.94), dmpls=rand(frames, 8),
    )
    clip = load_clip(path)
    np.testing.assert_array_equal(clip.pose_body, poses[:, 3:66])
    np.testing.assert_array_equal(clip.hands, poses[:, 66:])
    assert clip.jaw is None and clip.eyes is None
    assert (clip.gender, clip.fps, clip.surface_model_type) == ("male", pytest.approx(59.94), "smplh")
    again = round_trip(clip, tmp_path)
    assert again.surface_model_type == "smplh"  # the SMPL+H betas stay labelled as such

    smpl = rand(frames, 72)  # SMPL: the same 22 joints, then two hand joints (not SMPL-X's fingers)
    clip = load_clip(write(tmp_path / "smpl.npz", poses=smpl, trans=rand(frames, 3)))
    np.testing.assert_array_equal(clip.pose_body, smpl[:, 3:66])
    assert clip.hands is None and clip.surface_model_type == "smpl" and clip.fps_assumed
    round_trip(clip, tmp_path)


def test_dposer_pose_sets_and_wholebody(shared_data: Path, tmp_path: Path) -> None:
    samples = rand(7, 63)
    clip = load_clip(write(tmp_path / "samples.npz", pose_samples=samples))
    np.testing.assert_array_equal(clip.pose_body, samples)
    assert not clip.root_orient.any() and clip.fps_assumed
    round_trip(clip, tmp_path)

    whole = np.load(shared_data / "wholebody_poses.npz", allow_pickle=False)
    clip = load_clip(shared_data / "wholebody_poses.npz")
    np.testing.assert_array_equal(clip.pose_body, whole["body_pose"])
    np.testing.assert_array_equal(clip.root_orient, whole["global_orient"])
    np.testing.assert_array_equal(clip.hands, np.concatenate([whole["left_hand_pose"], whole["right_hand_pose"]], 1))
    np.testing.assert_array_equal(clip.jaw, whole["jaw_pose"])
    np.testing.assert_array_equal(clip.expression, whole["expression"])
    assert clip.eyes is None and clip.trans is None
    round_trip(clip, tmp_path)


def test_written_file_is_the_amass_smplx_layout(shared_data: Path, tmp_path: Path) -> None:
    clip = load_clip(shared_data / "gesture_clip.npz")
    with np.load(save_clip(clip, tmp_path / "out.npz"), allow_pickle=False) as data:
        assert data["poses"].shape == (240, 165) and data["trans"].shape == (240, 3)
        np.testing.assert_array_equal(data["poses"][:, 3:66], clip.pose_body)
        np.testing.assert_array_equal(data["pose_body"], clip.pose_body)
        np.testing.assert_array_equal(data["root_orient"], data["poses"][:, :3])
        assert data["betas"].shape == (16,) and int(data["num_betas"]) == 16
        assert str(data["gender"]) == "neutral" and str(data["surface_model_type"]) == "smplx"
        assert float(data["mocap_frame_rate"]) == 30.0
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temporary file left behind


def test_load_poses(shared_data: Path, tmp_path: Path) -> None:
    demo = np.load(shared_data / "dposer_demo_poses.npz")["pose_body"]
    np.testing.assert_array_equal(load_poses(shared_data / "dposer_demo_poses.npz"), demo)
    assert load_poses(shared_data / "wholebody_poses.npz").shape == (500, 63)
    val = load_poses(shared_data / "amass_body_poses.npz", key="val")
    assert val.shape == (500, 63) and val.dtype == np.float32
    hypotheses = rand(4, 3, 63)  # `dposer complete` output: (N, H, 63)
    flat = load_poses(write(tmp_path / "h.npz", pose_body=hypotheses))
    np.testing.assert_array_equal(flat, hypotheses.reshape(12, 63))
    joints = rand(5, 21, 3)
    np.testing.assert_array_equal(load_poses(write(tmp_path / "j.npz", body_pose=joints)), joints.reshape(5, 63))
    poses = rand(6, 156)
    np.testing.assert_array_equal(load_poses(write(tmp_path / "a.npz", poses=poses)), poses[:, 3:66])
    with pytest.raises(InputError, match="has no 'test'"):
        load_poses(shared_data / "amass_body_poses.npz", key="test")


# ---- frame ranges and frame rates ---------------------------------------------------------------


def test_frame_selection(shared_data: Path) -> None:
    clip = load_clip(shared_data / "gesture_clip.npz")
    part = load_clip(shared_data / "gesture_clip.npz", start=10, stop=20)
    np.testing.assert_array_equal(part.pose_body, clip.pose_body[10:20])
    np.testing.assert_array_equal(clip.frames(-5).root_orient, clip.root_orient[-5:])
    with pytest.raises(InputError, match=r"gesture_clip.npz: frame range 300:400 is empty \(the clip has 240 frames\)"):
        clip.frames(300, 400)


def test_resampling_slerps_rotations_and_lerps_translation(tmp_path: Path) -> None:
    frames = 11
    poses, trans = rand(frames, 156, scale=0.8), rand(frames, 3)
    path = write(tmp_path / "c.npz", poses=poses, trans=trans, mocap_framerate=np.array(30))
    clip = load_clip(path)
    double = clip.resampled(60)
    assert double.num_frames == 21 and double.fps == 60 and not double.fps_assumed
    # Frames on the source grid are copied exactly, so down again gives the original.
    assert_same_clip(double.resampled(30), clip)
    np.testing.assert_allclose(double.trans[1::2], 0.5 * (clip.trans[:-1] + clip.trans[1:]), atol=1e-6)

    def rotation(aa: np.ndarray) -> np.ndarray:
        import torch

        from prior.rotations import axis_angle_to_matrix

        return axis_angle_to_matrix(torch.from_numpy(aa.reshape(-1, 3)).double()).numpy()

    def angle(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
        cos = (np.trace(r1.transpose(0, 2, 1) @ r2, axis1=1, axis2=2) - 1) / 2
        return np.arccos(np.clip(cos, -1, 1))

    before, mid, after = (rotation(x) for x in (clip.hands[3], double.hands[7], clip.hands[4]))
    # The midpoint of a slerp is halfway along the geodesic.
    np.testing.assert_allclose(angle(before, mid), 0.5 * angle(before, after), atol=1e-5)
    np.testing.assert_allclose(angle(mid, after), 0.5 * angle(before, after), atol=1e-5)

    slow = load_clip(path, fps=24)
    assert slow.num_frames == 9 and slow.duration_s == pytest.approx(8 / 24)
    with pytest.raises(InputError, match="frame rate must be a positive number"):
        clip.resampled(0)


# ---- bad files ----------------------------------------------------------------------------------


def _object_array() -> np.ndarray:
    value = np.empty(2, dtype=object)
    value[:] = [np.zeros(63), np.zeros(63)]
    return value


BAD_FILES: dict[str, tuple[dict, str]] = {
    "wrong_width": ({"pose_body": np.zeros((10, 62))}, "'pose_body' has shape (10, 62), expected (T, 63)"),
    "nan": ({"poses": np.full((4, 165), np.nan)}, "'poses' contains NaN or Inf"),
    "inf_trans": ({"pose_body": np.zeros((4, 63)), "trans": np.full((4, 3), np.inf)}, "'trans' contains NaN or Inf"),
    "pickled": (
        {"pose_body": _object_array()},
        "contains pickled objects ('pose_body'), which are not loaded for safety",
    ),
    "zero_frames": ({"pose_body": np.zeros((0, 63))}, "'pose_body' has no frames (shape (0, 63))"),
    "frame_mismatch": ({"pose_body": np.zeros((5, 63)), "trans": np.zeros((4, 3))}, "'trans' has 4 frames, expected 5"),
    "poses_width": ({"poses": np.zeros((5, 100))}, "'poses' has shape (5, 100), expected (T, 165) (SMPL-X), (T, 156)"),
    "no_poses": (
        {"foo": np.zeros(3)},
        "no poses found: expected 'poses' (AMASS), 'pose_body', 'body_pose' or 'pose_samples'; found 'foo'",
    ),
    "strings": ({"pose_body": np.array([["a"] * 63])}, "'pose_body' has dtype <U1, expected numbers"),
    "gender": (
        {"pose_body": np.zeros((2, 63)), "gender": np.array("robot")},
        "'gender' is 'robot', expected one of neutral, male, female",
    ),
    "fps": (
        {"poses": np.zeros((2, 156)), "mocap_framerate": np.array(-1.0)},
        "'mocap_framerate' is -1.0, expected a positive frame rate",
    ),
    "one_hand": (
        {"body_pose": np.zeros((2, 63)), "left_hand_pose": np.zeros((2, 45))},
        "has 'left_hand_pose' but not the other hand",
    ),
    "betas": (
        {"pose_body": np.zeros((2, 63)), "betas": np.zeros((2, 3, 4))},
        "'betas' has shape (2, 3, 4), expected (NB,)",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_give_one_line_naming_file_and_problem(tmp_path: Path, case: str) -> None:
    arrays, message = BAD_FILES[case]
    path = write(tmp_path / "clip.npz", **arrays)
    for reader in (load_clip, load_poses):
        if reader is load_poses and case in ("inf_trans", "frame_mismatch", "gender", "fps", "one_hand", "betas"):
            continue  # load_poses reads only the poses
        with pytest.raises(InputError) as err:
            reader(path)
        text = str(err.value)
        assert text.startswith(f"{path}: ") and "\n" not in text
        if reader is load_poses:  # a pose set has N poses, not T frames
            message = message.replace("(T, 63)", "(N, 63)").replace("no frames", "no poses")
        assert message in text, text


def test_unreadable_files(tmp_path: Path, shared_data: Path) -> None:
    good = (shared_data / "gesture_clip.npz").read_bytes()
    (tmp_path / "empty.npz").touch()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.npz").write_text("pose_body = [0, 0, 0]\n")
    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"pose_body": np.zeros((2, 63))}))
    np.save(tmp_path / "single.npy", np.zeros((2, 63)))
    cases = {
        "empty.npz": "empty file",
        "truncated.npz": "not a valid .npz file (truncated or wrong format)",
        "text.npz": "not a valid .npz file (truncated or wrong format)",
        "pickle.npz": "is a Python pickle, which is not loaded for safety",
        "single.npy": "is a single .npy array; expected an .npz archive",
        "missing.npz": "no such file",
    }
    for name, message in cases.items():
        path = tmp_path / name
        for reader in (load_clip, load_poses):
            with pytest.raises(InputError) as err:
                reader(path)
            assert str(err.value) == f"{path}: {message}" or str(err.value).startswith(f"{path}: {message}")
    with pytest.raises(InputError, match="over the 0 MiB limit"):
        load_clip(shared_data / "gesture_clip.npz", max_bytes=1000)


def test_compressed_archives_are_limited_by_unpacked_size(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, pose_body=np.zeros((100_000, 63)))  # 50 MB of zeros in a tiny file
    assert path.stat().st_size < 2**20
    with pytest.raises(InputError, match="unpacks to 48 MiB, over the 1 MiB limit"):
        load_poses(path, max_bytes=2**20)


def test_writer_refuses_nan_and_leaves_existing_file_intact(shared_data: Path, tmp_path: Path) -> None:
    clip = load_clip(shared_data / "gesture_clip.npz")
    out = save_clip(clip, tmp_path / "out.npz")
    before = out.read_bytes()
    bad_pose = clip.pose_body.copy()
    bad_pose[3, 4] = np.nan
    with pytest.raises(InputError, match="out.npz: refusing to write a clip whose 'pose_body' contains NaN or Inf"):
        save_clip(Clip(pose_body=bad_pose, root_orient=clip.root_orient), out)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.npz"]


def test_motion_files_are_clips_when_they_have_poses_else_observed_joints(tmp_path):
    joints = rand(6, 55, 3)
    joints[2, 20] = np.nan
    only_joints = tmp_path / "keypoints.npz"
    np.savez(only_joints, joints3d=joints.reshape(6, -1), global_orient=rand(6, 3), fps=np.array(50))
    track = load_motion(only_joints)
    assert isinstance(track, JointTrack) and track.key == "joints3d" and track.fps == 50 and not track.fps_assumed
    np.testing.assert_array_equal(track.joints, joints[:, :22])  # (T, 3 J) read as (T, J, 3); first 22 kept
    assert track.seen.sum() == 6 * 22 - 1 and track.root_orient is not None and track.trans is None
    both = tmp_path / "denoised.npz"  # what `dposer denoise` writes: a clip, plus its observations
    np.savez(both, pose_body=rand(6, 63), noisy_joints=joints[:, :22])
    assert isinstance(load_motion(both), Clip)
    with pytest.raises(InputError, match=r"nothing.npz: no poses or joints found: .* found 'other'"):
        np.savez(tmp_path / "nothing.npz", other=np.zeros(3))
        load_motion(tmp_path / "nothing.npz")


# ---- frame limits, checked from the arrays' headers before they are read ---------------------------


def test_a_small_file_of_too_many_frames_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """0.2 MB of compressed zeros held a 300,000-frame clip (200 MB read here, 3.3 GB in the viewer)."""
    import zipfile

    from bounded_load import bounded_load, write_zero_member

    path = tmp_path / "long.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        write_zero_member(z, "poses.npy", (300_000, 165))
        write_zero_member(z, "trans.npy", (300_000, 3))
    assert path.stat().st_size < 2**20
    for call in ("load_clip(path)", "load_motion(path)"):
        result = bounded_load(call, path, headroom=160 * 2**20)
        assert result["outcome"] == f"InputError: {path}: 'poses' has 300000 frames, over the limit of 100000", result
        assert result["grew"] < 16 * 2**20, result
    joints = tmp_path / "joints.npz"
    with zipfile.ZipFile(joints, "w", zipfile.ZIP_DEFLATED) as z:
        write_zero_member(z, "joints.npy", (100_001, 22, 3))
    result = bounded_load("load_joints(path)", joints, headroom=160 * 2**20)
    assert result["outcome"] == f"InputError: {joints}: 'joints' has 100001 frames, over the limit of 100000", result


def test_callers_pass_their_own_frame_and_pose_limits(tmp_path: Path, shared_data: Path) -> None:
    clip = shared_data / "gesture_clip.npz"  # 240 frames at 30 fps
    assert load_clip(clip, max_frames=240).num_frames == 240
    with pytest.raises(InputError, match=r"gesture_clip.npz: '\w+' has 240 frames, over the limit of 239"):
        load_clip(clip, max_frames=239)
    with pytest.raises(InputError, match="over the limit of 100"):
        load_motion(clip, max_frames=100)
    path = write(tmp_path / "set.npz", pose_body=np.zeros((4, 5, 21, 3), np.float32))
    assert load_poses(path, max_poses=20).shape == (20, 63)
    with pytest.raises(InputError, match=r"set.npz: 'pose_body' has 20 poses, over the limit of 19"):
        load_poses(path, max_poses=19)
    amass = shared_data / "amass_body_poses.npz"  # what `dposer eval` reads: 8498 + 500 poses
    assert load_poses(amass, key="train").shape == (8498, 63) and load_poses(amass, key="val").shape == (500, 63)


def test_resampling_is_bounded_in_rate_and_frames(shared_data: Path) -> None:
    clip = load_clip(shared_data / "gesture_clip.npz")  # 240 frames, 30 fps: 7.97 s
    assert clip.resampled(1000).num_frames == 7967
    with pytest.raises(InputError, match=r"resampling to 1000 fps gives 7967 frames, over the limit of 5000"):
        clip.resampled(1000, max_frames=5000)
    for rate in (1e-300, 1e6):
        with pytest.raises(InputError, match="frame rate must be a positive number from 1 to 1000 fps"):
            clip.resampled(rate)
    with pytest.raises(InputError, match="over the limit of 1000"):
        load_clip(shared_data / "gesture_clip.npz", fps=200, max_frames=1000)


def test_frame_rate_of_1e_300_and_many_keys_give_short_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "slow.npz", poses=np.zeros((10, 165)), mocap_frame_rate=np.array(1e-300))
    with pytest.raises(InputError, match=r"'mocap_frame_rate' is 1e-300, expected a positive frame rate \(1 to 1000"):
        load_clip(path)
    path = write(tmp_path / "keys.npz", **{f"k{i}": np.zeros(1) for i in range(50)})
    with pytest.raises(InputError) as err:
        load_clip(path)
    assert str(err.value).endswith("found 'k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7' and 42 more")


def test_joints_and_betas_of_odd_dtypes_or_too_large_for_float32_are_refused(tmp_path):
    """np.issubdtype(dtype, np.number) lets timedelta64 and complex in, and 1e300 passes a finite
    check made before the float32 cast."""
    from prior.data import load_clip, load_joints

    joints = np.zeros((5, 22, 3))
    for name, value, fragment in (("td", joints.astype("m8[s]"), "dtype timedelta64"),
                                  ("cx", joints.astype(np.complex64), "dtype complex64"),
                                  ("big", joints + 1e300, "too large for float32")):
        path = tmp_path / f"{name}.npz"
        np.savez(path, joints=value)
        with pytest.raises(InputError, match=fragment):
            load_joints(path)
    pose = np.zeros((5, 63), np.float32)
    for name, betas, fragment in (("td", np.zeros(10, "m8[s]"), "dtype timedelta64"),
                                  ("cx", np.zeros(10, np.complex64), "dtype complex64"),
                                  ("big", np.full(10, 1e300), "too large for float32")):
        path = tmp_path / f"betas_{name}.npz"
        np.savez(path, pose_body=pose, root_orient=np.zeros((5, 3), np.float32), betas=betas)
        with pytest.raises(InputError, match=fragment):
            load_clip(path)
