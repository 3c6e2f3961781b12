"""Classic background-subtraction baselines run over a labeled set, frame by frame in order.

Every method sees ALL frames of the set from the first one up to the last requested index
(so it warms up before the temporal ROI, as in CDnet) and returns masks only for the
requested indices. Methods:

* ``mog2``: ``cv2.createBackgroundSubtractorMOG2()`` defaults, detectShadows=True; shadow
  pixels (127) count as background.
* ``knn``: ``cv2.createBackgroundSubtractorKNN()`` defaults; shadows as background.
* ``mog2-median``: the mog2 mask followed by a 5x5 median filter.
* ``rpca``: Principal Component Pursuit over windows of consecutive gray frames
  (``training.rpca.rpca_masks``); only windows holding a requested index are solved.
* ``subsense``, ``pawcs``: from the optional ``pybgs`` package (bgslibrary bindings).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from stream.errors import UserError
from training.rpca import rpca_masks, window_bounds

__all__ = ["CLASSIC_METHODS", "ClassicRun", "run_classic", "run_classic_timed", "RPCA_WINDOW"]

CLASSIC_METHODS: tuple[str, ...] = ("mog2", "knn", "mog2-median", "rpca", "subsense", "pawcs")
RPCA_WINDOW = 200


@dataclass
class ClassicRun:
    """Masks for the requested indices and the measured cost (ms per processed frame)."""

    method: str
    masks: dict[int, np.ndarray]
    ms_per_frame: float
    frames_processed: int
    extra: dict[str, Any] = field(default_factory=dict)


def _opencv_subtractor(method: str) -> Callable[[np.ndarray], np.ndarray]:
    if method in ("mog2", "mog2-median"):
        sub = cv2.createBackgroundSubtractorMOG2(detectShadows=True)
    else:
        sub = cv2.createBackgroundSubtractorKNN(detectShadows=True)
    median = method == "mog2-median"

    def apply(frame: np.ndarray) -> np.ndarray:
        raw = sub.apply(frame)
        mask = raw == 255  # 127 = shadow, 0 = background
        if median:
            mask = cv2.medianBlur(mask.view(np.uint8), 5) > 0
        return mask

    return apply


def _pybgs_subtractor(method: str) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import pybgs  # type: ignore[import-not-found]
    except ImportError as exc:
        raise UserError(
            f"method {method!r} needs pybgs, which is not installed (pip install '.[bgs]' from the repository, or pip install pybgs); "
            "use mog2, knn, mog2-median or rpca"
        ) from exc
    algo = pybgs.SuBSENSE() if method == "subsense" else pybgs.PAWCS()

    def apply(frame: np.ndarray) -> np.ndarray:
        out = np.asarray(algo.apply(frame))
        if out.ndim == 3:
            out = out[..., 0]
        return out > 127

    return apply


def _check(method: str, labeled_set: Any, indices: Sequence[int]) -> list[int]:
    if method not in CLASSIC_METHODS:
        raise UserError(f"unknown classic method {method!r}; choose one of {', '.join(CLASSIC_METHODS)}")
    wanted = sorted(set(int(i) for i in indices))
    missing = [i for i in wanted if i not in labeled_set.input_paths]
    if missing:
        raise UserError(f"{labeled_set.root}: no input frame for index {missing[0]}; check the set's input/ folder")
    return wanted


def _run_sequential(method: str, labeled_set: Any, wanted: list[int]) -> ClassicRun:
    apply = _opencv_subtractor(method) if method in ("mog2", "knn", "mog2-median") else _pybgs_subtractor(method)
    last = wanted[-1] if wanted else -1
    order = [i for i in sorted(labeled_set.input_paths) if i <= last]
    keep = set(wanted)
    masks: dict[int, np.ndarray] = {}
    spent = 0.0
    for i in tqdm(order, desc=f"{method} {labeled_set.name}", unit="frame", disable=None):
        frame = labeled_set.read_frame(i)
        t0 = time.perf_counter()
        mask = apply(frame)
        spent += time.perf_counter() - t0
        if i in keep:
            masks[i] = mask
    return ClassicRun(method, masks, 1000.0 * spent / max(len(order), 1), len(order))


def _run_rpca(labeled_set: Any, wanted: list[int], window: int = RPCA_WINDOW) -> ClassicRun:
    last = wanted[-1] if wanted else -1
    order = [i for i in sorted(labeled_set.input_paths) if i <= last]
    keep = set(wanted)
    bounds = window_bounds(len(order), window) if len(order) >= 2 else [(0, len(order))]
    bounds = [(s, e) for s, e in bounds if any(i in keep for i in order[s:e])]
    masks: dict[int, np.ndarray] = {}
    spent = 0.0
    processed = 0
    for s, e in tqdm(bounds, desc=f"rpca {labeled_set.name}", unit="window", disable=None):
        idx = order[s:e]
        frames = np.stack([labeled_set.read_frame(i, gray=True)[..., 0] for i in idx])
        t0 = time.perf_counter()
        out = rpca_masks(frames, window=len(idx))
        spent += time.perf_counter() - t0
        processed += len(idx)
        masks.update({i: m for i, m in zip(idx, out) if i in keep})
    return ClassicRun("rpca", masks, 1000.0 * spent / max(processed, 1), processed, {"windows": bounds})


def run_classic_timed(method: str, labeled_set: Any, indices: Sequence[int]) -> ClassicRun:
    """Run a classic method over the set in frame order; masks for `indices` plus timing.

    ms_per_frame is the time inside the method only (decoding excluded), averaged over every
    frame it processed (warm-up frames included).
    """
    wanted = _check(method, labeled_set, indices)
    if method == "rpca":
        return _run_rpca(labeled_set, wanted)
    return _run_sequential(method, labeled_set, wanted)


def run_classic(method: str, labeled_set: Any, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Bool (H,W) foreground masks for `indices` from a classic method (see module doc)."""
    return run_classic_timed(method, labeled_set, indices).masks
