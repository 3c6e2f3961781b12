"""Publisher and subscriber over real ZeroMQ sockets (tcp on 127.0.0.1 and ipc)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
import zmq

from stream.client import MaskSubscriber
from stream.errors import UserError
from stream.protocol import ENCODINGS, MaskMessage, StatusMessage, encode_mask
from stream.publisher import MaskPublisher
from tests.daemon_helpers import free_port

REPO = Path(__file__).resolve().parent.parent
ANY_TCP = "tcp://127.0.0.1:*"


def _mask(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (5 + (i * 7) % (w - 10), h // 2), 4 + i % 9, 255, -1)
    m[i % h, :] = 255  # a line that differs per i: catches any mix-up
    return m


def _sync(pub: MaskPublisher, sub: MaskSubscriber, camera: str = "sync", timeout: float = 5.0) -> None:
    """Publish until the subscription is live (ZeroMQ's slow joiner), then drain."""
    deadline = time.monotonic() + timeout
    seq = 0
    while time.monotonic() < deadline:
        pub.publish_mask(camera, seq, _mask(0), time.time(), time.time(), "sync")
        if sub.recv(0.05) is not None:
            while sub.recv(0.1) is not None:
                pass
            return
        seq += 1
    raise AssertionError("subscriber never connected")


@pytest.fixture(params=["tcp", "ipc"])
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return ANY_TCP if request.param == "tcp" else f"ipc://{tmp_path}/masks.sock"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_masks_arrive_in_order_bit_exact(endpoint: str, encoding: str) -> None:
    with MaskPublisher([endpoint], encoding=encoding) as pub, MaskSubscriber(pub.endpoints, max_age=None) as sub:
        _sync(pub, sub)
        base = sub.stats.received
        for i in range(20):
            t0 = time.time()
            sent = pub.publish_mask("cam0", i, _mask(i), t0, t0 + 0.001, "model-7")
            assert sent > 0
            msg = sub.recv(2.0)
            assert msg is not None, f"mask {i} lost"
            assert (msg.camera, msg.seq, msg.encoding, msg.model_version) == ("cam0", i, encoding, "model-7")
            np.testing.assert_array_equal(msg.mask, _mask(i))
            assert msg.t_capture == pytest.approx(t0) and 0 <= msg.latency < 1.0
            assert msg.fg_ratio == pytest.approx(np.count_nonzero(_mask(i)) / _mask(i).size, abs=1e-6)
        assert sub.stats.received - base == 20 and sub.stats.rejected == 0 and sub.stats.gaps == 0
        assert pub.stats.sent >= 20


def test_fast_subscriber_loses_nothing_at_a_tiny_hwm() -> None:
    """libzmq updates the PUB pipe's HWM count lazily; the publisher forces it before each send."""
    with MaskPublisher([ANY_TCP], sndhwm=2) as pub, MaskSubscriber(pub.endpoints, max_age=None, rcvhwm=2) as sub:
        _sync(pub, sub)
        small = _mask(3, 8, 16)
        lost = 0
        for i in range(300):
            pub.publish_mask("cam0", i, small, time.time(), time.time())
            msg = sub.recv(1.0)
            lost += msg is None or msg.seq != i
        assert lost == 0 and sub.stats.gaps == 0


def test_camera_filter_is_exact() -> None:
    with MaskPublisher([ANY_TCP], sndhwm=100) as pub, MaskSubscriber(pub.endpoints, cameras=["cam1"], max_age=None, rcvhwm=100) as sub:
        _sync_cam = 0
        deadline = time.monotonic() + 5
        while sub.recv(0.05) is None:  # sync on cam1 itself
            assert time.monotonic() < deadline
            pub.publish_mask("cam1", _sync_cam, _mask(0), time.time(), time.time())
            _sync_cam += 1
        while sub.recv(0.1) is not None:
            pass
        for i in range(5):
            pub.publish_mask("cam10", i, _mask(i), time.time(), time.time())
            pub.publish_mask("cam1", 1000 + i, _mask(i), time.time(), time.time())
        got = []
        deadline = time.monotonic() + 5  # a loaded machine may pause longer than one recv timeout
        while sum(c == "cam1" for c, _ in got) < 5 and time.monotonic() < deadline:
            if (msg := sub.recv(0.2)) is not None:
                got.append((msg.camera, msg.seq))
        while (msg := sub.recv(0.3)) is not None:  # a leaked cam10 message would arrive by now
            got.append((msg.camera, msg.seq))
        assert got == [("cam1", 1000 + i) for i in range(5)]


def test_status_online_and_offline_on_close() -> None:
    pub = MaskPublisher([ANY_TCP])
    with MaskSubscriber(pub.endpoints, cameras=["cam1"], include_status=True, max_age=None) as sub:
        deadline = time.monotonic() + 5
        msg = None
        while msg is None:
            assert time.monotonic() < deadline
            pub.publish_status("cam1", "online", fps=12.5, model_version="m3")
            msg = sub.recv(0.05)
        assert isinstance(msg, StatusMessage) and msg.state == "online" and msg.fields["fps"] == 12.5
        while sub.recv(0.1) is not None:
            pass
        assert pub.maybe_heartbeat(["cam1"], now=100.0) and not pub.maybe_heartbeat(["cam1"], now=101.0)
        assert pub.maybe_heartbeat(["cam1"], now=106.0)
        beats = [sub.recv(1.0), sub.recv(1.0)]
        assert [b.state for b in beats] == ["online", "online"]  # type: ignore[union-attr]
        pub.publish_mask("cam1", 0, _mask(0), time.time(), time.time())
        assert sub.recv(1.0).seq == 0  # type: ignore[union-attr]
        pub.close(reason="test over")  # "offline" for every camera it published
        off = sub.recv(2.0)
        assert isinstance(off, StatusMessage) and off.state == "offline" and off.fields == {"reason": "test over"}
        assert pub.closed


def test_latest_returns_newest_and_counts_skipped() -> None:
    with MaskPublisher([ANY_TCP], sndhwm=100) as pub, MaskSubscriber(pub.endpoints, max_age=None, rcvhwm=100) as sub:
        _sync(pub, sub)
        for i in range(1, 6):
            pub.publish_mask("cam0", i, _mask(i), time.time(), time.time())
        time.sleep(1.0)  # all five queued here (well under a millisecond unloaded)
        msg = sub.latest(1.0)
        assert msg is not None and msg.seq == 5
        np.testing.assert_array_equal(msg.mask, _mask(5))
        assert sub.stats.skipped == 4
        assert sub.latest(0.1) is None


def test_stale_masks_dropped_and_gaps_counted() -> None:
    with MaskPublisher([ANY_TCP]) as pub, MaskSubscriber(pub.endpoints, max_age=3.0) as sub:  # no fresh mask stale on a stall
        _sync(pub, sub)
        now = time.time()
        pub.publish_mask("old", 0, _mask(0), now - 10.0, now - 9.9)
        pub.publish_mask("old", 1, _mask(1), time.time(), time.time())
        msg = sub.recv(1.0)
        assert msg is not None and msg.seq == 1 and sub.stats.stale == 1
        received = []
        for seq in [0, 1, 2, 5, 6, 10]:
            pub.publish_mask("gapcam", seq, _mask(seq), time.time(), time.time())
            got = sub.recv(1.0)
            assert got is not None
            received.append(got.seq)
        assert received == [0, 1, 2, 5, 6, 10]
        assert sub.stats.gaps_by_camera == {"gapcam": 2 + 3} and sub.stats.gaps == 5


def test_a_restart_after_offline_is_no_gap_and_a_second_endpoint_no_duplicate(tmp_path: Path) -> None:
    """A restarted daemon numbers from 0: its first mask above the old run's last was counted as a
    gap. One daemon reached through tcp and ipc delivered every mask twice."""
    with MaskPublisher([ANY_TCP, f"ipc://{tmp_path}/masks.ipc"], sndhwm=1000) as pub, \
            MaskSubscriber(pub.endpoints, max_age=None, include_status=True, rcvhwm=1000) as sub:
        _sync(pub, sub)
        time.sleep(1.0)  # the second endpoint's connection too
        while sub.recv(0.3) is not None:  # _sync's own masks, from both endpoints
            pass
        sub.stats.received = sub.stats.duplicates = 0
        seqs = []
        for run, numbers in enumerate(([3, 4, 5, 6], [9, 10, 11])):  # the second run's first mask reached: 9
            for seq in numbers:
                pub.publish_mask("cam0", seq, _mask(seq), time.time(), time.time())
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and (not seqs or seqs[-1] != numbers[-1]):
                msg = sub.recv(0.2)
                if msg is not None and hasattr(msg, "seq"):
                    seqs.append(msg.seq)
            while sub.recv(0.3) is not None:  # the copies through the other endpoint: dropped as duplicates
                pass
            if run == 0:
                pub.publish_status("cam0", "offline", reason="stopped")
                assert sub.recv(2.0).state == "offline"  # type: ignore[union-attr]
                while sub.recv(0.3) is not None:  # its copy through the other endpoint
                    pass
        time.sleep(0.3)
        while sub.recv(0.1) is not None:
            pass
    assert seqs == [3, 4, 5, 6, 9, 10, 11], seqs  # each once, though both endpoints delivered it
    assert sub.stats.gaps == 0 and sub.stats.duplicates >= 1, sub.stats


def test_offline_ends_the_numbering_without_include_status() -> None:
    """The default subscriber (and `sparsecam subscribe` without --status) never saw the offline
    status, so a restarted daemon's first mask counted as a gap."""
    with MaskPublisher([ANY_TCP]) as pub, MaskSubscriber(pub.endpoints, cameras=["cam0"], max_age=None) as sub:
        _sync(pub, sub, camera="cam0")
        for seq in (40, 41):
            pub.publish_mask("cam0", seq, _mask(seq), time.time(), time.time())
            assert sub.recv(2.0).seq == seq  # type: ignore[union-attr]
        sub.stats.gaps = 0  # from _sync's numbers to 40
        pub.publish_status("cam0", "offline", reason="stopped")
        pub.publish_mask("cam0", 45, _mask(45), time.time(), time.time())  # the next run, already at 45
        msg = sub.recv(2.0)
    assert isinstance(msg, MaskMessage) and msg.seq == 45  # the status itself is not returned
    assert sub.stats.status == 1 and sub.stats.gaps == 0, sub.stats


def test_garbage_publisher_does_not_crash_subscriber() -> None:
    ctx = zmq.Context.instance()
    junk = ctx.socket(zmq.PUB)
    junk.setsockopt(zmq.LINGER, 0)
    port = junk.bind_to_random_port("tcp://127.0.0.1")
    good_header = bytes(encode_mask("cam0", 1, _mask(1), t_capture=time.time(), t_inference_done=time.time())[1])
    garbage = [
        [b"mask/cam0/"],
        [b"mask/cam0/", b"{", b""],
        [b"mask/cam0/", b"[]", b"x"],
        [b"mask/cam0/", good_header, zlib.compress(b"\xff" * 10_000_000, 9)],  # bomb
        [b"mask/cam0/", good_header, b"\0" * 3],
        [b"mask/cam0/", b"\xff\xfe\xfd", b"x", b"y", b"z"],
        [b"mask/cam0/", b'{"v":1,"camera":"cam9"}', b""],
        [b"mask/cam0/x", b"{}", b""],
    ]
    try:
        with MaskPublisher([ANY_TCP]) as pub, MaskSubscriber(
            [pub.endpoints[0], f"tcp://127.0.0.1:{port}"], max_age=None, rcvhwm=100
        ) as sub:
            _sync(pub, sub, camera="cam0")
            deadline = time.monotonic() + 5
            while sub.stats.rejected < len(garbage):  # junk subscription may lag the good one
                assert time.monotonic() < deadline, f"only {sub.stats.rejected} rejected"
                for parts in garbage:
                    junk.send_multipart(parts)
                while sub.recv(0.05) is not None:
                    pass
            for i in range(100, 105):
                junk.send_multipart(garbage[i % len(garbage)])
                pub.publish_mask("cam0", i, _mask(i), time.time(), time.time())
                msg = sub.recv(2.0)
                assert msg is not None and msg.seq == i
                np.testing.assert_array_equal(msg.mask, _mask(i))
            assert sub.stats.rejected >= len(garbage)
    finally:
        junk.close()


def test_slow_subscriber_never_blocks_publisher() -> None:
    big = (np.random.default_rng(0).random((240, 320)) > 0.5).astype(np.uint8)
    with MaskPublisher([ANY_TCP]) as pub, MaskSubscriber(pub.endpoints, max_age=None) as sub:
        _sync(pub, sub)
        t0 = time.perf_counter()
        for i in range(2000):
            pub.publish_mask("cam0", i, big, time.time(), time.time())
        elapsed = time.perf_counter() - t0
        assert elapsed < 10.0, f"publisher took {elapsed:.1f}s for 2000 masks"
        time.sleep(0.2)
        got = []
        while (msg := sub.recv(0.2)) is not None:
            got.append(msg.seq)
        assert 0 < len(got) < 2000  # the queues are bounded: most masks were dropped
        assert got == sorted(got)
        # The subscriber accounts for exactly the masks it missed. Those dropped after the last one it
        # received only show once a later one arrives (which ones ZeroMQ drops depends on timing).
        pub.publish_mask("cam0", 2000, big, time.time(), time.time())
        last = sub.recv(2.0)
        assert last is not None and last.seq == 2000
        got.append(last.seq)
        missed = (got[-1] - got[0] + 1) - len(got)
        assert missed > 0 and sub.stats.gaps_by_camera.get("cam0", 0) == missed


def test_bind_errors_are_user_errors() -> None:
    with MaskPublisher([ANY_TCP]) as pub:
        with pytest.raises(UserError, match=pub.endpoints[0].replace(".", r"\.")):
            MaskPublisher(pub.endpoints)
    with pytest.raises(UserError, match="scheme"):
        MaskPublisher(["foo://x"])
    with pytest.raises(UserError, match="encoding"):
        MaskPublisher([ANY_TCP], encoding="gif")


def test_subscriber_rejects_bad_arguments() -> None:
    with pytest.raises(UserError, match="cannot resolve"):
        MaskSubscriber(["tcp://no-such-host.invalid:5556"])
    with pytest.raises(UserError, match="camera"):
        MaskSubscriber(["tcp://127.0.0.1:5556"], cameras=["bad/cam"])


def test_subscriber_iterates_and_times_out() -> None:
    with MaskPublisher([ANY_TCP]) as pub, MaskSubscriber(pub.endpoints, max_age=None) as sub:
        _sync(pub, sub)
        for i in range(3):
            pub.publish_mask("cam0", i, _mask(i), time.time(), time.time())
        seqs = []
        for msg in sub:
            seqs.append(msg.seq)
            if len(seqs) == 3:
                break
        assert seqs == [0, 1, 2]
        t0 = time.monotonic()
        assert sub.recv(0.2) is None
        assert 0.15 < time.monotonic() - t0 < 1.0


# ------------------------------------------------------------------ the CLI in a subprocess


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", "subscribe", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@contextlib.contextmanager
def publishing(cameras: tuple[str, ...] = ("cam0",)) -> Iterator[MaskPublisher]:
    """A publisher sending a mask of each camera every 20 ms from a thread, until the block ends."""
    stop = threading.Event()
    with MaskPublisher([ANY_TCP], heartbeat_interval=0.5) as pub:

        def publish() -> None:
            i = 0
            while not stop.is_set():
                for cam in cameras:
                    pub.publish_mask(cam, i, _mask(i), time.time(), time.time(), "m1")
                pub.maybe_heartbeat(cameras)  # as the daemon does: who is there
                i += 1
                time.sleep(0.02)

        th = threading.Thread(target=publish, daemon=True)
        th.start()
        try:
            yield pub
        finally:
            stop.set()
            th.join()


def test_cli_says_which_cameras_there_are_when_the_one_asked_for_is_not(tmp_path: Path) -> None:
    """A misspelt --camera waited 10 s and asked 'is the daemon running and the endpoint/camera right?';
    without --count it waited for ever without a word."""
    with publishing(("cam0", "cam10")) as pub:
        res = _run_cli("--endpoint", pub.endpoints[0], "--camera", "cam1", "--count", "3", "--timeout", "2")
        assert res.returncode == 1 and "no status from camera cam1: not one of this daemon's cameras (check --camera)" in res.stderr
        assert "heard from cam0 (online), cam10 (online)" in res.stderr, res.stderr
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "subscribe", "--endpoint", pub.endpoints[0], "--camera", "cam1"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:  # 'subscribed to ...', then the hint after 10 s; a reader thread, so that a regression fails, not hangs
            lines: list[str] = []
            reader = threading.Thread(target=lambda: lines.extend(proc.stderr.readline() for _ in range(2)), daemon=True)
            reader.start()
            reader.join(40)
        finally:
            proc.kill()
            proc.communicate()
    assert len(lines) == 2 and "no mask yet after 10 s; no status from camera cam1" in lines[1] and "still waiting" in lines[1], lines
    nobody = _run_cli("--endpoint", f"tcp://127.0.0.1:{free_port()}", "--count", "1", "--timeout", "1")
    assert nobody.returncode == 1 and "no status from any camera either: is the daemon running" in nobody.stderr, nobody.stderr


def test_cli_prints_count_masks_and_exits_0(tmp_path: Path) -> None:
    with publishing(("cam0", "cam10")) as pub:
        res = _run_cli("--endpoint", pub.endpoints[0], "--camera", "cam0", "--count", "5", "--timeout", "20")
        saved = _run_cli("--endpoint", pub.endpoints[0], "--count", "3", "--save", str(tmp_path / "out"), "--camera", "cam10")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 5
    seqs = [int(line.split()[1].removeprefix("seq=")) for line in lines]
    assert all(line.startswith("cam0 seq=") and "latency=" in line and "size=64x48" in line for line in lines)
    assert all(line.endswith(" model=m1") for line in lines)  # which model made the mask (a swap shows)
    assert seqs == sorted(seqs)
    assert saved.returncode == 0, saved.stderr
    pngs = sorted((tmp_path / "out" / "cam10").glob("*.png"))
    assert len(pngs) == 3
    seq = int(pngs[0].stem.split("_")[-1])
    np.testing.assert_array_equal(cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED), _mask(seq))


