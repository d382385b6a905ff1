"""Streaming progress and cooperative cancellation shared by every prior task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .errors import Cancelled


@dataclass
class Progress:
    """One streamed update of a running task.

    ``pose_body`` is the current estimate in axis-angle, a CPU copy the receiver may keep:
    ``(N, 63)`` for generation, ``(N, H, 63)`` for completion, ``(T, 63)`` for a clip.
    """

    task: str
    step: int  # steps done so far (1..total)
    total: int
    t: float  # diffusion time the estimate belongs to
    pose_body: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.step >= self.total


ProgressFn = Callable[[Progress], None]


class CancelFlag(Protocol):
    """Anything with ``is_set()``, e.g. ``threading.Event``."""

    def is_set(self) -> bool: ...


def check_cancel(cancel: CancelFlag | None) -> None:
    """Raise ``Cancelled`` when the caller asked the task to stop."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


def should_report(step: int, total: int, every: int) -> bool:
    """Report on the first step (so the user sees something at once), every ``every`` steps and at the end."""
    return step == 1 or step == total or (every > 0 and step % every == 0)


NoiseFn = Callable[[tuple[int, ...]], torch.Tensor]
"""``shape -> standard normal draws`` of that shape: where a task takes its random numbers from."""


def seeded_noise(gen: torch.Generator, device: torch.device) -> NoiseFn:
    """Draws from ``gen`` (the values ``torch.randn(shape, generator=gen)`` gives)."""
    return lambda shape: torch.randn(shape, generator=gen, device=device)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A seeded generator on ``device``; ``seed=None`` draws a fresh seed."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def cpu_copy(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu", copy=True)
