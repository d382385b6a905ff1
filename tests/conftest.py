"""Shared pytest fixtures. Real data lives in ``shared/`` beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``shared/data``: real AMASS-derived poses and clips (see its README)."""
    if not DATA.is_dir():
        pytest.fail(f"real test data not found at {DATA}")
    return DATA
