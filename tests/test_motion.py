"""Motion denoising on a real AMASS clip: DPoser's experiment, partial observations, windows, the CLI."""

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
from prior_helpers import DATA, OFFICIAL_CKPT

from prior import Cancelled
from prior.body import axis_angle_to_matrix
from prior.data import load_clip, save_clip
from prior.metrics import mpjpe_mm
from prior.motion import (
    MOTION_SCHEDULE,
    DenoiseOptions,
    add_joint_noise,
    clip_joints,
    crossfade_weights,
    denoise_clip,
    denoise_motion,
    parse_observed,
    window_starts,
)

pytest_plugins = ["task_fixtures"]  # body, official, trained, one_thread
pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = DenoiseOptions(schedule=dataclasses.replace(MOTION_SCHEDULE, steps_per_iter=20))
LEFT_ARM = (13, 16, 18, 20)  # SMPL-X left collar, shoulder, elbow, wrist


@pytest.fixture(scope="module")
def gesture():
    return load_clip(DATA / "gesture_clip.npz")


@pytest.mark.parametrize(("frames", "window", "overlap"), [(10, 300, 30), (240, 100, 20), (61, 24, 8), (300, 120, 0)])
def test_windows_cover_the_clip_and_crossfade_to_one(frames, window, overlap):
    starts = window_starts(frames, window, overlap)
    length = min(frames, window)
    assert starts[0] == 0 and starts[-1] + length == frames
    assert all(b - a <= length - overlap for a, b in zip(starts, starts[1:]))
    weights = crossfade_weights(starts, length, frames)
    total = torch.zeros(frames)
    for w, s in enumerate(starts):
        total[s : s + length] += weights[w]
    assert torch.allclose(total, torch.ones(frames), atol=1e-6)
    assert (weights > 0).all()
    # No seams: each window's share of a frame changes by at most one ramp step per frame.
    if len(starts) > 1:
        shared = min(a + length - b for a, b in zip(starts, starts[1:]))
        assert float((weights[:, 1:] - weights[:, :-1]).abs().max()) <= 1 / (shared + 1) + 1e-6


def test_denoising_a_real_clip_beats_the_noise_and_the_prior_fills_unseen_joints(trained, body, gesture):
    clip = gesture.frames(0, 30)
    res = denoise_clip(trained, body, clip, noise_std_m=0.04, seed=0)
    assert res.mpjpe_in_mm == pytest.approx(64, rel=0.1)  # 0.04 m per coordinate: 1.6 * 40 mm on average
    assert res.mpjpe_out_mm <= 0.5 * res.mpjpe_in_mm
    assert res.pose_body.shape == (30, 63) and res.joints.shape == (30, 22, 3)
    assert torch.equal(res.root_orient, torch.from_numpy(clip.root_orient))  # known root is held

    # Without observations of the left arm, only the prior can place it.
    gt = clip_joints(body, clip)
    observed = [j for j in range(22) if j not in LEFT_ARM]
    arm = list(LEFT_ARM)
    errors = {}
    for weight in (0.1, 0.0):
        out = denoise_clip(trained, body, clip, observed=observed, seed=0,
                           options=DenoiseOptions(prior_weight=weight))
        errors[weight] = float(mpjpe_mm(out.joints[:, arm], gt[:, arm]).mean())
    assert errors[0.1] < 0.7 * errors[0.0], errors


def test_windowed_solution_is_as_good_as_one_window(official, body, gesture):
    clip = gesture.frames(0, 48)
    gt = clip_joints(body, clip)
    noisy = add_joint_noise(gt, 0.04, seed=1)
    root = torch.from_numpy(clip.root_orient)
    whole = denoise_motion(official, body, noisy, root_orient=root, gt_joints=gt, seed=0, options=SHORT)
    windowed_opts = dataclasses.replace(SHORT, window=20, overlap=6)
    assert len(window_starts(48, 20, 6)) == 3
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
