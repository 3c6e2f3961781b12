"""`sparsecam train`: learns the synthetic scene, writes its run, resumes, and refuses bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stream.modelinfo import BUNDLED_CAMERA
from stream.synthetic import SceneConfig, write_cdnet_folder
from training.checkpoint import load_checkpoint
from training.evaluate import evaluate
from training.train import TrainConfig, train

REPO = Path(__file__).resolve().parent.parent
TINY = ["synthetic:frames=60,size=160x120", "--steps", "4", "--batch", "8", "--crop", "32", "--width", "4", "--depth", "2"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> tuple[Path, dict]:
    """The default recipe on 300 frames of the bundled model's synthetic camera (160x120), with half
    the default steps: the issue asks for F >= 0.9 within 2 minutes of CI time."""
    out = tmp_path_factory.mktemp("run") / "syn"
    summary = train(TrainConfig(footage=[f"{BUNDLED_CAMERA},frames=300"], steps=150), out, progress=False)
    return out, summary


def test_learns_the_synthetic_scene_without_labels(synthetic_run, tmp_path):
    out, summary = synthetic_run
    for name in ("model.pt", "checkpoint.pt", "loss.png", "montage.png", "summary.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["threshold"] == summary["threshold"]
    # unseen frames of the same camera, scored against the exact masks
    scored = tmp_path / "unseen"
    write_cdnet_folder(scored, 60, SceneConfig(width=160, height=120), start=3000, progress=False)
    result = evaluate(scored, str(out / "model.pt"))
    assert result["metrics"]["f"] >= 0.9, result["metrics"]  # training time: see bench/, never asserted here


def test_loss_went_down(synthetic_run):
    out, _ = synthetic_run
    hist = load_checkpoint(out / "model.pt")["history"]
    first, last = sum(hist["loss"][:10]) / 10, sum(hist["loss"][-10:]) / 10
    assert last < first


def test_checkpoint_is_plain_tensors_and_carries_threshold(synthetic_run):
    out, summary = synthetic_run
    state = torch.load(out / "model.pt", weights_only=True)  # no pickle of arbitrary objects
    assert state["threshold"] == pytest.approx(summary["threshold"])
    assert state["config"]["input_mode"] in ("frame", "background")
    assert "background" in state["model"] or state["config"]["input_mode"] == "frame"


def test_interrupt_saves_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    args = [TINY[0], "--out", str(out), "--batch", "8", "--crop", "32", "--width", "4", "--depth", "2", "--checkpoint-every", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "train", *args, "--steps", "100000"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:  # a few steps done
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never left training 100000 steps beside the rest of the suite
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-2000:]
    assert "--resume" in stdout and "Traceback" not in stderr
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    assert step > 0
    res = cli("train", *args, "--steps", str(step + 3), "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    state = load_checkpoint(out / "model.pt")
    assert state["step"] == step + 3
    assert state["history"]["step"] == list(range(1, step + 4))


def test_long_footage_is_sampled_over_its_whole_length(tmp_path):
    frames = tmp_path / "frames"
    write_cdnet_folder(frames, 48, SceneConfig(width=64, height=48), progress=False)
    cfg = TrainConfig(footage=[str(frames)], max_frames=16, steps=2, batch=8, crop=32, width=4, depth=2)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["stride"] == 3 and summary["frames_used"] == 16  # frames 1, 4, ..., 46: all of it, not 1-16


def test_refuses_to_overwrite_another_run(tmp_path):
    out = tmp_path / "run"
    assert cli("train", *TINY, "--out", str(out)).returncode == 0
    before = (out / "model.pt").stat().st_mtime_ns
    other = cli("train", "synthetic:frames=60,size=160x120,seed=9", *TINY[1:], "--out", str(out))
    assert other.returncode == 2 and "different run" in other.stderr
    same = cli("train", *TINY, "--out", str(out))
    assert same.returncode == 2 and "--resume" in same.stderr
    assert (out / "model.pt").stat().st_mtime_ns == before
    # --resume of the finished run: said so, nothing rewritten (it 'trained 4 steps' again and rewrote everything)
    done = cli("train", *TINY, "--out", str(out), "--resume")
    assert done.returncode == 0 and "already finished its 4 steps: nothing to do" in done.stdout, done.stdout + done.stderr[-2000:]
    assert (out / "model.pt").stat().st_mtime_ns == before
    # ... but a changed post-processing option is applied, as before
    redo = cli("train", *TINY, "--out", str(out), "--resume", "--threshold", "0.3")
    assert redo.returncode == 0 and "nothing to do" not in redo.stdout, redo.stdout + redo.stderr[-2000:]
    assert load_checkpoint(out / "model.pt")["threshold"] == pytest.approx(0.3)


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    """A finished run whose checkpoint.pt was deleted restarted from step 0 and replaced model.pt;
    footage that changed since the checkpoint trained on against another background than the model keeps."""
    out = tmp_path / "run"
    frames = write_cdnet_folder(tmp_path / "frames", 30, SceneConfig(width=64, height=48), progress=False)
    args = [str(frames), *TINY[1:], "--out", str(out)]
    assert cli("train", *args).returncode == 0
    before = (out / "model.pt").read_bytes()
    (out / "checkpoint.pt").rename(tmp_path / "checkpoint.pt")
    res = cli("train", *args, "--resume")
    assert res.returncode == 2 and "no checkpoint.pt to resume from" in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert (out / "model.pt").read_bytes() == before
    (out / "checkpoint.pt").write_bytes(before)  # a finished model copied over it (KeyError 'opt' before)
    res = cli("train", *args, "--resume")
    assert res.returncode == 2 and "not a resumable training checkpoint" in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert (out / "model.pt").read_bytes() == before
    (tmp_path / "checkpoint.pt").rename(out / "checkpoint.pt")
    for f in sorted((frames / "input").iterdir())[:10]:  # the recording was trimmed and refilled meanwhile
        f.write_bytes((frames / "input" / "000030.png").read_bytes())
    res = cli("train", *args, "--resume", "--steps", "6")
    assert res.returncode == 2 and "the footage changed since this checkpoint" in res.stderr, res.stderr[-2000:]
    assert (out / "model.pt").read_bytes() == before


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_over(tmp_path):
    """A run SIGKILLed (OOM) before its first checkpoint left only run.json: --resume (which every
    retrain uses) then failed with 'holds this run's model.pt', and the retrain after it too."""
    out = tmp_path / "run"
    args = [*TINY, "--out", str(out), "--checkpoint-every", "1000"]
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "train", *args, "--steps", "100000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t_end = time.monotonic() + 120
        while not (out / "run.json").exists() and time.monotonic() < t_end:
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert sorted(f.name for f in out.iterdir()) == ["run.json"]
    res = cli("train", *args, "--resume")
    assert res.returncode == 0 and "stopped before its first checkpoint" in res.stderr, res.stderr[-2000:]
    assert (out / "model.pt").is_file()


