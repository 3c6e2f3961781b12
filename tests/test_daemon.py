"""`sparsecam serve` end to end: real subprocess, real ZeroMQ sockets, real onnxruntime."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stream.client import MaskSubscriber
from stream.modelinfo import BUNDLED_MODEL
from stream.engine import Engine
from stream.synthetic import SceneConfig, write_cdnet_folder
from tests.daemon_helpers import REPO, free_port, http_json, metric, start_daemon, stop

N_FILE_FRAMES = 40


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory) -> Path:
    """40 unseen frames of the default synthetic camera with exact ground truth (CDnet layout)."""
    root = tmp_path_factory.mktemp("synset") / "scene"
    write_cdnet_folder(root, N_FILE_FRAMES, SceneConfig(width=160, height=120), start=5000)  # the bundled model's camera, unseen frames
    return root


def collect(sub: MaskSubscriber, n: int, timeout: float = 30.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        msg = sub.recv(timeout=0.5)
        if msg is not None:
            got.append(msg)
    return got


def test_synthetic_camera_masks_arrive_in_order(tmp_path):
    proc, ep = start_daemon(tmp_path, {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 30}]}, "--duration", "20")
    try:
        with MaskSubscriber([ep], cameras=["cam0"], max_age=None) as sub:
            msgs = collect(sub, 20)
        assert len(msgs) == 20, f"got {len(msgs)} masks; daemon stderr: {stop(proc)[1][-2000:]}"
        seqs = [m.seq for m in msgs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(m.mask.shape == (240, 320) and m.mask.dtype == np.uint8 for m in msgs)
        assert all(set(np.unique(m.mask)) <= {0, 255} for m in msgs)
        assert all(0.0 <= m.fg_ratio <= 0.5 for m in msgs)
        assert all(m.t_capture <= m.t_inference_done <= m.t_publish <= m.t_receive for m in msgs)
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]
    # a stop leaves its trace in the log (it left none: only the subscribers' 'offline' said so)
    assert "INFO sparsecam.daemon: stopping (SIGTERM)" in err and err.rstrip().endswith("INFO sparsecam.daemon: stopped"), err[-2000:]


def test_file_source_no_gaps_bit_exact_and_iou(tmp_path, synthetic_folder):
    cfg = {
        "cameras": [{"id": "file", "source": str(synthetic_folder / "input")}],
        "publish": {"wait_for_subscriber": 10, "encoding": "packbits", "sndhwm": 1000},  # no drop on a stall
    }
    proc, ep = start_daemon(tmp_path, cfg)
    try:
        with MaskSubscriber([ep], cameras=["file"], max_age=None, rcvhwm=1000) as sub:
            msgs = collect(sub, N_FILE_FRAMES, timeout=60)
            assert sub.stats.gaps == 0
        code = proc.wait(timeout=30)  # the daemon exits by itself when its only source has ended
    finally:
        _, err = stop(proc)
    assert code == 0, err[-2000:]
    assert [m.seq for m in msgs] == list(range(N_FILE_FRAMES)), err[-2000:]
    # bit for bit what the engine computes on the same frames
    import cv2

    engine = Engine(BUNDLED_MODEL)
    frames = sorted((synthetic_folder / "input").glob("*.png"))
    inter = union = 0
    for msg, path in zip(msgs, frames):
        frame = cv2.imread(str(path))
        np.testing.assert_array_equal(msg.mask, engine.run(frame))
        gt = cv2.imread(str(synthetic_folder / "groundtruth" / path.name), cv2.IMREAD_GRAYSCALE) > 0
        pred = msg.mask > 0
        inter += np.count_nonzero(pred & gt)
        union += np.count_nonzero(pred | gt)
    iou = inter / union
    assert iou >= 0.9, f"IoU against the synthetic ground truth {iou:.3f} < 0.9"


def test_a_file_that_ends_is_reported_ended_after_its_last_mask(tmp_path, synthetic_folder):
    """Beside a live camera, a folder played to its end: every mask, then 'offline: the source has ended'
    (not a fault: no 'DOWN' warning), the status line says ENDED, and past the camera's timeout
    /readyz stays 200 (the file listed as ended) with sparsecam_camera_ended 1 for it alone."""
    cfg = {
        "cameras": [{"id": "file", "source": str(synthetic_folder / "input"), "timeout": 1.0},
                    {"id": "live", "source": "synthetic", "fps": 10}],
        "publish": {"wait_for_subscriber": 10, "sndhwm": 1000}, "status_line": True,
    }
    proc, ep = start_daemon(tmp_path, cfg, "--duration", "20")
    events = []
    try:
        with MaskSubscriber([ep], cameras=["file"], max_age=None, include_status=True, rcvhwm=1000) as sub:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and not any(getattr(e, "state", None) == "offline" for e in events):
                msg = sub.recv(timeout=0.5)
                if msg is not None:
                    events.append(msg)
            time.sleep(2.0)  # past the file camera's 1-s timeout; a status line after the end
            ready = http_json(proc, "/readyz")
            ended = {cam: metric(proc, "sparsecam_camera_ended", camera=cam) for cam in ("file", "live")}
    finally:
        code, err = stop(proc)
    assert ready == (200, {"ready": True, "not_ready": [], "ended": ["file"]}), ready
    assert ended == {"file": 1.0, "live": 0.0}
    seqs = [e.seq for e in events if hasattr(e, "seq")]
    offline = [i for i, e in enumerate(events) if getattr(e, "state", None) == "offline"]
    assert seqs == list(range(N_FILE_FRAMES)), err[-2000:]
    assert offline and offline[0] > max(i for i, e in enumerate(events) if hasattr(e, "seq"))  # after the last mask
    assert events[offline[0]].fields.get("reason") == "the source has ended"
    assert "camera file: its source has ended" in err and "camera file is DOWN" not in err
    assert "file ENDED:" in err and code == 0, err[-2000:]


def test_sigterm_publishes_offline_and_exits_0_quickly(tmp_path):
    proc, ep = start_daemon(tmp_path, {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 30}]})
    with MaskSubscriber([ep], cameras=["cam0"], max_age=None, include_status=True) as sub:
        first = collect(sub, 3)
        assert first, stop(proc)[1][-2000:]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        offline = None
        deadline = time.monotonic() + 5
        while offline is None and time.monotonic() < deadline:
            msg = sub.recv(timeout=0.2)
            if msg is not None and getattr(msg, "state", None) == "offline":
                offline = msg
        code = proc.wait(timeout=5)
        elapsed = time.monotonic() - t0
    assert offline is not None and offline.camera == "cam0"
    assert code == 0
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"


def publish_rate(msgs: list) -> float:
    """Masks per second by the publisher's own clock (t_publish in the headers)."""
    return (len(msgs) - 1) / (msgs[-1].t_publish - msgs[0].t_publish)


