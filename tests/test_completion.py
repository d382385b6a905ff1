"""Completion: batched solver equals the reference loop, samplers recover a known conditional,
observed joints exact, streaming, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from prior import Cancelled, load_prior
from prior.completion import PosteriorSchedule, complete, make_mask
from prior.optim import DPoserSchedule
from prior.parts import PARTS
from prior.reference import reference_complete

from prior_helpers import DATA, OFFICIAL_CKPT, gaussian_prior, small_random_prior


@pytest.fixture(scope="module")
def official():
    return load_prior(OFFICIAL_CKPT, device="cpu")


@pytest.fixture(scope="module")
def demo_poses():
    with np.load(DATA / "dposer_demo_poses.npz", allow_pickle=False) as f:
        return torch.from_numpy(f["pose_body"][:4].astype(np.float32))


def test_batched_solver_matches_the_reference_loop(official, demo_poses):
    mask = make_mask(part="left_leg")
    pose = demo_poses[:1]
    ours = complete(official, pose, mask, hypotheses=1, solver="dposer", seed=3).pose_body
    ref = reference_complete(official, pose, mask, hypotheses=1, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ours, ref, atol=1e-4)
    assert not torch.allclose(ours, pose[:, None], atol=1e-3)  # the masked leg did change


@pytest.mark.parametrize("solver", ["dposer", "dps"])
def test_observed_joints_are_returned_bit_exact(official, demo_poses, solver):
    mask = make_mask(part="right_arm")
    res = complete(official, demo_poses, mask, hypotheses=3, solver=solver, seed=0)
    assert res.pose_body.shape == (4, 3, 63)
    observed = ~mask
    assert torch.equal(res.pose_body[:, :, observed], demo_poses[:, None, observed].expand(4, 3, -1))
    # hypotheses differ from each other on the masked part
    masked = res.pose_body[:, :, mask]
    assert (masked[:, 0] - masked[:, 1]).abs().max() > 1e-3


def test_completion_fills_the_masked_part_with_the_prior_mode():
    prior = gaussian_prior(mu=0.4, s=0.2)
    pose = torch.full((2, 63), -1.0)
    mask = make_mask(joints=PARTS["legs"])
    res = complete(prior, pose, mask, hypotheses=5, solver="dposer", seed=0).pose_body
    masked = res[:, :, mask]
    assert abs(float(masked.mean()) - 0.4) < 0.1  # pulled to the data mean, far from the -1 start
    assert torch.equal(res[:, :, ~mask], pose[:, None, ~mask].expand(2, 5, -1))


def test_scoresde_solver_samples_the_conditional():
    prior = gaussian_prior(mu=0.4, s=0.2)
    pose = torch.zeros(2, 63)
    mask = make_mask(part="trunk")
    res = complete(prior, pose, mask, hypotheses=50, solver="scoresde", steps=200, seed=0).pose_body
    masked = res[:, :, mask]
    assert abs(float(masked.mean()) - 0.4) < 0.03
    assert abs(float(masked.std()) - 0.2) < 0.03
    assert torch.equal(res[:, :, ~mask], pose[:, None, ~mask].expand(2, 50, -1))


def test_dps_solver_samples_the_conditional_and_leads_with_the_consensus():
    # Independent Gaussian dims: the conditional of the masked dims is N(0.4, 0.2^2) whatever is observed.
    prior = gaussian_prior(mu=0.4, s=0.2)
    pose = torch.full((2, 63), -1.0)
    mask = make_mask(part="trunk")
    fine = complete(prior, pose, mask, hypotheses=60, solver="dps", seed=0,
                    schedule=PosteriorSchedule(steps=800)).pose_body[:, 1:, mask]
    assert abs(float(fine.mean()) - 0.4) < 0.02
    assert abs(float(fine.std()) - 0.2) < 0.015
    # the default 50 steps: ancestral steps with a plug-in x0_hat under-disperse a narrow Gaussian a little
    res = complete(prior, pose, mask, hypotheses=60, solver="dps", seed=0).pose_body
    draws = res[:, 1:, mask]
    assert abs(float(draws.mean()) - 0.4) < 0.03
    assert 0.15 < float(draws.std()) < 0.2
    consensus = res[:, 0, mask]  # the mean of the 59 draws: close to the conditional mean
    assert torch.allclose(consensus, draws.mean(1), atol=1e-5)
    assert (consensus - 0.4).abs().max() < 0.12
    assert torch.equal(res[:, :, ~mask], pose[:, None, ~mask].expand(2, 60, -1))


def test_single_dps_hypothesis_is_the_consensus_of_several_draws():
    prior = gaussian_prior(mu=0.4, s=0.2)
    mask = make_mask(part="left_leg")
    one = complete(prior, torch.zeros(1, 63), mask, hypotheses=1, solver="dps", seed=0,
                   schedule=PosteriorSchedule(consensus_draws=40)).pose_body[0, 0, mask]
    assert (one - 0.4).abs().max() < 0.1  # a single draw would be off by 0.2 on some dim


def test_schedule_must_fit_the_solver():
    prior = gaussian_prior(mu=0.4, s=0.2)
    with pytest.raises(ValueError, match="does not fit"):
        complete(prior, torch.zeros(1, 63), make_mask(part="trunk"), solver="dps", schedule=DPoserSchedule())
    with pytest.raises(ValueError, match="init='pose'"):
        complete(prior, torch.zeros(1, 63), make_mask(part="trunk"), solver="dps", init="pose")


@pytest.mark.parametrize("solver,schedule", [("dposer", DPoserSchedule(steps_per_iter=10)),
                                             ("dps", PosteriorSchedule(steps=5))])
def test_per_pose_masks_and_joint_lists(solver, schedule):
    prior = small_random_prior()
    pose = torch.randn(2, 63) * 0.2
    mask = torch.zeros(2, 63, dtype=torch.bool)
    mask[0, :3] = True  # pose 0: joint 0; pose 1: joint 20
    mask[1, 60:] = True
    res = complete(prior, pose, mask, hypotheses=2, seed=0, solver=solver, schedule=schedule)
    assert torch.equal(res.pose_body[0, :, 3:], pose[0, None, 3:].expand(2, -1))
    assert torch.equal(res.pose_body[1, :, :60], pose[1, None, :60].expand(2, -1))


def test_seeded_streaming_and_cancel(official, demo_poses):
    mask = make_mask(part="arms")
    a = complete(official, demo_poses[:1], mask, hypotheses=2, solver="dposer", seed=5).pose_body
    seen = []
    b = complete(official, demo_poses[:1], mask, hypotheses=2, solver="dposer", seed=5, callback=seen.append,
                 callback_every=50).pose_body
    assert torch.equal(a, b)
    assert [p.step for p in seen] == [1, 50, 100, 150, 200]
    assert seen[0].pose_body.shape == (1, 2, 63)
    assert seen[0].t > seen[-1].t  # the truncated schedule falls towards t_min
    assert torch.equal(seen[-1].pose_body, b)

    cancel = threading.Event()
    with pytest.raises(Cancelled):
        complete(official, demo_poses[:1], mask, hypotheses=2, seed=5, cancel=cancel,
                 callback=lambda p: cancel.set(), callback_every=1)


def test_dps_streams_every_guided_step_and_ends_on_the_result(demo_poses):
    prior = small_random_prior()
    mask = make_mask(part="arms")
    seen = []
    res = complete(prior, demo_poses[:1], mask, hypotheses=3, seed=1, callback=seen.append, callback_every=25).pose_body
    assert [p.step for p in seen] == [1, 25, 50, 75, 100]  # 50 steps x 2 resampling passes
    assert seen[0].t > seen[-1].t and seen[0].pose_body.shape == (1, 3, 63)
    assert torch.equal(res, complete(prior, demo_poses[:1], mask, hypotheses=3, seed=1).pose_body)


def test_schedule_is_dposer_truncated():
    times = DPoserSchedule().times()
    assert len(times) == 200
    assert 0.19 < times[0] <= 0.2 and times[-1] == pytest.approx(0.002)
    assert np.all(np.diff(times) < 0)


@pytest.mark.parametrize("solver", ["dps", "dposer", "scoresde"])
def test_completion_in_chunks_equals_one_batch_and_a_pose_does_not_depend_on_the_others(solver, demo_poses):
    prior = load_prior(None, device="cpu")  # trained: a stable solve, so batch sizes change only rounding
    poses = torch.cat([demo_poses, demo_poses[:1] + 0.1])  # 5 poses
    mask = make_mask(part="left_arm")
    schedule = {"dps": PosteriorSchedule(steps=4, resample=2, consensus_draws=3),
                "dposer": DPoserSchedule(iterations=2, steps_per_iter=4), "scoresde": None}[solver]
    kw = dict(hypotheses=3, solver=solver, schedule=schedule, steps=5, seed=11)
    whole = complete(prior, poses, mask, **kw).pose_body
    seen = []
    chunked = complete(prior, poses, mask, max_batch_rows=6, callback=seen.append, callback_every=1, **kw).pose_body
    fewer = complete(prior, poses[:3], mask, **kw).pose_body
    assert torch.allclose(chunked, whole, atol=1e-5), (chunked - whole).abs().max()
    assert torch.allclose(fewer, whole[:3], atol=1e-5), (fewer - whole[:3]).abs().max()
    assert (whole[:, 0] - whole[:, 1]).abs().max() > 1e-3  # hypotheses still differ
    assert (whole[4] - whole[0]).abs().max() > 1e-3  # and so do poses, each with its own noise
    # 6 rows: 2 poses per chunk (dps: 3 draws each) -> chunks (0, 2), (2, 4), (4, 5); steps count over all chunks
    assert [p.extra["poses"] for p in seen if p.step % (seen[-1].total // 3) == 0] == [(0, 2), (2, 4), (4, 5)]
    assert seen[-1].done and seen[-1].pose_body.shape == (1, 3, 63)
    assert [p.step for p in seen] == sorted(p.step for p in seen)
