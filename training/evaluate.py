"""`sparsecam eval`: score a trained model or a classic method on a CDnet-style labeled set.

Confusion counts are summed over the set's evaluated frames (temporal ROI with ground truth)
under the CDnet protocol (training.metrics). For a model the oracle best-threshold F is also
reported: it uses the ground truth, so it is an upper bound only, never a setting to deploy.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from tqdm import tqdm

from stream.argtypes import Parser, bounded, json_target
from stream.errors import UserError
from stream.files import write_atomic
from stream.roi import aspect_differs
from training.baselines import CLASSIC_METHODS, run_classic_timed
from training.metrics import Confusion, ThresholdSweep, confusion, scores

log = logging.getLogger("sparsecam.eval")

__all__ = ["evaluate", "cli", "format_table", "MODEL_SUFFIXES", "BATCH", "MAX_OVERLAYS", "ORACLE_LABEL", "overlay_image", "plot_panel"]

MODEL_SUFFIXES = (".pt", ".onnx")
BATCH = 16
MAX_OVERLAYS = 50
ORACLE_LABEL = "oracle (uses ground truth, upper bound only)"
ORACLE_THRESHOLDS = np.linspace(0.0, 1.0, 1001)  # scores are in [0, 1] intensity units
PR_CURVE_LABEL = "score > t, before the mask clean-up"
RESULT_KEYS = frozenset({"set", "method", "metrics"})  # what marks a JSON file as an earlier result (--json replaces only those)
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
# BGR colours of the overlay
TP_COLOUR, FP_COLOUR, FN_COLOUR = (0, 200, 0), (0, 0, 255), (255, 0, 0)


def _open_set(set_root: Path) -> Any:
    from training.data import open_labeled_set

    set_root = Path(set_root)
    if set_root.is_file():
        raise UserError(f"{set_root} is a file; eval needs a labeled folder with input/ and groundtruth/ "
                        "(footage without ground truth: look at the masks with sparsecam serve or bench/footage.py)")
    if not set_root.is_dir():
        raise UserError(f"labeled set {set_root} does not exist; pass a folder with input/ and groundtruth/")
    ls = open_labeled_set(set_root)
    if not ls.eval_indices:
        raise UserError(f"{set_root}: no frame with ground truth inside the temporal ROI; nothing to score")
    return ls


def _overlay_indices(indices: list[int], cap: int = MAX_OVERLAYS) -> set[int]:
    if len(indices) <= cap:
        return set(indices)
    picks = np.linspace(0, len(indices) - 1, cap).round().astype(int)
    return {indices[i] for i in picks}


def overlay_image(frame: np.ndarray, pred: np.ndarray, gt: np.ndarray, roi: np.ndarray | None) -> np.ndarray:
    """frame | overlay side by side (BGR): TP green, FP red, FN blue; ignored pixels left as is."""
    from training.metrics import label_masks

    pos, neg = label_masks(gt, roi)
    over = frame.copy()
    for sel, colour in ((pred & pos, TP_COLOUR), (pred & neg, FP_COLOUR), (~pred & pos, FN_COLOUR)):
        over[sel] = (0.4 * over[sel] + 0.6 * np.array(colour)).astype(np.uint8)
    return np.concatenate([frame, over], axis=1)


OVERLAY_NAME = re.compile(r"^\d{6}\.png$")  # what _Overlays writes: NNNNNN.png, the frame number


class _Overlays:
    def __init__(self, out: Path | None, indices: list[int]) -> None:
        self.out = out
        self.wanted = _overlay_indices(indices) if out is not None else set()
        if out is not None:
            foreign = sorted(p.name for p in out.iterdir() if not OVERLAY_NAME.match(p.name)) if out.is_dir() else []
            if foreign:
                raise UserError(f"--overlays {out} holds other files ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                                "give an empty or new folder (earlier overlays there are replaced)")
            try:
                out.mkdir(parents=True, exist_ok=True)
                for earlier in out.iterdir():  # every earlier overlay, not only the frames this run writes again
                    earlier.unlink()
            except OSError as exc:
                raise UserError(f"cannot prepare overlay folder {out}: {exc.strerror}") from exc

    def maybe_write(self, i: int, frame: np.ndarray, pred: np.ndarray, gt: np.ndarray, roi: np.ndarray | None) -> None:
        if i not in self.wanted:
            return
        path = self.out / f"{i:06d}.png"  # type: ignore[operator]
        if not cv2.imwrite(str(path), overlay_image(frame, pred, gt, roi)):
            raise UserError(f"cannot write {path}; check free space and permissions")


def _eval_classic(ls: Any, method: str, overlays: _Overlays) -> tuple[Confusion, float, dict]:
    run = run_classic_timed(method, ls, ls.eval_indices)
    total = Confusion(0, 0, 0, 0)
    for i in ls.eval_indices:
        gt = ls.read_gt(i)
        roi = ls.roi
        pred = run.masks[i]
        total += confusion(pred, gt, roi)
        if i in overlays.wanted:
            overlays.maybe_write(i, ls.read_frame(i), pred, gt, roi)
    return total, run.ms_per_frame, {"frames_processed": run.frames_processed}


def _warn_if_another_camera(model_size: tuple[int, int], width: int, height: int, set_name: str) -> None:
    """A model learns one camera's scene: frames of another shape are most likely another camera's."""
    mw, mh = model_size
    if aspect_differs(mw, mh, width, height):
        log.warning("the model was trained on %dx%d frames (aspect %.2f) and %s's are %dx%d (%.2f): a model of another "
                    "camera scores low on it; train on this set's own frames (without its scored ones) to evaluate the method",
                    mw, mh, mw / mh, set_name, width, height, width / height)


def _eval_model(ls: Any, model: Path, overlays: _Overlays, threshold: float | None,
                transform: Callable[[np.ndarray], np.ndarray] | None) -> tuple[Confusion, float, dict]:
    from training.predict import load_predictor

    predictor = load_predictor(model)
    used = float(predictor.threshold if threshold is None else threshold)
    sweep = ThresholdSweep(ORACLE_THRESHOLDS)
    total = Confusion(0, 0, 0, 0)
    spent = 0.0
    idx = list(ls.eval_indices)
    batches = [idx[s:s + BATCH] for s in range(0, len(idx), BATCH)]
    for n, batch in enumerate(tqdm(batches, desc=f"eval {ls.name}", unit="batch", disable=None)):
        frames = np.stack([ls.read_frame(i) for i in batch])
        if transform is not None:
            frames = transform(frames)
        if n == 0:
            _warn_if_another_camera(predictor.size, frames.shape[2], frames.shape[1], ls.name)
        t0 = time.perf_counter()
        score, mask = predictor.predict(frames, threshold)  # another threshold: its mask cleaned up alike
        spent += time.perf_counter() - t0
        for k, i in enumerate(batch):
            gt = ls.read_gt(i)
            roi = ls.roi
            total += confusion(mask[k], gt, roi)
            sweep.add(score[k], gt, roi)
            overlays.maybe_write(i, frames[k], mask[k], gt, roi)
    t_best, f_best = sweep.best()
    extra = {"threshold": used, "oracle": {"label": ORACLE_LABEL, "threshold": t_best, "f": f_best},
             "pr_curve": {"label": PR_CURVE_LABEL, **sweep.curve(every=5)}}
    return total, 1000.0 * spent / max(len(idx), 1), extra


def evaluate(set_root: Path, method: str, overlays: Path | None = None, threshold: float | None = None,
             frame_transform: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Score `method` (a classic name or a `.pt`/`.onnx` model path) on the set at set_root.

    Returns {set, set_root, method, frames, counts, metrics, ms_per_frame[, threshold,
    oracle, pr_curve]}; counts are summed over the evaluated frames, metrics from training.metrics.scores.
    `threshold` overrides a model's own threshold (mask = score > threshold); `frame_transform`
    (model methods only) maps each batch of uint8 frames before the model sees them (bench/exposure.py).
    """
    is_model = Path(method).suffix.lower() in MODEL_SUFFIXES
    if Path(method).is_dir():
        raise UserError(f"--method {method} is a folder; pass the model file in it (a run's model.pt, or an exported .onnx)")
    if not is_model and method not in CLASSIC_METHODS:
        raise UserError(
            f"unknown method {method!r}; use one of {', '.join(CLASSIC_METHODS)} or a model file (.pt/.onnx)"
        )
    if is_model and not Path(method).is_file():
        raise UserError(f"model {method} does not exist; pass a trained .pt checkpoint or an exported .onnx")
    if threshold is not None and not is_model:
        raise UserError(f"--threshold applies to model methods only, not to {method!r}")
    if frame_transform is not None and not is_model:
        raise ValueError("frame_transform applies to model methods only")
    ls = _open_set(Path(set_root))
    writer = _Overlays(Path(overlays) if overlays is not None else None, list(ls.eval_indices))
    if is_model:
        total, ms, extra = _eval_model(ls, Path(method), writer, threshold, frame_transform)
    else:
        total, ms, extra = _eval_classic(ls, method, writer)
    result = {
        "set": ls.name,
        "set_root": str(Path(set_root).resolve()),
        "method": method,
        "frames": len(ls.eval_indices),
        "counts": total.as_dict(),
        "metrics": scores(total),
        "ms_per_frame": ms,
    }
    result.update(extra)
    return result