def test_a_full_disk_under_save_is_one_line_and_leaves_no_empty_png(tmp_path: Path, monkeypatch) -> None:
    """cv2.imwrite reported success for PNGs it could not write on a full disk: 384 of 400 saved files were
    empty and `subscribe --save` exited 0."""
    import errno
    import os

    from stream.client import _save
    from stream.protocol import MaskMessage

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    msg = MaskMessage("cam0", 7, 1_764_400_000.0, 1_764_400_000.0, 1_764_400_000.0, 64, 48, "png", "m1", 0.1, _mask(7))
    with pytest.raises(UserError, match="No space left on device; choose a writable --save folder"):
        _save(msg, tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no empty or partial file


def test_saved_masks_are_never_overwritten_by_a_restarted_daemon(tmp_path: Path) -> None:
    """A daemon numbers its masks from 0 at each start: the same seq on a later run gets its own file."""
    from stream.client import _save
    from stream.protocol import MaskMessage

    def msg(t: float, value: int) -> MaskMessage:
        return MaskMessage("cam0", 31, t, t, t, 64, 48, "png", "m1", 0.1, np.full((48, 64), value, np.uint8))

    first = _save(msg(1_764_400_000.25, 0), tmp_path)
    second = _save(msg(1_764_400_900.5, 255), tmp_path)  # the next daemon run, same seq
    again = _save(msg(1_764_400_900.5, 255), tmp_path)  # even the same capture time
    assert first.name == "20251129T070640.250000Z_00000031.png" and len({first, second, again}) == 3
    assert cv2.imread(str(first), cv2.IMREAD_UNCHANGED).max() == 0 and cv2.imread(str(second), cv2.IMREAD_UNCHANGED).min() == 255


def test_cli_status_prints_online_status_beside_the_masks() -> None:
    """`subscribe --status` prints each camera's status messages too; they do not count toward --count."""
    with publishing(("cam0",)) as pub:
        stop_status = threading.Event()

        def heartbeat() -> None:
            while not stop_status.is_set():
                pub.publish_status("cam0", "online", model_version="m1")
                time.sleep(0.05)

        th = threading.Thread(target=heartbeat, daemon=True)
        th.start()
        try:
            res = _run_cli("--endpoint", pub.endpoints[0], "--count", "20", "--status", "--timeout", "20")
            plain = _run_cli("--endpoint", pub.endpoints[0], "--count", "20", "--timeout", "20")
        finally:
            stop_status.set()
            th.join()
    assert res.returncode == 0 and plain.returncode == 0, res.stderr + plain.stderr
    lines = res.stdout.splitlines()
    assert "cam0 status=online model_version=m1" in lines
    assert sum(line.startswith("cam0 seq=") for line in lines) == 20  # status lines come on top of the 20 masks
    assert not any("status=" in line for line in plain.stdout.splitlines())


def test_cli_bad_endpoint_exits_2_and_silence_exits_1() -> None:
    for bad in ["foo://x", "tcp://no-such-host.invalid:5556", "tcp://127.0.0.1:notaport"]:
        res = _run_cli("--endpoint", bad, "--count", "1")
        assert res.returncode == 2, (bad, res.stderr)
        assert "error" in res.stderr and "Traceback" not in res.stderr
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.PUB)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    s.close(linger=0)  # a port nobody publishes on
    res = _run_cli("--endpoint", f"tcp://127.0.0.1:{port}", "--count", "1", "--timeout", "0.5")
    assert res.returncode == 1 and "no mask" in res.stderr


