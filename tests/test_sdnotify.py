"""sd_notify: real AF_UNIX datagram sockets (path and abstract), no-op without systemd, watchdog parsing."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

import pytest

from stream.sdnotify import Notifier


def _recv_all(sock: socket.socket) -> list[str]:
    sock.settimeout(1.0)
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            return out
        sock.settimeout(0.05)


@pytest.fixture
def path_socket(tmp_path: Path):
    path = tmp_path / "notify.sock"
    if len(str(path)) >= 100:  # sun_path is 108 bytes
        pytest.skip(f"tmp_path too long for an AF_UNIX socket: {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield str(path), sock
    sock.close()


def test_messages_arrive_exactly(path_socket):
    path, server = path_socket
    with Notifier({"NOTIFY_SOCKET": path}) as n:
        assert n.enabled
        assert n.ready("serving 2 cameras")
        assert n.status("cam0 12.0 fps")
        assert n.watchdog()
        assert n.stopping()
    assert _recv_all(server) == [
        "READY=1\nSTATUS=serving 2 cameras",
        "STATUS=cam0 12.0 fps",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_reads_os_environ_by_default(path_socket, monkeypatch):
    path, server = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    n.watchdog()
    n.close()
    assert _recv_all(server) == ["WATCHDOG=1"]


def test_abstract_namespace_socket():
    name = f"sparsecam-test-{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(b"\0" + name.encode())
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        n.close()
        assert _recv_all(server) == ["READY=1\nSTATUS=serving"]
    finally:
        server.close()


def test_unset_variable_is_a_noop():
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.stopping() is False
    assert n._sock is None  # no socket was even created
    assert Notifier({"NOTIFY_SOCKET": ""}).enabled is False


def test_send_errors_never_raise_and_log_once(tmp_path: Path, caplog):
    missing = str(tmp_path / "nobody-listens.sock")
    n = Notifier({"NOTIFY_SOCKET": missing})
    with caplog.at_level(logging.WARNING, logger="sparsecam.sdnotify"):
        results = [n.watchdog() for _ in range(5)]
    n.close()
    assert results == [False] * 5
    warnings = [r for r in caplog.records if r.name == "sparsecam.sdnotify"]
    assert len(warnings) == 1 and missing in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 10.0),
        ({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": str(os.getpid())}, 2.5),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # meant for another process
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env, expected):
    assert Notifier(env).watchdog_interval() == expected
