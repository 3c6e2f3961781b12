"""Real-time pacing: hand out frames at a source's frame rate, as a camera would.

One rule for every paced source (the synthetic scene, a file or folder played with ``pace``):
frame n is due at ``t0 + n / fps``, so the rate does not drift. When the next frame is due
further ahead than ``slack`` (the clock jumped) or is overdue by more than ``slack`` (the
process stalled), the schedule restarts at now instead of waiting that long or bursting the
missed frames out. ``slack`` is one second, or two frame periods when that is longer, so a
source slower than 1 fps is still paced.
"""

from __future__ import annotations

import threading
import time


class Pacer:
    def __init__(self, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.period = 1.0 / fps
        self.slack = max(1.0, 2.0 * self.period)
        self.restart()

    def restart(self) -> None:
        """The next frame is due now (after an open or a reopen)."""
        self._t0 = time.monotonic()
        self._n = 0

    def delay(self) -> float:
        """Seconds until the next frame is due (0 when due), re-anchoring after a jump or a stall."""
        delay = self._t0 + self._n * self.period - time.monotonic()
        if delay > self.slack or delay < -self.slack:
            self._t0, self._n, delay = time.monotonic(), 0, 0.0
        return max(delay, 0.0)

    def wait(self, cancel: threading.Event) -> bool:
        """Wait until the next frame is due and count it; False if ``cancel`` was set meanwhile."""
        delay = self.delay()
        if delay > 0 and cancel.wait(delay):
            return False
        self._n += 1
        return True