def test_ipc_socket_file_removed_on_close_unless_rebound(tmp_path: Path) -> None:
    """libzmq leaves a bound ipc:// file behind; the publisher removes its own, never another process's."""
    mine = tmp_path / "mine.sock"
    pub = MaskPublisher([f"ipc://{mine}"])
    assert mine.exists()
    pub.close()
    assert not mine.exists()

    theirs = tmp_path / "theirs.sock"
    pub = MaskPublisher([f"ipc://{theirs}"])
    theirs.unlink()  # another process replaced the socket file at the same path
    theirs.write_bytes(b"")
    pub.close()
    assert theirs.exists()


def test_ipc_socket_is_connectable_by_the_group_the_umask_shares_it_with(tmp_path: Path) -> None:
    """Under systemd's UMask=0027 the socket was 0750: group members could read but not connect (connect
    needs write). Group-readable now means group-writable; a umask that hides it from the group still does."""
    import stat

    for umask, expected in ((0o027, 0o770), (0o077, 0o700)):
        old = os.umask(umask)
        try:
            path = tmp_path / f"u{umask:o}.sock"
            pub = MaskPublisher([f"ipc://{path}"])
        finally:
            os.umask(old)
        try:
            assert stat.S_IMODE(path.stat().st_mode) == expected, oct(path.stat().st_mode)
        finally:
            pub.close()