def format_table(result: dict) -> str:
    """A small human-readable table of one evaluation result."""
    m = result["metrics"]
    lines = [
        f"{result['method']} on {result['set']} ({result['frames']} frames scored)",
        f"  {'recall':<22}{m['recall']:.4f}",
        f"  {'specificity':<22}{m['specificity']:.4f}",
        f"  {'fpr':<22}{m['fpr']:.4f}",
        f"  {'fnr':<22}{m['fnr']:.4f}",
        f"  {'pwc (%)':<22}{m['pwc']:.4f}",
        f"  {'precision':<22}{m['precision']:.4f}",
        f"  {'F':<22}{m['f']:.4f}",
        f"  {'shadow share of FP':<22}{m['shadow_fp_share']:.4f}",
        f"  {'ms/frame':<22}{result['ms_per_frame']:.2f}",
    ]
    if "threshold" in result:
        lines.append(f"  {'threshold':<22}{result['threshold']:.4f}")
    if "oracle" in result:
        o = result["oracle"]
        lines.append(f"  {'F ' + ORACLE_LABEL}: {o['f']:.4f} at threshold {o['threshold']:.3f}")
    return "\n".join(lines)


def _check_plot_target(path: Path) -> None:
    """--plot names a new or earlier picture, in a format matplotlib writes; matplotlib must be installed."""
    if path.is_dir():
        raise UserError(f"--plot {path} is a folder; give a file name such as {path / 'eval.png'}")
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise UserError(f"--plot {path}: give a {', '.join(PLOT_SUFFIXES)} file name")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("--plot needs matplotlib (pip install 'sparsecam[train]')") from None


