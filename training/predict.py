"""Run a trained model on frames, from a `.pt` checkpoint (torch) or an `.onnx` file (onnxruntime)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from stream.errors import UserError
from stream.maskclean import clean_masks


class Predictor(Protocol):
    threshold: float
    name: str
    size: tuple[int, int]  # (width, height) the model was trained at

    def predict(self, frames: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N,H,W,3) BGR -> (score float32 (N,H,W), mask bool (N,H,W)), the mask cleaned up as
        the run time does; ``threshold`` replaces the model's own (mask = score > threshold, then the clean-up)."""
        ...


class TorchPredictor:
    def __init__(self, path: Path) -> None:
        import torch

        from training.checkpoint import load_finished
        from training.wrapper import FramesToMask

        state, model = load_finished(path)  # a damaged or unfinished checkpoint: one line
        self.threshold = float(state["threshold"])
        self.name = str(path)
        self._torch = torch
        self.module = FramesToMask(model, self.threshold)
        self.cleanup = model.cfg.cleanup()
        self.size = (int(model.cfg.width_px), int(model.cfg.height))

    def predict(self, frames: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.no_grad():
            mask, score, small = self.module(self._torch.from_numpy(np.ascontiguousarray(frames)))
        score, mask = score.numpy(), mask.numpy()
        t = self.threshold if threshold is None else float(threshold)
        if threshold is not None:
            mask = (score > np.float32(t)).astype(np.uint8) * 255
        mask = clean_masks(mask, small.numpy(), t, self.cleanup)  # as the run time does
        return score, mask > 0


class OnnxPredictor:
    def __init__(self, path: Path) -> None:
        from stream.engine import Engine

        self.engine = Engine(path)
        self.threshold = self.engine.info.threshold
        self.name = str(path)
        self.size = (int(self.engine.info.width), int(self.engine.info.height))

    def predict(self, frames: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        mask, score = self.engine.run(frames, with_score=True, threshold=threshold)
        return score, mask > 0


def load_predictor(path: str | Path) -> Predictor:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model {path} is a folder; pass the .onnx or .pt file in it" if path.is_dir() else f"model {path} does not exist")
    if path.suffix.lower() == ".onnx":
        return OnnxPredictor(path)
    return TorchPredictor(path)