@pytest.mark.parametrize("case", ["missing", "empty", "junk", "run-folder"])
def test_bad_footage_is_one_line_exit_2(tmp_path, case):
    if case == "missing":
        target = tmp_path / "nope.avi"
    elif case == "empty":
        target = tmp_path / "empty"
        target.mkdir()
    elif case == "run-folder":  # trained on its loss.png and montage.png before
        target = tmp_path / "old_run"
        target.mkdir()
        (target / "run.json").write_text("{}")
        for plot in ("loss.png", "montage.png"):
            cv2.imwrite(str(target / plot), np.zeros((120, 160, 3), np.uint8))
    else:
        target = tmp_path / "junk.avi"
        target.write_bytes(b"not a video" * 100)
    out = tmp_path / "out"
    res = cli("train", str(target), "--out", str(out), "--steps", "2")
    assert res.returncode == 2
    assert target.name in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (out / "run.json").exists()  # --out not claimed by a run that never started


@pytest.mark.parametrize("option, words", [(["--stride", "0"], "--stride 0"), (["--max-frames", "0"], "--max-frames 0"),
                                           (["--frames", "9-3"], "frame range 9-3 is invalid: use FIRST-LAST")])
def test_bad_frame_selection_is_one_line_exit_2(tmp_path, option, words):
    frames = write_cdnet_folder(tmp_path / "cam", 20, SceneConfig(width=64, height=48), progress=False)  # a length known ahead
    res = cli("train", str(frames), *TINY[1:], *option, "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_failed_start_leaves_out_free_for_the_corrected_command(tmp_path):
    out = tmp_path / "out"
    assert cli("train", str(tmp_path / "typo.avi"), *TINY[1:], "--out", str(out)).returncode == 2
    fixed = cli("train", *TINY, "--out", str(out))
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert (out / "model.pt").is_file()


def test_progress_in_a_log_is_not_redrawn_every_step(tmp_path):
    """stderr to a file or journald (not a terminal): the bar is drawn at the start, every 30 s and at the end."""
    res = cli("train", *TINY[:2], "40", *TINY[3:], "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr[-2000:]
    draws = res.stderr.count("train:")
    assert 2 <= draws <= 4, res.stderr[-2000:]  # a redraw per step would be 40+
    assert "40/40" in res.stderr and "loss=" in res.stderr  # the last draw still shows the loss terms
    # each draw a line of its own: carriage-return redraws reached journald and `tail -f` only at the end
    raw = subprocess.run([sys.executable, "-m", "stream.cli", "train", *TINY, "--out", str(tmp_path / "raw")], cwd=REPO,
                         capture_output=True, timeout=120).stderr  # bytes: text mode would turn each \r into a newline
    assert b"train:" in raw and b"\r" not in raw, raw[-2000:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_requested_but_absent(tmp_path):
    res = cli("train", *TINY, "--out", str(tmp_path / "run"), "--device", "cuda")
    assert res.returncode == 2 and "GPU" in res.stderr and "Traceback" not in res.stderr


def test_corrupt_checkpoint_in_eval_is_exit_2(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00garbage" * 50)
    scored = tmp_path / "set"
    write_cdnet_folder(scored, 5, SceneConfig(width=160, height=120), progress=False)
    res = cli("eval", "--set", str(scored), "--method", str(bad))
    assert res.returncode == 2 and "model.pt" in res.stderr and "Traceback" not in res.stderr


def test_run_time_never_imports_torch():
    code = ("import sys, stream.cli, stream.daemon, stream.client, stream.capture, stream.sources, stream.engine, "
            "stream.publisher, stream.protocol, stream.synthetic, stream.config, training.evaluate, training.data; "
            "bad = [m for m in ('torch', 'training.model') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    for path in (REPO / "stream").glob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "from training" not in text.split("def ", 1)[0], path


@pytest.mark.parametrize("option, words", [
    (["--lr", "nan"], "lr (--lr) = nan"), (["--batch", "1"], "at least 2 frames"), (["--width", "0"], "width (--width) = 0"),
    (["--depth", "-1"], "down-samplings"), (["--crop", "-1"], "crop (--crop) = -1"), (["--bg-frames", "0"], "bg_frames"),
    (["--device", "foo"], "cuda:K"), (["--size", "99999x99999"], "32 to 1920"), (["--size", "40x30"], "height (--size) = 30"),
    (["--steps", "0"], "nothing to train"), (["--prox-steps", "-1"], "prox_steps"), (["--lambda", "-1"], "sparsity weight"),
    (["--threshold", "1.5"], "threshold (--threshold)"), (["--checkpoint-every", "0"], "checkpoint_every"),
    (["--size", "64x48", "--depth", "6"], "height (--size) = 48: too small for a depth-6 U-Net"),
])
def test_a_setting_that_cannot_train_is_one_line_exit_2(tmp_path, option, words):
    """Refused before the footage loads: no traceback from torch, --out untouched."""
    res = cli("train", *TINY, *option, "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_out_that_is_a_file_or_cannot_be_created_is_one_line_exit_2(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    for out, words in ((afile, "is a file"), (afile / "run", "is a file"), (Path("/proc/sparsecam-run"), "cannot create")):
        res = cli("train", *TINY, "--out", str(out))
        assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert afile.read_text() == "keep me"


def test_a_run_that_saved_nothing_does_not_block_the_next(tmp_path):
    """A run that stopped before its first checkpoint (only run.json) leaves --out to the corrected command."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"identity": "0" * 16, "config": {}}))
    res = cli("train", *TINY, "--out", str(out))
    assert res.returncode == 0 and (out / "model.pt").is_file(), res.stderr[-2000:]
    assert json.loads((out / "run.json").read_text())["identity"] != "0" * 16


def test_group_norm_takes_any_width():
    """--norm group --width 6 raised 'num_channels must be divisible by num_groups' after the footage loaded."""
    import torch

    from training.model import ModelConfig, UNet

    net = UNet(ModelConfig(width=6, depth=2, norm="group", height=32, width_px=32))
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_an_align_the_model_cannot_search_is_refused(tmp_path):
    """--size 32x32 --align 14 trained silently against a flat background (the shift search's
    window was empty: NaN shifts)."""
    from training.align import max_radius

    res = cli("train", *TINY, "--size", "32x32", "--align", "14", "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and f"at most {max_radius(32, 32)}" in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_a_network_output_gone_nan_is_the_diverged_message(tmp_path, monkeypatch):
    from stream.errors import UserError
    from training.train import Trainer, TrainConfig, train

    def nan_step(self, opt):
        raise FloatingPointError("a non-finite value (NaN or inf) reached the low-rank term")

    monkeypatch.setattr(Trainer, "train_step", nan_step)
    cfg = TrainConfig(footage=["synthetic:frames=30,size=64x48"], steps=3, batch=8, crop=32, width=4, depth=2)
    with pytest.raises(UserError, match="the loss diverged at step 1; lower --lr"):
        train(cfg, tmp_path / "run", progress=False)
