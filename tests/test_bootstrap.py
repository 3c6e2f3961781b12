"""A camera with no model: MOG2 masks marked bootstrap-mog2, then its own model as soon as it exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from stream.bootstrap import BOOTSTRAP_VERSION
from stream.client import MaskSubscriber
from stream.modelinfo import BUNDLED_MODEL
from stream.synthetic import SceneConfig, write_cdnet_folder
from tests.daemon_helpers import start_daemon, stop


def bundled_version() -> str:
    from stream.engine import Engine

    return Engine(BUNDLED_MODEL, warmup=False).model_version


def wait_version(sub: MaskSubscriber, version: str, timeout: float) -> list:
    seen, t_end = [], time.monotonic() + timeout
    while time.monotonic() < t_end:
        msg = sub.recv(timeout=0.2)
        if msg is not None:
            seen.append(msg)
            if msg.model_version == version:
                return seen
    return seen


def test_bootstrap_then_switch_without_losing_a_frame(tmp_path):
    models = tmp_path / "models"
    frames = write_cdnet_folder(tmp_path / "scene", 30, SceneConfig(), start=6000, progress=False) / "input"
    # An unpaced file runs as fast as inference: queues that hold a burst on both sides, so that a gap
    # can only be a frame the daemon lost (a fresh-clone run under load once lost one to the default SNDHWM 4).
    cfg = {"cameras": [{"id": "cam0", "source": str(frames), "loop": True}],
           "model": {"dir": str(models)}, "publish": {"wait_for_subscriber": 10, "sndhwm": 1000}}
    proc, ep = start_daemon(tmp_path, cfg)
    try:
        with MaskSubscriber([ep], max_age=None, rcvhwm=1000) as sub:
            first = wait_version(sub, BOOTSTRAP_VERSION, 20)
            assert first and first[-1].model_version == BOOTSTRAP_VERSION, stop(proc)[1][-2000:]
            assert any(m.fg_ratio > 0 for m in wait_version(sub, "never", 1.5))  # MOG2 does find the objects
            (models / "cam0").mkdir(parents=True)
            shutil.copy(BUNDLED_MODEL, models / "cam0" / ".current.onnx.tmp")
            (models / "cam0" / ".current.onnx.tmp").rename(models / "cam0" / "current.onnx")
            seen = wait_version(sub, bundled_version(), 20)
            assert seen and seen[-1].model_version == bundled_version()
            assert seen[-1].seq == seen[-2].seq + 1 and seen[-2].model_version == BOOTSTRAP_VERSION  # the switch itself
            assert sub.stats.gaps == 0
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]
    assert "switching from bootstrap-mog2" in err


def test_first_training_is_started_once_enough_is_recorded(tmp_path):
    """auto_first runs the configured command (here a stand-in for `sparsecam retrain`)."""
    models, rec = tmp_path / "models", tmp_path / "rec"
    fake = tmp_path / "fake_retrain.py"
    fake.write_text(
        "import shutil, sys, pathlib\n"
        "cam, models, rec = sys.argv[1:4]\n"
        "n = len(list(pathlib.Path(rec, cam).glob('*.jpg')))\n"
        "assert n >= 24, n\n"
        "d = pathlib.Path(models, cam); d.mkdir(parents=True, exist_ok=True)\n"
        f"shutil.copy({str(BUNDLED_MODEL)!r}, d / '.tmp.onnx'); (d / '.tmp.onnx').rename(d / 'current.onnx')\n"
        "import os, time; pathlib.Path(models, 'nice.txt').write_text(str(os.nice(0)))\n"
        "time.sleep(1.0)\n"  # still running when the daemon switches to the new model
        "pathlib.Path(models, 'done').touch()\n"
    )
    cfg = {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 30}],
           "model": {"dir": str(models)},
           "recording": {"enabled": True, "dir": str(rec), "every": 0.05},
           "retrain": {"auto_first": True, "min_frames": 24, "command": f"{sys.executable} {fake} {{camera}} {{models}} {{recordings}}"}}
    proc, ep = start_daemon(tmp_path, cfg)
    try:
        with MaskSubscriber([ep], max_age=None) as sub:
            seen = wait_version(sub, bundled_version(), 40)
        # the command ends after the switch: its exit is still logged (it was not, once the camera left bootstrap).
        # It runs at nice 19, slow on a loaded runner: wait for its last line, then for the daemon to reap it.
        t_end = time.monotonic() + 30
        while not (models / "done").exists() and time.monotonic() < t_end:
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        code, err = stop(proc)
    versions = [m.model_version for m in seen]
    assert versions[0] == BOOTSTRAP_VERSION and versions[-1] == bundled_version(), err[-3000:]
    assert err.count("starting its first training (at low priority)") == 1
    assert err.count("camera cam0: first training exited with 0") == 1, err[-3000:]
    assert (models / "nice.txt").read_text() == "19"  # nice(1), not a preexec_fn in the threaded daemon
    assert code == 0


def test_retrain_command_finds_this_installations_sparsecam_without_path():
    """systemd runs /opt/sparsecam/.venv/bin/sparsecam without that folder on PATH: the default command's
    bare 'sparsecam' could not start. It is now this interpreter's own entry point."""
    from stream.daemon import command_argv

    argv = command_argv("sparsecam retrain --camera 'cam 1' --threads 1")
    assert argv[-5:] == ["retrain", "--camera", "cam 1", "--threads", "1"]
    script = Path(sys.executable).parent / "sparsecam"
    assert argv[:-5] == ([str(script)] if script.is_file() else [sys.executable, "-m", "stream.cli"])
    res = subprocess.run([*argv[:-5], "retrain", "--help"], capture_output=True, text=True, timeout=60, env={"PATH": "/nonexistent"})
    assert res.returncode == 0 and "sparsecam retrain" in res.stdout, res.stderr[-2000:]
    assert command_argv("/usr/bin/env true") == ["/usr/bin/env", "true"]


