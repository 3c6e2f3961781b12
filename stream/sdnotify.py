"""systemd ``sd_notify`` over ``$NOTIFY_SOCKET`` (stdlib only; a no-op outside systemd).

Used with ``Type=notify`` + ``WatchdogSec=`` units (see deploy/systemd/sparsecam.service):
the daemon calls ``ready()`` once its sockets are bound and its cameras started, ``watchdog()``
at half of ``watchdog_interval()`` while its main loop turns, and ``stopping()`` on shutdown. Send errors are
logged once and never raised: a broken notify socket must not stop the cameras.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger("sparsecam.sdnotify")


def _socket_address(value: str) -> str | bytes:
    """'@name' is a Linux abstract socket (leading NUL byte); anything else is a path."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends ``KEY=VALUE`` datagrams to the service manager; does nothing when not under one."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env
        addr = self._env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = _socket_address(addr) if addr else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    # -- the messages ------------------------------------------------------------------
    def ready(self, status: str = "serving") -> bool:
        return self.notify(f"READY=1\nSTATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(f"STOPPING=1\nSTATUS={status}")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def notify(self, message: str) -> bool:
        """Send one datagram; True when sent, False when disabled or the send failed."""
        if self.address is None:
            return False
        try:
            with self._lock:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message.encode(), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify to %r failed (%s); further failures are not logged", self._env.get("NOTIFY_SOCKET"), exc)
            return False

    # -- the watchdog ------------------------------------------------------------------
    def watchdog_interval(self) -> float | None:
        """``WatchdogSec`` in seconds from ``$WATCHDOG_USEC``; None when unset, invalid or for another PID.

        Ping at half this interval (systemd's advice), while the daemon's main loop turns.
        """
        raw = self._env.get("WATCHDOG_USEC")
        if not raw:
            return None
        pid = self._env.get("WATCHDOG_PID")
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(raw)
        except ValueError:
            return None
        return usec / 1_000_000 if usec > 0 else None

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
