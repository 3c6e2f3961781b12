"""Frame sources and one capture thread per camera.

Sources (all ``open() / read() -> BGR uint8 ndarray | None / close()``, with ``live`` and a
nominal ``fps``): a camera index or ``/dev/videoN``, an RTSP/HTTP URL, a video file, an
image folder and the built-in ``synthetic`` scene. ``make_source(spec)`` builds one from a
command-line string. ``read()`` returning None means end of stream for a file or folder and
a failed read for a live source (the capture thread counts it and reopens the source).

:class:`CameraThread` reads a source in its own thread and stamps ``t_capture`` at read.
Live sources keep only the newest frames (an unread older frame is replaced and counted in
``dropped``): the consumer always gets a fresh frame. File and folder sources drop nothing
(the reader waits for the consumer) unless paced in real time with ``pace=True``, which
makes them behave like a live camera.

Credentials in URLs never reach a log or an error message: everything goes through
:func:`redact`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from stream.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "srt")
DEFAULT_FILE_FPS = 25.0

_USERINFO_RE = re.compile(r"://.*@")
_SECRET_QUERY_RE = re.compile(
    r"([?&;](?:password|passwd|pwd|pass|user|username|token|access_token|auth|key|apikey|api_key|secret|signature|sig)=)[^&#;]*",
    re.IGNORECASE,
)


def redact(spec: object) -> str:
    """``spec`` with URL credentials and secret query values replaced by ``***``."""
    s = str(spec)
    if "://" in s:
        s = _USERINFO_RE.sub("://***@", s, count=1)
        s = _SECRET_QUERY_RE.sub(r"\1***", s)
    return s


@dataclass
class Frame:
    """One captured image: BGR uint8 (H, W, 3), stamped with ``time.time()`` at read."""

    camera: str
    seq: int
    image: np.ndarray
    t_capture: float


def _to_bgr(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.dtype != np.uint8:  # 16-bit images: scale to 8 bits
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1.0, float(np.iinfo(img.dtype).max if img.dtype.kind in "ui" else img.max())))
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return img


# --------------------------------------------------------------------------- sources


class Source:
    """Base class: a stream of BGR frames."""

    live: bool = False
    fps: float | None = None
    name: str = "source"
    ended: bool = False  # set by a live-like source whose stream has a definite end

    def __init__(self) -> None:
        # Set by CameraThread.stop(): a source sleeping in read() must return None promptly.
        self.cancel = threading.Event()

    def open(self) -> None:
        """Open the device/file; raises UserError when it cannot be used."""

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class _CvSource(Source):
    """Anything cv2.VideoCapture reads: a device, a URL or a video file."""

    def __init__(self, target: int | str, *, live: bool, size: tuple[int, int] | None = None, fps: float | None = None) -> None:
        super().__init__()
        self.target = target
        self.live = live
        self.size = size
        self.requested_fps = fps
        self.fps = fps
        self.name = redact(target)
        self._cap = None

    def _capture(self):  # noqa: ANN202 - cv2.VideoCapture
        import cv2

        return cv2.VideoCapture(self.target)

    def open(self) -> None:
        import cv2

        self.close()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise UserError(self._open_error())
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.size:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            if self.requested_fps:
                cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
        if self.requested_fps is None:
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else (None if self.live else DEFAULT_FILE_FPS)
        self._cap = cap

    def _open_error(self) -> str:
        return f"cannot open {self.name}"

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, img = self._cap.read()
        return _to_bgr(img) if ok and img is not None else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class DeviceSource(_CvSource):
    """A local camera: index ``0`` or a path like ``/dev/video0`` (live)."""

    def __init__(self, device: int | str, *, size: tuple[int, int] | None = None, fps: float | None = None) -> None:
        super().__init__(device, live=True, size=size, fps=fps)

    def _open_error(self) -> str:
        return f"cannot open camera {self.name}: check it is connected and not used by another program"


class StreamSource(_CvSource):
    """A network stream (rtsp://, http(s)://, ...) read with FFmpeg (live)."""

    OPEN_TIMEOUT_MS = 10000
    READ_TIMEOUT_MS = 5000

    def __init__(self, url: str, *, size: tuple[int, int] | None = None, fps: float | None = None) -> None:
        super().__init__(url, live=True, size=size, fps=fps)

    def _capture(self):  # noqa: ANN202
        import cv2

        # RTSP over TCP: no smeared frames from lost UDP packets.
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        params = []
        if hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC"):
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.READ_TIMEOUT_MS]
        return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)

    def _open_error(self) -> str:
        return f"cannot open stream {self.name}: check the URL, the credentials and that the camera is reachable"