def test_slow_subscriber_does_not_slow_the_publisher(tmp_path):
    proc, ep = start_daemon(tmp_path, {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 20}]})
    try:
        with MaskSubscriber([ep], max_age=None) as fast:
            collect(fast, 5)
            rate_alone = publish_rate(collect(fast, 40))
            with MaskSubscriber([ep], max_age=None, rcvhwm=1) as slow:
                assert slow.recv(timeout=5) is not None  # connected, then never reads again
                time.sleep(0.5)
                rate_with = publish_rate(collect(fast, 40))
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]
    # a publisher blocked by the slow reader would stall outright; 25 % absorbs a loaded runner's hiccups
    assert rate_with >= 0.75 * rate_alone, (rate_alone, rate_with)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_missing_model_exits_2_with_a_message(tmp_path):
    res = _cli("serve", "--model", str(tmp_path / "nope.onnx"), "--duration", "1")
    assert res.returncode == 2
    assert "nope.onnx" in res.stderr and "Traceback" not in res.stderr


def test_unreachable_endpoint_exits_2(tmp_path):
    res = _cli("serve", "--endpoint", "tcp://203.0.113.7:5556", "--duration", "1")  # not an address of this host
    assert res.returncode == 2, res.stderr
    assert "203.0.113.7" in res.stderr and "Traceback" not in res.stderr
    res = _cli("subscribe", "--endpoint", "nonsense://x", "--count", "1")
    assert res.returncode == 2 and "nonsense://x" in res.stderr


