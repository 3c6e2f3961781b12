"""`sparsecam retrain` / `sparsecam rollback` on real recordings of the synthetic camera.

Recordings are written by the real ``CameraRecorder``; training is the real recipe with a tiny
net (``--train-option``) so that a retrain takes seconds; export, onnxruntime and RPCA are real.
"""

from __future__ import annotations

import json
import os
import re
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
TINY = ["--threads", "1", "--steps", "40", "--train-option", "batch=8", "--train-option", "crop=32", "--train-option", "width=4",
        "--train-option", "depth=2", "--train-option", "lr=0.01"]
SCENE = SceneConfig(width=160, height=120, seed=3)


def record(root: Path, n: int, start: int = 0, camera: str = "cam0", spacing: float = 10.0) -> Path:
    """``n`` synthetic frames recorded ``spacing`` s apart (the scene advances 7 frames between them)."""
    scene = SyntheticScene(SCENE)
    rec = CameraRecorder(root, camera, RecordPolicy(every=1.0, burst_on_change=0), queue_size=n + 1)
    for i in range(start, start + n):
        assert rec.offer(scene.frame(7 * i)[0], 1000.0 + spacing * i)
    rec.close(timeout=30)
    assert rec.written == n and rec.errors == 0
    return root


def command(name: str) -> list[str]:
    """Through the `sparsecam` entry point."""
    return [sys.executable, "-m", "stream.cli", name]


