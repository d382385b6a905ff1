"""Motion denoising on a real AMASS clip: DPoser's experiment, partial observations, windows, the
motion-fitting task (observe_motion, fit_motion), the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading

import numpy as np
import pytest
import torch

from prior import Cancelled
from prior.data import JointTrack, load_clip, load_joints, save_clip
from prior.metrics import mpjpe_mm
from prior.motion import (
    MOTION_SCHEDULE,
    DenoiseOptions,
    Windows,
    add_joint_noise,
    clip_joints,
    denoise_motion,
    parse_observed,
    root_from_joints,
)
from prior.motion_fit import fit_motion, observe_motion
from prior.rotations import axis_angle_to_matrix, matrix_to_axis_angle

from prior_helpers import DATA, OFFICIAL_CKPT

pytest_plugins = ["task_fixtures"]  # body, official, trained, one_thread
pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = DenoiseOptions(schedule=dataclasses.replace(MOTION_SCHEDULE, steps_per_iter=20))
LEFT_ARM = (13, 16, 18, 20)  # SMPL-X left collar, shoulder, elbow, wrist


@pytest.fixture(scope="module")
def gesture():
    return load_clip(DATA / "gesture_clip.npz")


@pytest.mark.parametrize(("frames", "window", "overlap"), [(10, 300, 30), (240, 100, 20), (61, 24, 8), (300, 120, 0)])
def test_windows_cover_the_clip_and_crossfade_to_one(frames, window, overlap):
    windows = Windows(frames, window, overlap)
    starts, length, weights = windows.starts, windows.length, windows.weights
    assert length == min(frames, window) and len(windows) == len(starts)
    assert starts[0] == 0 and starts[-1] + length == frames
    assert all(b - a <= length - overlap for a, b in zip(starts, starts[1:]))
    total = torch.zeros(frames)
    for w, s in enumerate(starts):
        total[s : s + length] += weights[w]
    assert torch.allclose(total, torch.ones(frames), atol=1e-6)  # each frame's weights sum to one
    assert (weights > 0).all()
    x = torch.randn(frames, 5, generator=torch.Generator().manual_seed(frames))
    cut = windows.cut(x)
    assert cut.shape == (len(starts), length, 5) and torch.equal(cut[-1], x[-length:])
    assert torch.allclose(windows.assemble(cut), x, atol=1e-6)  # assemble(cut(x)) == x
    assert torch.equal(windows.cut(x, [len(starts) - 1]), cut[-1:])
    # No seams: each window's share of a frame changes by at most one ramp step per frame.
    if len(starts) > 1:
        shared = min(a + length - b for a, b in zip(starts, starts[1:]))
        assert float((weights[:, 1:] - weights[:, :-1]).abs().max()) <= 1 / (shared + 1) + 1e-6


def test_denoising_a_real_clip_beats_the_noise_and_the_prior_fills_unseen_joints(trained, body, gesture):
    clip = gesture.frames(0, 30)
    obs = observe_motion(body, clip, noise_std_m=0.04, seed=0)
    res = fit_motion(trained, body, clip, obs, seed=1)
    assert res.metrics["mpjpe_in_mm"] == pytest.approx(64, rel=0.1)  # 0.04 m per coordinate: 1.6 * 40 mm on average
    assert res.metrics["mpjpe_out_mm"] <= 0.5 * res.metrics["mpjpe_in_mm"]
    assert res.clip.pose_body.shape == (30, 63) and res.joints.shape == (30, 22, 3) and not res.root_fitted
    assert res.clip.root_orient is clip.root_orient  # known root is held

    # Without observations of the left arm, only the prior can place it.
    observed = [j for j in range(22) if j not in LEFT_ARM]
    arm = list(LEFT_ARM)
    errors = {}
    for weight in (0.1, 0.0):
        out = fit_motion(trained, body, clip, obs, observed=observed, seed=1,
                         options=DenoiseOptions(prior_weight=weight))
        errors[weight] = float(mpjpe_mm(out.joints[:, arm], obs.gt_joints[:, arm]).mean())
    assert errors[0.1] < 0.7 * errors[0.0], errors


def test_windowed_solution_is_as_good_as_one_window(official, body, gesture):
    clip = gesture.frames(0, 48)
    gt = clip_joints(body, clip)
    noisy = add_joint_noise(gt, 0.04, seed=1)
    root = torch.from_numpy(clip.root_orient)
    whole = denoise_motion(official, body, noisy, root_orient=root, gt_joints=gt, seed=0, options=SHORT)
    windowed_opts = dataclasses.replace(SHORT, window=20, overlap=6)
    assert len(Windows(48, 20, 6)) == 3
    windowed = denoise_motion(official, body, noisy, root_orient=root, gt_joints=gt, seed=0, options=windowed_opts)
    assert windowed.mpjpe_out_mm < 1.2 * whole.mpjpe_out_mm


def test_root_can_be_fitted_from_a_rough_start(official, body, gesture):
    clip = gesture.frames(0, 30)
    gt = clip_joints(body, clip)
    noisy = add_joint_noise(gt, 0.02, seed=2)
    true = torch.from_numpy(clip.root_orient)
    rough = true + 0.15
    held = denoise_motion(official, body, noisy, root_orient=rough, gt_joints=gt, seed=0, options=SHORT)
    fitted = denoise_motion(official, body, noisy, root_orient=rough, gt_joints=gt, seed=0,
                            options=dataclasses.replace(SHORT, fit_root=True))
    assert fitted.trans is not None  # started at the observed pelvis

    def angle_rad(a, b):
        rel = axis_angle_to_matrix(a).transpose(-1, -2) @ axis_angle_to_matrix(b)
        return torch.arccos(((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)).mean()

    assert angle_rad(fitted.root_orient, true) < 0.5 * angle_rad(rough, true)
    assert fitted.mpjpe_out_mm < held.mpjpe_out_mm


def turned_clip(clip, turn_rad: float):
    """``clip`` turned about the vertical (Y) axis and walking along a line: a root to recover."""
    turn = axis_angle_to_matrix(torch.tensor([0.0, turn_rad, 0.0]))
    root = matrix_to_axis_angle(turn @ axis_angle_to_matrix(torch.from_numpy(clip.root_orient)))
    path = np.linspace([0.0, 0.9, 0.0], [0.5, 0.9, 0.2], clip.num_frames).astype(np.float32)
    return dataclasses.replace(clip, root_orient=root.numpy().astype(np.float32), trans=path)


def with_gaps(joints: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``joints`` with NaN where not seen: 10% of entries at random, and the left elbow and wrist
    for 16 frames in a row (an occlusion). Returns the observations and the ``(T, 22)`` gap mask."""
    gap = torch.rand(joints.shape[:2], generator=torch.Generator().manual_seed(seed)) < 0.1
    gap[10:26, [18, 20]] = True
    out = joints.clone()
    out[gap] = torch.nan
    return out, gap


