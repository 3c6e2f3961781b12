"""Capture sources and the per-camera capture thread, on real files and the synthetic scene."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.capture import CameraThread, stop_all
from stream.sources import (
    DeviceSource,
    FolderSource,
    Source,
    SourceGone,
    StreamSource,
    SyntheticSource,
    VideoFileSource,
    make_source,
    redact,
)
from stream.errors import UserError

W, H = 64, 48


def _level(img: np.ndarray) -> int:
    """The frame number written into a test frame (its grey level / 8)."""
    return int(round(float(img.mean()) / 8))


def _write_video(path: Path, n: int, fps: float = 25.0) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert vw.isOpened()
    for i in range(n):
        vw.write(np.full((H, W, 3), i * 8, np.uint8))
    vw.release()
    return path


def _write_folder(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):  # unpadded names: natural order must put 2 before 10
        cv2.imwrite(str(folder / f"{i}.png"), np.full((H, W, 3), i * 8, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


# ------------------------------------------------------------------ sources


def test_synthetic_source_matches_scene_and_paces() -> None:
    from stream.synthetic import SceneConfig, SyntheticScene

    src = make_source(f"synthetic:seed=3,size={W}x{H},frames=5")
    assert isinstance(src, SyntheticSource) and not src.live and src.cfg.seed == 3
    scene = SyntheticScene(SceneConfig(width=W, height=H, seed=3))
    with src:
        frames = [src.read() for _ in range(6)]
    assert frames[5] is None and src.ended
    for i in range(5):
        np.testing.assert_array_equal(frames[i], scene.frame(i)[0])
    np.testing.assert_array_equal(src.last_gt, scene.frame(4)[1])

    paced = make_source("synthetic:seed=3", size=(W, H), fps=40)
    assert paced.live and paced.fps == 40
    with paced:
        t0 = time.perf_counter()
        for _ in range(11):
            assert paced.read().shape == (H, W, 3)
        elapsed = time.perf_counter() - t0
    assert 0.22 <= elapsed < 1.2, elapsed  # 10 periods of 25 ms (unpaced: ~0 s; the bound above is slack for a loaded runner)

    slow = make_source("synthetic:seed=3", size=(W, H), fps=0.8)  # a period over a second is not a clock jump
    with slow:
        t0 = time.perf_counter()
        for _ in range(3):
            slow.read()
        elapsed = time.perf_counter() - t0
    assert 2.3 <= elapsed < 5.0, elapsed  # 2 periods of 1.25 s (it ran unpaced: ~0 s)


def test_video_file_read_in_order_and_looped(tmp_path: Path) -> None:
    path = _write_video(tmp_path / "clip.avi", 20, fps=12.0)
    src = make_source(str(path))
    assert isinstance(src, VideoFileSource) and not src.live
    with src:
        assert src.fps == pytest.approx(12.0)
        levels = []
        while (img := src.read()) is not None:
            assert img.shape == (H, W, 3) and img.dtype == np.uint8
            levels.append(_level(img))
    assert levels == list(range(20))
    looped = make_source(str(path), loop=True)
    with looped:
        levels = [_level(looped.read()) for _ in range(45)]
    assert levels == [i % 20 for i in range(45)]


def test_folder_natural_order_and_bad_images(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "imgs", 12)
    (folder / "5b.png").write_bytes(b"not a png")  # unreadable: skipped with a warning
    src = make_source(str(folder))
    assert isinstance(src, FolderSource)
    with src:
        levels = []
        while (img := src.read()) is not None:
            levels.append(_level(img))
    assert levels == list(range(12)) and src.skipped == 1
    single = make_source(str(folder / "3.png"), loop=True)
    with single:
        assert [_level(single.read()) for _ in range(3)] == [3, 3, 3]


def test_make_source_kinds_and_errors(tmp_path: Path) -> None:
    assert isinstance(make_source("0"), DeviceSource) and make_source(1).live
    assert isinstance(make_source("/dev/video7"), DeviceSource)
    url = make_source("rtsp://admin:s3cret@10.0.0.5:554/stream1")
    assert isinstance(url, StreamSource) and url.live and "s3cret" not in url.name and "admin" not in url.name
    (tmp_path / "empty").mkdir()
    cases = [
        ("", "empty source"),
        ("ftp://host/x", "unsupported URL scheme"),
        (str(tmp_path / "missing.avi"), "not found"),
        ("synthetic:seed", "key=value"),
        ("synthetic:seed=abc", "not a number"),
        ("synthetic:size=big", "WIDTHxHEIGHT"),
        ("synthetic:bogus=1", "bogus"),
        ("synthetic:size=8x8", "too small"),
    ]
    for spec, match in cases:
        with pytest.raises(UserError, match=match):
            make_source(spec)
    with pytest.raises(UserError, match="no images"):
        make_source(str(tmp_path / "empty")).open()
    (tmp_path / "fake.avi").write_bytes(b"\0" * 100)
    with pytest.raises(UserError, match="cannot read video"):
        make_source(str(tmp_path / "fake.avi")).open()


def test_redact() -> None:
    assert redact("rtsp://user:pa55@cam.local:554/live") == "rtsp://***@cam.local:554/live"
    assert "p@ss/word" not in redact("rtsp://user:p@ss/word@cam/live")
    assert redact("http://cam/video?user=bob&password=hunter2&res=hd") == "http://cam/video?user=***&password=***&res=hd"
    assert redact("rtsp://cam.local/live") == "rtsp://cam.local/live"
    assert redact("/data/clip.avi") == "/data/clip.avi"
    assert redact(3) == "3"


def test_live_open_failure_is_retried_and_never_logs_credentials(caplog: pytest.LogCaptureFixture) -> None:
    src = make_source("rtsp://admin:topsecret@127.0.0.1:1/none")
    src.OPEN_TIMEOUT_MS = 1000  # type: ignore[misc]
    caplog.set_level(logging.DEBUG)
    cam = CameraThread("door", src, reopen_delay=0.05, max_reopen_delay=0.1)
    t0 = time.perf_counter()
    cam.start()  # a live camera that is not there yet does not stop the caller
    assert time.perf_counter() - t0 < 0.5
    try:
        deadline = time.monotonic() + 5
        while cam.reopens < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cam.running and not cam.finished and cam.reopens >= 2 and cam.get(timeout=0) is None
    finally:
        cam.stop()
    assert cam.last_error is not None and "***@127.0.0.1" in cam.last_error and "topsecret" not in cam.last_error
    assert "topsecret" not in caplog.text and "cannot open" in caplog.text


def test_missing_file_or_folder_raises_at_start(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "imgs", 2)
    video = _write_video(tmp_path / "clip.avi", 3)
    sources = [make_source(str(folder), loop=True), make_source(str(video), loop=True)]
    folder.rename(tmp_path / "moved")  # a user mistake at start: wrong path
    video.unlink()
    for src in sources:
        cam = CameraThread("c", src)
        with pytest.raises(UserError, match="does not exist"):
            cam.start()
        assert not cam.running


# ------------------------------------------------------------------ capture thread


def test_file_thread_drops_nothing_with_a_slow_consumer(tmp_path: Path) -> None:
    path = _write_video(tmp_path / "clip.avi", 25)
    cam = CameraThread("cam0", make_source(str(path)), size=(32, 24)).start()
    try:
        assert not cam.latest_only
        frames = []
        while (f := cam.get(timeout=2.0)) is not None:
            frames.append(f)
            if len(frames) < 5:
                time.sleep(0.05)  # the reader must wait, not drop
    finally:
        cam.stop()
    assert [f.seq for f in frames] == list(range(25))
    assert [_level(f.image) for f in frames] == list(range(25))
    assert all(f.image.shape == (24, 32, 3) and f.camera == "cam0" for f in frames)
    assert cam.finished and cam.dropped == 0 and cam.captured == 25 and cam.read_errors == 0
    t = [f.t_capture for f in frames]
    assert t == sorted(t) and abs(t[-1] - time.time()) < 10


def test_folder_thread_looping_and_on_frame(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "imgs", 4)
    got = []
    cam = CameraThread("c", make_source(str(folder), loop=True), on_frame=got.append).start()
    deadline = time.monotonic() + 5
    while len(got) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    cam.stop()
    assert [_level(f.image) for f in got[:10]] == [i % 4 for i in range(10)]
    assert not cam.running


def test_live_source_keeps_only_latest_frame() -> None:
    src = make_source(f"synthetic:size={W}x{H},fps=100")
    cam = CameraThread("live", src).start()
    try:
        assert cam.latest_only
        got = []
        for _ in range(5):
            time.sleep(0.06)  # slow consumer: ~6 frames arrive per get
            f = cam.get(timeout=1.0)
            assert f is not None
            got.append(f)
    finally:
        cam.stop()
    seqs = [f.seq for f in got]
    assert seqs == sorted(seqs) and seqs[-1] - seqs[0] > len(seqs)  # skipped frames in between
    assert cam.dropped > 0 and cam.captured >= cam.dropped + len(got)
    assert time.time() - got[-1].t_capture < 1.0


def test_paced_file_behaves_like_live(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "imgs", 12)
    cam = CameraThread("f", make_source(str(folder), fps=50, loop=True), pace=True).start()
    try:
        assert cam.latest_only
        time.sleep(0.3)
        f = cam.get(timeout=1.0)
    finally:
        cam.stop()
    assert f is not None and f.seq >= 5 and cam.dropped >= 5
    assert 8 <= cam.captured <= 60  # about 50 fps for 0.3 s (unpaced: thousands); slack for a loaded runner


def test_stop_is_fast() -> None:
    slow = CameraThread("s", make_source(f"synthetic:size={W}x{H},fps=0.2")).start()
    blocked = CameraThread("b", make_source(f"synthetic:size={W}x{H}")).start()  # lossless, never read
    time.sleep(0.2)
    for cam in (slow, blocked):
        t0 = time.perf_counter()
        cam.stop()
        assert time.perf_counter() - t0 < 2.0 and not cam.running  # a 5 s period or a blocked reader: not waited out
    assert blocked.captured <= 2  # the lossless reader waited for the consumer


class _FlakyCamera(Source):
    """A live source whose reads fail for a while, like an unplugged camera."""

    live = True

    def __init__(self, fail_reads: int) -> None:
        super().__init__()
        self.fail_reads, self.opens, self.name = fail_reads, 0, "rtsp://u:hidden@cam/x"

    def open(self) -> None:
        self.opens += 1

    def read(self) -> np.ndarray | None:
        time.sleep(0.002)
        if self.fail_reads > 0:
            self.fail_reads -= 1
            return None
        return np.zeros((H, W, 3), np.uint8)


def test_live_read_errors_are_counted_and_source_reopened(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    src = _FlakyCamera(fail_reads=6)
    cam = CameraThread("flaky", src, reopen_delay=0.05, errors_before_reopen=5).start()
    try:
        f = cam.get(timeout=3.0)
    finally:
        cam.stop()
    assert f is not None and cam.read_errors == 6 and src.opens == 2 and cam.reopens == 1
    assert "hidden" not in caplog.text and "reopen" in caplog.text


class _Scripted(Source):
    """A source that returns a fixed list of frames (or raises what the list holds)."""

    def __init__(self, items: list, live: bool) -> None:
        super().__init__()
        self.items, self.live, self.name = list(items), live, "scripted"

    def read(self) -> np.ndarray | None:
        if not self.items:
            if self.live:
                self.cancel.wait(0.01)
                return np.full((H, W, 3), 255, np.uint8)
            return None
        item = self.items.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


BAD_FRAMES = [
    None,
    np.zeros((0, W, 3), np.uint8),
    np.zeros((H, W), np.uint8),
    np.zeros((H, W, 3), np.float32),
    np.zeros((H, W, 3, 1), np.uint8),
    np.zeros((H, W, 4), np.uint8),
    "not an array",
    ValueError("decoder hiccup"),
]


@pytest.mark.parametrize("live", [True, False])
def test_bad_frames_are_dropped_and_counted(live: bool) -> None:
    good = [np.full((H, W, 3), i * 8, np.uint8) for i in range(1, 4)]
    items = [good[0], *BAD_FRAMES[(0 if live else 1):], good[1], good[2]]  # None ends a file: not a bad frame there
    n_bad = len(items) - 3
    got: list = []
    cam = CameraThread("c", _Scripted(items, live), errors_before_reopen=100, on_frame=got.append).start()
    try:
        assert _wait(lambda: len(got) >= 3 and (live or cam.finished))
    finally:
        cam.stop()
    assert [_level(f.image) for f in got[:3]] == [1, 2, 3]
    assert all(f.image.dtype == np.uint8 and f.image.shape == (H, W, 3) for f in got)
    assert cam.read_errors == n_bad and cam.error is None and cam.reopens == 0
    assert [f.seq for f in got[:3]] == [0, 1, 2]  # bad frames never get a sequence number


def test_file_source_giving_only_bad_frames_is_given_up() -> None:
    cam = CameraThread("c", _Scripted([np.zeros((H, W), np.uint8)] * 500, live=False)).start()
    assert cam.get(timeout=5) is None
    assert cam.finished and isinstance(cam.error, RuntimeError) and cam.read_errors == CameraThread.MAX_BAD_IN_A_ROW


def test_corrupt_files_in_a_folder_are_counted_as_read_errors(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "imgs", 6)
    ok, jpg = cv2.imencode(".jpg", np.full((H, W, 3), 99, np.uint8))
    (folder / "1a.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])  # truncated
    (folder / "2a.png").write_bytes((folder / "2.png").read_bytes()[:60])  # truncated
    (folder / "3a.png").write_bytes(b"")  # empty
    (folder / "4a.bmp").write_bytes(np.random.default_rng(0).bytes(500))  # garbage
    cam = CameraThread("c", make_source(str(folder))).start()
    frames = []
    while (f := cam.get(timeout=2.0)) is not None:
        frames.append(f)
    cam.stop()
    assert [_level(f.image) for f in frames] == list(range(6))
    assert cam.read_errors == 4 and cam.finished and cam.error is None


def _wait(cond, timeout: float = 5.0) -> bool:
    """Poll ``cond`` until true or ``timeout`` s passed; its last result."""
    deadline = time.monotonic() + timeout
    while not (ok := bool(cond())) and time.monotonic() < deadline:
        time.sleep(0.01)
    return ok


def test_vanished_folder_ends_the_thread_with_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    folder = _write_folder(tmp_path / "imgs", 10)
    cam = CameraThread("c", make_source(str(folder), fps=50), pace=True).start()
    try:
        assert cam.get(timeout=2) is not None
        folder.rename(tmp_path / "elsewhere")
        assert _wait(lambda: cam.finished)
    finally:
        cam.stop()
    assert cam.finished and not cam.running and cam.captured < 10
    assert isinstance(cam.error, SourceGone) and str(folder) in str(cam.error)
    assert any(r.levelno == logging.ERROR and str(folder) in r.getMessage() for r in caplog.records)


def test_looping_folder_that_vanishes_waits_and_resumes(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "imgs", 4)
    cam = CameraThread("c", make_source(str(folder), fps=100, loop=True), pace=True, reopen_delay=0.05, max_reopen_delay=0.2).start()
    try:
        assert cam.get(timeout=2) is not None
        folder.rename(tmp_path / "away")
        assert _wait(lambda: cam.last_error is not None and cam.reopens >= 3)
        while cam.get(timeout=0) is not None:  # what was read before the move
            pass
        before = cam.captured
        time.sleep(0.5)
        assert cam.running and not cam.finished and cam.error is None
        assert cam.captured == before and cam.get(timeout=0) is None
        assert "disappeared" in cam.last_error or "does not exist" in cam.last_error
        assert cam.reopens <= 12  # backed off to 0.2 s: no spinning
        (tmp_path / "away").rename(folder)
        f = cam.get(timeout=2)
        assert f is not None and f.seq >= before
        assert _wait(lambda: cam.last_error is None)
    finally:
        cam.stop()


@pytest.mark.parametrize("fault", ["deleted", "unreadable"])
def test_looping_video_file_gone_or_unreadable_for_a_while_is_waited_for(tmp_path: Path, fault: str) -> None:
    """A looping file that vanishes, or cannot be decoded when the loop reopens it (being replaced:
    that ended the camera for good), is waited for until it is back."""
    path = _write_video(tmp_path / "clip.avi", 5)
    good = path.read_bytes()
    cam = CameraThread("c", make_source(str(path), fps=100, loop=True), pace=True, reopen_delay=0.05, max_reopen_delay=0.1).start()
    try:
        assert cam.get(timeout=2) is not None
        if fault == "deleted":
            path.unlink()  # the open handle reads on to the end, then the loop finds it gone
        else:
            path.write_bytes(b"half-copied, not a video yet")
        words = "disappeared" if fault == "deleted" else "cannot read video file"
        assert _wait(lambda: cam.last_error is not None and words in cam.last_error)
        assert cam.running and cam.error is None
        path.write_bytes(good)
        assert _wait(lambda: cam.last_error is None)
        assert cam.get(timeout=2) is not None
    finally:
        cam.stop()


# ------------------------------------------------------------------ network stream (local MJPEG server)


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    from tests.mjpeg_server import render_jpegs

    return render_jpegs(n=8, size=(W, H))


def test_mjpeg_stream_lost_and_back(jpegs: list[bytes]) -> None:
    from tests.mjpeg_server import MJPEGServer

    srv = MJPEGServer(fps=30, frames=jpegs).start()
    src = make_source(srv.url)
    assert isinstance(src, StreamSource)
    cam = CameraThread("net", src, reopen_delay=0.1, max_reopen_delay=0.4)
    try:
        cam.start()
        first = cam.get(timeout=5)
        assert first is not None and first.image.shape == (H, W, 3)
        srv.stop()  # unplugged: reads fail at once, reopens are refused
        assert _wait(lambda: cam.reopens >= 2 and cam.last_error is not None)
        assert cam.read_errors >= 1 and cam.running
        while cam.get(timeout=0) is not None:
            pass
        srv.start()  # same port
        after = cam.get(timeout=5)
        assert after is not None and after.seq > first.seq
        assert srv.connections >= 2 and cam.last_error is None
    finally:
        cam.stop()
        srv.stop()


def test_stalled_stream_unblocks_read_and_open(jpegs: list[bytes]) -> None:
    """FFmpeg's read/open timeouts: a server that accepts and then sends nothing."""
    from tests.mjpeg_server import MJPEGServer

    srv = MJPEGServer(fps=30, frames=jpegs).start()
    src = make_source(srv.url)
    src.OPEN_TIMEOUT_MS = src.READ_TIMEOUT_MS = 800  # type: ignore[attr-defined]
    cam = CameraThread("hung", src, reopen_delay=0.1, stall_timeout=0.5)
    try:
        cam.start()
        assert cam.get(timeout=5) is not None
        srv.stall()
        t0 = time.monotonic()
        assert _wait(lambda: cam.reopens >= 1, timeout=4)  # read() returned after ~0.8 s, then reopened
        assert time.monotonic() - t0 < 3.0 and cam.read_errors >= 1
        assert _wait(lambda: cam.last_error is not None and "cannot reopen" in cam.last_error, timeout=4)  # open timed out too
        srv.stall(False)
        assert _wait(lambda: cam.get(timeout=0.1) is not None, timeout=6)
        srv.stall()
        time.sleep(0.2)
        t0 = time.perf_counter()
        cam.stop(timeout=0.5)  # never waits longer than asked, even while the reader is blocked
        assert time.perf_counter() - t0 < 1.0
    finally:
        cam.stop()
        srv.stop()


