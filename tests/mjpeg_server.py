"""A local HTTP MJPEG camera for the tests: the synthetic scene as ``multipart/x-mixed-replace``.

``MJPEGServer().start()`` serves ``http://127.0.0.1:PORT/stream.mjpg`` from a thread (stdlib
``http.server``) at about ``fps`` frames per second. ``stop()`` closes the listener and every
open connection at once (a camera pulled off the network); ``start()`` again binds the same
port. ``mode="stall"`` (or ``stall()`` while running) accepts, sends the HTTP headers and then
nothing: a hung camera, for read/open timeouts. Run it alone to point a real client at it::

    python -m tests.mjpeg_server --port 8554
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

BOUNDARY = "frame"
PATH = "/stream.mjpg"


def render_jpegs(n: int = 30, size: tuple[int, int] = (320, 240), seed: int = 0, quality: int = 85) -> list[bytes]:
    """``n`` JPEG-encoded frames of the synthetic scene (looped by the server)."""
    from stream.synthetic import SceneConfig, SyntheticScene

    scene = SyntheticScene(SceneConfig(width=size[0], height=size[1], seed=seed))
    out = []
    for t in range(n):
        ok, buf = cv2.imencode(".jpg", scene.frame(t)[0], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        out.append(buf.tobytes())
    return out


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # restart on the same port at once (no TIME_WAIT refusal)
    daemon_threads = True
    owner: MJPEGServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        owner = self.server.owner
        if self.path.split("?")[0] != PATH:
            self.send_error(404)
            return
        owner._track(self.connection, True)
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            period = 1.0 / owner.fps
            next_t = time.monotonic()
            i = 0
            while not owner._closing.is_set():
                if owner.mode == "stall":
                    owner._closing.wait(0.05)
                    continue
                jpg = owner.frames[i % len(owner.frames)]
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n".encode() + jpg + b"\r\n"
                )
                self.wfile.flush()
                owner.sent += 1
                i += 1
                next_t += period
                owner._closing.wait(max(0.0, next_t - time.monotonic()))
        except OSError:  # the client went away, or stop() closed the socket
            pass
        finally:
            owner._track(self.connection, False)


class MJPEGServer:
    """An MJPEG-over-HTTP camera on 127.0.0.1 that a test can stop, restart and stall."""

    def __init__(self, port: int = 0, fps: float = 15.0, size: tuple[int, int] = (320, 240), mode: str = "ok",
                 frames: list[bytes] | None = None) -> None:
        if mode not in ("ok", "stall"):
            raise ValueError(f"mode must be 'ok' or 'stall', got {mode!r}")
        self.port = port
        self.fps = fps
        self.mode = mode
        self.frames = frames if frames is not None else render_jpegs(size=size)
        self.sent = 0  # frames written, all connections
        self.connections = 0  # connections accepted, all time
        self._closing = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._open.add(conn)
                self.connections += 1
            else:
                self._open.discard(conn)

    def start(self) -> MJPEGServer:
        """Listen (on the same port as before after a ``stop()``) and serve in a thread."""
        if self._httpd is not None:
            return self
        self._closing.clear()
        self._httpd = _Server(("127.0.0.1", self.port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"mjpeg-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (the client sees the stream end)."""
        if self._httpd is None:
            return
        self._closing.set()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
        self._httpd = self._thread = None

    def stall(self, stalled: bool = True) -> None:
        """Keep connections open but send nothing more (``stall(False)`` resumes)."""
        self.mode = "stall" if stalled else "ok"

    def __enter__(self) -> MJPEGServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.mjpeg_server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8554)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--stall", action="store_true", help="send headers, then nothing")
    args = p.parse_args()
    with MJPEGServer(args.port, args.fps, mode="stall" if args.stall else "ok") as srv:
        print(f"serving {srv.url} (Ctrl+C to stop)", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

