"""bench/quality.py --seeds: the spread over training seeds and how the table reports it."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import quality


def fake_result(f: float) -> dict:
    metrics = {k: 0.5 for k in ("recall", "precision", "specificity", "fpr", "fnr", "pwc", "shadow_fp_share")}
    metrics["f"] = f
    return {"metrics": metrics, "ms_per_frame": 1.0, "threshold": 0.08, "oracle": {"f": f + 0.01, "threshold": 0.07}}


def test_seed_spread_trains_every_other_seed_and_reports_mean_and_range(monkeypatch, tmp_path):
    trained: list[int] = []
    f_of_seed = {1: 0.80, 2: 0.95}

    def train_model(name, root, out, steps, input_mode=None, seed=0):
        trained.append(seed)
        return out / f"seed{seed}" / "model.pt", {"train_seconds": 100.0 + seed}

    monkeypatch.setattr(quality, "train_model", train_model)
    monkeypatch.setattr(quality, "evaluate", lambda root, model: fake_result(f_of_seed[int(Path(model).parent.name[4:])]))
    first = quality.row(fake_result(0.90)) | {"train_seconds": 99.0, "train_frames": "all"}
    args = argparse.Namespace(seeds=3, out=tmp_path, steps=None, input_mode=None)
    first.update(quality.seed_spread("cam", tmp_path, args, first))
    assert trained == [1, 2]
    assert first["seed_f"] == [0.90, 0.80, 0.95]
    assert first["f_mean"] == 0.8833 and first["f_min"] == 0.80 and first["f_max"] == 0.95
    assert first["seed_train_seconds"] == [99.0, 101.0, 102.0]
    table = quality.markdown({"cam": {"sparsecam": first}}, [])
    assert "- cam: F mean 0.883, range 0.800-0.950 (0.900, 0.800, 0.950); train 99-102 s" in table
    assert "over 3 training seeds" in table


def test_one_seed_adds_no_spread_line():
    res = quality.row(fake_result(0.9)) | {"train_seconds": 50.0, "train_frames": "all"}
    assert "training seeds" not in quality.markdown({"cam": {"sparsecam": res}}, [])


def test_plot_results_draws_every_set(tmp_path):
    import cv2

    s = quality.row(fake_result(0.9)) | {"pr_curve": {"threshold": [0.1, 0.2], "recall": [0.9, 0.5], "precision": [0.6, 0.9]}}
    results = {"a": {"sparsecam": s, "mog2": quality.row(fake_result(0.6))}, "b": {"sparsecam": s}}
    path = quality.plot_results(results, tmp_path / "deep" / "quality.png")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[1] > img.shape[0]  # two panels side by side
