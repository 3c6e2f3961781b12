"""What a test needs from the machine: skipped on a user's machine without it, a failure in CI."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def missing(msg: str) -> NoReturn:
    """Skip with ``msg``; fail instead when CI is set (CI always provides data and tools)."""
    if os.environ.get("CI"):
        pytest.fail(msg + "; CI must have it")
    pytest.skip(msg)


def module(name: str, why: str) -> ModuleType:
    """Import ``name`` for a whole test module: without it the module is skipped, or fails in CI
    (``make test`` installs it; a missing one there is a broken install, not an optional extra)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        msg = f"{name} is not importable ({exc}); {why}"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must have it", pytrace=False)
        pytest.skip(msg, allow_module_level=True)
