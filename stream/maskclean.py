"""Mask clean-up: fill small holes inside objects and drop specks, at the model's resolution.

The network's mask is ``bilinear(score) > threshold``, with ``score`` the filtered foreground
score at the model's resolution (the graph's ``score_model`` output). Two connected-component
steps act on ``score > threshold`` there (160x120 by default: about 0.6 ms a frame on 2 CPU cores):

* **fill holes**: background regions enclosed by foreground (4-connected, not touching the
  frame's edge) of at most ``fill_holes`` of the frame get the score ``2 * threshold``: the dark
  jacket or car window whose colour matches the background behind it.
* **drop specks**: foreground components (8-connected, not touching the frame's edge) smaller
  than ``min_object`` of the frame get the score 0: a leaf or a glint the median filter let
  through. Components on the edge stay: an object entering the frame starts small.

The edited score is upsampled again (same bilinear rule as the graph) and only the pixels it
can reach are redrawn, so a frame with nothing to clean keeps the graph's mask bit for bit.
The same code runs under ``sparsecam eval`` for checkpoints and ONNX models and in the daemon,
so evaluation scores exactly what is deployed. OpenCV's connected components have no ONNX
equivalent, hence this small step outside the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FILL_SCORE = 2.0  # a filled hole's score, in thresholds: stays above it after upsampling next to its object


@dataclass(frozen=True)
class CleanUp:
    """Clean-up settings, as fractions of the frame's area (0 turns a step off)."""

    fill_holes: float = 0.01  # fill enclosed background regions up to 1 % of the frame
    min_object: float = 0.001  # drop foreground components under 0.1 % of the frame

    def __post_init__(self) -> None:
        for name in ("fill_holes", "min_object"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a fraction of the frame in [0, 1), got {value}")

    @property
    def active(self) -> bool:
        return self.fill_holes > 0 or self.min_object > 0


OFF = CleanUp(0.0, 0.0)


def clean_score(score: np.ndarray, threshold: float, spec: CleanUp) -> np.ndarray | None:
    """(h, w) score -> the score with holes filled and specks dropped; None when nothing changes."""
    fg = score > threshold
    h, w = fg.shape
    out = None

    def inside(stats: np.ndarray) -> np.ndarray:
        x, y, bw, bh = (stats[:, i] for i in range(4))
        return (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)

    if spec.fill_holes > 0:
        _, labels, stats, _ = cv2.connectedComponentsWithStats((~fg).view(np.uint8), connectivity=4)
        hole = inside(stats) & (stats[:, cv2.CC_STAT_AREA] <= spec.fill_holes * h * w)
        hole[0] = False  # label 0 is the foreground here
        if hole.any():
            out = score.copy()
            sel = hole[labels]
            out[sel] = np.maximum(out[sel], FILL_SCORE * threshold)
    if spec.min_object > 0:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(fg.view(np.uint8), connectivity=8)
        small = inside(stats) & (stats[:, cv2.CC_STAT_AREA] < spec.min_object * h * w)
        small[0] = False  # the background
        if small.any():
            out = score.copy() if out is None else out
            out[small[labels]] = 0.0
    return out


def _reach(changed: np.ndarray, size: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of the (H, W) frame whose bilinear sample uses a changed model pixel."""
    h, w = changed.shape
    big_h, big_w = size
    ys, xs = np.nonzero(changed)

    def span(lo: int, hi: int, n: int, big: int) -> slice:
        scale = big / n  # output pixel X samples source x = (X + 0.5) / scale - 0.5 and its right neighbour
        start = max(0, int(np.floor((lo - 1 + 0.5) * scale - 0.5)))
        stop = min(big, int(np.ceil((hi + 1 + 0.5) * scale - 0.5)) + 1)
        return slice(start, stop)

    return span(int(ys.min()), int(ys.max()), h, big_h), span(int(xs.min()), int(xs.max()), w, big_w)


def clean_masks(masks: np.ndarray, scores: np.ndarray, threshold: float, spec: CleanUp) -> np.ndarray:
    """Apply the clean-up to masks (N, H, W) uint8 0/255 given their model-resolution scores (N, h, w).

    Returns ``masks`` itself when no frame changes, else a cleaned copy."""
    if not spec.active:
        return masks
    out = masks
    size = masks.shape[1:3]
    for i, score in enumerate(scores):
        score = np.asarray(score, np.float32)
        edited = clean_score(score, threshold, spec)
        if edited is None:
            continue
        if out is masks:
            out = masks.copy()
        rows, cols = _reach(edited != score, size)
        up = cv2.resize(edited, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        out[i, rows, cols] = np.where(up[rows, cols] > threshold, 255, 0).astype(np.uint8)
    return out