class VideoFileSource(_CvSource):
    """A video file, read frame by frame (not live); ``loop`` restarts it at the end."""

    def __init__(self, path: str | Path, *, loop: bool = False, fps: float | None = None) -> None:
        super().__init__(str(path), live=False, fps=fps)
        self.loop = loop

    def open(self) -> None:
        if not os.path.isfile(self.target):
            raise UserError(f"video file {self.name} does not exist")
        super().open()

    def _open_error(self) -> str:
        return f"cannot read video file {self.name}: not a video format OpenCV/FFmpeg can decode"

    def read(self) -> np.ndarray | None:
        img = super().read()
        if img is None and self.loop and self._cap is not None:
            super().open()  # reopening is more reliable than seeking to frame 0
            img = super().read()  # still None: an empty file, end of stream
        return img


def natural_key(path: Path) -> list[object]:
    """Sort key: frame2 before frame10."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in natural order (shared with training.data)."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()), key=natural_key)


class FolderSource(Source):
    """Image files of a folder in natural sort order (not live); a single image file works too."""

    def __init__(self, path: str | Path, *, loop: bool = False, fps: float | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.loop = loop
        self.fps = fps or DEFAULT_FILE_FPS
        self.name = redact(path)
        self.files: list[Path] = []
        self.skipped = 0
        self._i = 0

    def open(self) -> None:
        if self.path.is_file():
            files = [self.path]
        elif self.path.is_dir():
            files = list_images(self.path)
        else:
            raise UserError(f"image folder {self.name} does not exist")
        if not files:
            raise UserError(f"image folder {self.name} has no images ({', '.join(sorted(IMAGE_EXTS))})")
        self.files = files
        self._i = 0

    def read(self) -> np.ndarray | None:
        import cv2

        failures = 0
        while failures < len(self.files):
            if self._i >= len(self.files):
                if not self.loop:
                    return None
                self._i = 0
            path = self.files[self._i]
            self._i += 1
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is not None and img.size:
                return _to_bgr(img)
            failures += 1
            self.skipped += 1
            log.warning("skipping unreadable image %s", redact(path))
        return None


class SyntheticSource(Source):
    """The built-in synthetic scene; with ``fps`` it is paced in real time and live.

    Without ``fps`` frames come as fast as they render (not live, nothing dropped), which is
    deterministic. ``last_gt`` holds the ground truth of the last frame read.
    """

    def __init__(self, *, fps: float | None = None, frames: int | None = None, start: int = 0, **scene: object) -> None:
        super().__init__()
        from stream.synthetic import SceneConfig  # lazy: keeps this module importable alone

        try:
            self.cfg = SceneConfig(**scene)  # type: ignore[arg-type]
        except TypeError as exc:
            raise UserError(f"synthetic source: {exc}") from None
        if fps is not None and fps <= 0:
            raise UserError(f"synthetic source: fps must be positive, got {fps}")
        self.fps = fps
        self.live = fps is not None
        self.frames = frames
        self.start = start
        self.name = f"synthetic(seed={self.cfg.seed}, {self.cfg.width}x{self.cfg.height})"
        self.last_gt: np.ndarray | None = None
        self.index = start
        self._scene = None
        self._t0 = 0.0

    def open(self) -> None:
        from stream.synthetic import SyntheticScene

        if self._scene is None:
            self._scene = SyntheticScene(self.cfg)
        self.index = self.start
        self.ended = False
        self._t0 = time.monotonic()

    def read(self) -> np.ndarray | None:
        if self._scene is None:
            self.open()
        n = self.index - self.start
        if self.frames is not None and n >= self.frames:
            self.ended = True
            return None
        if self.fps:
            delay = self._t0 + n / self.fps - time.monotonic()
            if delay > 1.0:  # far ahead: the clock jumped; re-anchor
                self._t0, delay = time.monotonic() - n / self.fps, 0.0
            elif delay < -1.0:  # far behind: skip ahead like a camera would, without bursting
                self._t0 = time.monotonic() - n / self.fps
            if delay > 0 and self.cancel.wait(delay):
                return None
        img, gt = self._scene.frame(self.index)  # type: ignore[union-attr]
        self.last_gt = gt
        self.index += 1
        return img


def _synthetic(spec: str, size: tuple[int, int] | None, fps: float | None) -> SyntheticSource:
    """``synthetic[:key=value,...]`` (stream.synthetic.parse_synthetic_spec); ``fps`` there wins."""
    from stream.synthetic import parse_synthetic_spec

    parsed = parse_synthetic_spec(spec, size)
    return SyntheticSource(fps=parsed.fps or fps, frames=parsed.frames, start=parsed.start, **asdict(parsed.scene))


def make_source(spec: str | int, *, size: tuple[int, int] | None = None, fps: float | None = None, loop: bool = False) -> Source:
    """A source from a command-line string (the source is not opened yet).

    ``synthetic`` / ``synthetic:seed=1,size=320x240,fps=25``, a camera index (``0``),
    ``/dev/videoN``, an ``rtsp://`` / ``http(s)://`` URL, a video file or an image folder.
    ``size`` is the synthetic render size or the capture size asked of a camera.
    """
    if isinstance(spec, int):
        return DeviceSource(spec, size=size, fps=fps)
    text = str(spec).strip()
    if not text:
        raise UserError("empty source: give a camera index, a URL, a video file, an image folder or 'synthetic'")
    if text == "synthetic" or text.startswith("synthetic:"):
        return _synthetic(text, size, fps)
    if text.isdigit():
        return DeviceSource(int(text), size=size, fps=fps)
    if re.fullmatch(r"/dev/video\d+", text):
        return DeviceSource(text, size=size, fps=fps)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme == "file":
            text = text[len("file://") :]
        elif scheme in URL_SCHEMES:
            return StreamSource(text, size=size, fps=fps)
        else:
            raise UserError(f"source {redact(text)}: unsupported URL scheme {scheme!r} (use {', '.join(URL_SCHEMES)})")
    path = Path(text).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_EXTS):
        return FolderSource(path, loop=loop, fps=fps)
    if path.is_file():
        return VideoFileSource(path, loop=loop, fps=fps)
    raise UserError(
        f"source {redact(text)!r} not found: give a camera index, /dev/videoN, an rtsp:// or http(s):// URL, "
        "a video file, an image folder or 'synthetic[:seed=N,size=WxH,fps=F]'"
    )


# --------------------------------------------------------------------------- capture thread


class CameraThread:
    """Reads one source in a background thread and hands out :class:`Frame` objects.

    ``get(timeout)`` returns the next frame (None on timeout, or at once when ``finished``
    and nothing is buffered). With ``on_frame`` every frame is passed to that callback in
    the capture thread instead of being buffered. ``seq`` counts every captured frame, so
    frames dropped here show up as sequence gaps downstream.
    """

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
    ) -> None:
        self.camera_id = camera_id
        self.source = source
        self.size = size
        self.pace = pace
        self.on_frame = on_frame
        self.queue_size = max(1, int(queue_size))
        self.reopen_delay = reopen_delay
        self.max_reopen_delay = max_reopen_delay
        self.errors_before_reopen = errors_before_reopen
        self.captured = 0
        self.dropped = 0
        self.read_errors = 0
        self.reopens = 0
        self.error: BaseException | None = None
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
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> CameraThread:
        """Open the source here (a UserError surfaces to the caller), then start reading."""
        if self._thread is not None:
            raise RuntimeError(f"camera {self.camera_id} already started")
        self.source.open()
        log.info("camera %s: reading %s (%s)", self.camera_id, redact(self.source.name), "live" if self.latest_only else "every frame")
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.camera_id}", daemon=True)
        self._thread.start()
        return self

    # ------------------------------------------------------------------ reader thread

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

    def _reopen(self, delay: float) -> float:
        """Close and reopen a live source after ``delay`` s; returns the next back-off delay."""
        self.source.close()
        if self._stop.wait(delay):
            return delay
        try:
            self.source.open()
            self.reopens += 1
            log.info("camera %s: reopened %s", self.camera_id, redact(self.source.name))
            return self.reopen_delay
        except Exception as exc:  # noqa: BLE001 - keep retrying a live camera
            log.warning("camera %s: cannot reopen %s: %s", self.camera_id, redact(self.source.name), redact(exc))
            return min(delay * 2, self.max_reopen_delay)

    def _run(self) -> None:
        src = self.source
        paced = self.pace and not src.live and bool(src.fps)
        period = 1.0 / src.fps if paced and src.fps else 0.0
        next_t = time.monotonic()
        consecutive = 0
        delay = self.reopen_delay
        try:
            while not self._stop.is_set():
                if paced:
                    wait = next_t - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                    next_t = max(next_t + period, time.monotonic() - 1.0)
                try:
                    img = src.read()
                except Exception as exc:  # noqa: BLE001 - a decoder error is a read error
                    log.warning("camera %s: read error on %s: %s", self.camera_id, redact(src.name), redact(exc))
                    img = None
                t_capture = time.time()
                if self._stop.is_set():
                    break
                if img is None:
                    if not src.live or src.ended:
                        log.info("camera %s: end of %s after %d frames", self.camera_id, redact(src.name), self.captured)
                        break
                    self.read_errors += 1
                    consecutive += 1
                    if consecutive >= self.errors_before_reopen:
                        log.warning("camera %s: %d failed reads from %s, reopening", self.camera_id, consecutive, redact(src.name))
                        delay = self._reopen(delay)
                        consecutive = 0
                    elif self._stop.wait(0.05):
                        break
                    continue
                consecutive = 0
                delay = self.reopen_delay
                frame = Frame(self.camera_id, self.captured, self._resize(img), t_capture)
                self.captured += 1
                self._deliver(frame)
        except BaseException as exc:  # noqa: BLE001 - reported via .error, never silently lost
            self.error = exc
            log.error("camera %s: capture failed on %s: %s", self.camera_id, redact(src.name), redact(exc))
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

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to stop and join it (returns within ``timeout`` s)."""
        self._stop.set()
        self.source.cancel.set()
        with self._cond:
            self._cond.notify_all()
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
