"""Frame sources: where a camera's frames come from.

All sources are ``open() / read() -> BGR uint8 ndarray | None / close()``, with ``live`` and a
nominal ``fps``: a camera index or ``/dev/videoN``, an RTSP/HTTP URL, a video file, an image
folder and the built-in ``synthetic`` scene. ``make_source(spec)`` builds one from a
command-line string. ``read()`` returning None means end of stream for a file or folder and a
failed read for a live source (the capture thread, stream/capture.py, counts it and reopens
the source).

Credentials in URLs never reach a log or an error message: everything goes through
:func:`redact`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from stream.errors import UserError
from stream.pacing import Pacer

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


class SourceGone(UserError):
    """A file or folder source vanished while it was being read (deleted, moved, unmounted)."""


def valid_frame(img: object) -> bool:
    """True for a usable frame: a non-empty BGR uint8 (H, W, 3) array."""
    return (
        isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
        and img.shape[2] == 3 and img.shape[0] > 0 and img.shape[1] > 0
    )


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
    skipped: int = 0  # unreadable frames the source skipped by itself (counted as read errors)

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
    """A network stream (rtsp://, http(s)://, ...) read with FFmpeg (live).

    FFmpeg's open and read timeouts make a stalled camera return from ``open()``/``read()``.
    OpenCV serialises every FFmpeg open in the process behind one lock, so a camera that
    accepts and then hangs delays the (re)opening of the others by up to
    ``OPEN_TIMEOUT_MS``; a plain TCP connect first (``CONNECT_TIMEOUT_S``) makes the common
    faults -- host down, port closed -- fail fast without taking that lock.
    """

    OPEN_TIMEOUT_MS = 5000
    READ_TIMEOUT_MS = 5000
    CONNECT_TIMEOUT_S = 2.0
    DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}

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

    def _check_reachable(self) -> None:
        """Raise UserError unless a TCP connection to the camera's host and port succeeds."""
        parts = urlsplit(str(self.target))
        scheme = parts.scheme.lower()
        try:
            port = parts.port or self.DEFAULT_PORTS.get(scheme)
        except ValueError:
            port = None
        if not port or not parts.hostname:
            return  # udp, srt, odd URLs: left to FFmpeg
        try:
            socket.create_connection((parts.hostname, port), timeout=self.CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise UserError(f"cannot open stream {self.name}: {parts.hostname}:{port} not reachable ({exc.strerror or exc})") from None

    def open(self) -> None:
        self._check_reachable()
        super().open()

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
            if not os.path.isfile(self.target):
                raise SourceGone(f"video file {self.name} disappeared")
            try:
                super().open()  # reopening is more reliable than seeking to frame 0
            except UserError as exc:  # being replaced, say: wait for it like a vanished one
                raise SourceGone(str(exc)) from None
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

    def _list(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        try:
            files = list_images(self.path) if self.path.is_dir() else None
        except OSError:  # removed between the check and the listing
            files = None
        if files is None:
            what = "image file" if self.path.suffix.lower() in IMAGE_EXTS else "image folder"
            raise UserError(f"{what} {self.name} does not exist")
        if not files:
            raise UserError(f"image folder {self.name} has no images ({', '.join(sorted(IMAGE_EXTS))})")
        return files

    def open(self) -> None:
        self.files = self._list()
        self._i = 0

    def _gone(self) -> SourceGone:
        what = "image file" if self.path.suffix.lower() in IMAGE_EXTS else "image folder"
        return SourceGone(f"{what} {self.name} disappeared")

    def read(self) -> np.ndarray | None:
        """The next readable image; unreadable ones are skipped (``skipped``) with a warning.

        Looping re-lists the folder at each wrap (new files join, deleted ones leave). Raises
        :class:`SourceGone` when the folder (or the single file) is no longer there.
        """
        import cv2

        failures = 0
        while failures <= len(self.files):
            if self._i >= len(self.files):
                if not self.loop:
                    return None
                if not self.path.exists():
                    raise self._gone()
                try:
                    self.files = self._list()
                except UserError as exc:
                    raise SourceGone(str(exc)) from None
                self._i = 0
            path = self.files[self._i]
            self._i += 1
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                if not self.path.exists():
                    raise self._gone() from None
                failures += 1  # deleted from a folder that is still there: not a bad frame
                continue
            except OSError as exc:
                data, reason = b"", str(exc)
            else:
                reason = "empty file" if not data else "not a decodable image (truncated or corrupt)"
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
            if img is not None and img.size:
                return _to_bgr(img)
            failures += 1
            self.skipped += 1
            log.warning("skipping unreadable image %s: %s", redact(path), redact(reason))
        if not self.path.exists():
            raise self._gone()
        if self.loop:
            raise UserError(f"image folder {self.name}: no readable image in a whole pass")
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
        self._pacer = Pacer(fps) if fps else None

    def open(self) -> None:
        from stream.synthetic import SyntheticScene

        if self._scene is None:
            self._scene = SyntheticScene(self.cfg)
        self.index = self.start
        self.ended = False
        if self._pacer is not None:
            self._pacer.restart()

    def read(self) -> np.ndarray | None:
        if self._scene is None:
            self.open()
        n = self.index - self.start
        if self.frames is not None and n >= self.frames:
            self.ended = True
            return None
        if self._pacer is not None and not self._pacer.wait(self.cancel):
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
    from stream.synthetic import is_synthetic_spec  # lazy, as the other stream.synthetic imports here

    if is_synthetic_spec(text):
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