def test_root_from_joints_recovers_a_rigid_torso(body):
    true = matrix_to_axis_angle(axis_angle_to_matrix(torch.randn(6, 3, generator=torch.Generator().manual_seed(0))))
    joints = body.joints(torch.zeros(6, 63), global_orient=true, transl=torch.randn(6, 3))[:, :22]
    joints[2, [1, 6]] = torch.nan  # a frame that sees four of the six torso joints still works
    joints[4, :] = torch.nan  # a frame that sees nothing is interpolated from its neighbours
    est = root_from_joints(body, joints)
    rot = axis_angle_to_matrix(est)
    assert torch.allclose(rot[[0, 1, 2, 3, 5]], axis_angle_to_matrix(true)[[0, 1, 2, 3, 5]], atol=1e-4)
    assert torch.allclose(est[4], (est[3] + est[5]) / 2)
    assert torch.equal(root_from_joints(body, joints, observed=[0, 1, 12]), torch.zeros(6, 3))  # too few


def test_denoising_observed_joints_with_gaps_and_an_unknown_root(trained, body, gesture):
    clip = turned_clip(gesture.frames(0, 40), 2.5)  # facing almost backwards: a zero root is far off
    gt = clip_joints(body, clip)
    noisy, gap = with_gaps(add_joint_noise(gt, 0.04, seed=0), seed=3)
    res = denoise_motion(trained, body, noisy, gt_joints=gt, seed=1, options=DenoiseOptions(fit_root=True))
    assert res.mpjpe_in_mm == pytest.approx(64, rel=0.1)  # over the seen entries only
    assert res.mpjpe_out_mm < 0.4 * res.mpjpe_in_mm, res.metrics
    err = (res.joints - gt).norm(dim=-1) * 1000
    assert float(err[10:26, [18, 20]].mean()) < 0.5 * res.mpjpe_in_mm, "the occluded arm was not filled"
    assert torch.equal(torch.isnan(res.noisy_joints).any(-1), gap)  # the observations as given
    assert res.metrics["observed_fraction"] == pytest.approx(1 - float(gap.float().mean()))
    assert 30 < res.fit_mm < res.mpjpe_in_mm  # close to the noise, which it does not chase

    # The torso start matters when the body faces away: from a zero root the fit is worse.
    zero = denoise_motion(trained, body, noisy, root_orient=torch.zeros(40, 3), gt_joints=gt, seed=1,
                          options=DenoiseOptions(fit_root=True))
    assert res.mpjpe_out_mm < 0.8 * zero.mpjpe_out_mm, (res.mpjpe_out_mm, zero.mpjpe_out_mm)
    with pytest.raises(ValueError, match="no observation"):
        denoise_motion(trained, body, torch.full((4, 22, 3), torch.nan))


