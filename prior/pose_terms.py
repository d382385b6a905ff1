"""Pose priors as terms of a fitting loss: DPoser's, and the baselines its paper compares with.

Every term maps body poses ``pose_body: (B, 63)`` (axis-angle) to the gradient of its loss, and
scores them for choosing among fits. The fitter (:mod:`prior.image_fit`) adds ``weight *`` the
term to its data loss; the weights are each prior's own (chosen on AMASS val, see
``checkpoints/README.md``).

- :class:`DPoserTerm`: DPoser's loss ``sum_d w (x - x0_hat)^2`` in the prior's model space, with
  the one-step estimate ``x0_hat`` held constant and the diffusion time falling over the fit (its
  gradient costs one network forward pass and no backward pass; :mod:`prior.optim`).
- :class:`GMMTerm`: SMPLify's 8-Gaussian mixture (``gmm_08``; Bogo et al. 2016), the minimum over
  components of each one's negative log-likelihood (SMPLify's ``MaxMixturePrior``).
- :class:`GaussianTerm`: one full-covariance Gaussian of the training poses, ``0.5 (p - m)^T P (p - m)``.
- :class:`NoTerm`: no pose prior.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from .errors import InputError
from .files import open_npz, real_numbers
from .optim import DPoserSchedule, prior_residual, prior_weights
from .parts import POSE_DIM
from .pose_prior import PosePrior
from .progress import make_generator

PriorName = Literal["dposer", "gmm", "gaussian", "none"]
PRIOR_NAMES: tuple[str, ...] = ("dposer", "gmm", "gaussian", "none")


class PoseTerm(Protocol):
    """A pose prior inside a fitting loss."""

    def gradient(self, pose_body: torch.Tensor, step: int, total: int) -> torch.Tensor:
        """``(B, 63)`` gradient of the term's per-row loss at step ``step`` of ``total``."""
        ...

    def energy(self, pose_body: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the term's loss at the end of a fit (deterministic), for choosing among fits."""
        ...

    def time(self, step: int, total: int) -> float:
        """The diffusion time of step ``step`` of ``total`` (0 for a term without one), for progress."""
        ...


class _Timeless:
    def time(self, step: int, total: int) -> float:
        return 0.0


class NoTerm(_Timeless):
    """No pose prior: only the data and the bend and shape regularisers."""

    def gradient(self, pose_body: torch.Tensor, step: int, total: int) -> torch.Tensor:
        return torch.zeros_like(pose_body)

    def energy(self, pose_body: torch.Tensor) -> torch.Tensor:
        return pose_body.new_zeros(pose_body.shape[0])


class GaussianTerm(_Timeless):
    """``0.5 (p - mean)^T precision (p - mean)``: a full-covariance Gaussian over body poses."""

    def __init__(self, mean: np.ndarray, cov: np.ndarray, *, device: torch.device | str = "cpu") -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.precision = torch.linalg.inv(torch.as_tensor(cov, dtype=torch.float64))
        self.mean, self.precision = self.mean.float().to(device), self.precision.float().to(device)

    @classmethod
    def fit(cls, poses: np.ndarray, *, shrink: float = 1e-4, device: torch.device | str = "cpu") -> GaussianTerm:
        """The maximum-likelihood Gaussian of ``poses: (N, 63)``, ``shrink`` rad^2 added to the diagonal."""
        poses = np.asarray(poses, dtype=np.float64)
        cov = np.cov(poses, rowvar=False) + shrink * np.eye(poses.shape[1])
        return cls(poses.mean(0), cov, device=device)

    def gradient(self, pose_body: torch.Tensor, step: int, total: int) -> torch.Tensor:
        return (pose_body - self.mean) @ self.precision

    def energy(self, pose_body: torch.Tensor) -> torch.Tensor:
        d = pose_body - self.mean
        return 0.5 * ((d @ self.precision) * d).sum(-1)


class GMMTerm(_Timeless):
    """SMPLify's max-mixture prior: ``min_c [0.5 (p - m_c)^T P_c (p - m_c) - log(w_c / sqrt(det(2 pi S_c)))]``
    (the body joints of its 69-dim SMPL model: marginalised to their first 63 dims)."""

    def __init__(self, means: np.ndarray, covars: np.ndarray, weights: np.ndarray, *,
                 device: torch.device | str = "cpu") -> None:
        means = np.asarray(means, dtype=np.float64)[:, :POSE_DIM]
        covars = np.asarray(covars, dtype=np.float64)[:, :POSE_DIM, :POSE_DIM]
        weights = np.asarray(weights, dtype=np.float64)
        _, logdet = np.linalg.slogdet(2 * math.pi * covars)
        self.means = torch.as_tensor(means, dtype=torch.float32, device=device)
        self.precisions = torch.as_tensor(np.linalg.inv(covars), dtype=torch.float32, device=device)
        self.constants = torch.as_tensor(-np.log(weights) + 0.5 * logdet, dtype=torch.float32, device=device)

    @classmethod
    def load(cls, path: str | Path, *, device: torch.device | str = "cpu") -> GMMTerm:
        """From an ``.npz`` with ``means (C, >=63)``, ``covars (C, >=63, >=63)``, ``weights (C,)``
        (``../shared/data/smplify_gmm_08.npz``: SMPL body-pose order, whose first 63 dims are the
        21 SMPL-X body joints)."""
        arrays = {}
        with open_npz(path, max_bytes=64 * 2**20) as archive:
            for key in ("means", "covars", "weights"):
                if key not in archive:
                    raise InputError(f"a GMM prior needs arrays means, covars and weights; {key!r} is missing", path)
                value = archive.raw(key)
                if not (real_numbers(value.dtype) and np.isfinite(value).all()):
                    raise InputError(f"{key!r} must hold finite numbers", path)
                arrays[key] = np.asarray(value, dtype=np.float64)
        m, c, w = arrays["means"], arrays["covars"], arrays["weights"]
        n = w.shape[0] if w.ndim == 1 else 0
        if not (n >= 1 and m.ndim == 2 and m.shape[0] == n and m.shape[1] >= POSE_DIM and c.ndim == 3
                and c.shape[0] == n and c.shape[1] == c.shape[2] == m.shape[1] and (w > 0).all()):
            raise InputError(f"GMM arrays must be means (C, D >= {POSE_DIM}), covars (C, D, D), weights (C,) > 0; "
                             f"got {m.shape}, {c.shape}, {w.shape}", path)
        return cls(arrays["means"], arrays["covars"], arrays["weights"], device=device)

    def _components(self, pose_body: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = pose_body[:, None, :] - self.means  # (B, C, 63)
        pd = torch.einsum("bcd,cde->bce", d, self.precisions)
        return 0.5 * (pd * d).sum(-1) + self.constants, pd

    def gradient(self, pose_body: torch.Tensor, step: int, total: int) -> torch.Tensor:
        nll, pd = self._components(pose_body)
        best = nll.argmin(1)
        return pd[torch.arange(pose_body.shape[0]), best]

    def energy(self, pose_body: torch.Tensor) -> torch.Tensor:
        return self._components(pose_body)[0].min(1).values


class DPoserTerm:
    """DPoser's prior term ``sum_d w_t (x - x0_hat(alpha_t x + std_t z, t))^2`` on the normalised
    pose ``x``, with ``t`` falling linearly from ``t_max`` to ``t_min`` over the fit, fresh noise ``z``
    every step and ``w_t = 0.5 sqrt(1 + alpha_t / std_t)`` (``DPoser.DPoser_loss`` in the original
    ``run/smplify.py``, there divided by the batch: here per row)."""

    def __init__(self, prior: PosePrior, *, t_max: float, t_min: float, draws: int = 1, antithetic: bool = False,
                 seed: int | None = None) -> None:
        if not 0 < t_min <= t_max <= 1:
            raise ValueError(f"DPoser times need 0 < t_min <= t_max <= 1, got {t_min}, {t_max}")
        if draws < 1 or (antithetic and draws % 2):
            raise ValueError(f"draws must be >= 1 (even when antithetic), got {draws}")
        self.prior, self.t_max, self.t_min = prior, t_max, t_min
        self.draws, self.antithetic = draws, antithetic
        self.gen = make_generator(seed, prior.device)
        self._sched: tuple[int, object, torch.Tensor] | None = None

    def _schedule(self, total: int):
        if self._sched is None or self._sched[0] != total:
            t = self._grid(total).times()
            sched = self.prior.schedule(torch.as_tensor(t, dtype=torch.float32, device=self.prior.device))
            self._sched = (total, sched, prior_weights(sched))
        return self._sched[1], self._sched[2]

    def _grid(self, total: int) -> DPoserSchedule:
        """DPoser's linear grid of ``total`` times from ``t_max`` down to ``t_min``."""
        return DPoserSchedule(iterations=1, steps_per_iter=total, t_max=self.t_max, t_min=self.t_min)

    def time(self, step: int, total: int) -> float:
        return float(self._grid(total).times()[step])

    def gradient(self, pose_body: torch.Tensor, step: int, total: int) -> torch.Tensor:
        sched, weight = self._schedule(total)
        prior = self.prior
        with torch.no_grad():
            x = prior.normalize(pose_body)
            if self.draws == 1:
                noise = torch.randn(x.shape, generator=self.gen, device=x.device)
            else:
                half = self.draws // 2 if self.antithetic else self.draws
                noise = torch.randn((half, *x.shape), generator=self.gen, device=x.device)
                noise = torch.cat([noise, -noise]) if self.antithetic else noise
            residual = prior_residual(sched, step, x, noise)
            return (2 * weight[step] * residual / prior.std).to(pose_body)

    def energy(self, pose_body: torch.Tensor) -> torch.Tensor:
        from .plausibility import prior_energy

        return prior_energy(self.prior, pose_body).to(pose_body)


__all__ = ["PRIOR_NAMES", "DPoserTerm", "GMMTerm", "GaussianTerm", "NoTerm", "PoseTerm", "PriorName"]
