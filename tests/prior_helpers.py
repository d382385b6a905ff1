"""Test doubles and builders shared by the prior tests (kept out of conftest so imports are explicit)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import torch
from torch import nn

from prior.model import NetConfig, ScoreNet
from prior.pose_prior import PosePrior

SHARED = Path(__file__).resolve().parents[2] / "shared"
OFFICIAL_CKPT = SHARED / "conformance" / "dposer_official_format_random.pth"
REFERENCE_OUTPUTS = SHARED / "conformance" / "dposer_reference_outputs.npz"
DATA = SHARED / "data"
DPOSER = shutil.which("dposer")


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    """The installed ``dposer`` command with ``args``; ``ok``: assert it exits 0."""
    assert DPOSER, "the dposer console script is not installed (pip install -e .)"
    proc = subprocess.run([DPOSER, *map(str, args)], capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2 and stderr one line holding every fragment."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class GaussianNet(nn.Module):
    """Exact network for data ~ N(mu, s^2) per dim in model space, through the ScoreNet interface.

    Under the sub-VP SDE, x_t ~ N(alpha mu, alpha^2 s^2 + std^2), so the score is
    -(x - alpha mu) / (alpha^2 s^2 + std^2) and the network output (score = -out / std) is
    std (x - alpha mu) / (alpha^2 s^2 + std^2). Samplers run on it must recover N(mu, s^2).
    """

    def __init__(self, mu: torch.Tensor, s: torch.Tensor) -> None:
        super().__init__()
        self.config = NetConfig(hidden=32, embed=32)
        self.register_buffer("sigmas", torch.ones(1000))
        self.mu, self.s = mu, s

    def time_features(self, labels: torch.Tensor):
        t = labels / 999.0
        return [t], torch.ones(labels.shape[0], 1)

    def forward_features(self, x, biases, divisor):
        t = biases[0][:, None]
        lmc = -0.25 * t**2 * (20 - 0.1) - 0.5 * t * 0.1
        alpha, std = torch.exp(lmc), 1 - torch.exp(2 * lmc)
        return std * (x - alpha * self.mu) / (alpha**2 * self.s**2 + std**2) / divisor

    def forward(self, x, labels):
        biases, divisor = self.time_features(labels)
        return self.forward_features(x, biases, divisor)


def gaussian_prior(mu: float = 0.5, s: float = 0.3) -> PosePrior:
    """A prior whose model-space data distribution is exactly N(mu, s^2) in every dim (identity normaliser)."""
    net = GaussianNet(torch.full((63,), mu), torch.full((63,), s))
    return PosePrior(net, torch.zeros(63), torch.ones(63))  # type: ignore[arg-type]


def small_random_prior(seed: int = 0, hidden: int = 64) -> PosePrior:
    """A small ScoreNet with random weights (fast), AMASS-like normaliser."""
    torch.manual_seed(seed)
    net = ScoreNet(NetConfig(hidden=hidden, embed=32, cond_layer=False))
    return PosePrior(net, torch.zeros(63), torch.full((63,), 0.5))


def rel_err(a, b) -> float:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


