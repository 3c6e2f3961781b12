"""CDnet 2014 change-detection metrics: confusion counts, the seven scores, oracle threshold.

Ground-truth labels (CDnet protocol): 0 static and 50 hard shadow are negatives, 255 motion
is positive, 85 (outside ROI) and 170 (unknown motion) are ignored; pixels outside the ROI
mask are ignored too. A false positive on a shadow pixel (gt == 50) also counts in shadow_fp.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Confusion", "confusion", "scores", "best_threshold", "ThresholdSweep", "label_masks",
           "GT_STATIC", "GT_SHADOW", "GT_OUTSIDE", "GT_UNKNOWN", "GT_MOTION"]

GT_STATIC, GT_SHADOW, GT_OUTSIDE, GT_UNKNOWN, GT_MOTION = 0, 50, 85, 170, 255


@dataclass(frozen=True)
class Confusion:
    """Pixel counts summed over frames; shadow_fp is the part of fp lying on hard shadow."""

    tp: int
    fp: int
    tn: int
    fn: int
    shadow_fp: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        if not isinstance(other, Confusion):
            return NotImplemented
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn,
                         self.fn + other.fn, self.shadow_fp + other.shadow_fp)

    def __radd__(self, other: object) -> Confusion:
        if other == 0:  # lets sum() start from 0
            return self
        return NotImplemented

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def label_masks(gt: np.ndarray, roi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) bool masks of a CDnet ground-truth image, restricted to roi."""
    gt = np.asarray(gt)
    if gt.ndim == 3:
        gt = gt[..., 0]
    pos = gt == GT_MOTION
    neg = (gt == GT_STATIC) | (gt == GT_SHADOW)
    if roi is not None:
        roi = np.asarray(roi, dtype=bool)
        if roi.shape != gt.shape:
            raise ValueError(f"ROI shape {roi.shape} does not match ground truth {gt.shape}")
        pos &= roi
        neg &= roi
    return pos, neg


def confusion(pred: np.ndarray, gt: np.ndarray, roi: np.ndarray | None = None) -> Confusion:
    """Confusion of a bool (H,W) prediction against a uint8 (H,W) CDnet ground truth."""
    pred = np.asarray(pred, dtype=bool)
    pos, neg = label_masks(gt, roi)
    if pred.shape != pos.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground truth {pos.shape}")
    fp_mask = pred & neg
    shadow = np.asarray(gt)[..., 0] if np.ndim(gt) == 3 else np.asarray(gt)
    return Confusion(
        tp=int(np.count_nonzero(pred & pos)),
        fp=int(np.count_nonzero(fp_mask)),
        tn=int(np.count_nonzero(~pred & neg)),
        fn=int(np.count_nonzero(~pred & pos)),
        shadow_fp=int(np.count_nonzero(fp_mask & (shadow == GT_SHADOW))),
    )


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def scores(c: Confusion) -> dict[str, float]:
    """CDnet scores of a confusion. Any ratio whose denominator is 0 is defined as 0.0.

    recall = tp/(tp+fn), specificity = tn/(tn+fp), fpr = fp/(fp+tn), fnr = fn/(tp+fn),
    pwc = 100 (fn+fp)/(tp+fn+fp+tn), precision = tp/(tp+fp), f = 2 P R/(P + R),
    shadow_fp_share = shadow_fp/fp.
    """
    recall = _div(c.tp, c.tp + c.fn)
    precision = _div(c.tp, c.tp + c.fp)
    return {
        "recall": recall,
        "specificity": _div(c.tn, c.tn + c.fp),
        "fpr": _div(c.fp, c.fp + c.tn),
        "fnr": _div(c.fn, c.tp + c.fn),
        "pwc": 100.0 * _div(c.fn + c.fp, c.total),
        "precision": precision,
        "f": _div(2.0 * precision * recall, precision + recall),
        "shadow_fp_share": _div(c.shadow_fp, c.fp),
    }


