"""SIGTERM stops any `sparsecam` command like Ctrl-C: its clean-up runs, exit 130, one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.cli import COMMANDS
from tests.daemon_helpers import free_port

REPO = Path(__file__).resolve().parent.parent


def test_sigterm_unwinds_a_command_like_ctrl_c():
    """Before, SIGTERM killed e.g. an export mid parity check and left its temporary file behind."""
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "subscribe", "--endpoint", f"tcp://127.0.0.1:{free_port()}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t_end = time.monotonic() + 30
        line = ""
        while "subscribed to" not in line and time.monotonic() < t_end:
            line = proc.stderr.readline()
        assert "subscribed to" in line
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "sparsecam subscribe: interrupted" in err and "Traceback" not in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_working_help(command: str) -> None:
    """A NameError in train's option help went unseen by every other test (they pass options, not --help)."""
    res = subprocess.run([sys.executable, "-m", "stream.cli", command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and f"sparsecam {command}" in res.stdout and not res.stderr, res.stderr[-2000:]


@pytest.mark.parametrize("argv", [["train", "x", "--size", "320"], ["export"], ["export", "m.pt", "--precision", "int4"],
                                  ["subscribe", "--count", "x"], ["serve", "--bogus"]])
def test_a_bad_option_is_one_line(argv: list[str]) -> None:
    """argparse printed its whole usage block (17 lines for train) before the one line that mattered."""
    res = subprocess.run([sys.executable, "-m", "stream.cli", *argv], cwd=REPO, capture_output=True, text=True, timeout=60)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"sparsecam {argv[0]}: error: ") and lines[0].endswith(f"(see sparsecam {argv[0]} --help)")
