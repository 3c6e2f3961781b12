"""Is a retrained model fit to serve? Three checks on held-out recorded frames, no ground truth.

a) **RPCA agreement**: F of the candidate's masks against batch RPCA (``training.rpca``) of
   the same held-out frames (gray, at the candidate's native size) must be at least the
   current model's agreement minus ``rpca_tolerance`` (skipped without a current model).
b) **Plausible foreground**: the mean foreground ratio must lie in [fg_ratio_min, fg_ratio_max]
   (neither all background nor all foreground).
c) **Still segments**: synthetic objects (rectangles and ellipses, colours far from what they
   cover) pasted onto the held-out frames with exact masks must be found with F >= min_object_f.
   Only the change the paste makes is scored: pixels the model already called foreground on
   the untouched frame, and a 1-pixel ring around each object, are ignored.

numpy, cv2 and onnxruntime only (no torch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.engine import Engine
from stream.errors import UserError
from training.metrics import GT_MOTION, GT_UNKNOWN, Confusion, confusion, scores
from training.rpca import rpca_masks


@dataclass(frozen=True)
class Requirements:
    rpca_tolerance: float = 0.02
    fg_ratio_min: float = 0.0005
    fg_ratio_max: float = 0.5
    min_object_f: float = 0.5
    objects_per_frame: int = 3
    min_colour_diff: float = 90.0  # grey levels (max over channels) between an object and what it covers


def _fit(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BGR uint8 (N,H,W,3) resized to ``size`` = (w, h), with cv2 (this module stays torch-free, so not
    training.resize's exact graph resize; retrain passes frames already at the model's size)."""
    frames = np.asarray(frames, np.uint8)
    if frames.ndim == 4 and frames.shape[3] == 1:
        frames = np.repeat(frames, 3, axis=3)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"expected BGR frames (N,H,W,3), got shape {frames.shape}")
    if frames.shape[2] == size[0] and frames.shape[1] == size[1]:
        return frames
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def _run(engine: Engine, frames: np.ndarray, batch: int = 16) -> np.ndarray:
    """Masks as bool (N,H,W)."""
    return np.concatenate([engine.run(frames[i:i + batch]) for i in range(0, len(frames), batch)]) > 0


