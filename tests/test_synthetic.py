"""The synthetic scene: pure in (cfg, t), exact ground truth, realistic statistics, fast; `sparsecam synth`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.errors import UserError
from stream.synthetic import SceneConfig, SyntheticScene, cli, write_cdnet_folder

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return SyntheticScene(SceneConfig())


def test_frame_shapes_and_types(scene: SyntheticScene) -> None:
    img, gt = scene.frame(0)
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert gt.shape == (240, 320) and gt.dtype == np.uint8
    assert set(np.unique(gt)) <= {0, 255}
    imgs, gts = scene.frames(4, start=10)
    assert imgs.shape == (4, 240, 320, 3) and gts.shape == (4, 240, 320)
    assert np.array_equal(imgs[2], scene.frame(12)[0]) and np.array_equal(gts[2], scene.frame(12)[1])


def test_deterministic_across_instances_and_call_order(scene: SyntheticScene) -> None:
    cfg = SceneConfig(jitter=3)
    a, b = SyntheticScene(cfg), SyntheticScene(cfg)
    forward = [a.frame(t) for t in (0, 1, 2, 57)]
    backward = [b.frame(t) for t in (57, 2, 1, 0)][::-1]
    for (fa, ga), (fb, gb) in zip(forward, backward):
        assert np.array_equal(fa, fb) and np.array_equal(ga, gb)
    assert np.array_equal(a.frame(1)[0], forward[1][0])  # repeated call, same bytes
    # a different seed is a different scene; consecutive frames differ (motion + noise)
    assert not np.array_equal(SyntheticScene(SceneConfig(seed=1)).frame(0)[0], scene.frame(0)[0])
    assert not np.array_equal(scene.frame(0)[1], scene.frame(5)[1])


@pytest.mark.parametrize("jitter", [0, 4])
def test_ground_truth_is_exactly_the_object_pixels(jitter: int) -> None:
    cfg = SceneConfig(seed=3, jitter=jitter)
    s = SyntheticScene(cfg)
    for t in (0, 33, 150):
        img, gt = s.frame(t)
        diff = np.abs(img.astype(np.int16) - s.background(t).astype(np.int16)).max(-1)
        # outside GT: background + noise only (6 sigma covers the ~230k noise samples)
        assert diff[gt == 0].max() <= 6 * cfg.noise_std + 1
        assert diff[gt == 0].std() < cfg.noise_std
        # inside GT: the object colours, visibly different from the background
        assert (gt > 0).any()
        assert (diff[gt > 0] > 4 * cfg.noise_std).mean() > 0.9


def test_no_noise_no_drift_background_is_exact() -> None:
    s = SyntheticScene(SceneConfig(noise_std=0, drift=0, seed=2))
    img, gt = s.frame(42)
    bg = s.background(42)
    assert np.array_equal(img[gt == 0], bg[gt == 0])
    assert np.array_equal(s.background(0), s.background(99))  # static background without drift


def test_illumination_drifts_slowly() -> None:
    s = SyntheticScene(SceneConfig(drift=0.1, drift_period=100, noise_std=0))
    means = [float(s.background(t).mean()) for t in range(0, 100, 5)]
    assert max(means) - min(means) > 0.05 * np.mean(means)
    assert abs(float(s.background(1).mean()) - float(s.background(0).mean())) < 0.01 * means[0]


def test_foreground_ratio_and_object_motion(scene: SyntheticScene) -> None:
    _, gts = scene.frames(60, start=0)
    ratio = (gts > 0).mean(axis=(1, 2))
    assert 0.02 <= ratio.mean() <= 0.10
    assert ratio.max() < 0.25
    for seed in (1, 2):
        _, g = SyntheticScene(SceneConfig(seed=seed)).frames(30, start=0)
        assert 0.02 <= (g > 0).mean() <= 0.10
    # objects move: GT changes a bit each frame but not wholesale
    change = (gts[1:] != gts[:-1]).mean(axis=(1, 2))
    assert (change > 0).all() and change.mean() < ratio.mean()


def test_objects_leave_and_enter_the_frame() -> None:
    for seed in (5, 6):
        s = SyntheticScene(SceneConfig(n_objects=1, seed=seed, noise_std=0))
        visible = [bool(s.frame(t)[1].any()) for t in range(0, 900, 3)]
        assert any(visible) and not all(visible)


def test_colours_differ_from_background(scene: SyntheticScene) -> None:
    img, gt = scene.frame(20)
    bg = scene.background(20).astype(np.float32)
    labels, comp = cv2.connectedComponents((gt > 0).astype(np.uint8))
    assert labels > 2
    for k in range(1, labels):
        m = comp == k
        contrast = np.abs(img[m].astype(np.float32).mean(0) - bg[m].mean(0)).max()
        assert contrast > 15, f"object {k} blends into the background ({contrast:.1f})"


def test_jitter_shifts_whole_frame_consistently() -> None:
    still = SyntheticScene(SceneConfig(seed=4, noise_std=0, drift=0))
    assert all(np.array_equal(still.background(0), still.background(t)) for t in range(8))
    j = 3
    shaky = SyntheticScene(SceneConfig(seed=4, noise_std=0, drift=0, jitter=j))
    frames = [shaky.frame(t) for t in range(8)]
    bgs = [shaky.background(t) for t in range(8)]
    assert any(not np.array_equal(bgs[0], b) for b in bgs[1:])  # the camera moves
    # each frame's background is an integer shift (|d| <= 2j) of frame 0's: the whole image moves
    m = 2 * j
    ref = bgs[0][m:-m, m:-m].astype(np.float32)
    shifts = set()
    for (img, gt), bg in zip(frames, bgs):
        res = cv2.matchTemplate(bg.astype(np.float32), ref, cv2.TM_SQDIFF)
        _, _, loc, _ = cv2.minMaxLoc(res)
        x, y = loc
        assert np.array_equal(bg[y:y + ref.shape[0], x:x + ref.shape[1]], bgs[0][m:-m, m:-m])  # an exact shift
        shifts.add(loc)
        # objects are shifted with the background: outside GT the frame is exactly the shifted background
        assert np.array_equal(img[gt == 0], bg[gt == 0])
    assert len(shifts) > 2


def test_other_resolutions_scale() -> None:
    s = SyntheticScene(SceneConfig(width=160, height=120, seed=1))
    img, gt = s.frame(3)
    assert img.shape == (120, 160, 3) and gt.shape == (120, 160)
    assert 0.02 <= (s.frames(30)[1] > 0).mean() <= 0.10


def test_bad_config_is_user_error() -> None:
    with pytest.raises(UserError):
        SceneConfig(width=8)
    with pytest.raises(UserError):
        SceneConfig(jitter=-1)


def test_write_cdnet_folder(tmp_path: Path) -> None:
    cfg = SceneConfig(width=96, height=64, seed=7)
    out = write_cdnet_folder(tmp_path / "set", 5, cfg, start=10, progress=False)
    assert sorted(p.name for p in (out / "input").iterdir()) == [f"{i:06d}.png" for i in range(1, 6)]
    assert (out / "temporalROI.txt").read_text().split() == ["1", "5"]
    assert "seed=7" in (out / "README.txt").read_text()
    img, gt = SyntheticScene(cfg).frame(12)
    assert np.array_equal(cv2.imread(str(out / "input" / "000003.png")), img)
    assert np.array_equal(cv2.imread(str(out / "groundtruth" / "000003.png"), cv2.IMREAD_UNCHANGED), gt)


def test_cli_writes_folder_and_refuses_non_empty(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    assert cli(["--out", str(out), "--frames", "3", "--size", "64x48", "--seed", "2", "--jitter", "1"]) == 0
    assert len(list((out / "groundtruth").iterdir())) == 3
    assert cv2.imread(str(out / "input" / "000001.png")).shape == (48, 64, 3)
    with pytest.raises(UserError, match="not an empty folder"):
        cli(["--out", str(out), "--frames", "3"])
    with pytest.raises(UserError, match="WIDTHxHEIGHT"):
        cli(["--out", str(tmp_path / "other"), "--size", "big"])


def test_cli_scene_options_reach_the_scene(tmp_path: Path) -> None:
    """--objects, --noise and --start write the scene SceneConfig describes, frame for frame."""
    out = tmp_path / "opts"
    assert cli(["--out", str(out), "--frames", "2", "--size", "64x48", "--seed", "4", "--objects", "2", "--noise", "0",
                "--start", "50"]) == 0
    cfg = SceneConfig(width=64, height=48, seed=4, n_objects=2, noise_std=0.0)
    img, gt = SyntheticScene(cfg).frame(51)  # input/000002.png is frame(start + 1)
    assert np.array_equal(cv2.imread(str(out / "input" / "000002.png")), img)
    assert np.array_equal(cv2.imread(str(out / "groundtruth" / "000002.png"), cv2.IMREAD_UNCHANGED), gt)
    other = SyntheticScene(SceneConfig(width=64, height=48, seed=4)).frame(51)[0]  # the defaults: 6 objects, noise 3
    assert not np.array_equal(img, other)


def test_cli_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "s"
    (out).mkdir()
    (out / "keep.txt").write_text("x")
    r = subprocess.run([sys.executable, "-m", "stream.cli", "synth", "--out", str(out), "--frames", "2"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not an empty folder" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "stream.cli", "synth", "--out", str(tmp_path / "t"), "--frames", "2",
                        "--size", "80x60"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t" / "groundtruth" / "000002.png").is_file()
    # the eval command it suggests runs as printed (it once lacked the required --method)
    hint = r.stdout.split("sparsecam ", 1)[1].rstrip(")\n").replace("MODEL.onnx|mog2", "mog2").split()
    e = subprocess.run([sys.executable, "-m", "stream.cli", *hint], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert e.returncode == 0 and "F " in e.stdout, e.stderr[-2000:]
