"""DPoser's optimisation pieces, shared by completion, motion fitting, IK and the plausibility score.

DPoser turns the diffusion prior into a loss: at a diffusion time ``t`` the pose ``x`` (model
space) is noised, denoised in one step to ``x0_hat``, and ``L_prior = mean(w (x - x0_hat)^2)`` with
``x0_hat`` held constant (Lu et al., "DPoser", arXiv 2312.05541; ``DPoserComp.loss`` in
``moonbow721/DPoser``, ``lib/algorithms/completion.py``). The gradient is then
``2 w (x - x0_hat) / D``: one network forward pass and no backward pass, so the solvers compute it
by hand and step with :class:`Adam`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .pose_prior import PosePrior, TimeSchedule


@dataclass(frozen=True)
class DPoserSchedule:
    """DPoser's optimisation settings: Adam on the normalised pose with a truncated, falling
    diffusion time over ``iterations * steps_per_iter`` steps.

    ``grid="linear"`` (ours): ``t`` falls linearly from ``t_max`` to ``t_min``. ``grid="dposer"``
    (the original code's "truncated annealing", ``time_strategy='3'``): the time is read off the
    sampler's grid ``linspace(1, 1e-3, sde_steps)`` at index ``sde_steps - floor((total - k - 1)
    sde_steps / (truncation total)) - 2``, a staircase from about ``1 / truncation`` down to the
    grid's second-to-last time (completion: 1000 and 5 give 0.201 - 0.001 k; motion: 500 and 4
    give 125 distinct values 0.25125 -> 0.003002); ``t_max`` and ``t_min`` are then unused.
    """

    lr: float = 0.1
    iterations: int = 2
    steps_per_iter: int = 100
    t_max: float = 0.2
    t_min: float = 0.002
    grid: Literal["linear", "dposer"] = "linear"
    sde_steps: int = 1000
    truncation: float = 5.0

    def __post_init__(self) -> None:
        if self.grid not in ("linear", "dposer"):
            raise ValueError(f"unknown time grid {self.grid!r}; expected 'linear' or 'dposer'")

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
        """``(total,)`` float32 diffusion times: ``t_k = t_min + (total - k - 1) / total * (t_max - t_min)``
        on the linear grid, the original's staircase on the ``"dposer"`` grid."""
        k = np.arange(self.total)
        if self.grid == "linear":
            return (self.t_min + (self.total - k - 1) / self.total * (self.t_max - self.t_min)).astype(np.float32)
        n = self.sde_steps
        grid = torch.linspace(1.0, 1e-3, n, dtype=torch.float32).numpy()  # the original's float32 timesteps
        index = n - np.floor((self.total - k - 1) * (n / (self.truncation * self.total))).astype(np.int64) - 2
        return grid[index]


PAPER_COMPLETION = DPoserSchedule(grid="dposer", sde_steps=1000, truncation=5.0)
"""The schedule of the original's completion evaluation (``run/completion.py``: ``--steps 1000``,
``time_strategy='3'``, ``sample_trun=5``, 2 x 100 steps, lr 0.1)."""


def prior_weights(sched: TimeSchedule) -> torch.Tensor:
    """DPoser's prior-term weight ``w = 0.5 sqrt(1 + alpha / std)`` at each schedule time, ``(S,)``."""
    return 0.5 * torch.sqrt(1.0 + sched.alpha / sched.std)


def prior_residual(sched: TimeSchedule, i: int, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """DPoser's prior residual ``x - x0_hat(alpha_i x + std_i z)`` at the schedule's ``i``-th time.

    ``x: (B, D)`` in model space (``D = prior.space.dim``); ``noise: (B, D)`` one draw of ``z``, or
    ``(M, B, D)`` draws whose clean estimates are averaged (one network pass for all of them).
    ``x0_hat`` is treated as a constant, so ``L_prior = mean(w (x - x0_hat)^2)`` has the gradient
    ``2 w r / D`` with ``r`` the returned ``(B, D)`` residual: the prior costs one forward pass and
    no backward pass.
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


__all__ = ["PAPER_COMPLETION", "Adam", "DPoserSchedule", "prior_residual", "prior_weights"]
