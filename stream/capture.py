"""One capture thread per camera: reads a source (stream/sources.py) and hands out frames.

:class:`CameraThread` reads a source in its own thread and stamps ``t_capture`` at read.
Live sources keep only the newest frames (an unread older frame is replaced and counted in
``dropped``): the consumer always gets a fresh frame. File and folder sources drop nothing
(the reader waits for the consumer) unless paced in real time with ``pace=True``, which
makes them behave like a live camera.

Faults never stop the thread silently or crash it: a live source that cannot be opened
(at start or later) or that stops delivering is closed and reopened with capped
exponential back-off, each attempt counted in ``reopens``; empty or corrupt frames are
dropped and counted in ``read_errors``; a file or folder that vanishes ends the thread with
``error`` set (a looping one waits for it to come back instead, the camera being down
meanwhile). ``last_error`` says what is wrong right now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from stream.errors import UserError
from stream.pacing import Pacer
from stream.sources import Source, SourceGone, redact, valid_frame

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One captured image: BGR uint8 (H, W, 3), stamped with ``time.time()`` at read."""

    camera: str
    seq: int
    image: np.ndarray
    t_capture: float


@dataclass
class _LoopState:
    """What the capture loop carries from one read to the next."""

    opened: bool
    delay: float  # seconds before the next reopen attempt
    last_good: float  # monotonic time of the last good frame or successful open
    skipped: int  # the source's own count of files it skipped
    pacer: Pacer | None  # paces a file or folder in real time
    consecutive: int = 0  # unusable reads in a row


def _unusable(img: np.ndarray | None) -> str | None:
    """Why a read cannot be passed on, or None when it can."""
    if img is None:
        return "no frame"
    if not valid_frame(img):
        desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        return f"unusable frame ({desc})"
    return None


