"""Frames in, mask out: the model with its pre- and post-processing, as one torch module.

This is exactly the graph that `sparsecam export` writes to ONNX, and what `.pt` checkpoints
run through in evaluation, so both paths share one definition:
uint8 BGR frames (N, H, W, 3) -> float [0, 1] -> gray if the model is gray -> resize to the
model's resolution (training.resize: as the trainer shrank its footage) -> U-Net -> score
max_c |S_c| through the median filter (``score_model``) -> resize back to (H, W) -> mask = score > t.
The mask clean-up (stream/maskclean.py) runs on ``score_model`` after this graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.model import UNet, foreground_score
from training.resize import resize_to_model

# ITU-R BT.601 luma, the weights of cv2.COLOR_BGR2GRAY, in B, G, R order.
GRAY_WEIGHTS = (0.114, 0.587, 0.299)


class FramesToMask(nn.Module):
    """uint8 (N,H,W,3) BGR -> (mask uint8 (N,H,W) 0/255, score float32 (N,H,W), score_model float32 (N,h,w))."""

    def __init__(self, model: UNet, threshold: float) -> None:
        super().__init__()
        self.model = model.eval()
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.register_buffer("gray_weights", torch.tensor(GRAY_WEIGHTS).reshape(1, 3, 1, 1))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = frames.shape[1], frames.shape[2]
        x = frames.permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        if self.model.cfg.channels == 1:
            x = (x * self.gray_weights).sum(dim=1, keepdim=True)
        size = (self.model.cfg.height, self.model.cfg.width_px)
        x = resize_to_model(x, size)  # the resize the trainer shrank its footage with
        small = foreground_score(self.model(x), self.model.cfg.score_filter)
        score = F.interpolate(small.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False).squeeze(1)
        mask = (score > self.threshold).to(torch.uint8) * 255
        return mask, score, small