def test_a_first_training_that_cannot_start_is_not_reported_as_exit_0(tmp_path):
    models, rec = tmp_path / "models", tmp_path / "rec"
    cfg = {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 30}], "model": {"dir": str(models)},
           "recording": {"enabled": True, "dir": str(rec), "every": 0.05},
           "retrain": {"auto_first": True, "min_frames": 24, "command": "/nonexistent/retrain {camera}"}}
    proc, _ = start_daemon(tmp_path, cfg, "--duration", "4")
    _, err = proc.communicate(timeout=60)  # runs its 4 s: 80 frames recorded, one attempt
    code = proc.returncode
    assert code == 0 and err.count("cannot start '/nonexistent/retrain cam0'") == 1, err[-3000:]
    assert "first training exited with" not in err


def test_stopping_the_daemon_stops_its_retrain_so_that_it_saves_a_checkpoint(tmp_path):
    """Left running, the retrain child was SIGKILLed by systemd (KillMode=mixed) or the container
    runtime after the daemon exited, losing its steps since the last checkpoint; now the daemon
    sends it SIGTERM (retrain saves a checkpoint on it) and reaps it within its shutdown deadline."""
    models, rec = tmp_path / "models", tmp_path / "rec"
    fake = tmp_path / "fake_retrain.py"
    fake.write_text(
        "import pathlib, signal, sys, time\n"
        "out = pathlib.Path(sys.argv[1])\n"
        "def saved(*_):\n"
        "    out.write_text('checkpoint saved'); sys.exit(130)\n"
        "signal.signal(signal.SIGTERM, saved)\n"
        "out.write_text('training')\n"
        "time.sleep(120)\n"
        "out.write_text('finished untouched')\n"
    )
    marker = tmp_path / "retrain_state"
    cfg = {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 30}], "model": {"dir": str(models)},
           "recording": {"enabled": True, "dir": str(rec), "every": 0.05},
           "retrain": {"auto_first": True, "min_frames": 24, "command": f"{sys.executable} {fake} {marker}"}}
    proc, _ = start_daemon(tmp_path, cfg)
    try:
        t_end = time.monotonic() + 60
        while not (marker.exists() and marker.read_text() == "training") and time.monotonic() < t_end:
            time.sleep(0.1)
        assert marker.exists(), "the stand-in retrain never started"
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]
    assert "camera cam0: stopping the first training" in err, err[-3000:]
    assert marker.read_text() == "checkpoint saved", err[-3000:]
    assert "still saving" not in err
    assert "camera cam0: retrain stopped (exit 130: checkpoint saved, the next retrain resumes)" in err, err[-3000:]


def test_a_quota_smaller_than_min_frames_says_so_instead_of_starting_a_doomed_training(tmp_path):
    """The first training started once frames written (quota deletions included) reached min_frames,
    then failed on the fewer frames kept, and was never tried again."""
    cfg = {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 30}], "model": {"dir": str(tmp_path / "models")},
           "recording": {"enabled": True, "dir": str(tmp_path / "rec"), "every": 0.05, "quota_mb": 0.1},
           "retrain": {"auto_first": True, "min_frames": 24, "command": "/nonexistent/retrain {camera}"}}
    proc, _ = start_daemon(tmp_path, cfg, "--duration", "4")
    _, err = proc.communicate(timeout=60)  # 80 frames written in its 4 s, a handful kept
    kept = len(list((tmp_path / "rec" / "cam0").glob("*.jpg")))
    assert proc.returncode == 0 and 0 < kept < 24, err[-3000:]
    assert "cannot start '/nonexistent" not in err, err[-3000:]
    assert err.count("recording.quota_mb deleted frames with only") == 1 and "fewer than retrain.min_frames 24" in err, err[-3000:]
