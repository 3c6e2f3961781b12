"""ZeroMQ SUB side: the subscriber library and the ``sparsecam subscribe`` command.

Ten lines of Python are enough to consume masks::

    from stream.client import MaskSubscriber

    with MaskSubscriber(["tcp://camera-host:5556"], cameras=["cam1"]) as sub:
        for msg in sub:                       # msg.mask: uint8 (H, W), 0 or 255
            print(msg.camera, msg.seq, f"{msg.latency * 1000:.1f} ms")

Bad messages never raise: they are counted in ``stats.rejected`` and skipped. Masks older
than ``max_age`` seconds (by their capture time; keep hosts NTP-synced) are dropped and
counted in ``stats.stale``. Sequence gaps (frames the daemon skipped or ZeroMQ dropped
for this subscriber) are counted per camera in ``stats.gaps_by_camera``; a camera's
``offline`` status ends its numbering (a restarted daemon counts from 0 again, which is no
gap). A mask that is not newer than the last one of its camera in both number and capture
time is the same mask reached through a second endpoint of one daemon: dropped, counted in
``stats.duplicates``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import zmq

from stream.argtypes import Parser, bounded, seconds
from stream.errors import UserError
from stream.files import write_atomic
from stream.protocol import (
    MASK_PREFIX,
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    STATUS_PREFIX,
    MaskMessage,
    ProtocolError,
    StatusMessage,
    decode,
    mask_topic,
    validate_endpoint,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
_POLL_SLICE = 0.5  # seconds: keep Ctrl+C responsive while waiting forever
# TCP keepalive on the subscriber's connections: a silently dead publisher host is dropped (and redialled)
# after about IDLE + INTERVAL x PROBES = 10 s without traffic
KEEPALIVE_IDLE_S = 4
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_PROBES = 3


@dataclass
class SubscriberStats:
    received: int = 0  # valid masks returned to the caller
    rejected: int = 0  # messages that failed validation
    stale: int = 0  # valid masks older than max_age
    gaps: int = 0  # missing sequence numbers, all cameras
    skipped: int = 0  # valid masks superseded by a newer one in latest()
    status: int = 0  # status messages seen (returned only with include_status)
    duplicates: int = 0  # a mask received again (one daemon reached through two endpoints): dropped
    gaps_by_camera: dict[str, int] = field(default_factory=dict)


class MaskSubscriber:
    """A SUB socket connected to every endpoint; yields validated :class:`MaskMessage`."""

    def __init__(
        self,
        endpoints: Iterable[str] | str = (DEFAULT_ENDPOINT,),
        cameras: Iterable[str] | None = None,
        max_age: float | None = 1.0,
        rcvhwm: int = 4,
        include_status: bool = False,
        context: zmq.Context | None = None,
        curve_client_key: Path | None = None,
        curve_server_key: Path | None = None,
    ) -> None:
        endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if (curve_client_key is None) != (curve_server_key is None):
            raise UserError("CurveZMQ needs both the client's secret key and the server's public key")
        if not endpoints:
            raise UserError("no endpoint to subscribe to: give at least one, e.g. tcp://127.0.0.1:5556")
        for ep in endpoints:
            validate_endpoint(ep, bind=False)
        cams = None if cameras is None else list(cameras)
        try:
            topics = [MASK_PREFIX] if cams is None else [mask_topic(c) for c in cams]
            # Every camera's statuses, always: an `offline` ends its camera's numbering even when the caller does
            # not want statuses, and the heartbeats say which cameras the daemon has (``cameras_seen``).
            topics += [STATUS_PREFIX]
        except ProtocolError as exc:
            raise UserError(str(exc)) from None
        self.endpoints = endpoints
        self.cameras = cams
        self.max_age = max_age if max_age is not None and max_age > 0 else None
        self.include_status = include_status
        self.stats = SubscriberStats()
        self.cameras_seen: dict[str, str] = {}  # camera -> the state of its last status (heartbeats: cameras that are up)
        self._last: dict[str, tuple[int, float]] = {}  # camera -> (seq, t_capture) of its newest mask
        self._renumbered: set[str] = set()  # cameras that went offline: their next mask starts a new numbering
        self._own_context = context is None
        self._ctx = context if context is not None else zmq.Context()
        s = self._ctx.socket(zmq.SUB)
        self._sock = s
        self.closed = False
        try:
            if curve_client_key is not None:
                from stream.security import apply_client

                apply_client(s, Path(curve_client_key), Path(curve_server_key))  # type: ignore[arg-type]
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, max(1, int(rcvhwm)))
            s.setsockopt(zmq.RECONNECT_IVL, 100)
            s.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
            # Dead peers are found by TCP keepalive, not ZMTP heartbeats: with heartbeats, a subscriber whose
            # receive queue stayed full past the timeout was aborted by libzmq on its next recv
            # (zeromq/libzmq#3937, #4767; tests/test_slow_subscriber.py).
            s.setsockopt(zmq.TCP_KEEPALIVE, 1)
            s.setsockopt(zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE_S)
            s.setsockopt(zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE_INTERVAL_S)
            s.setsockopt(zmq.TCP_KEEPALIVE_CNT, KEEPALIVE_PROBES)
            # A peer sending a larger frame is disconnected before we buffer it.
            s.setsockopt(zmq.MAXMSGSIZE, MAX_PAYLOAD_BYTES + MAX_HEADER_BYTES)
            for t in topics:
                s.setsockopt(zmq.SUBSCRIBE, t)
            for ep in endpoints:
                try:
                    s.connect(ep)
                except zmq.ZMQError as exc:
                    raise UserError(f"cannot connect to endpoint {ep!r}: {exc.strerror}") from None
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ receiving

    def _poll(self, timeout: float | None) -> bool:
        """Wait until a message is queued; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            remaining = _POLL_SLICE if deadline is None else min(_POLL_SLICE, deadline - time.monotonic())
            if self._sock.poll(max(0, int(remaining * 1000)), zmq.POLLIN):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _accept(self, parts: list[zmq.Frame]) -> MaskMessage | StatusMessage | None:
        """Decode and filter one raw message; None when it is rejected, stale or unwanted."""
        try:
            msg = decode(parts)
        except ProtocolError as exc:
            self.stats.rejected += 1
            log.debug("rejected message: %s", exc)
            return None
        if isinstance(msg, StatusMessage):
            self.cameras_seen[msg.camera] = msg.state
            if self.cameras is not None and msg.camera not in self.cameras:
                return None  # another camera's: only noted in cameras_seen
            self.stats.status += 1
            if not msg.online:  # the publisher stopped or lost the camera: its next run numbers from 0 again
                self._renumbered.add(msg.camera)
            return msg if self.include_status else None
        if self.cameras is not None and msg.camera not in self.cameras:
            return None  # cannot happen with exact topics; guards against prefix subscriptions
        last = self._last.get(msg.camera)
        if last is not None and msg.seq <= last[0] and msg.t_capture <= last[1]:
            self.stats.duplicates += 1  # not newer in number or time: the same mask through another endpoint
            return None
        if msg.camera in self._renumbered:
            self._renumbered.discard(msg.camera)  # no gap across a restart (the newest-mask test above still holds)
        elif last is not None and msg.seq > last[0] + 1:
            missing = msg.seq - last[0] - 1
            self.stats.gaps += missing
            self.stats.gaps_by_camera[msg.camera] = self.stats.gaps_by_camera.get(msg.camera, 0) + missing
        self._last[msg.camera] = (msg.seq, msg.t_capture)  # a smaller seq, captured later: the publisher restarted
        if self.max_age is not None and msg.age(msg.t_receive) > self.max_age:
            self.stats.stale += 1
            return None
        return msg

    def _recv_one(self, timeout: float | None) -> MaskMessage | StatusMessage | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if not self._sock.poll(0, zmq.POLLIN):
                    return None
            elif not self._poll(remaining):
                return None
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                continue
            msg = self._accept(parts)
            if msg is not None:
                return msg

    def recv(self, timeout: float | None = None) -> MaskMessage | StatusMessage | None:
        """The next valid, fresh mask (or status, with include_status); None after ``timeout`` s."""
        msg = self._recv_one(timeout)
        if isinstance(msg, MaskMessage):
            self.stats.received += 1
        return msg

    def latest(self, timeout: float | None = None) -> MaskMessage | StatusMessage | None:
        """Wait up to ``timeout`` for a message, then drain the queue and return only the newest."""
        newest = self._recv_one(timeout)
        if newest is None:
            return None
        while True:
            msg = self._recv_one(0)
            if msg is None:
                break
            if isinstance(newest, MaskMessage):
                self.stats.skipped += 1
            newest = msg
        if isinstance(newest, MaskMessage):
            self.stats.received += 1
        return newest

    def __iter__(self) -> Iterator[MaskMessage | StatusMessage]:
        while not self.closed:
            msg = self.recv(None)
            if msg is not None:
                yield msg

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._sock.close(linger=0)
        if self._own_context:
            self._ctx.term()

    def __enter__(self) -> MaskSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="sparsecam subscribe",
        description="Print (or save as PNG) the masks a sparsecam daemon publishes.",
    )
    p.add_argument("--endpoint", action="append", metavar="E", help=f"ZeroMQ endpoint to connect to, repeatable (default {DEFAULT_ENDPOINT})")
    p.add_argument("--camera", action="append", metavar="ID", help="only this camera, repeatable (default: all)")
    p.add_argument("--count", type=int, metavar="N", help="exit 0 after N masks")
    p.add_argument("--save", type=Path, metavar="DIR", help="save masks as DIR/<camera>/<capture time UTC>_<seq:08d>.png instead of printing (never overwrites)")
    p.add_argument("--timeout", type=seconds, metavar="S", help="exit 1 when no mask arrives for S seconds (default 10 with --count, else wait forever)")
    p.add_argument("--max-age", type=bounded(0.0, what="a number of seconds >= 0"), default=1.0, metavar="S", help="drop masks captured more than S seconds ago (default 1; 0 keeps all)")
    p.add_argument("--status", action="store_true", help="also print camera online/offline status messages")
    p.add_argument("--client-key", type=Path, metavar="FILE", help="CurveZMQ: this subscriber's secret key file (NAME.key_secret)")
    p.add_argument("--server-key", type=Path, metavar="FILE", help="CurveZMQ: the daemon's public key file (server.key)")
    return p


