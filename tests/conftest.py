"""Shared fixtures: where the real data lives, and how tests that need it behave without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.needs import missing

REPO = Path(__file__).resolve().parent.parent


def data_root_path() -> Path:
    """The evaluation data: $SPARSECAM_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("SPARSECAM_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = data_root_path()
    if not root.is_dir():
        missing(f"real data not found at {root} (set SPARSECAM_DATA or place shared/data beside the checkout)")
    return root
