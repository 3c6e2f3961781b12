"""bench/cli.py: the bench scripts' one-line errors and the targets they may write or replace."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import check_out, replace_run
from stream.argtypes import json_target
from stream.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def test_replace_run_removes_only_an_earlier_run(tmp_path):
    """bench/quality.py and bench/footage.py deleted whatever was at --out/<name>: with --out the
    data folder, the labeled set itself."""
    run = tmp_path / "cam"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not a sparsecam training run"):
        replace_run(run)
    assert (run / "keep.txt").read_text() == "mine"
    (run / "run.json").write_text("{}")
    replace_run(run)
    assert not run.exists()
    replace_run(run)  # nothing there: nothing to do
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError):
        replace_run(tmp_path / "file")


@pytest.mark.parametrize("out", ["data", "data/runs", "."])
def test_out_may_not_overlap_the_data(tmp_path, out):
    (tmp_path / "data").mkdir()
    with pytest.raises(UserError, match="overlap"):
        check_out(tmp_path / out, tmp_path / "data")
    check_out(tmp_path / "runs", tmp_path / "data")


def test_json_target(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"a": 1}))
    (tmp_path / "notes.txt").write_text("my notes")
    assert json_target()(str(tmp_path / "old.json")) == tmp_path / "old.json"
    assert json_target()(str(tmp_path / "new.json")) == tmp_path / "new.json"
    for bad in (tmp_path, tmp_path / "notes.txt"):
        with pytest.raises(argparse.ArgumentTypeError):
            json_target()(str(bad))
    with pytest.raises(argparse.ArgumentTypeError, match="is not an eval result"):  # JSON, but not one of ours
        json_target(frozenset({"metrics"}), "an eval result")(str(tmp_path / "old.json"))


@pytest.mark.parametrize("script, args, words", [
    ("quality.py", ["--set", "nope", "--no-classic"], "is not a labeled set"),
    ("throughput.py", ["--model", "/nonexistent/m.onnx", "--seconds", "0.1"], "does not exist"),
    ("throughput.py", ["--providers", "NoSuchExecutionProvider", "--seconds", "0.1"], "onnxruntime runs default.onnx on CPUExecutionProvider"),
    ("exposure.py", ["--model", "/nonexistent/m.pt", "--set", "x"], None),
])
def test_bench_scripts_say_one_line_and_exit_2(tmp_path, script, args, words):
    data = tmp_path / "data"
    (data / "x" / "groundtruth").mkdir(parents=True)
    res = subprocess.run([sys.executable, str(REPO / "bench" / script), "--data", str(data), *args] if script != "throughput.py"
                         else [sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and res.stderr.strip().splitlines()[-1].startswith("error: ")
    if words:
        assert words in res.stderr


def test_quality_refuses_a_foreign_folder_of_a_later_seed_before_training(tmp_path):
    """The refusal came inside the training loop: after the first sets had trained for minutes."""
    data, out = tmp_path / "data", tmp_path / "out"
    (data / "a" / "groundtruth").mkdir(parents=True)
    (out / "a-seed1").mkdir(parents=True)
    (out / "a-seed1" / "mine.txt").write_text("keep")
    res = subprocess.run([sys.executable, str(REPO / "bench" / "quality.py"), "--data", str(data), "--out", str(out),
                          "--seeds", "2", "--no-classic"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "a-seed1 exists and is not a sparsecam training run" in res.stderr, res.stderr[-2000:]
    assert "== a" not in res.stderr  # nothing trained
    assert (out / "a-seed1" / "mine.txt").read_text() == "keep"


def test_an_interrupted_training_ends_the_script_as_an_interrupt(monkeypatch, capsys):
    """Ctrl-C during bench/quality.py's training ended in "TypeError: 'NoneType' object does not support item
    assignment": the trainer returns None when it stops at a step boundary."""
    import training.train
    from bench.cli import run, train_run

    monkeypatch.setattr(training.train, "train", lambda cfg, out, progress=True: None)
    with pytest.raises(SystemExit) as stopped:
        run(lambda: bool(train_run(object(), Path("unused"))))
    assert stopped.value.code == 130 and capsys.readouterr().err.strip() == "interrupted"
