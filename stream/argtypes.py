"""argparse for the sparsecam commands: one-line usage errors, and types for which a NaN, an infinity, a value
out of range or a malformed size is a usage error (exit 2)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, NoReturn


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage error is one line (exit 2), as every other user mistake is, not the
    whole usage block before it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def bounded(low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False,
            what: str = "a number") -> Callable[[str], float]:
    """A float option in [low, high] (open at an end with ``low_open`` / ``high_open``); finite always."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        ok = math.isfinite(value) and (low is None or value > low or (value == low and not low_open)) \
            and (high is None or value < high or (value == high and not high_open))
        if not ok:
            raise argparse.ArgumentTypeError(f"{text!r}: must be {what}")
        return value

    return parse


seconds = bounded(0.0, low_open=True, what="a number of seconds > 0")
frame_rate = bounded(0.0, low_open=True, what="a frame rate > 0")
fraction = bounded(0.0, 1.0, what="a fraction in [0, 1]")


def integer(low: int, high: int | None = None, *, what: str | None = None) -> Callable[[str], int]:
    """An int option in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {what or (f'{low} or more' if high is None else f'{low} to {high}')}")
        return value

    return parse


def json_target(keys: frozenset[str] = frozenset(), what: str = "a JSON result") -> Callable[[str], Path]:
    """A ``--json FILE`` that may be written: new, or an earlier result (JSON holding ``keys``);
    a folder or any other file is refused before the work that would replace it."""

    def parse(text: str) -> Path:
        import json

        path = Path(text)
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name such as {path / 'results.json'}")
        if path.exists():
            try:
                earlier = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                earlier = None
            if earlier is None or (keys and not (isinstance(earlier, dict) and keys <= set(earlier))):
                raise argparse.ArgumentTypeError(f"{text} exists and is not {what}; choose another file name")
        return path

    return parse


def size_wxh(text: str) -> tuple[int, int]:
    """--size WIDTHxHEIGHT (the one parser is stream.synthetic.parse_size)."""
    from stream.errors import UserError
    from stream.synthetic import parse_size

    try:
        return parse_size(text, what="size")
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
