"""DPoser's score network (``ScoreModelFC``), parameter names identical to the official checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .parts import POSE_DIM


@dataclass(frozen=True)
class NetConfig:
    """Shape of a ``ScoreNet``. The official DPoser body model is the default."""

    input_dim: int = POSE_DIM
    hidden: int = 1024
    embed: int = 512
    blocks: int = 2
    dropout: float = 0.1
    groups: int = 32
    # The official file carries an unused ``pre_dense_cond`` layer; DPoser-X and our own files do not.
    cond_layer: bool = True
    # scale_by_sigma: the output is divided by sigmas[long(label)] with
    # sigmas = exp(linspace(ln sigma_max, ln sigma_min, num_scales)): the reference's inverted
    # scaling, baked into official weights. Without it the output is a plain noise prediction.
    scale_by_sigma: bool = True
    sigma_max: float = 50.0
    sigma_min: float = 0.01
    num_scales: int = 1000

    def to_dict(self) -> dict:
        return asdict(self)


def timestep_embedding(labels: torch.Tensor, dim: int, max_positions: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of continuous labels ``(B,)`` ([sin, cos], as DDPM / score_sde)."""
    half = dim // 2
    freqs = torch.exp(
        torch.arange(half, dtype=torch.float32, device=labels.device) * -(math.log(max_positions) / (half - 1))
    )
    args = labels.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ScoreNet(nn.Module):
    """DPoser ``ScoreModelFC``: an MLP over the 63-d normalised pose, conditioned on the time label.

    ``forward(x: (B, 63), labels: (B,)) -> (B, 63)`` where ``labels = t * 999``. The output is
    divided by ``sigmas[long(labels)]`` (the reference's ``scale_by_sigma``, inverted relative to
    the noise level but baked into the trained weights), so ``score = -output / std(t)``.
    """

    def __init__(self, config: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.config = config
        h, e = config.hidden, config.embed
        # Registration order matters: official EMA shadow params are a list in parameters() order.
        self.pre_dense = nn.Linear(config.input_dim, h)
        self.pre_dense_t = nn.Linear(e, h)
        if config.cond_layer:
            self.pre_dense_cond = nn.Linear(h, h)
        self.pre_gnorm = nn.GroupNorm(config.groups, h)
        self.dropout = nn.Dropout(config.dropout)
        self.shared_time_embed = nn.Sequential(nn.Linear(e, e), nn.SiLU())
        sigmas = torch.exp(torch.linspace(math.log(config.sigma_max), math.log(config.sigma_min), config.num_scales))
        self.register_buffer("sigmas", sigmas)
        for b in range(1, config.blocks + 1):
            setattr(self, f"b{b}_dense1", nn.Linear(h, h))
            setattr(self, f"b{b}_dense1_t", nn.Linear(e, h))
            setattr(self, f"b{b}_gnorm1", nn.GroupNorm(config.groups, h))
            setattr(self, f"b{b}_dense2", nn.Linear(h, h))
            setattr(self, f"b{b}_dense2_t", nn.Linear(e, h))
            setattr(self, f"b{b}_gnorm2", nn.GroupNorm(config.groups, h))
        self.post_dense = nn.Linear(h, config.input_dim)

    def _time_layers(self) -> list[nn.Linear]:
        layers = [self.pre_dense_t]
        for b in range(1, self.config.blocks + 1):
            layers += [getattr(self, f"b{b}_dense1_t"), getattr(self, f"b{b}_dense2_t")]
        return layers

    def time_features(self, labels: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-layer time biases ``[(B, hidden)] * (1 + 2 blocks)`` and the output divisor ``(B, 1)``.

        Split out so that tasks that reuse one label for a whole batch (or precompute a schedule)
        pay for the time path once instead of once per sample.
        """
        temb = self.shared_time_embed(timestep_embedding(labels, self.config.embed))
        biases = [layer(temb) for layer in self._time_layers()]
        if self.config.scale_by_sigma:
            divisor = self.sigmas[labels.long()][:, None]
        else:
            divisor = torch.ones_like(labels, dtype=temb.dtype)[:, None]
        return biases, divisor

    def forward_features(self, x: torch.Tensor, biases: list[torch.Tensor], divisor: torch.Tensor) -> torch.Tensor:
        """Forward pass with precomputed ``time_features``; biases and divisor broadcast over the batch."""
        act, drop = F.silu, self.dropout
        h = drop(act(self.pre_gnorm(self.pre_dense(x) + biases[0])))
        for b in range(1, self.config.blocks + 1):
            gn1, gn2 = getattr(self, f"b{b}_gnorm1"), getattr(self, f"b{b}_gnorm2")
            h1 = drop(act(gn1(getattr(self, f"b{b}_dense1")(h) + biases[2 * b - 1])))
            h2 = drop(act(gn2(getattr(self, f"b{b}_dense2")(h1) + biases[2 * b])))
            h = h + h2
        return self.post_dense(h) / divisor

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``x: (B, 63)``, ``labels: (B,)`` (``t * 999``) -> network output ``(B, 63)``."""
        biases, divisor = self.time_features(labels)
        return self.forward_features(x.reshape(x.shape[0], -1), biases, divisor)