class CameraThread:
    """Reads one source in a background thread and hands out :class:`Frame` objects.

    ``get(timeout)`` returns the next frame (None on timeout, or at once when ``finished``
    and nothing is buffered). With ``on_frame`` every frame is passed to that callback in
    the capture thread instead of being buffered. ``seq`` counts every captured frame, so
    frames dropped here show up as sequence gaps downstream.

    Faults: a live source is (re)opened in the thread until it works -- after a failed open
    at start, after ``errors_before_reopen`` failed reads in a row, or after one failed read
    when no frame came for ``stall_timeout`` s -- waiting ``reopen_delay`` s, doubled after
    each failure up to ``max_reopen_delay`` and reset by a good frame; every attempt counts
    in ``reopens``. Unusable frames (None from a live source, empty, not uint8 (H, W, 3),
    corrupt image files) count in ``read_errors`` and are never passed on. A file or folder
    that vanishes ends the thread with ``error`` set, unless it loops: then it is reopened
    like a live camera until it is back. ``last_error`` describes the current fault (None
    once frames flow again).
    """

    MAX_BAD_IN_A_ROW = 100  # a file or folder source giving only bad frames is given up

    def __init__(
        self,
        camera_id: str,
        source: Source,
        *,
        size: tuple[int, int] | None = None,
        pace: bool = False,
        on_frame: Callable[[Frame], None] | None = None,
        queue_size: int = 1,
        reopen_delay: float = 0.5,
        max_reopen_delay: float = 5.0,
        errors_before_reopen: int = 5,
        stall_timeout: float = 5.0,
    ) -> None:
        self.camera_id = camera_id
        self.source = source
        self.size = size
        self.pace = pace
        self.on_frame = on_frame
        self.queue_size = max(1, int(queue_size))
        self.reopen_delay = reopen_delay
        self.max_reopen_delay = max(max_reopen_delay, reopen_delay)
        self.errors_before_reopen = max(1, errors_before_reopen)
        self.stall_timeout = stall_timeout
        self.captured = 0
        self.dropped = 0
        self.read_errors = 0
        self.reopens = 0
        self.error: BaseException | None = None
        self.last_error: str | None = None
        self._opened = False
        self._buf: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def latest_only(self) -> bool:
        """True when old frames are replaced (live source, or a file paced in real time)."""
        return self.source.live or (self.pace and bool(self.source.fps))

    @property
    def finished(self) -> bool:
        """The source ended (non-looping file or folder) or failed; buffered frames may remain."""
        return self._finished.is_set()

    @property
    def queue_depth(self) -> int:
        """Frames waiting for the pipeline."""
        return len(self._buf)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> CameraThread:
        """Start reading; returns at once.

        A file or folder is opened here, so a wrong path raises UserError to the caller. A
        live camera is opened in the thread (a hung one never blocks the caller); when it
        cannot be opened the failure is logged and retried there.
        """
        if self._thread is not None:
            raise RuntimeError(f"camera {self.camera_id} already started")
        if not self.source.live:
            self.source.open()
            self._opened = True
        log.info("camera %s: reading %s (%s)", self.camera_id, redact(self.source.name), "live" if self.latest_only else "every frame")
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.camera_id}", daemon=True)
        self._thread.start()
        return self

    # ------------------------------------------------------------------ reader thread

    def _fault(self, message: str, level: int = logging.WARNING) -> None:
        """Record the current fault; logged at ``level`` when it changes, else at debug (no flood)."""
        message = redact(message)
        level = level if message != self.last_error else logging.DEBUG
        self.last_error = message
        log.log(level, "camera %s: %s", self.camera_id, message)

    def _deliver(self, frame: Frame) -> None:
        if self.on_frame is not None:
            self.on_frame(frame)
            return
        with self._cond:
            if self.latest_only:
                while len(self._buf) >= self.queue_size:
                    self._buf.popleft()
                    self.dropped += 1
            else:
                while len(self._buf) >= self.queue_size and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    return
            self._buf.append(frame)
            self._cond.notify_all()

    def _resize(self, img: np.ndarray) -> np.ndarray:
        if self.size is None or (img.shape[1], img.shape[0]) == tuple(self.size):
            return img
        import cv2

        shrink = img.shape[1] > self.size[0]
        return cv2.resize(img, tuple(self.size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def _try_open(self) -> bool:
        """One (re)open attempt, counted in ``reopens``."""
        self.reopens += 1
        try:
            self.source.open()
        except Exception as exc:  # noqa: BLE001 - keep retrying a live camera
            self._fault(f"cannot reopen {self.source.name}: {exc}")
            return False
        log.info("camera %s: reopened %s", self.camera_id, redact(self.source.name))
        return True

    def _reopen(self, st: _LoopState) -> bool:
        """Closed: wait, then one attempt to open; the delay doubles until a good frame. False when stopping."""
        self.source.close()
        if self._stop.wait(st.delay):
            return False
        st.opened = self._try_open()
        if st.opened:
            st.consecutive, st.last_good = 0, time.monotonic()
            if st.pacer is not None:
                st.pacer.restart()
        st.delay = min(st.delay * 2, self.max_reopen_delay)
        return True

    def _bad_read(self, st: _LoopState, bad: str) -> bool:
        """Count an unusable read; a live source is reopened after too many or too long. True when stopping."""
        src = self.source
        self.read_errors += 1
        st.consecutive += 1
        if src.live:
            silent = time.monotonic() - st.last_good
            if st.consecutive >= self.errors_before_reopen or silent >= self.stall_timeout:
                self._fault(f"{bad} from {src.name} ({st.consecutive} failed reads in a row, no frame for {silent:.1f} s), reopening")
                st.opened, st.consecutive = False, 0
                return False
            return self._stop.wait(0.05)
        if st.consecutive >= self.MAX_BAD_IN_A_ROW:
            raise RuntimeError(f"{st.consecutive} unusable frames in a row from {src.name} (last: {bad})")
        log.warning("camera %s: dropped a frame of %s: %s", self.camera_id, redact(src.name), redact(bad))
        return False

    def _good_frame(self, st: _LoopState, img: np.ndarray, t_capture: float) -> None:
        if self.last_error is not None:
            log.info("camera %s: frames again from %s", self.camera_id, redact(self.source.name))
            self.last_error = None
        st.consecutive, st.delay, st.last_good = 0, self.reopen_delay, time.monotonic()
        frame = Frame(self.camera_id, self.captured, self._resize(img), t_capture)
        self.captured += 1
        self._deliver(frame)

    def _run(self) -> None:
        src = self.source
        st = _LoopState(opened=self._opened, delay=self.reopen_delay, last_good=time.monotonic(), skipped=src.skipped,
                        pacer=Pacer(src.fps) if self.pace and not src.live and src.fps else None)
        try:
            if not st.opened:  # a live source, opened here; on failure the loop below retries
                try:
                    src.open()
                    st.opened, st.last_good = True, time.monotonic()
                except Exception as exc:  # noqa: BLE001 - a camera that is not there yet
                    self._fault(f"cannot open {src.name}: {exc}; retrying in the background")
            while not self._stop.is_set():
                if not st.opened:
                    if self._reopen(st):
                        continue
                    break
                if st.pacer is not None and not st.pacer.wait(self._stop):
                    break
                try:
                    img, bad = src.read(), None
                except SourceGone as exc:
                    if not getattr(src, "loop", False):
                        raise
                    self._fault(f"{exc}; waiting for it to come back", logging.ERROR)
                    st.opened = False
                    continue
                except UserError:
                    if not src.live:
                        raise  # e.g. a looping folder without a single readable image
                    img, bad = None, "read failed"
                except Exception as exc:  # noqa: BLE001 - a decoder error is a read error
                    img, bad = None, f"read error: {exc}"
                t_capture = time.time()
                if self._stop.is_set():
                    break
                if src.skipped != st.skipped:  # corrupt files a folder skipped by itself
                    self.read_errors += src.skipped - st.skipped
                    st.skipped = src.skipped
                if img is None and bad is None and (not src.live or src.ended):
                    log.info("camera %s: end of %s after %d frames", self.camera_id, redact(src.name), self.captured)
                    break
                bad = bad or _unusable(img)
                if bad is None:
                    self._good_frame(st, img, t_capture)
                elif self._bad_read(st, bad):
                    break
        except BaseException as exc:  # noqa: BLE001 - reported via .error, never silently lost
            self.error = exc
            self.last_error = redact(exc)
            log.error("camera %s: capture stopped on %s: %s", self.camera_id, redact(src.name), redact(exc))
        finally:
            try:
                src.close()
            finally:
                self._finished.set()
                with self._cond:
                    self._cond.notify_all()

    # ------------------------------------------------------------------ consumer side

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None after ``timeout`` s, or at once once finished and drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buf:
                if self._finished.is_set():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            frame = self._buf.popleft()
            self._cond.notify_all()
            return frame

    def request_stop(self) -> None:
        """Ask the thread to stop without waiting for it (see :func:`stop_all`)."""
        self._stop.set()
        self.source.cancel.set()
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to stop and join it (returns within ``timeout`` s).

        A reader blocked inside the driver (a stalled stream, bounded by the FFmpeg read and
        open timeouts) is left behind as a daemon thread; it exits when the call returns.
        """
        self.request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("camera %s: reader still blocked in %s; leaving it as a daemon thread", self.camera_id, redact(self.source.name))
        elif self._thread is None:
            self.source.close()

    def __enter__(self) -> CameraThread:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all(cameras: Iterable[CameraThread], timeout: float = 1.0) -> None:
    """Stop several cameras within ``timeout`` s in all (not ``timeout`` per hung camera)."""
    cams = list(cameras)
    for cam in cams:
        cam.request_stop()
    deadline = time.monotonic() + timeout
    for cam in cams:
        cam.stop(max(0.0, deadline - time.monotonic()))
