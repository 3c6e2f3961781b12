"""The ground-truth-free threshold rule (training/threshold.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training.threshold import CAP, FLOOR, K, Q_FACTOR, choose_threshold, noise_sigma


def _frames(noise: float, n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bg = np.full((24, 32, 3), 120, np.uint8)
    frames = np.clip(bg[None] + rng.normal(0, noise * 255, (n, 24, 32, 3)), 0, 255).astype(np.uint8)
    return frames, bg


def test_noise_sigma_is_the_gaussian_std_and_takes_one_background_per_frame() -> None:
    frames, bg = _frames(0.02)
    assert noise_sigma(frames, bg) == pytest.approx(0.02, rel=0.2)  # integer grey levels
    per_frame = np.repeat(bg[None], len(frames), axis=0)
    assert noise_sigma(frames, per_frame) == noise_sigma(frames, bg)
    moved = per_frame.copy()
    moved[1] = 0  # each frame is compared with its own background
    assert noise_sigma(frames, moved) > noise_sigma(frames, bg)


def test_quiet_footage_gets_the_floor() -> None:
    frames, bg = _frames(0.003)
    scores = np.zeros((20, 24, 32), np.float32)
    assert choose_threshold(scores, frames, bg) == FLOOR


def test_the_lower_estimate_wins() -> None:
    frames, bg = _frames(0.03)  # 6 sigma = 0.18
    rng = np.random.default_rng(1)
    leaves = rng.uniform(0, 0.07, (20, 24, 32)).astype(np.float32)  # the gate lets leaves through: q90 = 0.063
    t = choose_threshold(leaves, frames, bg)
    assert t == pytest.approx(Q_FACTOR * np.quantile(leaves, 0.9))
    assert FLOOR < t < K * 0.03
    # a shake the gate learned to ignore: raw noise high, scores clean -> as low as the floor allows
    assert choose_threshold(leaves * 0.1, frames, bg) == FLOOR
    # both estimates high (footage full of motion) -> the cap
    assert choose_threshold(leaves * 10, *_frames(0.06)) == CAP
    # scores clean but the raw difference moderate -> K sigma
    frames2, bg2 = _frames(0.02)
    assert choose_threshold(np.full((20, 24, 32), 0.5, np.float32), frames2, bg2) == pytest.approx(K * noise_sigma(frames2, bg2))