def plot_panel(title: str, scores_by_method: dict[str, dict], curve: dict | None = None) -> dict:
    """One panel of training.plots.save_pr_plot: each method's {f, recall, precision} as a point
    (the first one is the method under test, drawn as a star) and its score curve over thresholds."""
    points = [(f"{name}: F {m['f']:.3f}", m["recall"], m["precision"]) for name, m in scores_by_method.items()]
    return {"title": title, "curve": curve, "points": points}


def cli(argv: list[str]) -> int:
    p = Parser(prog="sparsecam eval", description=__doc__.splitlines()[0])
    p.add_argument("--set", required=True, type=Path, metavar="DIR", help="CDnet-style folder (input/, groundtruth/)")
    p.add_argument("--method", required=True, metavar="M",
                   help=f"{', '.join(CLASSIC_METHODS)}, or a model file (.pt checkpoint or .onnx)")
    p.add_argument("--json", type=json_target(RESULT_KEYS, "an earlier `sparsecam eval` result"), metavar="FILE",
                   help="also write the result as JSON (replaces only an earlier result)")
    p.add_argument("--overlays", type=Path, metavar="DIR",
                   help=f"write frame | overlay PNGs (TP green, FP red, FN blue), at most {MAX_OVERLAYS}")
    p.add_argument("--threshold", type=bounded(0.0, 1.0, low_open=True, high_open=True, what="a score threshold in (0, 1)"), metavar="T",
                   help="override a model's mask threshold (the mask is cleaned up as with its own)")
    p.add_argument("--plot", type=Path, metavar="FILE",
                   help="draw recall against precision (.png/.svg/.pdf): a model's curve over thresholds and its own point")
    args = p.parse_args(argv)
    if args.plot is not None:
        _check_plot_target(args.plot)
    result = evaluate(args.set, args.method, overlays=args.overlays, threshold=args.threshold)
    print(format_table(result))
    if args.plot is not None:
        from training.plots import save_pr_plot

        try:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            own = f" (threshold {result['threshold']:.3f})" if "threshold" in result else ""
            title = f"{result['set']} ({result['frames']} frames scored)"
            save_pr_plot([plot_panel(title, {Path(args.method).name + own: result["metrics"]}, result.get("pr_curve"))], args.plot)
        except OSError as exc:
            raise UserError(f"cannot write {args.plot}: {exc.strerror}") from exc
        print(f"plot: {args.plot}")
    if args.json is not None:
        write_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return 0
