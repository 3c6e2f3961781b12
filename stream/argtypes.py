"""argparse types for numeric options: a NaN, an infinity or a value out of range is a usage error (exit 2)."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def bounded(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            what: str = "a number") -> Callable[[str], float]:
    """A float option in [low, high] ((low, high] with ``low_open``); finite always."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        ok = math.isfinite(value) and (low is None or value > low or (value == low and not low_open)) \
            and (high is None or value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"{text!r}: must be {what}")
        return value

    return parse


seconds = bounded(0.0, low_open=True, what="a number of seconds > 0")
fraction = bounded(0.0, 1.0, what="a fraction in [0, 1]")
