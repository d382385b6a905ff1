"""The sub-VP SDE DPoser is trained with (Song et al. 2021), as plain tensor functions.

All ``t`` are diffusion times in ``[0, 1]``, shape ``(B,)``; outputs broadcast against ``x: (B, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SubVPSDE:
    """``dx = -0.5 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int beta))) dw``."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    N: int = 1000
    T: float = 1.0

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        """``lmc(t) = -0.25 t^2 (b1 - b0) - 0.5 t b0``, shape ``(B,)``."""
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal scale ``alpha(t) = exp(lmc)``, shape ``(B,)``."""
        return torch.exp(self.log_mean_coeff(t))

    def std(self, t: torch.Tensor) -> torch.Tensor:
        """Marginal std ``1 - exp(2 lmc)`` (sub-VP: no square root), shape ``(B,)``."""
        return 1.0 - torch.exp(2.0 * self.log_mean_coeff(t))

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(B, D)`` and std ``(B,)`` of ``x_t | x_0``."""
        return self.alpha(t)[:, None] * x0, self.std(t)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward drift ``(B, D)`` and diffusion ``g (B,)``."""
        beta_t = self.beta(t)
        discount = 1.0 - torch.exp(-2 * self.beta_min * t - (self.beta_max - self.beta_min) * t**2)
        return -0.5 * beta_t[:, None] * x, torch.sqrt(beta_t * discount)

    def reverse(
        self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor, *, probability_flow: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse-time drift ``f - g^2 s`` (or ``f - 0.5 g^2 s`` for the ODE) and diffusion ``(B,)``."""
        drift, g = self.sde(x, t)
        coeff = 0.5 if probability_flow else 1.0
        drift = drift - coeff * g[:, None] ** 2 * score
        return drift, torch.zeros_like(g) if probability_flow else g
