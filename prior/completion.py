"""Pose completion: fill masked joints of ``pose_body`` with the prior, several hypotheses at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .parts import POSE_DIM, joint_mask, part_joints
from .pose_prior import PosePrior, TimeSchedule, as_tensor
from .progress import CancelFlag, Progress, ProgressFn, check_cancel, cpu_copy, make_generator, should_report

Solver = Literal["dposer", "scoresde"]


@dataclass(frozen=True)
class DPoserSchedule:
    """DPoser's optimisation settings: Adam on the normalised pose with a truncated, linearly
    falling diffusion time ``t_max -> t_min`` over ``iterations * steps_per_iter`` steps."""

    lr: float = 0.1
    iterations: int = 2
    steps_per_iter: int = 100
    t_max: float = 0.2
    t_min: float = 0.002

    @classmethod
    def for_prior(cls, prior: PosePrior) -> DPoserSchedule:
        """The completion settings a checkpoint recommends (``completion_schedule`` in its
        provenance, chosen on validation data for that network), else DPoser's defaults."""
        tuned = prior.info.get("completion_schedule") or {}
        return cls(**{k: v for k, v in tuned.items() if k in cls.__dataclass_fields__})

    @property
    def total(self) -> int:
        return self.iterations * self.steps_per_iter

    def times(self) -> np.ndarray:
        """``(total,)`` diffusion times, ``t_k = t_min + (total - k - 1) / total * (t_max - t_min)``."""
        k = np.arange(self.total)
        return self.t_min + (self.total - k - 1) / self.total * (self.t_max - self.t_min)


@dataclass
class CompletionResult:
    """``pose_body: (N, H, 63)`` with observed dims copied exactly; ``mask: (63,)`` or ``(N, 63)``,
    True where the pose was completed."""

    pose_body: torch.Tensor
    mask: torch.Tensor


def make_mask(*, part: str | None = None, joints: tuple[int, ...] | list[int] | None = None) -> torch.Tensor:
    """``(63,)`` bool mask, True on the dims to complete, from a part name or a joint list."""
    if (part is None) == (joints is None):
        raise ValueError("give exactly one of part= or joints=")
    return torch.from_numpy(joint_mask(part_joints(part) if part is not None else tuple(joints)))


def complete(
    prior: PosePrior,
    pose_body: torch.Tensor,
    mask: torch.Tensor,
    *,
    hypotheses: int = 10,
    solver: Solver = "dposer",
    schedule: DPoserSchedule | None = None,
    steps: int = 1000,
    seed: int | None = None,
    init: Literal["noise", "pose"] = "noise",
    callback: ProgressFn | None = None,
    callback_every: int = 5,
    cancel: CancelFlag | None = None,
) -> CompletionResult:
    """Complete the masked dims of ``pose_body: (N, 63)`` (axis-angle); ``mask: (63,)`` or ``(N, 63)``,
    True = unknown. Returns ``H = hypotheses`` completions per pose, solved together in one batch.

    ``solver="dposer"``: DPoser's optimisation with the truncated ``schedule`` (default: what the
    checkpoint recommends, see ``DPoserSchedule.for_prior``); the prior term uses a
    detached one-step estimate, so each step costs one network forward pass and no backward pass.
    ``solver="scoresde"``: the PC sampler over ``steps`` steps, replacing observed dims by a
    forward-noised copy of the observation after each step.
    ``init`` (dposer solver): masked dims start from N(0, 1) noise in model space (DPoser), or from
    ``pose_body`` itself to refine a pose rather than re-imagine the masked part.
    """
    device = prior.device
    pose_body = as_tensor(pose_body, device)
    if pose_body.ndim != 2 or pose_body.shape[1] != POSE_DIM:
        raise ValueError(f"pose_body must be (N, {POSE_DIM}), got {tuple(pose_body.shape)}")
    n = pose_body.shape[0]
    masked = torch.as_tensor(mask, dtype=torch.bool, device=device).expand(n, POSE_DIM)
    if hypotheses < 1:
        raise ValueError("hypotheses must be >= 1")
    gen = make_generator(seed, device)

    # Flatten (pose, hypothesis) into one batch: row r = pose r // H, hypothesis r % H.
    obs = prior.normalize(pose_body).repeat_interleave(hypotheses, dim=0)
    masked_rows = masked.repeat_interleave(hypotheses, dim=0)

    def to_output(x: torch.Tensor) -> torch.Tensor:
        pose = prior.denormalize(x).reshape(n, hypotheses, POSE_DIM)
        return torch.where(masked[:, None, :], pose, pose_body[:, None, :])

    def report(step: int, total: int, t: float, x: torch.Tensor) -> None:
        if callback is not None and should_report(step, total, callback_every):
            callback(Progress("complete", step, total, t, cpu_copy(to_output(x))))

    with torch.inference_mode():
        if solver == "dposer":
            start = None if init == "noise" else obs
            schedule = schedule if schedule is not None else DPoserSchedule.for_prior(prior)
            x = _dposer_solve(prior, obs, masked_rows, schedule, gen, report, cancel, start)
        elif solver == "scoresde":
            x = _scoresde_solve(prior, obs, masked_rows, steps, gen, report, cancel)
        else:
            raise ValueError(f"unknown solver {solver!r}; expected 'dposer' or 'scoresde'")
        out = to_output(x)
    return CompletionResult(pose_body=out.cpu(), mask=torch.as_tensor(mask, dtype=torch.bool).cpu())