def test_an_ipc_path_in_use_or_not_a_socket_is_refused(tmp_path: Path) -> None:
    """Binding ipc:// unlinks the path: a typo deleted the file there, and a second daemon on the same path
    took it over, leaving the first one serving nobody while it reported ready."""
    import socket

    notes = tmp_path / "notes.txt"
    notes.write_text("important")
    with pytest.raises(UserError, match="exists and is not a socket"):
        MaskPublisher([f"ipc://{notes}"])
    assert notes.read_text() == "important"

    path = tmp_path / "a.sock"
    with MaskPublisher([f"ipc://{path}"]) as first:
        with pytest.raises(UserError, match="another process serves on it"):
            MaskPublisher([f"ipc://{path}"])
        with MaskSubscriber(first.endpoints, max_age=None) as sub:
            _sync(first, sub)  # the first one is still reachable

    stale = tmp_path / "stale.sock"  # left by a process that is gone: nobody accepts on it
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))
    with MaskPublisher([f"ipc://{stale}"]) as pub, MaskSubscriber(pub.endpoints, max_age=None) as sub:
        _sync(pub, sub)


def test_cli_interrupted_still_says_what_it_received() -> None:
    """Ctrl-C (or SIGTERM) printed only 'interrupted': the received/gaps summary of --count was lost."""
    import signal

    with publishing() as pub:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "subscribe", "--endpoint", pub.endpoints[0]],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().startswith("cam0 seq=")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130 and "interrupted" in err, err[-2000:]
    assert re.search(r"received [1-9]\d* masks \(rejected 0, stale \d+, gaps \d+", err), err[-2000:]
