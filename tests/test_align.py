"""Background alignment (training/align.py): shaking cameras (shift) and exposure changes (gain); median, model, CLI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests import needs  # noqa: E402

torch = needs.module("torch", "install the train extra")

from stream.synthetic import SceneConfig, SyntheticScene  # noqa: E402
from training.align import GAIN_RANGE, align_background, aligned_median, estimate_gain, estimate_shift, normalise_exposure, normalised_frames, shift_images  # noqa: E402
from training.checkpoint import model_from_checkpoint  # noqa: E402
from training.model import LEGACY_ALIGN, LEGACY_EXPOSURE, ModelConfig, UNet  # noqa: E402
from training.train import build_parser, config_from_args  # noqa: E402

H, W = 120, 160


def _big_background() -> np.ndarray:
    """A textured static scene larger than the frame, so frames can be cut from it at any offset."""
    return SyntheticScene(SceneConfig(width=W + 40, height=H + 40, n_objects=0, noise_std=0, drift=0, seed=3)).background()


def _window(big: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The frame a camera moved by (dx, dy) sees: out[y, x] = big[y + 20 + dy, x + 20 + dx] (sub-pixel)."""
    m = np.float32([[1, 0, -(20 + dx)], [0, 1, -(20 + dy)]])
    return cv2.warpAffine(big, m, (W, H), flags=cv2.INTER_LINEAR)


def _t(img: np.ndarray) -> torch.Tensor:
    a = img if img.ndim == 4 else img[None]
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.parametrize("dx,dy", [(0.0, 0.0), (3.0, -2.0), (0.5, 1.5), (-6.0, 4.0), (7.25, -6.75)])
def test_estimate_shift_recovers_the_camera_motion(dx: float, dy: float) -> None:
    big = _big_background()
    frame = _window(big, dx, dy).copy()
    frame[30:70, 40:100] = (20, 200, 240)  # a large object in the frame must not pull the estimate
    shift = estimate_shift(_t(frame), _t(_window(big, 0, 0)), radius=8)[0].numpy()
    assert np.abs(shift - [dx, dy]).max() < 0.3, shift


def test_alignment_removes_the_edges_a_shake_leaves() -> None:
    big = _big_background()
    bg, frame = _t(_window(big, 0, 0)), _t(_window(big, 5.0, -3.0))
    before = (frame - bg).abs()[..., 10:-10, 10:-10].mean()
    after = (frame - align_background(frame, bg, 8)).abs()[..., 10:-10, 10:-10].mean()
    assert after < before / 5, (float(before), float(after))
    # a batch: each frame gets its own shift, and an unmoved frame keeps the background as it is
    both = torch.cat([frame, bg])
    moved = align_background(both, bg, 8)
    assert torch.allclose(moved[1], bg[0], atol=0.01)
    assert (moved[0] - frame[0]).abs()[..., 10:-10, 10:-10].mean() < before / 5


def test_shift_images_direction() -> None:
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 4, 5] = 1.0
    out = shift_images(img, torch.tensor([[1.0, -2.0]]))  # out[y, x] = img[y - 2, x + 1]
    assert out[0, 0, 6, 4] == pytest.approx(1.0)
    assert float(out.sum()) == pytest.approx(1.0)


def test_aligned_median_is_sharp_under_jitter() -> None:
    rng = np.random.default_rng(0)
    big = _big_background()
    truth = _window(big, 0, 0).astype(np.float32)
    frames = np.stack([_window(big, *rng.integers(-5, 6, 2)) for _ in range(31)])
    plain = aligned_median(frames, radius=0)
    aligned = aligned_median(frames, radius=8)
    # compared where the median's own grid sits (the plain median is blurred everywhere)
    err_plain = np.abs(plain.astype(np.float32) - truth)[10:-10, 10:-10].mean()
    best = min(np.abs(aligned.astype(np.float32) - _window(big, dx, dy).astype(np.float32))[10:-10, 10:-10].mean()
               for dx in range(-2, 3) for dy in range(-2, 3))
    assert best < err_plain / 2, (best, err_plain)


def test_model_aligns_and_old_checkpoints_do_not() -> None:
    big = _big_background()
    bg = _t(_window(big, 0, 0))
    cfg = ModelConfig(width=4, depth=2, height=H, width_px=W, output="direct")
    assert cfg.align == 8  # the default for new models
    model = UNet(cfg, bg).eval()
    frame = _t(_window(big, 4.0, 3.0))
    with torch.no_grad():
        seen = {}
        model._features = lambda inp: seen.setdefault("bg", inp[:, 3:]) * 0  # record the background the net is given
        model(frame)
    assert (seen["bg"] - frame).abs()[..., 10:-10, 10:-10].mean() < 0.01

    config = ModelConfig(width=2, depth=1, height=16, width_px=16).to_dict()
    config.pop("align")
    state = {"config": config, "model": UNet(ModelConfig(**config)).state_dict()}
    assert model_from_checkpoint(state).cfg.align == LEGACY_ALIGN == 0
    with pytest.raises(ValueError):
        ModelConfig(align=-1)