def test_streams_the_whole_clip_is_seeded_and_cancels(official, body, gesture):
    clip = gesture.frames(0, 12)
    noisy = add_joint_noise(clip_joints(body, clip), 0.04, seed=0)
    opts = DenoiseOptions(schedule=dataclasses.replace(MOTION_SCHEDULE, iterations=2, steps_per_iter=5), window=8,
                          overlap=4)
    seen = []
    a = denoise_motion(official, body, noisy, seed=3, options=opts, callback=seen.append, callback_every=5)
    b = denoise_motion(official, body, noisy, seed=3, options=opts)
    assert torch.equal(a.pose_body, b.pose_body)
    assert [p.step for p in seen] == [1, 5, 10] and all(p.task == "denoise" for p in seen)
    assert seen[0].pose_body.shape == (12, 63) and seen[0].t > seen[-1].t
    assert torch.allclose(seen[-1].pose_body, a.pose_body, atol=1e-6)

    cancel = threading.Event()
    with pytest.raises(Cancelled):
        denoise_motion(official, body, noisy, seed=3, options=opts, cancel=cancel,
                       callback=lambda p: cancel.set(), callback_every=1)


def test_observed_joint_specs_and_bad_inputs(official, body):
    assert parse_observed("0, left_wrist, hands") == (0, 20, 21)
    assert parse_observed("legs") == (1, 2, 4, 5, 7, 8, 10, 11)
    for bad in ("22", "elbow", ""):
        with pytest.raises(ValueError):
            parse_observed(bad)
    with pytest.raises(ValueError, match="noisy_joints"):
        denoise_motion(official, body, torch.zeros(5, 21, 3))
    with pytest.raises(ValueError, match="root_orient"):
        denoise_motion(official, body, torch.zeros(5, 22, 3), root_orient=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="overlap"):
        DenoiseOptions(window=10, overlap=10)


# -- the motion-fitting task (what the CLI and the viewer call) ---------------------------------------

BETAS = np.linspace(-2.0, 2.0, 10).astype(np.float32)


def shaped_clip(gesture, frames: int = 12):
    """A short clip with a non-mean shape and a translation: both must reach the body model."""
    clip = gesture.frames(0, frames)
    path = np.linspace([0.0, 0.9, 0.0], [0.3, 0.9, 0.1], frames).astype(np.float32)
    return dataclasses.replace(clip, betas=BETAS, trans=path)


