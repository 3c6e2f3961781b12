"""Training under torchrun: 2 CPU processes, gloo, DistributedDataParallel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent


def test_torchrun_two_processes_gloo(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stream.cli", "train", "synthetic:frames=40,size=160x120", "--out", str(out),
           "--steps", "6", "--batch", "8", "--width", "4", "--depth", "2", "--device", "cpu"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6
    state = load_checkpoint(out / "model.pt")
    assert state["threshold"] is not None and len(state["history"]["loss"]) == 6
    # rank 0 wrote a usable model (DDP broadcasts the initial weights and averages gradients)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert res.stdout.count("trained 6 steps") == 1  # only rank 0 reports and writes


def test_a_stop_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """SIGTERM to rank 1 alone: the ranks agree on the stop each step, so rank 0 (which alone
    saves) stops too instead of waiting forever in the next gradient all-reduce."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stream.cli", "train", "synthetic:frames=40,size=160x120", "--out", str(out),
           "--steps", "100000", "--batch", "8", "--width", "4", "--depth", "2", "--device", "cpu", "--checkpoint-every", "3"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # its own group: a failure kills the agent and both workers
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (out / "checkpoint.pt").exists(), "training never wrote its first checkpoint"
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        rank1 = next(pid for pid in workers if "RANK=1" in _environ(pid))
        os.kill(rank1, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert stdout.count("interrupted: checkpoint saved") == 2, stderr[-3000:]
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] > 0 and len(state["history"]["loss"]) == state["step"]
    assert not (out / "model.pt").exists()  # stopped, not finished


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    kids: list[int] = []
    for task in tasks.iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _environ(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")


def test_an_out_rank_0_refuses_stops_every_rank(tmp_path):
    """Only rank 0 checks --out: when it refused, the other ranks waited in the next collective until
    the process group's timeout (minutes) instead of stopping with it."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("not a run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stream.cli", "train", "synthetic:frames=40,size=160x120", "--out", str(out),
           "--steps", "2", "--batch", "8", "--width", "4", "--depth", "2", "--device", "cpu"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode != 0 and "holds no sparsecam run" in res.stderr, res.stderr[-3000:]
    assert "rank 0 refused the run" in res.stderr  # rank 1 stopped with it
    assert time.monotonic() - t0 < 90
    assert (out / "notes.txt").read_text() == "not a run"
