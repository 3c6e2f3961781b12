"""bench/exposure.py: its options, the checkpoint variants it compares and its table."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import needs  # noqa: E402

torch = needs.module("torch", "install the train extra")

from bench import exposure  # noqa: E402
from training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from training.model import ModelConfig, UNet  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def test_factors_parse_and_refuse_nonsense():
    assert exposure.parse_factors("0.8,1,1.25") == [0.8, 1.0, 1.25]
    assert exposure.parse_factors("1,1.0,0.8") == [1.0, 0.8]  # one column per factor
    for bad in ("", "x", "0,1", "1,,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            exposure.parse_factors(bad)


def test_scale_saturates_like_a_sensor():
    frames = np.array([[[[10, 200, 255]]]], np.uint8)
    assert exposure.scale(1.25)(frames).tolist() == [[[[13, 250, 255]]]]
    assert exposure.scale(0.5)(frames).tolist() == [[[[5, 100, 128]]]]


def test_variants_differ_only_in_exposure_matching(tmp_path):
    model = UNet(ModelConfig(width=2, depth=1, height=16, width_px=16))
    src = tmp_path / "model.pt"
    save_checkpoint(src, {"model": model.state_dict(), "config": model.cfg.to_dict(), "threshold": 0.1})
    on, off = (load_checkpoint(exposure.with_exposure(src, flag, tmp_path)) for flag in (True, False))
    assert (on["config"]["exposure"], off["config"]["exposure"]) == (True, False)
    assert {k: v for k, v in on["config"].items() if k != "exposure"} == {k: v for k, v in off["config"].items() if k != "exposure"}
    assert all(torch.equal(on["model"][k], off["model"][k]) for k in on["model"])


def test_table_and_model_needs_one_set(tmp_path):
    table = exposure.markdown({"cam": {"on": {"0.8": 0.9, "1.0": 0.95}, "off": {"0.8": 0.5, "1.0": 0.95}}}, [0.8, 1.0])
    assert "| cam | on | 0.900 | 0.950 |" in table and "| cam | off | 0.500 | 0.950 |" in table
    for name in ("a", "b"):  # two labeled sets, no --set: which one was the model trained on?
        (tmp_path / name / "groundtruth").mkdir(parents=True)
    res = subprocess.run([sys.executable, "bench/exposure.py", "--data", str(tmp_path), "--model", "m.pt"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "exactly one --set" in res.stderr
