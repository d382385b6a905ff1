"""A plausibility score for a pose that users can read while editing.

The raw score is the prior's own denoising loss at the pose: noise the pose to a few small
diffusion times with fixed noise draws, let the network predict the noise back, and average the
squared error. Poses on the data manifold are denoised well; poses off it are not. The number is
``log`` of that mean error (``energy``; lower = more plausible).

Energies mean nothing across priors (a user's checkpoint has its own scale), so every prior is
calibrated on a small set of real poses shipped in ``assets/plausibility_poses.npz`` (256 poses
of the AMASS val split as redistributed by DPoser, MIT) and on the same poses with 0.3 rad of noise
on every joint. The calibration is computed once per prior object and cached on it:

- ``typical``: at most the 90th percentile of real poses;
- ``implausible``: from the 99th percentile of real poses on, and no better than the best 10% of
  the noised poses;
- ``unusual``: in between.

A pose's percentile is where its energy falls among the real poses' (:meth:`Calibration.percentile`),
the inverse of the quantiles the thresholds are, so a label and its percentile always agree:
typical poses are at most at the 90th percentile, unusual ones above it, implausible ones at the
99th or above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .files import asset_path
from .optim import prior_residual
from .pose_prior import PosePrior, as_tensor

Label = Literal["typical", "unusual", "implausible"]
CALIBRATION_ASSET = "plausibility_poses.npz"
CALIBRATION_NOISE_RAD = 0.3
TYPICAL_PERCENTILE = 90.0  # of real poses: the most a typical pose scores
IMPLAUSIBLE_PERCENTILE = 99.0  # of real poses: the least an implausible pose scores
IMPLAUSIBLE_NOISED_PERCENTILE = 10.0  # of the noised poses: the least an implausible pose scores
_CACHE_ATTR = "_plausibility_calibration"  # per-prior cache: {options: Calibration}


@dataclass(frozen=True)
class PlausibilityOptions:
    """How the energy is measured; the defaults separate real from perturbed poses for any trained prior."""

    times: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4)
    """Diffusion times the pose is noised to (several: robust to priors weak at some times)."""
    draws: int = 2
    """Noise draws per time (fixed by ``seed``: a pose always gets the same score)."""
    seed: int = 0


@dataclass(frozen=True)
class Calibration:
    """Energies of real poses for one prior, and the label thresholds derived from them."""

    real: np.ndarray
    """``(N,)`` sorted energies of the shipped real poses."""
    typical_max: float
    """The real poses' energy at :data:`TYPICAL_PERCENTILE`."""
    implausible_min: float
    """The larger of the real poses' energy at :data:`IMPLAUSIBLE_PERCENTILE` and the noised poses'
    at :data:`IMPLAUSIBLE_NOISED_PERCENTILE`."""

    def percentile(self, energy: float) -> float:
        """Where ``energy`` falls among the real poses (0..100; 50 = the median real pose, 100 =
        worse than all): the inverse of ``np.quantile``'s linear interpolation, so the energy at the
        90th percentile (``typical_max``) gets exactly 90."""
        return 100.0 * float(np.interp(energy, self.real, np.linspace(0.0, 1.0, len(self.real))))


@dataclass(frozen=True)
class Plausibility:
    """The score of one pose."""

    energy: float
    """log mean squared noise-prediction error (lower = more plausible; prior-specific scale)."""
    percentile: float
    """Where the energy falls among real poses (:meth:`Calibration.percentile`): 50 = the median
    real pose, 100 = worse than all."""
    label: Label


