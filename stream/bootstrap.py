"""Masks for a camera that has no model yet: OpenCV MOG2, marked ``bootstrap-mog2``.

A new camera publishes usable masks from its first minute (MOG2 + a 5x5 median filter, shadows
as background), records footage, and switches to its own learned model as soon as
``<models dir>/<camera>/current.onnx`` appears (the daemon watches for it). Subscribers see the
switch in the header's ``model_version``.
"""

from __future__ import annotations

import cv2
import numpy as np

BOOTSTRAP_VERSION = "bootstrap-mog2"


class Mog2Engine:
    """Engine-like (``run``, ``model_version``, ``provider``) and stateful: one per camera."""

    model_version = BOOTSTRAP_VERSION
    provider = "opencv-mog2"

    def __init__(self, history: int = 500, var_threshold: float = 16.0, median: int = 5) -> None:
        self.mog = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=var_threshold, detectShadows=True)
        self.median = median
        self.path = None

    def run(self, frames: np.ndarray) -> np.ndarray:
        """uint8 BGR (N,H,W,3) of ONE camera, in time order -> masks uint8 (N,H,W) 0/255."""
        single = frames.ndim == 3
        out = []
        for frame in frames[None] if single else frames:
            fg = self.mog.apply(frame)
            mask = np.where(fg == 255, 255, 0).astype(np.uint8)  # 127 = shadow -> background
            if self.median:
                mask = cv2.medianBlur(mask, self.median)
            out.append(mask)
        masks = np.stack(out)
        return masks[0] if single else masks