def test_bad_config_exits_2_with_field_paths(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: 'has space'\n    fps: -3\npublish:\n  encoding: jpeg\n")
    res = _cli("serve", "--config", str(bad))
    assert res.returncode == 2
    for field in ("cameras.0.id", "cameras.0.fps", "publish.encoding"):
        assert field in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("case", ["not-a-video", "empty-folder"])
def test_a_source_that_cannot_open_is_one_error_exit_2(tmp_path, case):
    """It stopped before starting the model reloader, whose join then hid the message behind a traceback."""
    if case == "not-a-video":
        source = tmp_path / "clip.mp4"
        source.write_text("hello\n")
    else:
        source = tmp_path / "frames"
        source.mkdir()
    res = subprocess.run([sys.executable, "-m", "stream.cli", "serve", "--quiet", "--duration", "2", "--source", str(source),
                          "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--metrics-bind", f"127.0.0.1:{free_port()}"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith(f"sparsecam serve: error: ") and source.name in res.stderr.splitlines()[-1]


@pytest.mark.parametrize("case", ["folder", "checkpoint"])
def test_a_model_that_is_a_folder_or_a_checkpoint_says_so(tmp_path, case):
    """Were 'does not exist' for a folder and onnxruntime's 'Protobuf parsing failed' for a .pt."""
    model = tmp_path / "run"
    model.mkdir()
    if case == "checkpoint":
        model = model / "model.pt"
        model.write_bytes(b"PK\x03\x04 a torch zip")
    res = subprocess.run([sys.executable, "-m", "stream.cli", "serve", "--quiet", "--duration", "1", "--model", str(model)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert ("is a folder" if case == "folder" else "sparsecam export") in res.stderr.splitlines()[-1]


def test_a_daemon_that_cannot_bind_leaves_no_recorder_running(tmp_path):
    """Daemon() raising half way (the port taken) left its recorder threads running in the process."""
    import threading

    import zmq

    from stream.config import DaemonConfig
    from stream.daemon import Daemon
    from stream.errors import UserError

    ctx = zmq.Context.instance()
    taken = ctx.socket(zmq.PUB)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        cfg = DaemonConfig.model_validate({
            "cameras": [{"id": "cam0", "source": "synthetic"}], "status_line": False, "metrics": {"enabled": False},
            "publish": {"endpoints": [f"tcp://127.0.0.1:{port}"]},
            "recording": {"enabled": True, "dir": str(tmp_path / "rec")}})
        with pytest.raises(UserError, match="cannot bind"):
            Daemon(cfg)
    finally:
        taken.close(linger=0)
    time.sleep(0.2)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("record-")]


@pytest.mark.parametrize("step_s", [-3600.0, 3600.0])
def test_a_wall_clock_step_neither_hides_a_dead_camera_nor_reports_a_live_one_down(monkeypatch, step_s):
    """Freshness was wall-clock time: after NTP stepped the clock back an hour a camera that died stayed
    'online' (and /readyz 200) for that hour; a step forward sent a false offline/online pair."""
    import threading

    import numpy as np

    import stream.daemon
    from stream.client import MaskSubscriber
    from stream.config import DaemonConfig
    from stream.sources import Source

    offset = [0.0]
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + offset[0])

    class DyingCamera(Source):
        live, fps, name, alive = True, 20.0, "dying", True

        def read(self):
            time.sleep(0.05)
            return np.full((120, 160, 3), 90, np.uint8) if DyingCamera.alive else None

    monkeypatch.setattr(stream.daemon, "make_source", lambda *a, **k: DyingCamera())
    cfg = DaemonConfig.model_validate({"cameras": [{"id": "cam1", "timeout": 2}], "status_line": False,
                                       "publish": {"endpoints": ["tcp://127.0.0.1:*"]}, "metrics": {"enabled": False}})
    d = stream.daemon.Daemon(cfg)
    runner = threading.Thread(target=d.run, daemon=True)
    runner.start()
    try:
        with MaskSubscriber(d.publisher.endpoints, cameras=["cam1"], include_status=True, max_age=None) as sub:
            def statuses(seconds: float) -> list[str]:
                seen, t_end = [], real_time() + seconds
                while real_time() < t_end:
                    msg = sub.recv(timeout=0.2)
                    if msg is not None and not hasattr(msg, "mask"):
                        seen.append(msg.state)
                return seen

            statuses(1.5)
            offset[0] = step_s  # NTP steps the wall clock
            assert "offline" not in statuses(1.5) and d.stats["cam1"].up
            DyingCamera.alive = False
            assert "offline" in statuses(4.0)  # timeout 2 s
            assert not d.stats["cam1"].up and not d.health.ready()[0]
    finally:
        d.request_stop()
        runner.join(10)
