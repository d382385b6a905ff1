"""Plausibility score: separates real AMASS poses from perturbed ones, calibrated per prior, cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prior import load_prior
from prior.files import asset_path
from prior.plausibility import (
    CALIBRATION_ASSET,
    PlausibilityOptions,
    calibrate,
    calibration_poses,
    label_for,
    plausibility,
    prior_energy,
)

from prior_helpers import DATA, OFFICIAL_CKPT

pytest_plugins = ["task_fixtures"]  # body, official, trained, one_thread
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def held_out() -> torch.Tensor:
    """AMASS val poses that are not in the shipped calibration set."""
    with np.load(DATA / "amass_body_poses.npz", allow_pickle=False) as f:
        val = f["val"]
    with np.load(asset_path(CALIBRATION_ASSET), allow_pickle=False) as f:
        shipped = f["val_index"]
    return torch.from_numpy(np.delete(val, shipped, axis=0)[:150])


def auc(negative: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive scores higher than a negative), ties counted half."""
    diff = positive[None, :] - negative[:, None]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def test_shipped_calibration_poses_are_amass_val_poses():
    poses = calibration_poses()
    with np.load(DATA / "amass_body_poses.npz", allow_pickle=False) as f:
        val = f["val"]
    with np.load(asset_path(CALIBRATION_ASSET), allow_pickle=False) as f:
        index = f["val_index"]
        assert "DPoser" in str(f["source"]) and "MIT" in str(f["license"])
    assert poses.shape == (256, 63)
    np.testing.assert_array_equal(poses, val[index])


def test_separates_real_poses_from_noised_and_random_ones(trained, held_out):
    gen = torch.Generator().manual_seed(7)
    noised = held_out + 0.3 * torch.randn(held_out.shape, generator=gen)
    random = (torch.rand(held_out.shape, generator=gen) * 2 - 1) * np.pi / 2
    real_e, noised_e, random_e = (prior_energy(trained, p).numpy() for p in (held_out, noised, random))
    assert auc(real_e, noised_e) >= 0.95
    assert auc(real_e, random_e) >= 0.99

    cal = calibrate(trained)
    labels = {name: [label_for(e, cal) for e in energies]
              for name, energies in (("real", real_e), ("noised", noised_e), ("random", random_e))}
    assert np.mean([lab == "typical" for lab in labels["real"]]) > 0.8
    assert np.mean([lab == "implausible" for lab in labels["real"]]) < 0.05
    assert np.mean([lab == "implausible" for lab in labels["noised"]]) > 0.8
    assert all(lab == "implausible" for lab in labels["random"])


def test_one_pose_score_matches_the_batch_and_is_deterministic(trained, held_out):
    scores = [plausibility(trained, held_out[0]) for _ in range(2)]
    assert scores[0] == scores[1]
    assert scores[0].energy == pytest.approx(float(prior_energy(trained, held_out[:3])[0]), abs=1e-5)
    assert 0 <= scores[0].percentile <= 100 and scores[0].label in ("typical", "unusual", "implausible")
    worst = plausibility(trained, torch.full((63,), 1.5))
    assert worst.label == "implausible" and worst.percentile == 100.0
    with pytest.raises(ValueError, match="63"):
        plausibility(trained, torch.zeros(62))


def test_calibration_is_per_prior_and_cached(trained):
    other = load_prior(OFFICIAL_CKPT, device="cpu")
    a, b = calibrate(trained), calibrate(other)
    assert calibrate(trained) is a  # cached on the prior object
    assert a.typical_max <= a.implausible_min and b.typical_max <= b.implausible_min
    assert abs(a.typical_max - b.typical_max) > 0.05  # each prior has its own scale
    assert np.all(np.diff(a.real) >= 0) and len(a.real) == 256
    coarse = PlausibilityOptions(times=(0.1,), draws=1)
    assert calibrate(trained, options=coarse) is not a  # other settings, other calibration
