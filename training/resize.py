"""The one resize between camera frames and the model's resolution, shared by training and the graph.

Training footage is shrunk to the model's resolution here (training/data.py), and the exported
graph shrinks every camera frame with the same operation (training/wrapper.py): if the two
differed, the background stored in the model and a live frame would differ at every edge.
The operation is torch's antialiased bilinear resize (a triangle filter as wide as the scale
factor; ONNX Resize with antialias=1), cheap in onnxruntime (0.75 ms for 320x240 -> 160x120 on
one core). Measured on highway with the same trained model: a graph that resized differently
from the trainer (cv2.INTER_AREA footage, antialiased frames) scored F 0.943; either resize used
on both sides scored 0.949-0.952 (an exact area resize in the graph cost 3 ms instead).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_to_model(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float (N, C, H, W) -> (N, C, size[0], size[1]): the graph's resize (identity at equal size)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) or (H, W, C) -> uint8 at ``size`` = (width, height), exactly as the graph resizes."""
    w, h = size
    if img.shape[:2] == (h, w):
        return img
    x = torch.from_numpy(np.ascontiguousarray(img)).float()
    x = x[None, None] if img.ndim == 2 else x.permute(2, 0, 1)[None]
    y = resize_to_model(x, (h, w)).round_().clamp_(0, 255).to(torch.uint8)
    return (y[0, 0] if img.ndim == 2 else y[0].permute(1, 2, 0)).contiguous().numpy()
