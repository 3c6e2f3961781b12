"""The daemon's HTTP side: /metrics, /healthz, /readyz and a live /preview, off the main loop
(a background accept thread, one thread per request).

* ``/metrics``: the daemon's Prometheus registry (text format).
* ``/healthz``: 200 while the main loop beats (``Health.beat()`` each iteration), else 503.
* ``/readyz``: 200 once the model is loaded, the sockets are bound and every camera delivered
  a frame within its timeout (a file or folder that played to its end counts as ended, not as
  a fault); else 503 with a JSON body listing what is not ready.
* ``/preview``: an HTML page with each camera's latest frame, mask tinted red, fps and
  latency, refreshed every ~300 ms; ``/preview/<camera>.jpg`` one such JPEG (404 for an
  unknown camera, 503 before its first frame); ``/preview/cameras.json`` the camera list.

The preview is rendered only when requested: on the hot path the daemon merely hands its
latest frame and mask to a :class:`PreviewStore` (two references and a timestamp).
"""

from __future__ import annotations

import html
import json
import logging
import socket
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Optional, Tuple
from urllib.parse import quote, unquote, urlsplit

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream.errors import UserError

log = logging.getLogger("sparsecam.http")

DEFAULT_BIND = "127.0.0.1:9108"
OVERLAY_BGR = (0, 0, 255)  # red tint on foreground pixels
OVERLAY_ALPHA = 0.5

# camera -> (frame BGR uint8 HxWx3, mask uint8 HxW (255 = foreground) or None, fps, latency s)
PreviewItem = Tuple[np.ndarray, Optional[np.ndarray], float, float]
PreviewSource = Callable[[str], Optional[PreviewItem]]


# ----------------------------------------------------------------------------- health


class Health:
    """Liveness and readiness of the daemon, thread-safe.

    ``alive()``: ``beat()`` was called within ``stale_after`` s (monotonic clock).
    ``ready()``: alive, model loaded, sockets bound, and every camera added with
    ``add_camera`` had a frame (``camera_frame(camera, t)``, ``t`` in Unix seconds as
    ``Frame.t_capture``) within its timeout. Ages are kept on the monotonic clock (the frame's
    age when it arrived, then monotonic time since), so a wall clock stepped by NTP neither
    hides a dead camera nor reports a live one down.
    """

    def __init__(self, stale_after: float = 5.0, default_camera_timeout: float = 5.0) -> None:
        self.stale_after = float(stale_after)
        self.default_camera_timeout = float(default_camera_timeout)
        self._lock = threading.Lock()
        self._last_beat: float | None = None
        self._model_loaded = False
        self._sockets_bound = False
        self._cameras: dict[str, float] = {}  # camera -> timeout s
        self._last_frame: dict[str, float] = {}  # camera -> its newest capture, on the monotonic clock
        self._ended: set[str] = set()  # cameras whose file or folder played to its end

    def beat(self) -> None:
        self._last_beat = time.monotonic()  # a single store: atomic under the GIL

    def set_model_loaded(self, loaded: bool) -> None:
        with self._lock:
            self._model_loaded = bool(loaded)

    def set_sockets_bound(self, bound: bool) -> None:
        with self._lock:
            self._sockets_bound = bool(bound)

    def add_camera(self, camera: str, timeout_s: float | None = None) -> None:
        with self._lock:
            self._cameras[camera] = float(self.default_camera_timeout if timeout_s is None else timeout_s)

    def camera_frame(self, camera: str, t: float | None = None) -> None:
        """``camera`` delivered a frame captured at Unix time ``t`` (default: now)."""
        age = 0.0 if t is None else max(0.0, time.time() - float(t))
        captured = time.monotonic() - age
        with self._lock:
            self._cameras.setdefault(camera, self.default_camera_timeout)
            if captured > self._last_frame.get(camera, -float("inf")):
                self._last_frame[camera] = captured

    def camera_ended(self, camera: str) -> None:
        """``camera``'s file or folder played to its end: no longer expected to deliver frames."""
        with self._lock:
            self._ended.add(camera)

    def ended(self) -> list[str]:
        with self._lock:
            return sorted(self._ended)

    def frame_age(self, camera: str) -> float | None:
        """Seconds since the capture of ``camera``'s newest frame, or None before its first."""
        with self._lock:
            last = self._last_frame.get(camera)
        return None if last is None else time.monotonic() - last

    def beat_age(self) -> float | None:
        last = self._last_beat
        return None if last is None else time.monotonic() - last

    def alive(self) -> bool:
        age = self.beat_age()
        return age is not None and age <= self.stale_after

    def ready(self) -> tuple[bool, list[str]]:
        """(ready, what is not ready: one short sentence per problem)."""
        problems: list[str] = []
        age = self.beat_age()
        if age is None:
            problems.append("main loop has not started")
        elif age > self.stale_after:
            problems.append(f"main loop stalled: no iteration for {age:.1f} s")
        now = time.monotonic()
        with self._lock:
            if not self._model_loaded:
                problems.append("model not loaded")
            if not self._sockets_bound:
                problems.append("publish sockets not bound")
            for camera, timeout in self._cameras.items():
                if camera in self._ended:
                    continue
                last = self._last_frame.get(camera)
                if last is None:
                    problems.append(f"camera {camera}: no frame yet")
                elif now - last > timeout:
                    problems.append(f"camera {camera}: no frame for {now - last:.1f} s (timeout {timeout:g} s)")
        return not problems, problems


