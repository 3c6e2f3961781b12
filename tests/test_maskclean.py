"""Mask clean-up (stream/maskclean.py): holes filled, specks dropped, exactly where the upsampled score says."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.errors import UserError
from stream.maskclean import FILL_SCORE, OFF, CleanUp, clean_masks, clean_score
from stream.modelinfo import PREFIX, ModelInfo

T = 0.1


def scene() -> np.ndarray:
    """A 120x160 score: a big object with a small hole, an object with a large hole, one on the edge, a speck."""
    s = np.full((120, 160), 0.02, np.float32)
    s[20:60, 20:70] = 0.5
    s[35:40, 40:45] = 0.03  # 25 px hole (0.13 % of the frame)
    s[20:100, 90:150] = 0.4
    s[30:90, 100:140] = 0.05  # 2400 px hole (12.5 %): background seen through a gap, kept
    s[80:120, 10:40] = 0.3
    s[100:120, 20:30] = 0.01  # a notch open to the frame's bottom edge: not a hole
    s[5:8, 80:84] = 0.6  # a 12 px speck (0.06 %)
    s[0:3, 150:154] = 0.6  # a 12 px object entering at the top edge
    return s


def test_fills_small_enclosed_holes_only() -> None:
    s = scene()
    out = clean_score(s, T, CleanUp(fill_holes=0.01, min_object=0.0))
    assert out is not None
    assert (out[35:40, 40:45] == FILL_SCORE * T).all()
    np.testing.assert_array_equal(out[30:90, 100:140], s[30:90, 100:140])  # larger than 1 %
    np.testing.assert_array_equal(out[100:120, 20:30], s[100:120, 20:30])  # touches the edge
    changed = out != s
    assert changed.sum() == 25
    # a bigger limit fills the big hole too
    big = clean_score(s, T, CleanUp(fill_holes=0.2, min_object=0.0))
    assert (big[30:90, 100:140] > T).all()


def test_drops_specks_keeps_objects() -> None:
    s = scene()
    out = clean_score(s, T, CleanUp(fill_holes=0.0, min_object=0.001))  # 19.2 px
    assert out is not None
    assert (out[5:8, 80:84] == 0).all()
    assert (out > T).sum() == (s > T).sum() - 12  # the one on the edge stays
    assert clean_score(s, T, CleanUp(fill_holes=0.0, min_object=0.0005)) is None  # 9.6 px: the speck stays


def test_nothing_to_clean_is_none_and_masks_are_untouched() -> None:
    s = np.full((120, 160), 0.02, np.float32)
    s[40:80, 40:90] = 0.5
    assert clean_score(s, T, CleanUp()) is None
    masks = np.where(cv2.resize(s, (320, 240)) > T, 255, 0).astype(np.uint8)[None]
    assert clean_masks(masks, s[None], T, CleanUp()) is masks
    assert clean_masks(masks, scene()[None], T, OFF) is masks


@pytest.mark.parametrize("size", [(120, 160), (240, 320), (190, 250), (1080, 1920)])
def test_clean_masks_equal_the_upsampled_edited_score(size: tuple[int, int]) -> None:
    """Redrawing only where the edits reach gives the mask of the whole edited score, at any frame size."""
    rng = np.random.default_rng(size[0])
    s = scene() + rng.normal(0, 0.01, (120, 160)).astype(np.float32)
    frames = np.stack([s, np.full_like(s, 0.01)])
    h, w = size
    masks = np.stack([np.where(cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) > T, 255, 0).astype(np.uint8) for f in frames])
    out = clean_masks(masks, frames, T, CleanUp())
    edited = clean_score(s, T, CleanUp())
    expect = np.where(cv2.resize(edited, (w, h), interpolation=cv2.INTER_LINEAR) > T, 255, 0)
    np.testing.assert_array_equal(out[0], expect)
    np.testing.assert_array_equal(out[1], masks[1])  # an empty frame stays as it was
    assert (out[0] != masks[0]).any()
    assert masks[0][int(37.5 * h / 120), int(42.5 * w / 160)] == 0 and out[0][int(37.5 * h / 120), int(42.5 * w / 160)] == 255


def test_settings_validated() -> None:
    with pytest.raises(ValueError):
        CleanUp(fill_holes=1.0)
    with pytest.raises(ValueError):
        CleanUp(min_object=-0.1)
    assert not OFF.active and CleanUp().active


def _props(**extra: str) -> dict[str, str]:
    base = {"format": "1", "width": "160", "height": "120", "channels": "3", "threshold": "0.1", "model_version": "abc"}
    return {PREFIX + k: v for k, v in {**base, **extra}.items()}


def test_model_metadata_carries_the_settings() -> None:
    old = ModelInfo.from_metadata(_props())  # exported before the clean-up existed: off
    assert not old.cleanup().active
    info = ModelInfo.from_metadata(_props(fill_holes="0.02", min_object="0.0005"))
    assert info.cleanup() == CleanUp(0.02, 0.0005)
    assert ModelInfo.from_metadata(info.to_metadata()) == info
    with pytest.raises(UserError, match="malformed"):
        ModelInfo.from_metadata(_props(fill_holes="1.5"))
