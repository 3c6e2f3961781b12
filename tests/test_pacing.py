"""stream/pacing.py: the one real-time pacing rule of the synthetic scene and of paced files."""

from __future__ import annotations

import threading
import time

import pytest

from stream.pacing import Pacer


def test_frames_are_due_one_period_apart_without_drift():
    pacer, stop = Pacer(50.0), threading.Event()
    t0 = time.monotonic()
    for _ in range(26):
        assert pacer.wait(stop)
    assert 0.45 <= time.monotonic() - t0 < 1.5  # 25 periods of 20 ms after the first frame, due at once; slack for load


def test_a_source_slower_than_one_frame_a_second_is_still_paced():
    """The synthetic scene at fps 0.5 once took its 2 s wait for a clock jump and ran at 47 fps."""
    pacer = Pacer(0.8)
    assert pacer.slack == pytest.approx(2.5)
    pacer.wait(threading.Event())
    assert pacer.delay() == pytest.approx(1.25, abs=0.05)


def test_a_stall_restarts_the_schedule_instead_of_bursting(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    pacer, stop = Pacer(10.0), threading.Event()
    for _ in range(3):
        pacer.wait(stop)
        now[0] += 0.1
    now[0] += 5.0  # the process stalled for 5 s: 50 frames overdue
    assert pacer.delay() == 0.0 and pacer.wait(stop)
    assert pacer.delay() == pytest.approx(0.1)  # the next one a period later, not at once
    now[0] -= 30.0  # the clock jumped back
    assert pacer.delay() == 0.0


def test_cancel_interrupts_the_wait():
    pacer, stop = Pacer(0.2), threading.Event()
    assert pacer.wait(stop)
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    assert not pacer.wait(stop)
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(ValueError):
        Pacer(0.0)
