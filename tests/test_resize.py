"""Training footage and live frames are shrunk by one and the same resize (training.resize)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from training.data import load_footage
from training.model import ModelConfig, UNet
from training.resize import resize_image
from training.wrapper import FramesToMask


class Spy(UNet):
    """Records what the network was fed."""

    def forward(self, x: torch.Tensor, background: torch.Tensor | None = None) -> torch.Tensor:
        self.seen = x.clone()
        return super().forward(x, background)


@pytest.mark.parametrize("src", [(240, 320), (250, 333), (480, 640)])
def test_loader_feeds_the_net_what_the_graph_feeds_it(tmp_path: Path, src: tuple[int, int]) -> None:
    rng = np.random.default_rng(src[0])
    frame = cv2.GaussianBlur(rng.integers(0, 256, (*src, 3), dtype=np.uint8), (5, 5), 0)
    (tmp_path / "f").mkdir()
    cv2.imwrite(str(tmp_path / "f" / "000001.png"), frame)
    loaded = load_footage([tmp_path / "f"], size=(160, 120), progress=False).frames[0]
    spy = Spy(ModelConfig(width=2, depth=1, height=120, width_px=160))
    with torch.no_grad():
        FramesToMask(spy, 0.1)(torch.from_numpy(frame[None]))
    graph = (spy.seen[0].permute(1, 2, 0).numpy() * 255.0)
    assert loaded.shape == graph.shape == (120, 160, 3)
    assert np.abs(loaded.astype(np.float32) - graph).max() <= 0.51  # the loader rounds to uint8


def test_resize_image_shapes_and_identity() -> None:
    img = np.arange(60 * 80, dtype=np.uint8).reshape(60, 80)
    assert resize_image(img, (80, 60)) is img
    assert resize_image(img, (40, 30)).shape == (30, 40)
    flat = np.full((97, 131, 3), 77, np.uint8)
    assert np.array_equal(resize_image(flat, (50, 40)), np.full((40, 50, 3), 77, np.uint8))