# ----------------------------------------------------------------------------- preview


class PreviewStore:
    """The latest frame and mask of each camera, as a ``preview_source`` callable.

    ``update()`` is the hot-path call: it stores references and a timestamp, no copy and no
    rendering (the daemon must not modify the arrays afterwards; it never does, each frame and
    mask is a new array). ``store(camera)`` returns ``(frame, mask, fps, latency_s)`` or None.
    """

    def __init__(self, fps_window: float = 2.0) -> None:
        self.fps_window = fps_window
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[np.ndarray, np.ndarray | None, float]] = {}
        self._stamps: dict[str, deque] = {}

    def update(self, camera: str, frame: np.ndarray, mask: np.ndarray | None, latency_s: float = 0.0) -> None:
        now = time.monotonic()
        with self._lock:
            self._latest[camera] = (frame, mask, float(latency_s))
            self._stamps.setdefault(camera, deque(maxlen=512)).append(now)

    def __call__(self, camera: str) -> PreviewItem | None:
        now = time.monotonic()
        with self._lock:
            item = self._latest.get(camera)
            if item is None:
                return None
            recent = [t for t in self._stamps[camera] if now - t <= self.fps_window]
        frame, mask, latency = item
        return frame, mask, len(recent) / self.fps_window, latency


def render_preview(frame: np.ndarray, mask: np.ndarray | None, fps: float, latency_s: float, label: str = "") -> np.ndarray:
    """The frame with foreground pixels tinted red and a text band (camera, fps, latency)."""
    import cv2

    img = np.asarray(frame)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    out = np.array(img, dtype=np.uint8, copy=True)
    if mask is not None:
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[..., 0]
        if m.shape != out.shape[:2]:
            m = cv2.resize(m, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST)
        fg = m > 127
        if fg.any():
            tint = np.array(OVERLAY_BGR, np.float32)
            out[fg] = (out[fg].astype(np.float32) * (1 - OVERLAY_ALPHA) + tint * OVERLAY_ALPHA).astype(np.uint8)
    text = f"{label}  {fps:.1f} fps  {latency_s * 1000:.0f} ms".strip()
    h, w = out.shape[:2]
    scale = max(0.3, min(1.0, w / 640))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = min(h, th + base + 6)
    out[:band, : min(w, tw + 8)] //= 3  # darken behind the text
    cv2.putText(out, text, (4, band - base - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def encode_jpeg(img: np.ndarray, quality: int = 80) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return buf.tobytes()


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sparsecam preview</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ margin: 0; padding: 12px; background: #111; color: #ddd; font: 14px system-ui, sans-serif; }}
h1 {{ font-size: 16px; margin: 0 0 10px; }} a {{ color: #8cf; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; background: #000; padding: 6px; }}
figure img {{ display: block; max-width: 100%; min-width: 320px; image-rendering: pixelated; }}
figcaption {{ padding-top: 4px; }} .stale {{ color: #f88; }}
</style></head><body>
<h1>sparsecam live preview <small>(<a href="/metrics">metrics</a> &middot; <a href="/healthz">healthz</a> &middot; <a href="/readyz">readyz</a>)</small></h1>
<div class="grid">
{figures}
</div>
<script>
"use strict";
const PERIOD_MS = {period_ms};
for (const fig of document.querySelectorAll("figure[data-camera]")) {{
  const cam = fig.dataset.camera;
  const caption = fig.querySelector("figcaption");
  const tick = () => {{
    const next = new Image();
    next.alt = cam;
    next.onload = () => {{
      fig.querySelector("img").replaceWith(next);
      caption.textContent = cam; caption.className = "";
      setTimeout(tick, PERIOD_MS);
    }};
    next.onerror = () => {{
      caption.textContent = cam + ": no frame"; caption.className = "stale";
      setTimeout(tick, 4 * PERIOD_MS);
    }};
    next.src = "/preview/" + encodeURIComponent(cam) + ".jpg?t=" + Date.now();
  }};
  setTimeout(tick, PERIOD_MS);
}}
</script>
</body></html>
"""


def preview_page(cameras: Iterable[str], period_ms: int = 300) -> str:
    figures = []
    for cam in cameras:
        attr = html.escape(cam, quote=True)
        src = "/preview/" + html.escape(quote(cam, safe=""), quote=True) + ".jpg"
        figures.append(f'<figure data-camera="{attr}"><img src="{src}" alt="{attr}"><figcaption>{attr}</figcaption></figure>')
    return _PAGE.format(figures="\n".join(figures) or "<p>no cameras</p>", period_ms=int(period_ms))


# ----------------------------------------------------------------------------- server


def parse_bind(bind: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) -> (host, port)."""
    text = str(bind).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UserError(f"HTTP bind address {bind!r} must look like 127.0.0.1:9108 (host:port)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    server_version = "sparsecam"
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds an idle keep-alive connection may hold its thread
    app: HttpServer  # set on a per-server subclass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch(head=False)

    def _send(self, status: int, body: bytes, ctype: str, head: bool, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _text(self, status: int, text: str, head: bool) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", head)

    def _dispatch(self, head: bool) -> None:
        app = self.app
        path = urlsplit(self.path).path
        try:
            if path == "/metrics":
                self._send(200, generate_latest(app.registry), CONTENT_TYPE_LATEST, head)
            elif path == "/healthz":
                if app.health.alive():
                    self._text(200, "ok\n", head)
                else:
                    age = app.health.beat_age()
                    self._text(503, "main loop not started\n" if age is None else f"main loop stalled: no iteration for {age:.1f} s\n", head)
            elif path == "/readyz":
                ok, problems = app.health.ready()
                body = json.dumps({"ready": ok, "not_ready": problems, "ended": app.health.ended()}).encode()
                self._send(200 if ok else 503, body, "application/json", head)
            elif path in ("/preview", "/preview/", "/"):
                if path == "/":
                    self._send(302, b"", "text/plain", head, {"Location": "/preview"})
                else:
                    self._send(200, preview_page(app.cameras).encode(), "text/html; charset=utf-8", head)
            elif path == "/preview/cameras.json":
                self._send(200, json.dumps({"cameras": list(app.cameras)}).encode(), "application/json", head)
            elif path.startswith("/preview/") and path.endswith(".jpg"):
                self._preview_jpeg(unquote(path[len("/preview/"):-len(".jpg")]), head)
            else:
                self._text(404, f"not found: {path}; try /metrics, /healthz, /readyz or /preview\n", head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _preview_jpeg(self, camera: str, head: bool) -> None:
        app = self.app
        if camera not in app.cameras:
            self._text(404, "unknown camera\n", head)
            return
        item = app.preview_source(camera) if app.preview_source is not None else None
        if item is None:
            self._text(503, "no frame yet\n", head)
            return
        frame, mask, fps, latency = item
        try:
            body = encode_jpeg(render_preview(frame, mask, fps, latency, camera), app.jpeg_quality)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not kill the server thread
            log.warning("preview of camera %s failed: %s", camera, exc)
            self._text(500, "preview rendering failed\n", head)
            return
        self._send(200, body, "image/jpeg", head)


class HttpServer:
    """/metrics, /healthz, /readyz and /preview on ``bind`` (``host:port``; port 0 = any free).

    ``start()`` binds (a failure is a UserError naming the address) and serves in a daemon
    thread; ``stop()`` shuts down. ``address`` is the actual (host, port) once started.
    """

    def __init__(self, bind: str = DEFAULT_BIND, registry: CollectorRegistry | None = None, health: Health | None = None,
                 preview_source: PreviewSource | None = None, cameras: Iterable[str] = (), jpeg_quality: int = 80) -> None:
        self.bind = bind
        self.host, self.port = parse_bind(bind)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.health = health if health is not None else Health()
        self.preview_source = preview_source
        self.cameras = list(cameras)
        self.jpeg_quality = jpeg_quality
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            return self.host, self.port
        return self._server.server_address[:2]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def start(self) -> HttpServer:
        if self._server is not None:
            return self
        handler = type("Handler", (_Handler,), {"app": self})
        server_cls = _Server
        if ":" in self.host:
            server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        try:
            self._server = server_cls((self.host, self.port), handler)
        except (OSError, OverflowError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise UserError(f"cannot serve HTTP on {self.bind}: {why} (another sparsecam serve running? choose another address)") from None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="sparsecam-http", daemon=True)
        self._thread.start()
        log.info("HTTP on %s (/metrics /healthz /readyz /preview)", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
