"""bench/footage.py: trains on clips without ground truth, reports what it masks, draws the contact sheet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from bench import footage
from stream.synthetic import SceneConfig, SyntheticScene

REPO = Path(__file__).resolve().parent.parent


def test_mask_stats_are_per_frame_percentages():
    masks = np.zeros((4, 10, 10), bool)
    masks[1, :1] = True  # 10 %
    masks[2, :5] = True  # 50 %
    masks[3, :2] = True  # 20 %
    stats = footage.mask_stats(masks)
    assert stats["fg_median_pct"] == 15.0  # median of 0, 10, 50, 20
    assert stats["frames_with_fg_pct"] == 75.0
    assert 40.0 < stats["fg_p95_pct"] <= 50.0


def test_sheet_row_shows_the_busiest_frame_first_with_its_mask_in_red():
    frames = np.full((5, 40, 80, 3), 128, np.uint8)
    masks = np.zeros((5, 40, 80), bool)
    masks[3, 10:30, 20:60] = True  # frame 3 is the busiest; the middle frame (2) has none
    row = footage.sheet_row("cam", frames, masks)
    width = footage.SHEET_WIDTH * 2
    first, second = row[:, :width], row[:, width + 4 : 2 * width + 4]
    right_half = first[:, footage.SHEET_WIDTH :]
    red = (right_half[..., 2] > 180) & (right_half[..., 0] < 100)
    assert red.any()  # the busiest frame's mask, over the frame
    assert not ((second[..., 2] > 180) & (second[..., 0] < 100)).any()  # the middle frame: nothing masked


def test_bench_trains_each_clip_and_skips_an_unreadable_one(tmp_path):
    folder = tmp_path / "data" / footage.FOLDER
    folder.mkdir(parents=True)
    frames = SyntheticScene(SceneConfig(width=160, height=120, seed=4)).frames(40)[0]
    video = cv2.VideoWriter(str(folder / "road.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for f in frames:
        video.write(f)
    video.release()
    (folder / "stills").mkdir()
    for i, f in enumerate(frames[:30]):
        cv2.imwrite(str(folder / "stills" / f"{i + 1:06d}.png"), f)
    (folder / "broken.avi").write_bytes(b"not a video" * 100)
    (folder / "README.txt").write_text("not a clip")
    out, js = tmp_path / "out", tmp_path / "r.json"
    res = subprocess.run([sys.executable, "bench/footage.py", "--data", str(tmp_path / "data"), "--steps", "3", "--out", str(out),
                          "--json", str(js)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "skipped" in res.stderr and "broken.avi" in res.stderr and "Traceback" not in res.stderr
    figures = json.loads(js.read_text())
    assert set(figures) == {"road", "stills"}
    assert figures["road"]["frames"] == 40 and figures["stills"]["frames"] == 30
    for name, r in figures.items():
        assert r["model_size"] == "160x120" and 0.0 <= r["fg_median_pct"] <= r["fg_p95_pct"] <= 100.0
        assert (out / name / "model.pt").is_file()
    assert "| road | 40 | 160x120 |" in res.stdout
    sheet = cv2.imread(str(out / "sheet.png"))
    assert sheet is not None and sheet.shape[0] == 2 * (240 + 4)  # a row per clip, 160x120 frames shown 320 wide


def test_unknown_clip_is_one_line_exit_2(tmp_path):
    (tmp_path / footage.FOLDER).mkdir()
    (tmp_path / footage.FOLDER / "a.avi").write_bytes(b"x")
    res = subprocess.run([sys.executable, "bench/footage.py", "--data", str(tmp_path), "--clip", "nope"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "no clip nope" in res.stderr and "a.avi" in res.stderr and "Traceback" not in res.stderr
