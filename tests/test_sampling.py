"""Generation samplers: correct distribution on an exact score, seeded, streaming, cancellable."""

from __future__ import annotations

import threading

import pytest
import torch

from prior import Cancelled, load_prior
from prior.sampling import generate

from prior_helpers import OFFICIAL_CKPT, gaussian_prior, small_random_prior


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_samplers_recover_the_data_distribution_of_an_exact_score(sampler):
    prior = gaussian_prior(mu=0.5, s=0.3)
    res = generate(prior, 400, steps=200, sampler=sampler, seed=0)
    x = res.pose_body  # identity normaliser: model space == pose space
    assert abs(float(x.mean()) - 0.5) < 0.02
    assert abs(float(x.std()) - 0.3) < 0.03


def test_langevin_corrector_keeps_the_distribution():
    prior = gaussian_prior(mu=-0.2, s=0.5)
    x = generate(prior, 400, steps=100, corrector=True, seed=1).pose_body
    assert abs(float(x.mean()) + 0.2) < 0.03
    assert abs(float(x.std()) - 0.5) < 0.05


def test_same_seed_same_samples_and_other_seed_differs():
    prior = small_random_prior()
    a = generate(prior, 4, steps=20, seed=7).pose_body
    b = generate(prior, 4, steps=20, seed=7).pose_body
    c = generate(prior, 4, steps=20, seed=8).pose_body
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_trajectory_is_recorded_every_step_from_t1_towards_0():
    prior = small_random_prior()
    res = generate(prior, 3, steps=25, seed=0, record=True)
    assert res.trajectory.shape == (25, 3, 63)
    assert res.t.shape == (25,)
    assert torch.all(res.t[1:] < res.t[:-1]) and float(res.t[-1]) == 0.0 and float(res.t[0]) < 1.0
    assert torch.equal(res.trajectory[-1], res.pose_body)
    ode = generate(prior, 3, steps=10, sampler="ode", seed=0, record=True)
    assert ode.trajectory.shape == (10, 3, 63) and torch.equal(ode.trajectory[-1], ode.pose_body)


def test_callback_streams_from_the_first_step_and_cancel_stops():
    prior = small_random_prior()
    seen = []
    generate(prior, 2, steps=30, seed=0, callback=lambda p: seen.append((p.step, p.t, p.pose_body.shape)),
             callback_every=10)
    assert [s for s, _, _ in seen] == [1, 10, 20, 30]
    assert all(shape == (2, 63) for _, _, shape in seen)

    cancel = threading.Event()

    def stop_at_5(p):
        if p.step >= 5:
            cancel.set()

    with pytest.raises(Cancelled):
        generate(prior, 2, steps=100, seed=0, callback=stop_at_5, callback_every=1, cancel=cancel)


def test_official_size_network_generates_finite_poses():
    prior = load_prior(OFFICIAL_CKPT, device="cpu")
    res = generate(prior, 2, steps=10, seed=0)
    assert res.pose_body.shape == (2, 63) and torch.isfinite(res.pose_body).all()
