"""Training under torchrun: 2 CPU processes, gloo, DistributedDataParallel."""

from __future__ import annotations

import json
import subprocess
import sys
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