def f_against(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """CDnet scores of bool masks (N,H,W) against uint8 labels (N,H,W) summed over frames."""
    total = sum((confusion(p, g) for p, g in zip(pred, gt)), Confusion(0, 0, 0, 0))
    s = scores(total)
    return {"f": s["f"], "precision": s["precision"], "recall": s["recall"]}


def paste_objects(frames: np.ndarray, rng: np.random.Generator, per_frame: int = 3,
                  min_diff: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    """Frames with synthetic objects pasted, and labels: 255 object, 170 a 1-px ring (ignored), 0 else."""
    n, h, w, _ = frames.shape
    out = frames.copy()
    labels = np.zeros((n, h, w), np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    for i in range(n):
        obj = np.zeros((h, w), np.uint8)
        for _ in range(per_frame):
            ow = max(4, int(rng.uniform(0.08, 0.2) * w))
            oh = max(4, int(rng.uniform(0.1, 0.25) * h))
            x, y = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
            m = np.zeros((h, w), np.uint8)
            if rng.random() < 0.5:
                cv2.rectangle(m, (x, y), (x + ow - 1, y + oh - 1), 1, -1)
            else:
                cv2.ellipse(m, (x + ow // 2, y + oh // 2), (max(2, ow // 2), max(2, oh // 2)), 0, 0, 360, 1, -1)
            region = out[i][m > 0].astype(np.float32)
            ref = region.mean(0) if len(region) else np.full(3, 128.0, np.float32)
            best, best_d = None, -1.0
            for _ in range(64):  # a colour far from what the object covers
                c = rng.uniform(0, 255, 3).astype(np.float32)
                d = float(np.abs(c - ref).max())
                if d > best_d:
                    best, best_d = c, d
                if d >= min_diff:
                    break
            tex = rng.normal(0.0, 3.0, (h, w, 1)).astype(np.float32)
            paint = np.clip(best[None, None, :] + tex, 0, 255).astype(np.uint8)
            np.copyto(out[i], paint, where=(m > 0)[..., None])
            obj |= m
        ring = cv2.dilate(obj, kernel) & ~obj.astype(bool)
        labels[i][ring > 0] = GT_UNKNOWN
        labels[i][obj > 0] = GT_MOTION
    return out, labels


def _current_engine(current: Path | None, threads: int) -> tuple[Engine | None, str | None]:
    if current is None or not Path(current).is_file():
        return None, None
    try:
        return Engine(current, intra_op_threads=threads), None
    except UserError as exc:
        return None, f"current model not comparable ({exc})"


def validate(candidate: Path, frames: np.ndarray, current: Path | None = None,
             req: Requirements = Requirements(), seed: int = 0, threads: int = 0) -> dict[str, Any]:
    """Run the three checks of ``candidate`` on held-out BGR ``frames``; ``passed`` and ``reasons`` say the verdict."""
    if len(frames) < 2:
        raise UserError(f"validation needs at least 2 held-out frames, got {len(frames)}")
    eng = Engine(candidate, intra_op_threads=threads)
    size = (eng.info.width, eng.info.height)
    x = _fit(frames, size)
    reasons: list[str] = []
    res: dict[str, Any] = {"frames": int(len(x)), "size": list(size), "candidate_version": eng.model_version,
                           "requirements": asdict(req)}

    # a) agreement with batch RPCA
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in x])
    ref = rpca_masks(gray).astype(np.uint8) * np.uint8(GT_MOTION)
    masks = _run(eng, x)
    agree = f_against(masks, ref)
    res["rpca_fg_ratio"] = float((ref > 0).mean())
    res["rpca_f"] = agree["f"]
    cur, note = _current_engine(current, threads)
    res["current_version"] = cur.model_version if cur else None
    res["rpca_f_current"] = None
    if note:
        res["note"] = note
    if cur is not None:
        res["rpca_f_current"] = f_against(_run(cur, x), ref)["f"]
        need = res["rpca_f_current"] - req.rpca_tolerance
        if res["rpca_f"] < need:
            reasons.append(f"RPCA agreement F {res['rpca_f']:.3f} < current model's {res['rpca_f_current']:.3f} - {req.rpca_tolerance:g}")

    # b) plausible foreground ratio
    ratio = float(masks.mean())
    res["fg_ratio"] = ratio
    if not req.fg_ratio_min <= ratio <= req.fg_ratio_max:
        reasons.append(f"mean foreground ratio {ratio:.4f} outside [{req.fg_ratio_min:g}, {req.fg_ratio_max:g}]")

    # c) pasted objects
    pasted, labels = paste_objects(x, np.random.default_rng(seed), req.objects_per_frame, req.min_colour_diff)
    labels[masks & (labels == 0)] = GT_UNKNOWN  # already foreground before the paste: not scored
    obj = f_against(_run(eng, pasted), labels)
    res["object_f"], res["object_precision"], res["object_recall"] = obj["f"], obj["precision"], obj["recall"]
    if obj["f"] < req.min_object_f:
        reasons.append(f"pasted-object F {obj['f']:.3f} < {req.min_object_f:g} (recall {obj['recall']:.3f}, "
                       f"precision {obj['precision']:.3f})")

    res["passed"] = not reasons
    res["reasons"] = reasons
    return res


def format_validation(v: dict[str, Any]) -> str:
    cur = f" (current {v['rpca_f_current']:.3f})" if v.get("rpca_f_current") is not None else " (no current model)"
    return (f"RPCA agreement F {v['rpca_f']:.3f}{cur}, foreground ratio {v['fg_ratio']:.4f}, "
            f"pasted-object F {v['object_f']:.3f} on {v['frames']} held-out frames at {v['size'][0]}x{v['size'][1]}")
