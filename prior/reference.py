"""DPoser's completion loop in the reference code's form (``DPoserComp.optimize``): hypothesis
after hypothesis, with autograd and ``torch.optim.Adam``.

It makes ``solver="dposer"``'s choices (an independent start per hypothesis, the given schedule),
so it checks that the batched solver's hand-written gradient and Adam are autograd's and Adam's
(same noise -> same answer), and it is the baseline the benchmark times the batched solver
against. It is not the original code's numbers: ``solver="dposer-paper"`` is, checked against
outputs of that code in ``tests/test_faithful.py``. Use ``prior.completion.complete`` for real work.
"""

from __future__ import annotations

import torch

from .optim import DPoserSchedule
from .pose_prior import PosePrior


def reference_complete(
    prior: PosePrior,
    pose_body: torch.Tensor,
    mask: torch.Tensor,
    *,
    hypotheses: int,
    schedule: DPoserSchedule = DPoserSchedule(),
    generator: torch.Generator,
) -> torch.Tensor:
    """``pose_body: (N, 63)``, ``mask: (63,)`` True = unknown -> ``(N, H, 63)``."""
    obs = prior.normalize(pose_body)
    observed = ~torch.as_tensor(mask, dtype=torch.bool, device=obs.device).expand_as(obs)
    times = schedule.times()
    outs = []
    for _ in range(hypotheses):
        noise = torch.randn(obs.shape, generator=generator, device=obs.device)
        x = torch.where(observed, obs, noise).clone().requires_grad_(True)
        opt = torch.optim.Adam([x], schedule.lr, betas=(0.9, 0.999))
        for k in range(schedule.total):
            it = k // schedule.steps_per_iter
            opt.zero_grad()
            t = torch.full((obs.shape[0],), float(times[k]), device=obs.device)
            z = torch.randn(obs.shape, generator=generator, device=obs.device)
            alpha, std = prior.sde.alpha(t)[:, None], prior.sde.std(t)[:, None]
            with torch.no_grad():
                x0 = prior.x0_hat(alpha * x + std * z, t)
            weight = 0.5 * torch.sqrt(1 + alpha / std)
            loss_prior = torch.mean(weight * (x - x0) ** 2)
            loss_data = torch.mean((x * observed - obs * observed) ** 2)
            loss = 100 * loss_data / (1 + it) + 0.1 * (it + 1) * loss_prior
            loss.backward()
            opt.step()
        with torch.no_grad():
            pose = prior.denormalize(x)
            outs.append(torch.where(observed, pose_body, pose))
    return torch.stack(outs, dim=1)
