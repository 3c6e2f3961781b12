"""What a test needs from the machine: skipped on a user's machine without it, a failure in CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(msg: str) -> NoReturn:
    """Skip with ``msg``; fail instead when CI is set (CI always provides data and tools)."""
    if os.environ.get("CI"):
        pytest.fail(msg + "; CI must have it")
    pytest.skip(msg)
