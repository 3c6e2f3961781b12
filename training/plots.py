"""Pictures: a run's loss curve and montage; recall against precision for evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np


def save_loss_curve(history: Any, path: Path) -> None:
    """Loss, nuclear and sparse terms against the step (log scale), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(history.step, history.loss, label="total", lw=1.2)
    ax.plot(history.step, history.nuclear, label="||D - S||_* (low rank)", lw=1)
    ax.plot(history.step, history.sparse, label="lambda ||S||_1 (sparse)", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per batch")
    ax.set_title("sparsecam training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 or img.shape[2] == 1 else img


def montage_rows(frames: np.ndarray, s: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Rows of frame | background L = D - S | foreground |S| | mask (uint8 BGR)."""
    rows = []
    for frame, sparse, mask in zip(frames, s, masks):
        d = frame.astype(np.float32) / 255.0
        low = np.clip(d - sparse.reshape(d.shape), 0, 1)
        mag = np.abs(sparse).max(axis=-1)
        mag = (np.clip(mag / max(float(mag.max()), 1e-6), 0, 1) * 255).astype(np.uint8)
        tiles = [
            _label(_bgr(frame), "frame D"),
            _label(_bgr((low * 255).astype(np.uint8)), "background L=D-S"),
            _label(cv2.applyColorMap(mag, cv2.COLORMAP_INFERNO), "foreground |S|"),
            _label(_bgr(mask.astype(np.uint8) * 255), "mask"),
        ]
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


def save_montage(frames: np.ndarray, s: np.ndarray, masks: np.ndarray, path: Path) -> None:
    img = montage_rows(frames, s, masks)
    if img.shape[1] < 900:  # small models: enlarge so the picture is readable
        f = 900 / img.shape[1]
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")


def save_pr_plot(panels: list[dict], path: Path) -> None:
    """Recall (x) against precision (y), one panel per labeled set, with lines of equal F.

    A panel is {title, curve, points}: ``curve`` ({threshold, recall, precision} lists, or None)
    is a model's score swept over thresholds; ``points`` are (label, recall, precision) of masks
    as a method makes them, the first one drawn as a star (the method under test). Each panel is
    zoomed to its points (both axes start a little below the lowest recall or precision).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 6.0 * rows), dpi=100, squeeze=False)
    r = np.linspace(0.01, 1, 200)
    markers = "osD^vP<>X"
    for ax, panel in zip(axes.flat, panels):
        # zoom on the methods: from a little below the lowest recall or precision of any point
        coords = [v for _, rec, prec in panel["points"] for v in (rec, prec)]
        lo = max(0.0, np.floor((min(coords, default=0.0) - 0.05) * 10) / 10)
        for f in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
            p = f * r / (2 * r - f)  # precision giving F = f at recall r
            ok = (p > 0) & (p <= 1) & (r >= f / 2)
            ax.plot(r[ok], p[ok], color="0.85", lw=0.8, zorder=0)
            if f / (2 - f) >= lo:
                ax.annotate(f"F {f}", (1.0, f / (2 - f)), xytext=(-2, 2), textcoords="offset points",
                            fontsize=7, color="0.5", ha="right", va="bottom")
        curve = panel.get("curve")
        if curve and curve.get("recall"):
            ax.plot(curve["recall"], curve["precision"], color="tab:blue", lw=1.5,
                    label=curve.get("label", "score swept over thresholds"))
        for k, (label, rec, prec) in enumerate(panel["points"]):
            if k == 0:
                ax.plot(rec, prec, "*", ms=15, color="tab:red", mec="k", zorder=5, label=label)
            else:
                ax.plot(rec, prec, markers[(k - 1) % len(markers)], ms=7, zorder=4, label=label)
        ax.set_xlim(lo, 1.005)
        ax.set_ylim(lo, 1.005)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(panel["title"], fontsize=10)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
