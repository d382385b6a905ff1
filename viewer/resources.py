"""The model resources the app shares between tabs: the prior, the body model and its rig."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prior.body import BodyModel, load_body_model
from prior.checkpoint import load_prior
from prior.pose_prior import PosePrior, resolve_device

from .rig import BodyRig


@dataclass
class Resources:
    """The loaded prior (None until one loads) and body; replaced whole when the user switches."""

    device: torch.device
    body: BodyModel
    rig: BodyRig
    body_label: str
    prior: PosePrior | None = None
    prior_label: str = "none"
    prior_error: str | None = None
    changed_by: dict[str, weakref.ref] = field(default_factory=dict)
    """``"prior"`` / ``"body"`` -> the tab (a weak reference to its session) that last loaded it,
    absent for what the command line loaded; the other tabs show "(loaded in another tab)"."""

    def changed_elsewhere(self, what: str, session: object) -> bool:
        """Whether a tab other than ``session`` loaded the ``what`` (``"prior"``, ``"body"``) in use."""
        by = self.changed_by.get(what)
        return by is not None and by() is not session


def body_resource(path: str | Path | None) -> tuple[BodyModel, BodyRig, str]:
    """Load a body model (None: the mannequin) and prepare it for skinning.

    Raises ``prior.errors.InputError`` for an unusable file."""
    body = load_body_model(path)
    label = "mannequin" if path is None else f"{body.kind} ({Path(path).name})"
    return body, BodyRig(body), label


def prior_resource(path: str | Path | None, device: str | torch.device) -> tuple[PosePrior, str]:
    """Load a prior (None: the shipped default). Raises ``prior.errors.InputError``."""
    prior = load_prior(path, device=resolve_device(device))
    name = Path(prior.info.get("path") or str(path or "default")).name
    fmt = prior.info.get("format", "?")
    return prior, f"{name} ({fmt})"
