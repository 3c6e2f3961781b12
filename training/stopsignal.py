"""Ctrl-C and SIGTERM during a long loop: stop at the next step boundary, never lose the request.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread happens to be.
When that is inside a finaliser (``__del__``, a weakref callback: torch and tqdm run many), Python
prints "Exception ignored" and drops it, and the loop goes on as if nothing happened. While a
``StopRequest`` is active the signal only sets a flag that the loop reads between steps; a second
signal still raises ``KeyboardInterrupt`` at once, for a step that hangs.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager: ``requested`` turns True on the first SIGINT/SIGTERM while active.

    Outside the main thread (where Python allows no signal handlers) it does nothing and the
    signals keep their handlers."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
