"""Generation: the Euler-Maruyama predictor-corrector sampler and a probability-flow ODE sampler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .pose_prior import PosePrior, TimeSchedule
from .progress import (
    CancelFlag,
    NoiseFn,
    Progress,
    ProgressFn,
    check_cancel,
    cpu_copy,
    make_generator,
    seeded_noise,
    should_report,
)

Sampler = Literal["sde", "ode"]


@dataclass
class GenerationResult:
    """``pose_body: (N, D)`` axis-angle samples (``D = prior.space.dim``); with ``record=True`` the
    trajectory ``trajectory: (S, N, D)`` (axis-angle, after every step) and its times ``t: (S,)`` (1 -> 0)."""

    pose_body: torch.Tensor
    trajectory: torch.Tensor | None
    t: torch.Tensor | None


def generate(
    prior: PosePrior,
    num: int,
    *,
    steps: int = 1000,
    sampler: Sampler = "sde",
    corrector: bool = False,
    snr: float = 0.16,
    eps: float = 1e-3,
    seed: int | None = None,
    record: bool = False,
    callback: ProgressFn | None = None,
    callback_every: int = 10,
    cancel: CancelFlag | None = None,
) -> GenerationResult:
    """Draw ``num`` poses from the prior by integrating the reverse diffusion from t=1 to ``eps``.

    ``sampler="sde"``: DPoser's predictor-corrector sampler (Euler-Maruyama predictor over
    ``t = linspace(1, eps, steps)``, optional Langevin corrector with ``snr``); the last step
    returns the noise-free mean. ``sampler="ode"``: the deterministic probability-flow ODE,
    Heun's method over the same grid. Same ``seed``, same result. ``callback`` receives the
    current samples every ``callback_every`` steps; ``cancel.is_set()`` stops with ``Cancelled``.
    """
    if num < 1 or steps < 2:
        raise ValueError("generate needs num >= 1 and steps >= 2")
    device = prior.device
    gen = make_generator(seed, device)
    with torch.inference_mode():
        x = torch.randn(num, prior.space.dim, generator=gen, device=device)
        if sampler == "sde":
            grid = torch.linspace(prior.sde.T, eps, steps, device=device)
            stepper: EulerMaruyama | _Heun = EulerMaruyama(
                prior, grid, corrector=corrector, snr=snr,
                noise=seeded_noise(gen, device))
        elif sampler == "ode":
            grid = torch.linspace(prior.sde.T, eps, steps + 1, device=device)
            stepper = _Heun(prior, grid)
        else:
            raise ValueError(f"unknown sampler {sampler!r}; expected 'sde' or 'ode'")
        traj = torch.empty(steps, num, prior.space.dim, device=device) if record else None
        t_after = stepper.times_after()
        for i in range(steps):
            check_cancel(cancel)
            x, x_mean = stepper.step(x, i)
            x_out = x_mean if i == steps - 1 else x  # the last step returns the noise-free mean
            if traj is not None:
                traj[i] = prior.denormalize(x_out)
            if callback is not None and should_report(i + 1, steps, callback_every):
                callback(Progress("generate", i + 1, steps, float(t_after[i]), cpu_copy(prior.denormalize(x_out))))
        pose = prior.denormalize(x_out)
    return GenerationResult(
        pose_body=pose.cpu(),
        trajectory=None if traj is None else traj.cpu(),
        t=None if traj is None else t_after.cpu(),
    )


class EulerMaruyama:
    """The reverse-SDE Euler-Maruyama predictor as DPoser's reference takes it (``dt = -1/steps``
    over ``grid: (steps,)``, falling from ``T``), optionally after a Langevin corrector step.

    The one predictor of the project: :func:`generate` calls it directly, and completion's ScoreSDE
    solver puts the observation back before and after each of its steps (ScoreSDE's inpainting).
    ``noise(shape)`` gives its standard-normal draws (one generator, or one per pose).
    """

    def __init__(self, prior: PosePrior, grid: torch.Tensor, *, corrector: bool = False, snr: float = 0.16,
                 noise: NoiseFn):
        self.prior, self.grid, self.noise = prior, grid, noise
        self.sched: TimeSchedule = prior.schedule(grid)
        self.dt = 1.0 / len(grid)
        self.corrector, self.snr = corrector, snr
        # Langevin step scale uses the discrete alphas 1 - beta_k / N at the nearest timestep.
        sde = prior.sde
        k = (grid * (sde.N - 1) / sde.T).long().float()
        self.langevin_alpha = 1.0 - (sde.beta_min + (sde.beta_max - sde.beta_min) * k / (sde.N - 1)) / sde.N

    def times_after(self) -> torch.Tensor:
        t = (self.grid - self.dt).clamp_min(0.0)
        t[-1] = 0.0
        return t

    def _langevin(self, x: torch.Tensor, i: int) -> torch.Tensor:
        grad = self.sched.score(x, i)
        noise = self.noise(x.shape)
        grad_norm = grad.norm(dim=-1).mean()
        noise_norm = noise.norm(dim=-1).mean()
        step = (self.snr * noise_norm / grad_norm) ** 2 * 2 * self.langevin_alpha[i]
        return x + step * grad + torch.sqrt(2 * step) * noise

    def step(self, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``i`` from ``grid[i]``: the next sample ``x (B, D)`` and its noise-free mean ``(B, D)``
        (what a sampler returns after its last step)."""
        if self.corrector:
            x = self._langevin(x, i)
        t = self.grid[i].expand(x.shape[0])
        drift, g = self.prior.sde.reverse(x, t, self.sched.score(x, i))
        x_mean = x - drift * self.dt
        z = self.noise(x.shape)
        return x_mean + g[:, None] * (self.dt**0.5) * z, x_mean


class _Heun:
    """Probability-flow ODE, Heun (2nd order) over a fixed grid: deterministic given x(1)."""

    def __init__(self, prior: PosePrior, grid: torch.Tensor):
        self.prior, self.grid = prior, grid
        self.sched = prior.schedule(grid)

    def times_after(self) -> torch.Tensor:
        return self.grid[1:].clone()

    def _drift(self, x: torch.Tensor, i: int) -> torch.Tensor:
        t = self.grid[i].expand(x.shape[0])
        return self.prior.sde.reverse(x, t, self.sched.score(x, i), probability_flow=True)[0]

    def step(self, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.grid[i + 1] - self.grid[i]  # negative: integrating backwards in time
        d0 = self._drift(x, i)
        x_pred = x + h * d0
        x = x + 0.5 * h * (d0 + self._drift(x_pred, i + 1))
        return x, x
