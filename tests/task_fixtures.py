"""Fixtures shared by the task tests (motion, IK, plausibility).

A test module loads them with ``pytest_plugins = ["task_fixtures"]`` and opts in to one thread with
``pytestmark = pytest.mark.usefixtures("one_thread")`` (not autouse: plugin fixtures are global).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prior import load_body_model, load_prior

from prior_helpers import DATA, OFFICIAL_CKPT


@pytest.fixture(scope="module")
def one_thread():
    """Small batches: one thread is fastest, and does not fight other jobs for a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def body():
    """The mannequin body model (SMPL-X joints 0..21)."""
    return load_body_model()


@pytest.fixture(scope="module")
def val_poses() -> np.ndarray:
    """AMASS val body poses ``(500, 63)`` (``shared/data/amass_body_poses.npz``)."""
    with np.load(DATA / "amass_body_poses.npz", allow_pickle=False) as f:
        return f["val"].astype(np.float32)


@pytest.fixture(scope="module")
def official():
    """The official-format network with random weights: for mechanics, not quality."""
    return load_prior(OFFICIAL_CKPT, device="cpu")


@pytest.fixture(scope="module")
def trained():
    """The shipped default prior: for tests whose assertions need a trained prior."""
    return load_prior(None, device="cpu")
