"""Capture sources and the per-camera capture thread, on real files and the synthetic scene."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.capture import (
    CameraThread,
    DeviceSource,
    FolderSource,
    Source,
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
    assert 0.22 <= elapsed < 0.6, elapsed  # 10 periods of 25 ms


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


def test_stream_open_failure_never_logs_credentials(caplog: pytest.LogCaptureFixture) -> None:
    src = make_source("rtsp://admin:topsecret@127.0.0.1:1/none")
    src.OPEN_TIMEOUT_MS = 1000  # type: ignore[misc]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(UserError) as err:
        CameraThread("door", src).start()
    assert "topsecret" not in str(err.value) and "***@127.0.0.1" in str(err.value)
    assert "topsecret" not in caplog.text


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
    assert 8 <= cam.captured <= 25  # about 50 fps for 0.3 s


def test_stop_is_fast() -> None:
    slow = CameraThread("s", make_source(f"synthetic:size={W}x{H},fps=0.2")).start()
    blocked = CameraThread("b", make_source(f"synthetic:size={W}x{H}")).start()  # lossless, never read
    time.sleep(0.2)
    for cam in (slow, blocked):
        t0 = time.perf_counter()
        cam.stop()
        assert time.perf_counter() - t0 < 1.0 and not cam.running
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