def test_observe_motion_of_a_clip_uses_its_shape_and_seeds_the_noise(body, gesture):
    clip = shaped_clip(gesture)
    clean = observe_motion(body, clip)
    expected = body.skeleton_joints(torch.from_numpy(clip.pose_body), global_orient=torch.from_numpy(clip.root_orient),
                                    transl=torch.from_numpy(clip.trans), betas=torch.from_numpy(BETAS))
    np.testing.assert_array_equal(clean.gt_joints, expected.numpy())
    np.testing.assert_array_equal(clean.joints, clean.gt_joints)  # no noise asked for
    mean_shape = observe_motion(body, dataclasses.replace(clip, betas=None)).gt_joints
    assert np.linalg.norm(clean.gt_joints - mean_shape, axis=-1).max() > 0.005
    assert clean.joints.dtype == np.float32 and clean.joints.shape == (12, 22, 3)

    noisy = observe_motion(body, clip, noise_std_m=0.04, seed=3)
    np.testing.assert_array_equal(noisy.gt_joints, clean.gt_joints)
    np.testing.assert_array_equal(noisy.joints, add_joint_noise(expected, 0.04, seed=3).numpy())
    errors = noisy.input_errors_mm()
    assert errors.shape == (12,) and 40 < errors.mean() < 90  # 0.04 m per coordinate: ~64 mm
    assert clean.input_errors_mm().max() == 0.0


def test_observe_motion_of_a_joint_track_keeps_its_gaps(body, gesture):
    joints = observe_motion(body, gesture.frames(0, 6)).gt_joints.copy()
    joints[2, 5] = np.nan
    track = JointTrack(joints=joints)
    obs = observe_motion(body, track)
    assert obs.gt_joints is None and obs.input_errors_mm() is None
    np.testing.assert_array_equal(obs.joints, joints)
    noisy = observe_motion(body, track, noise_std_m=0.01, seed=0)
    assert np.array_equal(np.isnan(noisy.joints), np.isnan(joints)) and not np.array_equal(noisy.joints, joints)
    with pytest.raises(ValueError, match="noise_std_m"):
        observe_motion(body, track, noise_std_m=-1.0)


def test_fit_motion_of_a_clip_is_denoise_motion_with_the_clips_root_and_shape(official, body, gesture):
    clip = shaped_clip(gesture)
    obs = observe_motion(body, clip, noise_std_m=0.04, seed=2)
    fit = fit_motion(official, body, clip, obs, options=SHORT, seed=3)
    ref = denoise_motion(official, body, torch.from_numpy(obs.joints), root_orient=torch.from_numpy(clip.root_orient),
                         trans=torch.from_numpy(clip.trans), betas=torch.from_numpy(BETAS),
                         gt_joints=torch.from_numpy(obs.gt_joints), options=SHORT, seed=3)
    assert fit.metrics == ref.metrics
    assert set(fit.metrics) == {"fit_mm", "observed_fraction", "mpjpe_in_mm", "mpjpe_out_mm"}
    np.testing.assert_array_equal(fit.clip.pose_body, ref.pose_body.numpy())
    np.testing.assert_array_equal(fit.joints, ref.joints.numpy())
    assert not fit.root_fitted and fit.clip.trans is clip.trans and fit.clip.betas is clip.betas
    assert fit.observations is obs
    assert set(fit.frame_errors_mm) == {"input", "fit"}
    assert fit.frame_errors_mm["fit"].mean() == pytest.approx(fit.metrics["mpjpe_out_mm"], rel=1e-6)
    assert fit.frame_errors_mm["input"].mean() == pytest.approx(fit.metrics["mpjpe_in_mm"], rel=1e-5)
    with pytest.raises(ValueError, match="12 frames"):
        fit_motion(official, body, clip.frames(0, 10), obs, options=SHORT)


