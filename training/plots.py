"""Pictures of a run: the loss curve and a montage of what the model learned."""

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
    cv2.imwrite(str(path), img)
