"""The graph's area resize shrinks frames exactly as the training loader (cv2.INTER_AREA) does."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from training.resize import area_resize


@pytest.mark.parametrize("src,dst", [((240, 320), (120, 160)), ((480, 640), (120, 160)), ((250, 333), (120, 160)),
                                     ((121, 161), (120, 160)), ((120, 160), (120, 160))])
def test_matches_cv2_inter_area(src: tuple[int, int], dst: tuple[int, int]) -> None:
    img = np.random.default_rng(sum(src)).integers(0, 256, (*src, 3), dtype=np.uint8)
    ref = cv2.resize(img, dst[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    out = area_resize(x, dst)[0].permute(1, 2, 0).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 0.51  # cv2 rounds to uint8


def test_constant_stays_constant_and_batches_are_independent() -> None:
    x = torch.stack([torch.full((1, 97, 131), 0.25), torch.full((1, 97, 131), 0.75)])
    out = area_resize(x, (40, 50))
    assert out.shape == (2, 1, 40, 50)
    assert torch.allclose(out[0], torch.tensor(0.25)) and torch.allclose(out[1], torch.tensor(0.75))