def prior_weights(sched: TimeSchedule) -> torch.Tensor:
    """DPoser's prior-term weight ``w = 0.5 sqrt(1 + alpha / std)`` at each schedule time, ``(S,)``."""
    return 0.5 * torch.sqrt(1.0 + sched.alpha / sched.std)


def prior_residual(sched: TimeSchedule, i: int, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """DPoser's prior residual ``x - x0_hat(alpha_i x + std_i z)`` at the schedule's ``i``-th time.

    ``x: (B, 63)`` in model space; ``noise: (B, 63)`` one draw of ``z``, or ``(M, B, 63)`` draws whose
    clean estimates are averaged (one network pass for all of them). ``x0_hat`` is treated as a
    constant, so ``L_prior = mean(w (x - x0_hat)^2)`` has the gradient ``2 w r / D`` with ``r`` the
    returned ``(B, 63)`` residual: the prior costs one forward pass and no backward pass.
    """
    x_t = sched.alpha[i] * x + sched.std[i] * noise
    x0 = sched.x0_hat(x_t.reshape(-1, x.shape[-1]), i).reshape(x_t.shape)
    return x - (x0 if noise.ndim == x.ndim else x0.mean(0))


class Adam:
    """Adam (betas 0.9, 0.999, eps 1e-8, as ``torch.optim.Adam``) for a tensor whose gradient is
    computed by hand: DPoser's prior gradient is analytic, so autograd would only add overhead."""

    def __init__(self, lr: float, *, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.steps = 0

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """One update; returns the new ``x`` (a new tensor, same shape as ``grad``)."""
        b1, b2 = self.betas
        if self.m is None or self.v is None:
            self.m, self.v = torch.zeros_like(grad), torch.zeros_like(grad)
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        self.steps += 1
        denom = (self.v / (1 - b2**self.steps)).sqrt_().add_(self.eps)
        return x - (self.lr / (1 - b1**self.steps)) * self.m / denom


def _dposer_solve(prior, obs, masked, schedule: DPoserSchedule, gen, report, cancel, start=None) -> torch.Tensor:
    device = obs.device
    observed = (~masked).float()
    init = torch.randn(obs.shape, generator=gen, device=device) if start is None else start
    x = torch.where(masked, init, obs)
    times = torch.as_tensor(schedule.times(), dtype=torch.float32, device=device)
    sched = prior.schedule(times)
    weight = prior_weights(sched)
    adam = Adam(schedule.lr)
    inv_dim = 1.0 / obs.shape[1]  # per-sample mean over the 63 dims keeps hypotheses independent
    for k in range(schedule.total):
        check_cancel(cancel)
        it = k // schedule.steps_per_iter
        residual = prior_residual(sched, k, x, torch.randn(x.shape, generator=gen, device=device))
        grad = (2.0 * inv_dim) * ((100.0 / (1 + it)) * observed * (x - obs) + (0.1 * (it + 1)) * weight[k] * residual)
        x = adam.step(x, grad)
        report(k + 1, schedule.total, float(times[k]), x)
    return x


def _scoresde_solve(prior, obs, masked, steps: int, gen, report, cancel, eps: float = 1e-3) -> torch.Tensor:
    device = obs.device
    grid = torch.linspace(prior.sde.T, eps, steps, device=device)
    sched = prior.schedule(grid)
    dt = 1.0 / steps
    x = torch.randn(obs.shape, generator=gen, device=device)
    x_mean = x
    for i in range(steps):
        check_cancel(cancel)
        t = grid[i].expand(x.shape[0])
        drift, g = prior.sde.reverse(x, t, sched.score(x, i))
        x_mean = x - drift * dt
        x = x_mean + g[:, None] * dt**0.5 * torch.randn(x.shape, generator=gen, device=device)
        noisy_obs = sched.alpha[i] * obs + sched.std[i] * torch.randn(x.shape, generator=gen, device=device)
        x = torch.where(masked, x, noisy_obs)
        report(i + 1, steps, float(max(grid[i] - dt, 0.0)), x_mean if i == steps - 1 else x)
    return x_mean
