"""ZeroMQ PUB side: sends masks and camera status without ever blocking the pipeline.

Usage (from the daemon's single publishing thread, or several: sends are serialised)::

    with MaskPublisher(["tcp://*:5556"]) as pub:
        pub.publish_mask("cam1", seq, mask, t_capture, t_inference_done, "model-v3")
        pub.maybe_heartbeat({"cam1": {"model_version": "model-v3"}})

An ``ipc://`` socket file this publisher bound is removed when it closes (libzmq leaves it since
4.2), unless another process has bound the same path since.

A PUB socket never blocks: once a subscriber's queue holds ``sndhwm`` messages, libzmq
drops further messages *for that subscriber only*; subscribers see such drops as sequence
gaps (``MaskSubscriber.stats.gaps``). ``dropped`` counts sends that libzmq refused outright.
``sndhwm`` must be at least the number of masks published in one burst (e.g. one batch of
cameras): ``sndhwm=max(4, 2 * n_cameras)``, or a fast subscriber loses part of each burst.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import zmq

from stream.errors import UserError
from stream.protocol import DEFAULT_ENCODING, ENCODINGS, encode_mask, encode_status, ipc_file, validate_endpoint

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
HEARTBEAT_INTERVAL = 5.0


@dataclass
class PublisherStats:
    sent: int = 0
    bytes_sent: int = 0
    dropped: int = 0
    status_sent: int = 0


def _refuse_served_ipc(endpoint: str) -> None:
    """libzmq binds an ipc:// path by unlinking whatever is there: a second daemon on the same path took
    it over silently, leaving the first one serving nobody. A socket file that accepts a connection is in use."""
    path = ipc_file(endpoint)
    if path is None or not os.path.exists(path):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return  # a stale file of a process that is gone: libzmq replaces it
    raise UserError(f"cannot bind endpoint {endpoint!r}: another process serves on it (a daemon already running?); "
                    "stop it or pick another path")


class MaskPublisher:
    """A PUB socket bound to every endpoint (LINGER 0, small SNDHWM, non-blocking sends)."""

    def __init__(
        self,
        endpoints: Iterable[str] | str = (DEFAULT_ENDPOINT,),
        sndhwm: int = 4,
        encoding: str = DEFAULT_ENCODING,
        context: zmq.Context | None = None,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        curve_secret_key: Path | None = None,
        curve_allowed_dir: Path | None = None,
    ) -> None:
        endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not endpoints:
            raise UserError("no endpoint to publish on: give at least one, e.g. tcp://*:5556")
        if encoding not in ENCODINGS:
            raise UserError(f"unknown mask encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
        for ep in endpoints:
            validate_endpoint(ep, bind=True)
        self.encoding = encoding
        self.heartbeat_interval = heartbeat_interval
        self.stats = PublisherStats()
        self.cameras: set[str] = set()
        self._lock = threading.Lock()
        self._last_heartbeat = -float("inf")
        self._own_context = context is None
        self._ctx = context if context is not None else zmq.Context()
        # XPUB sends exactly like PUB and also hears subscriptions, so the daemon can wait for a
        # first subscriber before replaying a file (see wait_for_subscriber).
        self._sock = self._ctx.socket(zmq.XPUB)
        self.subscriptions = 0
        self.last_encode_s = self.last_send_s = 0.0
        self._curve = None
        if curve_secret_key is not None:
            from stream.security import CurveServer

            try:
                self._curve = CurveServer(self._ctx, Path(curve_secret_key), Path(curve_allowed_dir or ""))
            except BaseException:
                self._close_socket(0)
                raise
            self._curve.apply(self._sock)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, max(1, int(sndhwm)))
        self.endpoints: list[str] = []  # as bound: tcp://127.0.0.1:* becomes the real port
        self._ipc_files: dict[str, tuple[int, int]] = {}  # socket file -> (st_dev, st_ino) as bound
        try:
            for ep in endpoints:
                _refuse_served_ipc(ep)
                try:
                    self._sock.bind(ep)
                except zmq.ZMQError as exc:
                    hint = " (another process uses it? pick another port)" if exc.errno == zmq.EADDRINUSE else ""
                    raise UserError(f"cannot bind endpoint {ep!r}: {exc.strerror}{hint}") from None
                self.endpoints.append(self._sock.getsockopt_string(zmq.LAST_ENDPOINT))
                self._note_ipc_file(self.endpoints[-1])
        except BaseException:
            self._close_socket(0)
            raise
        self.closed = False
        log.info("publishing masks on %s (encoding %s)", ", ".join(self.endpoints), encoding)

    # ------------------------------------------------------------------ sending

    def _send(self, parts: list[Any], status: bool = False) -> int:
        """Send one multipart message without blocking; returns bytes sent (0 if dropped)."""
        size = sum(memoryview(p).nbytes for p in parts)
        with self._lock:
            if self.closed:
                raise RuntimeError("MaskPublisher is closed")
            # Reading EVENTS makes libzmq process pending pipe commands now: without it the
            # PUB pipe learns only every ~1 ms what the I/O thread has already sent, so
            # messages are dropped at the HWM even for a subscriber that keeps up.
            self._sock.getsockopt(zmq.EVENTS)
            try:
                self._sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self.stats.dropped += 1
                return 0
            if status:
                self.stats.status_sent += 1
            else:
                self.stats.sent += 1
                self.stats.bytes_sent += size
        return size

    def publish_mask(
        self,
        camera: str,
        seq: int,
        mask: np.ndarray,
        t_capture: float,
        t_inference_done: float,
        model_version: str = "",
        fg_ratio: float | None = None,
    ) -> int:
        """Encode and send one mask; returns the bytes handed to ZeroMQ (0 when dropped).

        ``last_encode_s`` and ``last_send_s`` hold the two stages' durations (for metrics).
        """
        t0 = time.perf_counter()
        parts = encode_mask(
            camera,
            seq,
            mask,
            encoding=self.encoding,
            t_capture=t_capture,
            t_inference_done=t_inference_done,
            model_version=model_version,
            fg_ratio=fg_ratio,
        )
        t1 = time.perf_counter()
        self.cameras.add(camera)
        sent = self._send(parts)
        self.last_encode_s, self.last_send_s = t1 - t0, time.perf_counter() - t1
        return sent

    def publish_status(self, camera: str, state: str, **fields: Any) -> int:
        """Send ``status/<camera>/`` with state "online"/"offline" and optional fields."""
        return self._send(encode_status(camera, state, **fields), status=True)

    def _drain_subscriptions(self) -> None:
        """Read queued (un)subscribe notices: b'\\x01topic' subscribes, b'\\x00topic' leaves."""
        with self._lock:
            while not self.closed:
                try:
                    msg = self._sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    return
                if msg[:1] == b"\x01":
                    self.subscriptions += 1
                elif msg[:1] == b"\x00":
                    self.subscriptions = max(0, self.subscriptions - 1)

    def wait_for_subscriber(self, timeout: float) -> bool:
        """Block up to ``timeout`` s until some subscriber has subscribed; True if one has."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain_subscriptions()
            left = deadline - time.monotonic()
            if self.subscriptions > 0 or left <= 0:
                return self.subscriptions > 0
            self._sock.poll(min(left, 0.05) * 1000, zmq.POLLIN)

    def maybe_heartbeat(self, cameras: Iterable[str] | Mapping[str, dict[str, Any]], now: float | None = None,
                        **fields: Any) -> bool:
        """Send "online" for each camera if ``heartbeat_interval`` s passed since the last one.

        ``cameras`` may map each camera to its own fields (e.g. the model version it runs), which
        win over ``fields``. ``now`` is a ``time.monotonic()`` reading (default: now); returns True when sent.
        """
        now = time.monotonic() if now is None else now
        if now - self._last_heartbeat < self.heartbeat_interval:
            return False
        self._drain_subscriptions()
        self._last_heartbeat = now
        for cam in cameras:
            own = cameras[cam] if isinstance(cameras, Mapping) else {}
            self.publish_status(cam, "online", **{**fields, **own})
        return True

    # ------------------------------------------------------------------ closing

    def _note_ipc_file(self, endpoint: str) -> None:
        """Remember the socket file for clean-up and open it to the group the umask shares it with.

        Connecting needs write permission on the socket: under systemd's UMask=0027 it was 0750, so no
        subscriber but the daemon's own user could connect. Group-readable now means group-connectable."""
        path = ipc_file(endpoint)
        if path is not None:
            try:
                st = os.stat(path)
                if st.st_mode & stat.S_IRGRP:
                    os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IWGRP)
            except OSError:
                return
            self._ipc_files[path] = (st.st_dev, st.st_ino)

    def _remove_ipc_files(self) -> None:
        """Unlink the socket files bound here; a path re-bound by another process since is a new inode and stays."""
        for path, ident in getattr(self, "_ipc_files", {}).items():
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == ident:
                    os.unlink(path)
            except OSError:
                pass
        self._ipc_files = {}

    def _close_socket(self, linger_ms: int) -> None:
        self._sock.close(linger=linger_ms)
        if getattr(self, "_curve", None) is not None:
            self._curve.stop()
        if self._own_context:
            self._ctx.term()
        self._remove_ipc_files()

    def close(self, cameras: Iterable[str] | None = None, reason: str | None = None, linger: float = 0.25) -> None:
        """Send "offline" for each camera (default: every camera published), then close.

        The socket lingers up to ``linger`` seconds so the offline messages get out.
        """
        if getattr(self, "closed", True):
            return
        cams = sorted(self.cameras) if cameras is None else list(cameras)
        for cam in cams:
            try:
                self.publish_status(cam, "offline", reason=reason)
            except (ValueError, zmq.ZMQError) as exc:
                log.warning("could not send offline status for %s: %s", cam, exc)
        with self._lock:
            self.closed = True
            self._close_socket(int(linger * 1000))

    def __enter__(self) -> MaskPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