def run(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command(name) + list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def retrain_inproc(capsys, *args: str) -> tuple[int, str, str]:
    import torch

    from training.retrain import cli

    threads = torch.get_num_threads()
    try:
        code = cli(list(args))
    finally:
        torch.set_num_threads(threads)  # --threads 1 must not follow the rest of the suite
    out = capsys.readouterr()
    return code, out.out, out.err


def history(cam: Path) -> list[str]:
    return sorted(p.name for p in (cam / "history").glob("*.onnx")) if (cam / "history").is_dir() else []


def version_of(path: Path) -> str:
    from training.rollback import read_model_version

    v = read_model_version(path)
    assert v
    return v


def test_too_little_footage_exits_2(tmp_path: Path) -> None:
    record(tmp_path / "rec", 20)
    r = run("retrain", "--camera", "cam0", "--models", str(tmp_path / "models"), "--recordings", str(tmp_path / "rec"))
    assert r.returncode == 2, r.stderr
    assert "not enough footage: 20 frames, need 24" in r.stderr and "record longer" in r.stderr
    assert not (tmp_path / "models" / "cam0" / "current.onnx").exists()
    r = run("retrain", "--camera", "../etc", "--models", str(tmp_path / "models"), "--recordings", str(tmp_path / "rec"))
    assert r.returncode == 2 and "camera id" in r.stderr


def test_retrain_promotes_then_history_and_rollback(tmp_path: Path, capsys) -> None:
    rec, models = record(tmp_path / "rec", 40), tmp_path / "models"
    cam = models / "cam0"
    cfg = tmp_path / "sparsecam.yaml"  # paths from the daemon's YAML, as the systemd unit passes them
    cfg.write_text(f"model:\n  dir: {models}\nrecording:\n  dir: {rec}\n")

    # 1st retrain: no current model -> promoted without the RPCA comparison
    code, out, err = retrain_inproc(capsys, "--camera", "cam0", "--config", str(cfg), "--json", str(tmp_path / "r1.json"), *TINY)
    assert code == 0, out + err
    r1 = json.loads((tmp_path / "r1.json").read_text())
    assert r1 == json.loads((cam / "work" / "report.json").read_text())
    assert r1["status"] == "promoted" and r1["old_version"] is None
    v1 = version_of(cam / "current.onnx")
    assert r1["new_version"] == v1 and f"-> {v1}" in out
    val = r1["validation"]
    assert val["passed"] and val["rpca_f_current"] is None and val["frames"] == 8
    assert val["rpca_f"] > 0.3 and 0.0005 <= val["fg_ratio"] <= 0.5 and val["object_f"] >= 0.5
    assert r1["frames_train"] == 32 and r1["frames_holdout"] == 8
    snap = json.loads((cam / "work" / "snapshot.json").read_text())
    names = [Path(e["file"]).name for e in snap["train"] + snap["holdout"]]
    assert names == [f"{i:09d}.jpg" for i in range(40)]  # the 8 newest held out, by time
    assert history(cam) == [] and not (cam / ".current.onnx.tmp").exists()
    a_bytes = (cam / "current.onnx").read_bytes()

    # 2nd retrain after more recording: new model, the previous one goes to history. A 40-step net is
    # noisy, so the RPCA tolerance is wide here; the comparison itself is checked directly below.
    record(rec, 10, start=40)
    code, out, err = retrain_inproc(capsys, "--camera", "cam0", "--models", str(models), "--recordings", str(rec),
                                    "--from-current", "--rpca-tolerance", "0.2", *TINY)
    assert code == 0, out + err
    r2 = json.loads((cam / "work" / "report.json").read_text())
    v2 = version_of(cam / "current.onnx")
    assert r2["status"] == "promoted" and r2["old_version"] == v1 and r2["new_version"] == v2 != v1
    assert r2["train"]["initialised_from"] == v1 and r2["frames_train"] + r2["frames_holdout"] == 50
    assert r2["validation"]["rpca_f_current"] is not None
    assert r2["validation"]["rpca_f"] >= r2["validation"]["rpca_f_current"] - 0.2
    (h1,) = history(cam)
    assert h1.endswith(f"-{v1}.onnx") and (cam / "history" / h1).read_bytes() == a_bytes
    assert sorted(p.name for p in (cam / "checkpoints").glob("*.pt")) == sorted([f"{v1}.pt", f"{v2}.pt"])

    # the RPCA comparison: the same model ties with itself; a model of another scene (the bundled one,
    # trained on another background) agrees far less with RPCA than the current model and is rejected
    from training.data import load_footage
    from training.validate import validate

    held = load_footage([str(cam / "work" / "holdout")], progress=False).frames
    same = validate(cam / "current.onnx", held, cam / "current.onnx", threads=1)
    assert same["passed"] and same["rpca_f"] == same["rpca_f_current"] > 0.3
    other = validate(BUNDLED_MODEL, held, cam / "current.onnx", threads=1)
    assert not other["passed"] and other["rpca_f"] < other["rpca_f_current"] - 0.02
    assert any(r.startswith("RPCA agreement F") for r in other["reasons"])

    # rollback: v1 back (atomic copy), v2 kept as rolled back and never restored again
    r = run("rollback", "--camera", "cam0", "--models", str(models))
    assert r.returncode == 0, r.stderr
    assert f"{v2} -> {v1}" in r.stdout
    assert (cam / "current.onnx").read_bytes() == a_bytes
    (h,) = history(cam)
    assert h.endswith(f"-{v2}-rolledback.onnx")
    r = run("rollback", "--camera", "cam0", "--models", str(models))
    assert r.returncode == 2 and "nothing to roll back to" in r.stderr
    assert (cam / "current.onnx").read_bytes() == a_bytes
    r = run("rollback", "--camera", "nocam", "--models", str(models))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_prune_keeps_newest(tmp_path: Path) -> None:
    from training.rollback import history_entries, promote

    cam = tmp_path / "cam0"
    for _ in range(4):
        promote(cam, BUNDLED_MODEL, keep=2)
    kept = history_entries(cam)
    assert len(kept) == 2 and kept[0][0] > kept[1][0]
    assert (cam / "current.onnx").read_bytes() == BUNDLED_MODEL.read_bytes()


def test_kill_9_leaves_current_then_resumes_and_rejects(tmp_path: Path) -> None:
    rec, models = record(tmp_path / "rec", 30, spacing=1.0), tmp_path / "models"  # 29 s of footage
    cam = models / "cam0"
    cam.mkdir(parents=True)
    shutil.copyfile(BUNDLED_MODEL, cam / "current.onnx")  # some other model serves now
    before = (cam / "current.onnx").read_bytes()
    args = ["--camera", "cam0", "--models", str(models), "--recordings", str(rec), *TINY,
            "--train-option", "checkpoint_every=2"]
    proc = subprocess.Popen(command("retrain") + args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    ckpt = cam / "work" / "run" / "checkpoint.pt"
    deadline = time.monotonic() + 60
    try:
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint within 60 s"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (cam / "work" / "report.json").exists()
    assert (cam / "current.onnx").read_bytes() == before and history(cam) == []

    # the next retrain resumes; a requirement no real model meets (a perfect F on pasted objects) rejects it: nothing changes
    r = run("retrain", *args, "--min-object-f", "1.0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "(resuming)" in r.stdout and re.search(r"resumed from step \d+ \([\d.]+ s of it in this run\)", r.stdout), r.stdout
    assert "NOT promoted" in r.stderr and "pasted-object F" in r.stderr
    assert "footage spans only 29.0 s" in r.stderr and "spanning 29.0 s" in r.stdout  # the hint for short footage
    rep = json.loads((cam / "work" / "report.json").read_text())
    assert rep["status"] == "rejected" and not rep["passed"] and rep["footage_seconds"] == 29.0
    assert rep["train"]["resumed"] and 0 < rep["train"]["resumed_from_step"] < 40 and rep["train"]["steps"] == 40
    assert rep["validation"]["rpca_f_current"] is not None and rep["old_version"] == version_of(BUNDLED_MODEL)
    assert (cam / "work" / "candidate.onnx").is_file()
    assert (cam / "current.onnx").read_bytes() == before and history(cam) == []
    assert not (cam / "checkpoints").exists()


def test_interrupted_after_training_says_the_model_is_kept_and_the_next_run_only_exports(tmp_path: Path) -> None:
    """SIGINT during the export said only 'sparsecam retrain: interrupted'; the trained model was kept but nobody was told."""
    rec, models = record(tmp_path / "rec", 30), tmp_path / "models"
    args = ["--camera", "cam0", "--models", str(models), "--recordings", str(rec), *TINY]
    proc = subprocess.Popen(command("retrain") + args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        lines = []
        for line in proc.stdout:  # the export starts right after this line
            lines.append(line)
            if line.startswith("trained "):
                os.kill(proc.pid, signal.SIGINT)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = "".join(lines) + out
    assert proc.returncode == 130, out + err
    assert "interrupted after training; the trained model is kept" in out and "Traceback" not in err, out + err
    assert not (models / "cam0" / "current.onnx").exists()
    again = run("retrain", *args)  # no training now: export, validation and the first model
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"resumed from step 40 \(0\.0 s of it in this run\)", again.stdout), again.stdout
    assert (models / "cam0" / "current.onnx").is_file()


def test_a_bad_train_option_is_refused_and_never_saved(tmp_path: Path) -> None:
    """'--train-option width=abc' or 'lr=nan' is one line, exit 2, before anything is written; a snapshot
    saved with settings that cannot train (an older version let them through) no longer blocks the camera."""
    rec, models = record(tmp_path / "rec", 30), tmp_path / "models"
    base = ["--camera", "cam0", "--models", str(models), "--recordings", str(rec)]
    for opt, words in (("width=abc", "must be a whole number"), ("lr=nan", "must be a finite number"), ("batch=0", "at least 2 frames"),
                       ("norm=foo", "use one of batch, group, none"), ("score_filter=median4", "use one of median5"),
                       ("frame_range=5", "a first and a last frame number")):  # the last three were tracebacks after the snapshot
        r = run("retrain", *base, *TINY, "--train-option", opt)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert not (models / "cam0" / "work").exists()
    r = run("retrain", *base, *TINY)  # a good run writes a snapshot; poison its settings as an older version could
    assert r.returncode in (0, 1), r.stderr[-2000:]
    snap_path = models / "cam0" / "work" / "snapshot.json"
    snap = json.loads(snap_path.read_text())
    snap["train_config"]["batch"] = 0
    snap_path.write_text(json.dumps(snap))
    (models / "cam0" / "work" / "report.json").unlink(missing_ok=True)  # looks unfinished: would be resumed
    r = run("retrain", *base, *TINY)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr and "starting a new run" in r.stderr, r.stderr[-2000:]


def test_unknown_camera_leaves_nothing_behind(tmp_path: Path) -> None:
    """A camera with no recordings, or one the daemon's config does not list, is refused before its folder
    and lock exist (a stray <models>/<camera>/.lock was left before)."""
    rec, models = record(tmp_path / "rec", 5), tmp_path / "models"
    r = run("retrain", "--camera", "nosuch", "--models", str(models), "--recordings", str(rec))
    assert r.returncode == 2 and "no recordings in" in r.stderr and not models.exists(), r.stderr[-2000:]
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text("cameras:\n  - id: door\n    source: synthetic\n")
    r = run("retrain", "--camera", "cam0", "--config", str(cfg), "--models", str(models), "--recordings", str(rec))
    assert r.returncode == 2 and "'cam0' is not in" in r.stderr and "door" in r.stderr and not models.exists(), r.stderr[-2000:]
    r = run("retrain", "--camera", "cam0", "--models", str(models), "--recordings", str(rec), "--min-object-f", "2")
    assert r.returncode == 2 and "a fraction in [0, 1]" in r.stderr and not models.exists()


def test_train_option_numbers_in_exponent_form() -> None:
    """YAML 1.1 reads 1e-3 as a string: '--train-option lr=1e-3' was refused as 'must be a number'."""
    from training.retrain import _train_option

    assert _train_option("lr=1e-3") == ("lr", 1e-3) and _train_option("steps=20") == ("steps", 20)
    assert _train_option("gray=true") == ("gray", True) and _train_option("frame_range=[1, 50]") == ("frame_range", [1, 50])


def test_promote_with_keep_0_does_not_claim_a_kept_previous_model(tmp_path: Path) -> None:
    """--keep 0 archived the previous model, pruned it at once, and still reported 'previous kept as history/...'."""
    from training.rollback import CURRENT, history_entries, promote

    cam = tmp_path / "cam0"
    cam.mkdir()
    shutil.copy(BUNDLED_MODEL, cam / CURRENT)
    new = tmp_path / "new.onnx"
    shutil.copy(BUNDLED_MODEL, new)
    assert promote(cam, new, keep=0) is None
    assert not history_entries(cam, False) and (cam / CURRENT).is_file()
    shutil.copy(BUNDLED_MODEL, new)
    kept = promote(cam, new, keep=1)
    assert kept is not None and kept.is_file()


def test_rollback_refuses_a_camera_its_config_does_not_list(tmp_path: Path) -> None:
    """retrain refused a camera missing from --config; rollback went on with the config's model.dir (one rule now)."""
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text(f"cameras:\n  - id: door\n    source: synthetic\nmodel:\n  dir: {tmp_path / 'models'}\n")
    r = run("rollback", "--camera", "cam0", "--config", str(cfg))
    assert r.returncode == 2 and "'cam0' is not in" in r.stderr and "door" in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("config, words", [
    ("cameras:\n  - {{id: cam0, source: synthetic, model: {model}}}\nmodel: {{dir: {models}}}\n", "serves its own model: "),
    ("cameras:\n  - {{id: cam0, source: synthetic}}\n", "(there is no model.dir)"),
    ("cameras:\n  - {{id: cam0, source: synthetic}}\nmodel: {{dir: {tmp}/elsewhere}}\n", "leave out --models"),
])
def test_retrain_and_rollback_refuse_a_camera_the_daemon_does_not_serve_from_the_models_folder(tmp_path: Path, config, words) -> None:
    """A camera with its own model: path was retrained for 14 minutes and 'promoted' to models/<camera>/current.onnx,
    a file the daemon never reads (a helper's journey)."""
    rec, models = record(tmp_path / "rec", 5), tmp_path / "models"
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text(config.format(model=BUNDLED_MODEL, models=models, tmp=tmp_path))
    for command in (["retrain", "--recordings", str(rec)], ["rollback"]):
        r = run(*command, "--camera", "cam0", "--config", str(cfg), "--models", str(models))
        assert r.returncode == 2 and words in r.stderr and "which retrain and rollback write" in r.stderr, r.stderr[-2000:]
        assert len(r.stderr.strip().splitlines()) == 1 and not models.exists()


def test_a_camera_whose_own_model_is_its_current_onnx_is_not_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "cam0").mkdir(parents=True)
    shutil.copy(BUNDLED_MODEL, models / "cam0" / "current.onnx")
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text(f"cameras:\n  - {{id: cam0, source: synthetic, model: {models / 'cam0' / 'current.onnx'}}}\nmodel: {{dir: {models}}}\n")
    r = run("rollback", "--camera", "cam0", "--config", str(cfg))
    assert r.returncode == 2 and "nothing to roll back to" in r.stderr and "which retrain and rollback write" not in r.stderr, r.stderr


def test_retrain_leaves_the_daemon_cores_by_default() -> None:
    """With every core (the old default) a retrain beside the daemon took 84.5 s for 30 steps on 2 cores, 13.1 s with one."""
    from training.retrain import build_parser

    threads = build_parser().parse_args(["--camera", "cam0"]).threads
    assert 1 <= threads <= max(1, (os.cpu_count() or 1) // 2)