class ThresholdSweep:
    """Accumulates score histograms of positive and negative pixels against fixed thresholds.

    ``add`` one frame at a time (nothing else is stored); ``best`` gives the threshold with
    the highest F of the mask ``score > t`` (the rule the models use) over all frames added.
    """

    def __init__(self, thresholds: Sequence[float] | np.ndarray) -> None:
        self.thresholds = np.unique(np.asarray(thresholds, dtype=np.float64))
        if self.thresholds.size == 0:
            raise ValueError("a threshold sweep needs at least one threshold")
        # bin j holds scores above exactly j thresholds: t[j-1] < s <= t[j]
        self.hist_pos = np.zeros(self.thresholds.size + 1, dtype=np.int64)
        self.hist_neg = np.zeros(self.thresholds.size + 1, dtype=np.int64)

    def add(self, score: np.ndarray, gt: np.ndarray, roi: np.ndarray | None = None) -> None:
        pos, neg = label_masks(gt, roi)
        s = np.asarray(score)
        if not np.issubdtype(s.dtype, np.floating):
            s = s.astype(np.float64)
        if s.shape != pos.shape:
            raise ValueError(f"score map shape {s.shape} does not match ground truth {pos.shape}")
        t = self.thresholds.astype(s.dtype)  # compare in the scores' precision, as the model does
        n = t.size + 1
        self.hist_pos += np.bincount(np.searchsorted(t, s[pos], side="left"), minlength=n)
        self.hist_neg += np.bincount(np.searchsorted(t, s[neg], side="left"), minlength=n)

    def _counts(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(tp, fp) of ``score > t`` for every threshold t, and the number of positive pixels."""
        # pixels with score > t[i] are those in bins i+1 .. end
        tp = np.cumsum(self.hist_pos[::-1])[::-1][1:]
        fp = np.cumsum(self.hist_neg[::-1])[::-1][1:]
        return tp, fp, int(self.hist_pos.sum())

    def f_scores(self) -> np.ndarray:
        """F of ``score > t`` for every threshold t (0.0 where it is 0/0)."""
        tp, fp, positives = self._counts()
        denom = tp + fp + positives  # = 2 tp + fp + fn
        return np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)

    def curve(self, every: int = 1) -> dict[str, list[float]]:
        """Recall and precision of ``score > t`` at every ``every``-th threshold that masks any pixel."""
        tp, fp, positives = self._counts()
        keep = np.zeros(tp.size, bool)
        keep[::every] = True
        keep &= (tp + fp) > 0
        return {
            "threshold": [round(float(t), 4) for t in self.thresholds[keep]],
            "recall": [round(float(r), 4) for r in tp[keep] / max(positives, 1)],
            "precision": [round(float(p), 4) for p in tp[keep] / (tp + fp)[keep]],
        }

    def best(self) -> tuple[float, float]:
        """(t, F) maximising F; ties go to the smallest threshold."""
        f = self.f_scores()
        i = int(np.argmax(f))
        return float(self.thresholds[i]), float(f[i])


def best_threshold(
    score_maps: Iterable[np.ndarray],
    gts: Iterable[np.ndarray],
    rois: Iterable[np.ndarray | None] | np.ndarray | None,
    thresholds: Sequence[float] | np.ndarray,
) -> tuple[float, float]:
    """Oracle best threshold: (t, F) maximising F of ``score > t`` summed over all frames.

    Uses the ground truth, so it is an upper bound only, never a deployable setting. Scores
    of positive and negative pixels are histogrammed once against the sorted thresholds (no
    pass per threshold; see ThresholdSweep). rois: one per frame, a single (H,W) mask for
    all frames, or None. Ties in F go to the smallest threshold.
    """
    sweep = ThresholdSweep(thresholds)
    single_roi = rois is None or (isinstance(rois, np.ndarray) and rois.ndim == 2)
    roi_iter = iter(()) if single_roi else iter(rois)  # type: ignore[arg-type]
    for score, gt in zip(score_maps, gts, strict=True):
        sweep.add(score, gt, rois if single_roi else next(roi_iter))  # type: ignore[arg-type]
    return sweep.best()
