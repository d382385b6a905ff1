"""The shipped default prior: loads with no arguments, is small, and is a real prior of AMASS poses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prior import load_body_model, load_prior
from prior.completion import complete, make_mask
from prior.evaluate import body_joints
from prior.files import default_checkpoint_path
from prior.metrics import mpjpe_mm
from prior.sampling import generate

from prior_helpers import DATA


@pytest.fixture(scope="module")
def default():
    return load_prior(None, device="cpu")


@pytest.fixture(scope="module")
def val() -> np.ndarray:
    with np.load(DATA / "amass_body_poses.npz", allow_pickle=False) as f:
        return f["val"][:40].astype(np.float32)


def test_shipped_file_is_small_self_contained_and_documented(default):
    path = default_checkpoint_path()
    assert path.stat().st_size < 20 * 1024**2
    assert default.info["format"] == "dposer-view"
    assert default.info["data"]["split"] == "train" and default.info["num_train_poses"] == 8498
    assert default.info["steps"] >= 10_000
    card = (path.parent / "README.md").read_text()
    assert path.name in card and "amass_body_poses.npz" in card and "dposer train" in card


def test_completion_beats_the_mean_pose_on_real_val_poses(default, val):
    body = load_body_model()
    mask = make_mask(part="left_arm")
    pred = complete(default, torch.from_numpy(val), mask, hypotheses=4, seed=0).pose_body.numpy()
    gt = body_joints(body, val)
    joints = [13, 16, 18, 20]  # left collar, shoulder, elbow, wrist
    err = mpjpe_mm(body_joints(body, pred)[:, :, joints], gt[:, None, joints]).min(1).mean()
    filled = val.copy()
    filled[:, mask.numpy()] = default.mean.numpy()[mask.numpy()]
    err_mean = mpjpe_mm(body_joints(body, filled)[:, joints], gt[:, joints]).mean()
    assert err < 0.6 * err_mean, (err, err_mean)


def test_completion_beats_nearest_neighbours_with_both_arms_masked(default, val):
    """The bar on the hardest part: closer to the truth than copying training poses."""
    from prior.evaluate import nearest_visible
    from prior.parts import part_joints

    body = load_body_model()
    with np.load(DATA / "amass_body_poses.npz", allow_pickle=False) as f:
        train = f["train"].astype(np.float32)
    mask = make_mask(part="arms")
    joints = np.array(part_joints("arms")) + 1
    gt = body_joints(body, val)[:, None, joints]
    pred = complete(default, torch.from_numpy(val), mask, hypotheses=10, seed=0).pose_body.numpy()
    ours = mpjpe_mm(body_joints(body, pred)[:, :, joints], gt)
    nn = mpjpe_mm(body_joints(body, nearest_visible(train, val, mask.numpy(), 10))[:, :, joints], gt)
    assert ours.min(1).mean() < nn.min(1).mean(), (ours.min(1).mean(), nn.min(1).mean())  # best of 10
    assert ours[:, 0].mean() < nn[:, 0].mean(), (ours[:, 0].mean(), nn[:, 0].mean())  # single answer


def test_generated_poses_look_like_real_ones(default, val):
    body = load_body_model()
    gen = generate(default, 64, steps=200, seed=0).pose_body.numpy()
    # every joint angle within the range seen in real data (a random network wanders far out)
    with np.load(DATA / "amass_body_poses.npz", allow_pickle=False) as f:
        train = f["train"]
    lo, hi = train.min(0) - 0.5, train.max(0) + 0.5
    inside = ((gen >= lo) & (gen <= hi)).all(1).mean()
    assert inside > 0.9
    # and their joint spread is that of real poses, within a factor
    spread_gen = body_joints(body, gen).std(0).mean()
    spread_real = body_joints(body, val).std(0).mean()
    assert 0.6 < spread_gen / spread_real < 1.6
