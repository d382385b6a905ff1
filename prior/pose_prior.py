"""``PosePrior``: the score network, the SDE and the pose normaliser composed into one object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .model import ScoreNet
from .sde import SubVPSDE
from .space import BODY_SPACE, PoseSpace

LABEL_SCALE = 999.0  # continuous training: the network sees labels t * (N - 1)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch understands it."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    """float32 tensor on ``device`` from a tensor, array or list."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=torch.float32)
    return torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)


def _time_vector(t: float | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    return t.expand(batch) if t.ndim == 0 else t.reshape(batch)


@dataclass
class PosePrior:
    """A DPoser prior over the poses of ``space``: ``(B, D)`` axis-angle vectors, ``D = space.dim``
    (the body space: SMPL-X ``pose_body: (B, 63)``, 21 joints, no root).

    The network works in normalised space ``x = (pose - mean) / std``. ``info`` records where the
    weights came from (format, file, training provenance).
    """

    net: ScoreNet
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)
    sde: SubVPSDE = field(default_factory=SubVPSDE)
    info: dict[str, Any] = field(default_factory=dict)
    space: PoseSpace = BODY_SPACE

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            if tuple(getattr(self, name).shape) != (self.space.dim,):
                raise ValueError(f"{name} must be ({self.space.dim},) for the {self.space.name} space, "
                                 f"got {tuple(getattr(self, name).shape)}")
        self.net.eval()
        self.net.requires_grad_(False)
        self.mean = self.mean.to(self.device, torch.float32)
        self.std = self.std.to(self.device, torch.float32)

    @property
    def device(self) -> torch.device:
        return self.net.sigmas.device

    def to(self, device: str | torch.device) -> PosePrior:
        device = resolve_device(device)
        self.net.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    # -- pose space ---------------------------------------------------------------------------
    def normalize(self, pose_body: Any) -> torch.Tensor:
        """Axis-angle ``(..., D)`` -> model space ``(..., D)``."""
        return (as_tensor(pose_body, self.device) - self.mean) / self.std

    def denormalize(self, x: Any) -> torch.Tensor:
        """Model space ``(..., D)`` -> axis-angle ``(..., D)``."""
        return as_tensor(x, self.device) * self.std + self.mean

    # -- the score ----------------------------------------------------------------------------
    def net_output(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Raw network output ``(B, D)`` at labels ``t * 999`` (after its ``scale_by_sigma``)."""
        x = as_tensor(x, self.device)
        return self.net(x, _time_vector(t, x.shape[0], self.device) * LABEL_SCALE)

    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``s(x, t) = -net(x, 999 t) / std(t)``, ``x: (B, D)``, ``t``: scalar or ``(B,)``."""
        x = as_tensor(x, self.device)
        tv = _time_vector(t, x.shape[0], self.device)
        return -self.net(x, tv * LABEL_SCALE) / self.sde.std(tv)[:, None]

    def x0_hat(self, x_t: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Tweedie one-step clean estimate ``(x_t + std^2 s) / alpha``, ``(B, D)``."""
        x_t = as_tensor(x_t, self.device)
        tv = _time_vector(t, x_t.shape[0], self.device)
        std, alpha = self.sde.std(tv)[:, None], self.sde.alpha(tv)[:, None]
        return (x_t + std**2 * self.score(x_t, tv)) / alpha

    def schedule(self, t: torch.Tensor) -> TimeSchedule:
        """Precompute the time conditioning for a fixed list of times ``t: (S,)``."""
        return TimeSchedule(self, as_tensor(t, self.device).reshape(-1))


class TimeSchedule:
    """Time conditioning of ``S`` fixed diffusion times, computed once.

    Samplers and solvers evaluate one time for the whole batch at every step; precomputing the
    time path (embedding, 5 linear layers) for the whole schedule leaves only the pose path per step.
    """

    def __init__(self, prior: PosePrior, t: torch.Tensor) -> None:
        self.prior = prior
        self.t = t
        with torch.no_grad():
            self._biases, self._divisor = prior.net.time_features(t * LABEL_SCALE)
        self.alpha = prior.sde.alpha(t)
        self.std = prior.sde.std(t)

    def __len__(self) -> int:
        return self.t.shape[0]

    def score(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Score ``(B, D)`` of ``x: (B, D)`` at the schedule's ``i``-th time."""
        net = self.prior.net
        out = net.forward_features(x, [b[i : i + 1] for b in self._biases], self._divisor[i : i + 1])
        return -out / self.std[i]

    def x0_hat(self, x_t: torch.Tensor, i: int) -> torch.Tensor:
        """Tweedie estimate ``(B, D)`` at the ``i``-th time."""
        return (x_t + self.std[i] ** 2 * self.score(x_t, i)) / self.alpha[i]