class _Unplugged(_FlakyCamera):
    """A live camera whose opens fail ``fail_opens`` times and whose reads fail ``fail_reads`` times."""

    def __init__(self, fail_opens: int) -> None:
        super().__init__(fail_reads=0)
        self.fail_opens, self.name = fail_opens, "/dev/video9"
        self.open_times: list[float] = []

    def open(self) -> None:
        self.open_times.append(time.monotonic())
        if self.fail_opens > 0:
            self.fail_opens -= 1
            raise OSError("no such device")


def test_reopen_backoff_doubles_is_capped_and_resets_after_a_good_frame() -> None:
    src = _Unplugged(fail_opens=5)
    cam = CameraThread("u", src, reopen_delay=0.05, max_reopen_delay=0.2, errors_before_reopen=3).start()
    try:
        assert cam.get(timeout=3) is not None
        assert cam.reopens == 5 and cam.last_error is None  # the first open is not a reopen
        gaps = np.diff(src.open_times)
        expected = [0.05, 0.1, 0.2, 0.2, 0.2]
        assert all(e * 0.9 <= g < e + 0.1 for g, e in zip(gaps, expected)), gaps
        # a second outage after good frames starts again from reopen_delay
        n = len(src.open_times)
        src.fail_reads, src.fail_opens = 3, 2
        assert _wait(lambda: len(src.open_times) >= n + 3)
        gaps = np.diff(src.open_times[n - 1:])[1:]  # between the retries of the second outage
        assert all(e * 0.9 <= g < e + 0.1 for g, e in zip(gaps, [0.1, 0.2])), gaps
        assert cam.get(timeout=2) is not None and cam.reopens == 8
    finally:
        cam.stop()


