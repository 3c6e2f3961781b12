"""The daemon's own nightly retrain (``retrain.nightly_at``, stream/daemon.py ``_maybe_start_nightly``).

A real daemon runs with ``model.dir`` holding a model for cam0 and none for cam1 (which bootstraps on
MOG2) and a stand-in retrain command that notes which camera it was started for. The rule under test
(``Daemon.__init__`` and ``nightly_due``): a daemon started when today's HH:MM slot has already come
waits for tomorrow's; one started before the slot runs the command once when the slot comes, for
every camera that has a model, and not again that day.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from stream.modelinfo import BUNDLED_MODEL
from tests.daemon_helpers import start_daemon, stop

FAKE = (
    "import os, sys, time\n"
    "camera, log = sys.argv[1:3]\n"
    "with open(log, 'a') as f:\n"
    "    f.write(f'{camera} {time.time()} {os.nice(0)}\\n')\n"
)


def setup(tmp_path: Path, nightly_at: str) -> tuple[dict, Path]:
    models, log = tmp_path / "models", tmp_path / "started.txt"
    (models / "cam0").mkdir(parents=True)
    shutil.copy(BUNDLED_MODEL, models / "cam0" / "current.onnx")
    fake = tmp_path / "fake_retrain.py"
    fake.write_text(FAKE)
    own = tmp_path / "own.onnx"  # cam2 serves a model of its own path, which a retrain would not replace
    shutil.copy(BUNDLED_MODEL, own)
    cfg = {"cameras": [{"id": "cam0", "source": "synthetic:size=160x120", "fps": 5},
                       {"id": "cam1", "source": "synthetic:size=160x120", "fps": 5},
                       {"id": "cam2", "source": "synthetic:size=160x120", "fps": 5, "model": str(own)}],
           "model": {"dir": str(models)},
           "retrain": {"nightly_at": nightly_at, "command": f"{sys.executable} {fake} {{camera}} {log}"}}
    return cfg, log


def started(log: Path) -> list[tuple[str, float, int]]:
    if not log.exists():
        return []
    return [(cam, float(t), int(nice)) for cam, t, nice in (line.split() for line in log.read_text().splitlines())]


def test_a_daemon_started_after_todays_slot_waits_for_tomorrow(tmp_path: Path) -> None:
    """nightly_at = the current minute: the slot has come already, so nothing runs at start (a restart in
    the morning does not retrain every camera again)."""
    cfg, log = setup(tmp_path, time.strftime("%H:%M"))
    proc, _ = start_daemon(tmp_path, cfg, "--duration", "5")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "serving" in err or "publishing on" in err, err[-3000:]
    assert started(log) == [] and "nightly retrain" not in err, err[-3000:]


def test_the_slot_starts_the_command_once_for_each_camera_with_a_model(tmp_path: Path) -> None:
    """nightly_at = the next minute (at least 20 s ahead, so that the daemon is up before it): at the slot
    the command runs for cam0 (at nice 19), is logged with its exit status, and is not started again for
    the rest of the minute; cam1, still on MOG2 without a model, and cam2, serving a model: path a retrain
    would not replace, are skipped. At most ~75 s."""
    if time.time() % 60 > 40:  # too close to the next minute: the daemon (slow to start on a loaded runner) might start after that slot
        time.sleep(60.5 - time.time() % 60)
    slot_t = (int(time.time()) // 60 + 1) * 60
    slot = time.strftime("%H:%M", time.localtime(slot_t))
    cfg, log = setup(tmp_path, slot)
    proc, _ = start_daemon(tmp_path, cfg)
    try:
        t_end = slot_t + 15
        while not started(log) and time.time() < t_end and proc.poll() is None:
            time.sleep(0.1)
        runs = started(log)
        assert runs, f"the nightly command did not start within 15 s of its slot {slot}: " + stop(proc)[1][-3000:]
        time.sleep(3.0)  # still the slot's minute: a second start would show now
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]
    runs = started(log)
    assert [cam for cam, _, _ in runs] == ["cam0"], (runs, err[-3000:])
    (_, t_run, nice), = runs
    assert slot_t - 0.5 <= t_run < slot_t + 15  # at the slot, not at the daemon's start
    assert nice == 19
    assert err.count("camera cam0: nightly retrain (at low priority):") == 1, err[-3000:]
    assert "camera cam1: nightly retrain" not in err and "camera cam2: nightly retrain" not in err
    assert err.count("camera cam0: retrain exited with 0") == 1, err[-3000:]
