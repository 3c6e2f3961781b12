"""One retrain or rollback per camera at a time (training/rollback.py ``camera_lock``).

The lock is held by another real process (a small ``python -c`` inside ``camera_lock``), and the
real `sparsecam rollback` / `sparsecam retrain` run as subprocesses against it: each is refused with
one line and exit 2 and touches nothing; once the holder lets go (or dies), the same command goes on.
No training runs: rollback works on a prepared history, and retrain is given too little footage, so
past the lock it stops at its footage check.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.modelinfo import BUNDLED_MODEL
from stream.recorder import CameraRecorder, RecordPolicy
from stream.synthetic import SceneConfig, SyntheticScene

REPO = Path(__file__).resolve().parent.parent

HOLD = (
    "import pathlib, sys, time\n"
    "from training.rollback import camera_lock\n"
    "cam, ready, release = map(pathlib.Path, sys.argv[1:4])\n"
    "with camera_lock(cam):\n"
    "    ready.touch()\n"
    "    while not release.exists():\n"
    "        time.sleep(0.05)\n"
)


def run(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", name, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: relative path -> (content hash, mtime in ns)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


class Holder:
    """A separate process inside ``camera_lock(cam_dir)`` until ``release()`` (or ``kill()``)."""

    def __init__(self, cam_dir: Path, tmp: Path) -> None:
        self.ready, self.release_file = tmp / "holder-ready", tmp / "holder-release"
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(cam_dir), str(self.ready), str(self.release_file)],
                                     cwd=REPO, stderr=subprocess.PIPE, text=True)
        t_end = time.monotonic() + 30
        while not self.ready.exists() and self.proc.poll() is None and time.monotonic() < t_end:
            time.sleep(0.02)
        assert self.ready.exists(), f"the lock holder did not start: {self.proc.poll()} {self.proc.stderr.read() if self.proc.poll() is not None else ''}"

    def release(self) -> None:
        self.release_file.touch()
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


@pytest.fixture()
def prepared(tmp_path: Path) -> Path:
    """<models>/cam0 with a current model and one restorable model in history/."""
    from training.rollback import read_model_version

    cam = tmp_path / "models" / "cam0"
    (cam / "history").mkdir(parents=True)
    shutil.copy(BUNDLED_MODEL, cam / "current.onnx")
    version = read_model_version(BUNDLED_MODEL)
    assert version
    shutil.copy(BUNDLED_MODEL, cam / "history" / f"20260101T030000.000000Z-{version}.onnx")
    return cam


def lock_message(command: str, cam: Path) -> str:
    return (f"sparsecam {command}: error: another retrain or rollback of camera {cam.name} is running "
            f"(lock {cam / '.lock'}); wait for it to finish")


def test_rollback_waits_for_the_lock_holder_then_works(tmp_path: Path, prepared: Path) -> None:
    cam, models = prepared, prepared.parent
    holder = Holder(cam, tmp_path)
    try:
        before = tree(models)
        r = run("rollback", "--camera", "cam0", "--models", str(models))
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.splitlines() == [lock_message("rollback", cam)], r.stderr
        assert r.stdout == ""
        assert tree(models) == before  # nothing restored, archived or removed
        holder.release()
    finally:
        holder.close()
    r = run("rollback", "--camera", "cam0", "--models", str(models))
    assert r.returncode == 0, r.stderr
    assert "rollback cam0:" in r.stdout
    # the restored model left history; the one it replaced is kept there, marked rolled back
    assert [p.name.endswith("-rolledback.onnx") for p in (cam / "history").iterdir()] == [True]


def test_the_lock_goes_with_a_killed_holder(tmp_path: Path, prepared: Path) -> None:
    """flock: a holder that dies without cleaning up (kill -9, OOM) leaves no stale lock behind."""
    cam, models = prepared, prepared.parent
    holder = Holder(cam, tmp_path)
    try:
        r = run("rollback", "--camera", "cam0", "--models", str(models))
        assert r.returncode == 2 and lock_message("rollback", cam) in r.stderr, r.stderr
        holder.kill()
    finally:
        holder.close()
    assert (cam / ".lock").exists()  # the file stays; only the process held the lock
    r = run("rollback", "--camera", "cam0", "--models", str(models))
    assert r.returncode == 0, r.stderr


def record(root: Path, n: int, camera: str = "cam0") -> None:
    scene = SyntheticScene(SceneConfig(width=64, height=48, seed=1))
    rec = CameraRecorder(root, camera, RecordPolicy(every=1.0, burst_on_change=0), queue_size=n + 1)
    for i in range(n):
        assert rec.offer(scene.frame(5 * i)[0], 1000.0 + 10.0 * i)
    rec.close(timeout=30)
    assert rec.written == n


def test_retrain_is_refused_before_it_reads_footage_while_the_camera_is_locked(tmp_path: Path, prepared: Path) -> None:
    """Held by a rollback (or another retrain), retrain stops at the lock: no work/ folder, no snapshot,
    current.onnx untouched. Released, the same command gets past the lock to its footage check (20 frames
    are too few: it says so, which it could not have said without taking the lock)."""
    cam, models, rec = prepared, prepared.parent, tmp_path / "rec"
    record(rec, 20)
    args = ["--camera", "cam0", "--models", str(models), "--recordings", str(rec), "--threads", "1"]
    holder = Holder(cam, tmp_path)
    try:
        before = tree(models)
        r = run("retrain", *args)
        assert r.returncode == 2, r.stdout + r.stderr
        errors = [line for line in r.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
        assert errors == [lock_message("retrain", cam)], r.stderr
        assert "not enough footage" not in r.stderr
        assert tree(models) == before and not (cam / "work").exists()
        holder.release()
    finally:
        holder.close()
    r = run("retrain", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "not enough footage: 20 frames, need 24" in r.stderr and "another retrain" not in r.stderr, r.stderr