def test_hung_cameras_stop_within_one_shared_timeout(jpegs: list[bytes]) -> None:
    """Cameras stuck opening a server that never answers: start() returns at once, stop_all() in time.

    OpenCV opens FFmpeg captures one at a time (a process-wide lock): one camera is in the
    server, the others wait on that lock; a closed port still fails fast meanwhile.
    """
    from tests.mjpeg_server import MJPEGServer
    from tests.daemon_helpers import free_port

    srv = MJPEGServer(frames=jpegs, mode="stall").start()
    try:
        cams = [CameraThread(f"h{i}", make_source(srv.url)) for i in range(3)]
        t0 = time.perf_counter()
        for cam in cams:
            cam.start()
        assert time.perf_counter() - t0 < 0.5  # a hung camera never delays the others' start
        assert _wait(lambda: srv.connections >= 1, timeout=3)
        closed = CameraThread("closed", make_source(f"rtsp://u:pw@127.0.0.1:{free_port()}/x")).start()
        assert _wait(lambda: closed.last_error is not None, timeout=1.0)  # not stuck behind the hung open
        assert "not reachable" in closed.last_error and ":pw@" not in closed.last_error
        t0 = time.perf_counter()
        stop_all([*cams, closed], timeout=0.6)
        assert time.perf_counter() - t0 < 1.0
        assert all(c.captured == 0 for c in cams)
    finally:
        srv.stop()
