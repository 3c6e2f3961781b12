"""Fault injection on a real daemon: cameras that vanish, hang, come back, corrupt files, SIGTERM.

Every test runs `sparsecam serve` as a subprocess (tests.daemon_helpers.start_daemon), talks
to it over real ZeroMQ sockets and scrapes its real /metrics over HTTP. The network camera is
tests.mjpeg_server: a local MJPEG-over-HTTP server that can be stopped and restarted on the
same port.
"""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from stream.client import MaskSubscriber
from stream.protocol import StatusMessage
from stream.synthetic import SceneConfig, SyntheticScene
from tests.daemon_helpers import free_port, http_status, metric, scrape, start_daemon, stop
from tests.mjpeg_server import MJPEGServer, render_jpegs


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return render_jpegs(n=15)


@pytest.fixture(scope="module")
def scene_pngs() -> list[bytes]:
    """PNG bytes of 12 frames of the synthetic scene the bundled model was trained on."""
    scene = SyntheticScene(SceneConfig())
    return [cv2.imencode(".png", scene.frame(5000 + i)[0])[1].tobytes() for i in range(12)]


def write_frames(folder: Path, pngs: list[bytes], start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(pngs):
        path = folder / f"{start + i:06d}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths


# ------------------------------------------------------------------ observing the daemon


class Watcher:
    """Reads a subscriber and keeps masks per camera and every status message, in order."""

    def __init__(self, sub: MaskSubscriber) -> None:
        self.sub = sub
        self.masks: dict[str, list] = defaultdict(list)
        self.status: list[StatusMessage] = []

    def states(self, camera: str) -> list[str]:
        return [s.state for s in self.status if s.camera == camera]

    def until(self, cond: Callable[[Watcher], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not cond(self):
            if time.monotonic() > deadline:
                return False
            msg = self.sub.recv(timeout=0.1)
            if isinstance(msg, StatusMessage):
                self.status.append(msg)
            elif msg is not None:
                self.masks[msg.camera].append(msg)
        return True

    def masks_after(self, camera: str, n: int, timeout: float) -> list:
        """The next ``n`` masks of ``camera`` from now."""
        start = len(self.masks[camera])
        assert self.until(lambda w: len(w.masks[camera]) >= start + n, timeout), f"fewer than {n} new masks of {camera}"
        return self.masks[camera][start:start + n]

    def settled(self, proc, camera: str, state: str, timeout: float) -> StatusMessage | None:
        """Wait until the latest status of ``camera`` since now is ``state`` and camera_up agrees.

        A loaded machine may make a camera flap (down for a moment, then up): the first
        offline message seen is not enough, the state must hold on both channels.
        """
        start, up = len(self.status), 1 if state == "online" else 0
        last: list[StatusMessage] = []

        def cond(w: Watcher) -> bool:
            last[:] = [s for s in w.status[start:] if s.camera == camera][-1:]
            return bool(last) and last[0].state == state and metric(proc, "sparsecam_camera_up", camera=camera) == up

        return last[0] if self.until(cond, timeout) else None


def _fail(proc, what: str) -> str:
    code, err = stop(proc)
    return f"{what}; daemon exit {code}, stderr tail:\n{err[-3000:]}"


# ------------------------------------------------------------------ faults


def test_network_camera_lost_and_back(tmp_path, jpegs):
    """Camera unplugged: offline + camera_up 0; plugged back on the same port: masks resume."""
    srv = MJPEGServer(fps=15, frames=jpegs).start()
    proc, ep = start_daemon(tmp_path, {"cameras": [{"id": "net", "source": srv.url, "timeout": 1.5}]})
    try:
        with MaskSubscriber([ep], cameras=["net"], max_age=None, include_status=True) as sub:
            w = Watcher(sub)
            assert w.until(lambda w: len(w.masks["net"]) >= 5, 20), _fail(proc, "no masks")
            before = list(w.masks["net"])
            assert metric(proc, "sparsecam_camera_up", camera="net") == 1
            srv.stop()
            t_stop = time.monotonic()
            off = w.settled(proc, "net", "offline", timeout=8)
            assert off is not None, _fail(proc, "no offline status")
            assert time.monotonic() - t_stop < 1.5 + 5.0  # the camera timeout, plus slack for a loaded machine
            assert off.fields.get("reason")
            assert proc.poll() is None and http_status(proc, "/healthz") == 200 and http_status(proc, "/readyz") == 503
            srv.start()  # same port
            on = w.settled(proc, "net", "online", timeout=10)
            assert on is not None, _fail(proc, "no online status after the camera came back")
            after = w.masks_after("net", 3, timeout=5)
            seqs = [m.seq for m in w.masks["net"]]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and after[0].seq > before[-1].seq
            samples = scrape(proc)
            assert samples[("sparsecam_camera_up", (("camera", "net"),))] == 1
            assert samples[("sparsecam_camera_reconnects_total", (("camera", "net"),))] >= 1
            assert samples[("sparsecam_frames_dropped_total", (("camera", "net"), ("reason", "read_error")))] >= 1
    finally:
        code, err = stop(proc)
        srv.stop()
    assert code == 0, err[-2000:]


def test_daemon_starts_while_the_camera_is_down(tmp_path, jpegs):
    srv = MJPEGServer(port=free_port(), fps=15, frames=jpegs)  # not listening yet
    url = srv.url.replace("http://", "http://viewer:s3cr3t-pw@")  # the server ignores credentials
    proc, ep = start_daemon(tmp_path, {"cameras": [{"id": "late", "source": url, "timeout": 1.5}]})
    try:
        with MaskSubscriber([ep], cameras=["late"], max_age=None, include_status=True) as sub:
            w = Watcher(sub)
            off = w.settled(proc, "late", "offline", timeout=15)
            assert off is not None, _fail(proc, "no offline status for a camera that is not there")
            assert proc.poll() is None  # not exit 2: a camera not there yet is no user mistake
            assert http_status(proc, "/healthz") == 200
            assert not w.masks["late"]
            n_status = len(w.status)
            srv.start()
            assert w.until(lambda w: len(w.masks["late"]) >= 3, 12), _fail(proc, "no masks once the camera appeared")
            assert w.until(lambda w: any(s.state == "online" for s in w.status[n_status:]), 3)
            assert metric(proc, "sparsecam_camera_up", camera="late") == 1
            assert metric(proc, "sparsecam_camera_reconnects_total", camera="late") >= 1
    finally:
        code, err = stop(proc)
        srv.stop()
    assert code == 0, err[-2000:]
    assert f"http://***@127.0.0.1:{srv.port}" in err  # the failure was logged, with the URL redacted
    assert "s3cr3t-pw" not in err


def test_corrupt_files_are_dropped_and_counted(tmp_path, scene_pngs):
    folder = tmp_path / "frames"
    good = write_frames(folder, scene_pngs[:8])
    bad = {
        "000001a.png": scene_pngs[0][: len(scene_pngs[0]) // 3],  # truncated
        "000003a.jpg": cv2.imencode(".jpg", np.zeros((240, 320, 3), np.uint8))[1].tobytes()[:400],  # truncated
        "000005a.png": b"",  # empty
        "000006a.bmp": np.random.default_rng(1).bytes(4000),  # garbage
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    cfg = {
        "cameras": [{"id": "files", "source": str(folder)},  # every frame, not looped, not paced
                    {"id": "live", "source": "synthetic", "fps": 5}],  # keeps the daemon up after the folder ends
        "publish": {"wait_for_subscriber": 10, "sndhwm": 1000},  # no mask lost to a brief stall of the bus
    }
    proc, ep = start_daemon(tmp_path, cfg)
    try:
        with MaskSubscriber([ep], cameras=["files"], max_age=None, include_status=True, rcvhwm=1000) as sub:
            w = Watcher(sub)
            assert w.until(lambda w: len(w.masks["files"]) >= len(good), 20), _fail(proc, f"{len(w.masks['files'])} masks")
            w.until(lambda w: False, 0.5)  # nothing more may come
        assert [m.seq for m in w.masks["files"]] == list(range(len(good)))  # bad files never get a sequence number
        assert all(m.mask.shape == (240, 320) for m in w.masks["files"])
        dropped = metric(proc, "sparsecam_frames_dropped_total", camera="files", reason="read_error")
        assert dropped == len(bad)
        assert metric(proc, "sparsecam_frames_captured_total", camera="files") == len(good)
        assert proc.poll() is None and http_status(proc, "/healthz") == 200
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]
    assert all(name in err for name in bad), err[-3000:]  # each bad file named in a warning


def test_vanished_folder_never_stalls_the_other_camera(tmp_path, scene_pngs):
    folder = tmp_path / "frames"
    write_frames(folder, scene_pngs[:6])
    fps = 10
    cfg = {"cameras": [{"id": "folder", "source": str(folder), "loop": True, "pace": True, "fps": fps, "timeout": 1.5},
                       {"id": "synth", "source": "synthetic", "fps": fps}]}
    proc, ep = start_daemon(tmp_path, cfg)
    try:
        with MaskSubscriber([ep], max_age=None, include_status=True, rcvhwm=100) as sub:
            w = Watcher(sub)
            assert w.until(lambda w: len(w.masks["folder"]) >= 3 and len(w.masks["synth"]) >= 3, 20), _fail(proc, "no masks")
            folder.rename(tmp_path / "moved-away")
            off = w.settled(proc, "folder", "offline", timeout=8)
            assert off is not None, _fail(proc, "no offline status for the vanished folder")
            assert metric(proc, "sparsecam_camera_up", camera="synth") == 1
            assert proc.poll() is None and http_status(proc, "/healthz") == 200
            # the other camera keeps its rate while this one is down
            n_folder = len(w.masks["folder"])
            synth = w.masks_after("synth", 4 * fps, timeout=10)  # 4 s: one stall of a loaded runner is not a stalled camera
            rate = (len(synth) - 1) / (synth[-1].t_publish - synth[0].t_publish)
            assert rate >= 0.6 * fps, rate
            assert len(w.masks["folder"]) == n_folder and "offline" not in w.states("synth")
            # a looping folder that comes back resumes
            (tmp_path / "moved-away").rename(folder)
            assert w.settled(proc, "folder", "online", timeout=10) is not None, _fail(proc, "the folder did not resume")
            assert w.until(lambda w: len(w.masks["folder"]) > n_folder, 5)
            assert metric(proc, "sparsecam_camera_reconnects_total", camera="folder") >= 1
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]
    assert "disappeared" in err and str(folder) in err, err[-3000:]


def test_hung_camera_never_stalls_the_other_nor_shutdown(tmp_path, jpegs):
    """A camera that accepts and then sends nothing (its reader blocked in FFmpeg's open)."""
    srv = MJPEGServer(frames=jpegs, mode="stall").start()
    fps = 10
    cfg = {"cameras": [{"id": "hung", "source": srv.url, "timeout": 1.5}, {"id": "synth", "source": "synthetic", "fps": fps}]}
    proc, ep = start_daemon(tmp_path, cfg)
    try:
        with MaskSubscriber([ep], max_age=None, include_status=True, rcvhwm=100) as sub:
            w = Watcher(sub)
            assert w.until(lambda w: len(w.masks["synth"]) >= 3, 20), _fail(proc, "no masks")
            assert w.settled(proc, "hung", "offline", timeout=8) is not None, _fail(proc, "no offline status for the hung camera")
            synth = w.masks_after("synth", 4 * fps, timeout=10)  # 4 s: one stall of a loaded runner is not a stalled camera
            rate = (len(synth) - 1) / (synth[-1].t_publish - synth[0].t_publish)
            assert rate >= 0.6 * fps, rate
            assert not w.masks["hung"] and srv.connections >= 1
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            elapsed = time.monotonic() - t0
    finally:
        _, err = stop(proc)
        srv.stop()
    assert code == 0, err[-2000:]
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop with a hung camera"


def test_sigterm_under_load_exits_0_quickly_and_says_offline(tmp_path, scene_pngs):
    folder = tmp_path / "frames"
    write_frames(folder, scene_pngs)
    proc, ep = start_daemon(tmp_path, {"cameras": [{"id": "busy", "source": str(folder), "loop": True}]})  # unpaced: flat out
    subs = [MaskSubscriber([ep], max_age=None, include_status=True) for _ in range(3)]
    try:
        watchers = [Watcher(s) for s in subs]
        for w in watchers:
            assert w.until(lambda w: len(w.masks["busy"]) >= 5, 20), _fail(proc, "no masks")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        elapsed = time.monotonic() - t0
        for w in watchers:
            assert w.until(lambda w: "offline" in w.states("busy"), 3)
    finally:
        for s in subs:
            s.close()
        _, err = stop(proc)
    assert code == 0, err[-2000:]
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"