def saved_name(msg: MaskMessage) -> str:
    """``<capture time, UTC, µs>_<seq:08d>.png``: chronological, and unique across daemon restarts
    (the sequence number starts again at 0 with each daemon run, so it alone overwrote earlier masks)."""
    whole = int(msg.t_capture)
    micros = int(round((msg.t_capture - whole) * 1e6))
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(whole))}.{micros:06d}Z_{msg.seq:08d}.png"


def _save(msg: MaskMessage, root: Path) -> Path:
    import cv2

    folder = root / msg.camera
    name = saved_name(msg)
    path, n = folder / name, 1
    while path.exists():  # never overwrite an earlier save
        path, n = folder / f"{name[:-len('.png')]}-{n}.png", n + 1
    ok, png = cv2.imencode(".png", msg.mask)
    if not ok:
        raise UserError(f"cannot encode the mask of {msg.camera} seq {msg.seq} as PNG")
    try:  # written whole or not at all: cv2.imwrite left empty files on a full disk and said it had written them
        write_atomic(path, png.tobytes())
    except UserError as exc:
        raise UserError(f"{exc}; choose a writable --save folder with free space") from None
    return path


QUIET_HINT_S = 10.0  # without --timeout: after this long with no mask, say what may be wrong (once)


def _who_is_there(sub: MaskSubscriber, wanted: list[str] | None) -> str:
    """What the statuses heard tell about a subscription that gets no mask (a daemon sends heartbeats for
    the cameras that are up, and one 'offline' when a camera goes down)."""
    heard = ", ".join(f"{c} ({state})" for c, state in sorted(sub.cameras_seen.items()))
    if not heard:
        return ("no status from any camera either: is the daemon running, is the endpoint (and CurveZMQ key) right, "
                "or are all its cameras down?")
    missing = sorted(set(wanted or []) - set(sub.cameras_seen))
    if missing:
        return (f"no status from camera {', '.join(missing)}: not one of this daemon's cameras (check --camera), or down "
                f"since before this subscription; heard from {heard}")
    return f"heard from {heard}, but no mask: a camera that is offline says why with --status"


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.count is not None and args.count < 1:
        raise UserError("--count must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UserError("--timeout must be positive")
    timeout = args.timeout if args.timeout is not None else (10.0 if args.count else None)
    endpoints = args.endpoint or [DEFAULT_ENDPOINT]
    if args.save is not None and args.save.exists() and not args.save.is_dir():
        raise UserError(f"--save {args.save} exists and is not a folder")
    got, hinted = 0, False
    with MaskSubscriber(endpoints, cameras=args.camera, max_age=args.max_age, include_status=args.status,
                        curve_client_key=args.client_key, curve_server_key=args.server_key) as sub:
        print(f"subscribed to {', '.join(endpoints)} (cameras: {', '.join(args.camera) if args.camera else 'all'})", file=sys.stderr, flush=True)

        def summary() -> None:
            st = sub.stats
            dup = f", duplicates dropped {st.duplicates}" if st.duplicates else ""
            print(f"received {st.received} masks (rejected {st.rejected}, stale {st.stale}, gaps {st.gaps}{dup})", file=sys.stderr)

        try:
            while args.count is None or got < args.count:
                msg = sub.recv(timeout if timeout is not None else (QUIET_HINT_S if not hinted else None))
                if msg is None and timeout is None:  # waiting for ever: say once why nothing comes, then go on
                    print(f"sparsecam subscribe: no mask yet after {QUIET_HINT_S:g} s; {_who_is_there(sub, args.camera)}; "
                          "still waiting (Ctrl-C to stop)", file=sys.stderr, flush=True)
                    hinted = True
                    continue
                if msg is None:
                    print(
                        f"sparsecam subscribe: no mask for {timeout:g} s from {', '.join(endpoints)} "
                        f"(received {got}, rejected {sub.stats.rejected}, stale {sub.stats.stale}); "
                        f"{_who_is_there(sub, args.camera)}",
                        file=sys.stderr,
                    )
                    return 1
                if isinstance(msg, StatusMessage):
                    extra = " ".join(f"{k}={v}" for k, v in msg.fields.items())
                    print(f"{msg.camera} status={msg.state} {extra}".rstrip(), flush=True)
                    continue
                got += 1
                if args.save is not None:
                    _save(msg, args.save)
                else:
                    print(
                        f"{msg.camera} seq={msg.seq} latency={msg.latency * 1000:.1f}ms "
                        f"fg={msg.fg_ratio:.4f} size={msg.width}x{msg.height} {msg.encoding} {msg.payload_bytes}B "
                        f"model={msg.model_version}",
                        flush=True,
                    )
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what was received so far, then the usual exit 130
            summary()
            raise
        summary()
    return 0