def test_fit_motion_fits_the_root_of_a_track_that_lacks_one(official, body, gesture):
    clip = shaped_clip(gesture)
    joints = observe_motion(body, clip, noise_std_m=0.02, seed=4).joints
    joints[3:6, 20] = np.nan
    short = dataclasses.replace(SHORT, schedule=dataclasses.replace(MOTION_SCHEDULE, iterations=2, steps_per_iter=5))
    seen = []
    unknown = JointTrack(joints=joints, betas=BETAS, fps=60.0)
    fit = fit_motion(official, body, unknown, observe_motion(body, unknown), options=short, seed=0,
                     callback=seen.append)
    assert fit.root_fitted and fit.clip.trans is not None and fit.clip.fps == 60.0
    assert "root_orient" in seen[-1].extra and seen[-1].extra["trans"] is not None
    assert set(fit.frame_errors_mm) == {"fit"} and "mpjpe_in_mm" not in fit.metrics
    assert np.isfinite(fit.frame_errors_mm["fit"]).all()
    per_frame = np.isfinite(joints).all(-1).sum(1)  # 22 seen, 21 in the frames missing the wrist
    weighted = (fit.frame_errors_mm["fit"] * per_frame).sum() / per_frame.sum()
    assert weighted == pytest.approx(fit.metrics["fit_mm"], rel=1e-5)

    known = JointTrack(joints=joints, root_orient=clip.root_orient, trans=clip.trans, betas=BETAS)
    held = fit_motion(official, body, known, observe_motion(body, known), options=short, seed=0)
    assert not held.root_fitted
    np.testing.assert_array_equal(held.clip.root_orient, clip.root_orient)
    np.testing.assert_array_equal(held.clip.trans, clip.trans)
    forced = fit_motion(official, body, known, observe_motion(body, known), options=short, seed=0, fit_root=True)
    assert forced.root_fitted


def test_fit_sequence_takes_any_data_term(official, body, gesture):
    from prior.motion import JointsTerm, MotionParams, fit_sequence

    clip = gesture.frames(0, 20)
    noisy = add_joint_noise(clip_joints(body, clip), 0.04, seed=0)
    opts = dataclasses.replace(SHORT, window=8, overlap=3, max_batch_frames=16)  # 4 windows in 2 batches
    batches = []

    class Counting:
        """The joints term, recording the batches it is asked about."""

        def __init__(self) -> None:
            self.inner = JointsTerm(noisy, torch.ones(20, 22), tuple(range(22)))

        def for_windows(self, windows, group):
            batches.append(list(group))
            loss = self.inner.for_windows(windows, group)
            return lambda joints: loss(joints) if joints.shape[:2] == (len(group), windows.length) else None

    root = torch.from_numpy(clip.root_orient)
    start = MotionParams(official.mean.expand(20, official.space.dim), root)
    fit = fit_sequence(official, body, Counting(), start, opts, seed=5)
    assert batches == [[0, 1], [2, 3]] and fit.root_orient is root and fit.trans is None
    ref = denoise_motion(official, body, noisy, root_orient=root, options=opts, seed=5)
    assert torch.equal(fit.pose_body, ref.pose_body)


# -- the installed command -------------------------------------------------------------------------

DPOSER = shutil.which("dposer")