def test_align_flag_reaches_the_run() -> None:
    default = config_from_args(build_parser().parse_args(["synthetic", "--out", "x"]))
    off = config_from_args(build_parser().parse_args(["synthetic", "--out", "x", "--align", "0"]))
    assert (default.align, off.align) == (8, 0)
    assert default.identity() != off.identity()  # another background, another run


def _scene_frame(gains: tuple[float, float, float], with_object: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(background, frame) uint8: the frame is the background at another exposure (per-channel gains),
    with a large object (a third of the frame, as the person in waving trees) that must not pull the estimate."""
    bg = _window(_big_background(), 0, 0)
    frame = np.clip(bg.astype(np.float32) * np.float32(gains), 0, 255).round().astype(np.uint8)
    if with_object:
        frame[10:90, 30:110] = (230, 30, 200)
    return bg, frame


@pytest.mark.parametrize("gains", [(1.0, 1.0, 1.0), (0.7, 0.7, 0.7), (1.3, 1.25, 1.2), (0.8, 1.0, 1.15), (0.55, 0.55, 0.55)])
def test_estimate_gain_recovers_the_exposure(gains: tuple[float, float, float]) -> None:
    bg, frame = _scene_frame(gains)
    gain = estimate_gain(_t(frame), _t(bg))[0, :, 0, 0].numpy()
    assert np.abs(gain - gains).max() < 0.02, gain
    shaken = _window(_big_background(), 3.0, -2.0)  # found against the unaligned background: a shift barely moves it
    frame2 = np.clip(shaken.astype(np.float32) * np.float32(gains), 0, 255).round().astype(np.uint8)
    gain2 = estimate_gain(_t(frame2), _t(bg))[0, :, 0, 0].numpy()
    assert np.abs(gain2 - gains).max() < 0.04, gain2


def test_gain_stays_in_range_and_at_1_when_nothing_fits() -> None:
    black = torch.zeros(1, 3, 8, 8)
    gain = estimate_gain(black, black)
    assert torch.isfinite(gain).all() and ((gain >= GAIN_RANGE[0]) & (gain <= GAIN_RANGE[1])).all()
    bright = torch.full((1, 3, 8, 8), 0.9)
    assert torch.equal(estimate_gain(bright, bright * 0.1), torch.ones(1, 3, 1, 1))  # 9x is no exposure step: nothing fits, left as is


def test_normalise_exposure_undoes_a_global_change() -> None:
    bg, frame = _scene_frame((0.75, 0.8, 0.85))
    scene = np.ones(frame.shape[:2], bool)
    scene[10:90, 30:110] = False
    x, b = _t(frame), _t(bg)
    before = (x - b).abs().amax(1)[0].numpy()[scene]
    after = (normalise_exposure(x, b) - b).abs().amax(1)[0].numpy()[scene]
    assert np.quantile(before, 0.5) > 0.05 and np.quantile(after, 0.99) < 0.02, (np.quantile(before, 0.5), np.quantile(after, 0.99))
    # the trainer's path: uint8 frames normalised once
    once = normalised_frames(frame[None], bg)[0].astype(np.int16)
    assert np.abs(once - bg.astype(np.int16))[scene].max() <= 6


def test_model_normalises_exposure_and_old_checkpoints_do_not() -> None:
    bg, frame = _scene_frame((0.7, 0.75, 0.8), with_object=False)
    cfg = ModelConfig(width=4, depth=2, height=H, width_px=W, output="direct", align=0)
    assert cfg.exposure  # the default for new models
    seen = {}
    for exposure in (True, False):
        model = UNet(ModelConfig(**{**cfg.to_dict(), "exposure": exposure}), _t(bg)).eval()
        model._features = lambda inp, key=exposure: seen.setdefault(key, inp[:, :3]) * 0  # record the frame the net is given
        with torch.no_grad():
            model(_t(frame))
    b = _t(bg)
    assert (seen[True] - b).abs().mean() < 0.01 < (seen[False] - b).abs().mean()

    config = ModelConfig(width=2, depth=1, height=16, width_px=16).to_dict()
    config.pop("exposure")
    state = {"config": config, "model": UNet(ModelConfig(**config)).state_dict()}
    assert model_from_checkpoint(state).cfg.exposure is LEGACY_EXPOSURE is False


def test_exposure_flag_reaches_the_run() -> None:
    default = config_from_args(build_parser().parse_args(["synthetic", "--out", "x"]))
    off = config_from_args(build_parser().parse_args(["synthetic", "--out", "x", "--no-exposure"]))
    assert (default.exposure, off.exposure) == (True, False)
    assert default.identity() != off.identity()  # other training frames, another run