def prior_energy(
    prior: PosePrior, pose_body: torch.Tensor, *, options: PlausibilityOptions = PlausibilityOptions()
) -> torch.Tensor:
    """Energies ``(N,)`` of poses ``pose_body: (N, D)`` (axis-angle, ``D = prior.space.dim``): one
    network pass for all of them.

    ``log mean_{t, z} |eps_hat(alpha_t x + std_t z, t) - z|^2 / D`` over ``options.times`` and
    ``options.draws`` fixed draws ``z``; ``eps_hat - z = (alpha / std) (x - x0_hat)``, DPoser's prior
    residual (``prior.optim.prior_residual``) rescaled to unit noise.
    """
    dim = prior.space.dim
    pose = as_tensor(pose_body, prior.device).reshape(-1, dim)
    n, draws = pose.shape[0], options.draws
    gen = torch.Generator(device=prior.device).manual_seed(options.seed)
    noise = torch.randn(len(options.times), draws, 1, dim, generator=gen, device=prior.device)
    sched = prior.schedule(torch.tensor(options.times, device=prior.device))
    with torch.inference_mode():
        x = prior.normalize(pose).repeat(draws, 1)  # rows: draw-major, (draws * N, D)
        total = torch.zeros(n, device=prior.device)
        for i in range(len(options.times)):
            z = noise[i].expand(draws, n, dim).reshape(-1, dim)
            eps_error = (sched.alpha[i] / sched.std[i]) * prior_residual(sched, i, x, z)
            total += (eps_error**2).mean(-1).reshape(draws, n).mean(0)
        return (total / len(options.times)).log().cpu()


def calibration_poses() -> np.ndarray:
    """The shipped real poses ``(256, 63)`` the labels are calibrated on."""
    with np.load(asset_path(CALIBRATION_ASSET), allow_pickle=False) as f:
        return f["pose_body"].astype(np.float32)


def calibrate(
    prior: PosePrior,
    *,
    poses: np.ndarray | None = None,
    options: PlausibilityOptions = PlausibilityOptions(),
) -> Calibration:
    """Thresholds for ``prior`` from real poses (default: the shipped set) and their noised copies.

    Cached on the prior object per ``options`` when ``poses`` is None, so only the first call pays
    (about ``2 N`` poses through the network).
    """
    cache: dict[PlausibilityOptions, Calibration] = prior.__dict__.setdefault(_CACHE_ATTR, {})
    if poses is None and options in cache:
        return cache[options]
    real_poses = torch.from_numpy(calibration_poses() if poses is None else np.asarray(poses, np.float32))
    gen = torch.Generator().manual_seed(options.seed)
    noised = real_poses + CALIBRATION_NOISE_RAD * torch.randn(real_poses.shape, generator=gen)
    energies = prior_energy(prior, torch.cat([real_poses, noised]), options=options).numpy()
    real, bad = np.sort(energies[: len(real_poses)]), energies[len(real_poses) :]
    result = Calibration(
        real=real,
        typical_max=float(np.quantile(real, TYPICAL_PERCENTILE / 100)),
        implausible_min=float(max(np.quantile(real, IMPLAUSIBLE_PERCENTILE / 100),
                                  np.quantile(bad, IMPLAUSIBLE_NOISED_PERCENTILE / 100))),
    )
    if poses is None:
        cache[options] = result
    return result


def label_for(energy: float, calibration: Calibration) -> Label:
    """The UI word for an energy under a prior's calibration. Typical is decided on the percentile
    (the same as ``energy <= typical_max``, without the rounding that could set the two apart)."""
    if calibration.percentile(energy) <= TYPICAL_PERCENTILE:
        return "typical"
    return "unusual" if energy < calibration.implausible_min else "implausible"


def plausibility(
    prior: PosePrior, pose_body: torch.Tensor | Sequence[float], *, options: PlausibilityOptions = PlausibilityOptions()
) -> Plausibility:
    """Score one pose ``pose_body: (D,)`` (axis-angle): energy, percentile among real poses, label.

    The first call for a prior calibrates it (:func:`calibrate`); later calls cost one network pass
    over ``len(times) * draws`` rows.
    """
    pose = as_tensor(pose_body, prior.device).reshape(-1)
    if pose.shape != (prior.space.dim,):
        raise ValueError(f"pose_body must be ({prior.space.dim},), got {tuple(pose.shape)}")
    calibration = calibrate(prior, options=options)
    energy = float(prior_energy(prior, pose[None], options=options)[0])
    return Plausibility(energy=energy, percentile=calibration.percentile(energy), label=label_for(energy, calibration))


__all__ = [
    "IMPLAUSIBLE_NOISED_PERCENTILE",
    "IMPLAUSIBLE_PERCENTILE",
    "TYPICAL_PERCENTILE",
    "Calibration",
    "Plausibility",
    "PlausibilityOptions",
    "calibrate",
    "calibration_poses",
    "label_for",
    "plausibility",
    "prior_energy",
]