def dposer(*args) -> subprocess.CompletedProcess:
    assert DPOSER, "the dposer console script is not installed (pip install -e .)"
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # small batches: one thread is fastest on a busy machine
    return subprocess.run([DPOSER, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_cli_denoise_writes_an_amass_clip_and_metrics(tmp_path, gesture):
    src = save_clip(gesture.frames(0, 16), tmp_path / "in.npz")
    out, metrics = tmp_path / "out.npz", tmp_path / "m.json"
    proc = dposer("denoise", "--ckpt", OFFICIAL_CKPT, "--clip", src, "--noise-std", 0.04, "--seed", 0,
                  "--window", 10, "--overlap", 4, "--out", out, "--metrics", metrics)
    assert proc.returncode == 0, proc.stderr
    assert "denoise" in proc.stderr  # progress bar on stderr
    result = load_clip(out)
    assert result.pose_body.shape == (16, 63) and result.trans is None
    np.testing.assert_array_equal(result.root_orient, gesture.root_orient[:16])
    assert result.fps == 30.0 and result.fps_assumed  # the source had no frame rate
    with np.load(out, allow_pickle=False) as f:
        assert f["noisy_joints"].shape == (16, 22, 3)
        assert f["poses"].shape == (16, 165)  # AMASS SMPL-X layout
    report = json.loads(metrics.read_text())
    assert report["mpjpe_out_mm"] <= 0.5 * report["mpjpe_in_mm"]


def test_cli_denoise_bad_input_is_one_line_exit_2(tmp_path):
    out = tmp_path / "out.npz"
    proc = dposer("denoise", "--ckpt", OFFICIAL_CKPT, "--clip", tmp_path / "missing.npz", "--out", out)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "missing.npz" in lines[0], proc.stderr
    assert not out.exists()


def test_cli_denoises_observed_joints_from_a_file(tmp_path, body, gesture):
    clip = turned_clip(gesture.frames(0, 24), 1.0)
    gt = clip_joints(body, clip)
    noisy, gap = with_gaps(add_joint_noise(gt, 0.03, seed=5), seed=6)
    # A detector's layout: all of a body model's joints, SMPL-X order first; no root, no translation.
    full = body.joints(torch.from_numpy(clip.pose_body), global_orient=torch.from_numpy(clip.root_orient),
                       transl=torch.from_numpy(clip.trans))
    full[:, :22] = noisy
    src = tmp_path / "keypoints.npz"
    np.savez(src, keypoints3d=full.numpy(), fps=np.array(60.0))
    out, metrics = tmp_path / "fit.npz", tmp_path / "m.json"
    proc = dposer("denoise", "--joints", src, "--seed", 0, "--out", out, "--metrics", metrics)
    assert proc.returncode == 0, proc.stderr
    assert "mm to the observations" in proc.stderr
    fitted = load_clip(out)
    assert fitted.num_frames == 24 and fitted.fps == 60.0 and fitted.trans is not None  # root fitted
    fitted_joints = clip_joints(body, fitted)
    assert float(mpjpe_mm(fitted_joints, gt).mean()) < 0.5 * float(1000 * (noisy - gt).norm(dim=-1)[~gap].mean())
    with np.load(out, allow_pickle=False) as f:
        assert np.array_equal(np.isnan(f["noisy_joints"]).any(-1), gap.numpy())
    report = json.loads(metrics.read_text())
    assert report["fit_root"] and 0 < report["fit_mm"] < 60 and "mpjpe_in_mm" not in report
    # The output's observations read back as a joint track (with the fitted root, now known).
    track = load_joints(out)
    assert track.key == "noisy_joints" and track.root_orient is not None and track.fps == 60.0


@pytest.mark.parametrize(
    ("arrays", "args", "message"),
    [
        ({"joints": np.full((5, 22, 3), np.inf)}, (), "contains Inf"),
        ({"joints": np.zeros((5, 17, 3))}, (), "expected (T, J, 3) with J >= 22"),
        ({"joints": np.full((5, 22, 3), np.nan)}, (), "no finite joint position"),
        ({"pose_body": np.zeros((5, 63))}, (), "has no joints"),
        ({"joints": np.zeros((5, 22, 3)), "trans": np.zeros((4, 3))}, (), "'trans' has 4 frames"),
        ({"joints": np.zeros((5, 22, 3))}, ("--clip", "x.npz"), "exactly one of --clip"),
    ],
    ids=["inf", "too_few_joints", "all_nan", "no_joints", "trans_frames", "both_inputs"],
)
def test_cli_denoise_bad_joint_files_are_one_line_exit_2(tmp_path, arrays, args, message):
    src, out = tmp_path / "obs.npz", tmp_path / "out.npz"
    np.savez(src, **arrays)
    proc = dposer("denoise", "--ckpt", OFFICIAL_CKPT, "--joints", src, *args, "--out", out)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert args or "obs.npz" in lines[0], "a file's problem names the file"
    assert not out.exists()
