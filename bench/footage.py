#!/usr/bin/env python3
"""Footage without ground truth: train the default recipe on each real clip and show what it masks.

The labeled sets score three scenes; the model is meant for any fixed camera. This trains one model
per clip under ``DATA/footage_no_gt`` (videos and image folders: pedestrians, roads, a motorway with
a text overlay, an escalator, a shopping mall, a tree behind a window), runs it on up to 120 frames
spread over the clip, prints a markdown table (frames, training time, the threshold it chose,
how much of each frame it masks, cost per frame) and writes a contact sheet to look at: per clip
the frame with the most foreground and one from the middle of the clip, each beside its mask drawn
in red over the frame.

    python bench/footage.py [--data DIR] [--clip NAME ...] [--steps N] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cli import check_runs, replace_run, run, train_run  # noqa: E402
from stream.files import write_json  # noqa: E402
from stream.argtypes import integer, json_target  # noqa: E402
from stream.errors import UserError  # noqa: E402
from training.data import VIDEO_EXTS, default_data_root  # noqa: E402

FOLDER = "footage_no_gt"
SHOWN = 120  # frames of each clip the trained model is run on
SHEET_WIDTH = 320  # width of each picture on the contact sheet


def clips_in(folder: Path) -> list[Path]:
    """The clips in ``folder``: video files and folders of images, by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() or p.suffix.lower() in VIDEO_EXTS)


def train_clip(clip: Path, out: Path, steps: int | None) -> dict[str, Any]:
    """The default recipe on the whole clip (seed 0); returns the run's summary."""
    from training.train import TrainConfig

    cfg = TrainConfig(footage=[str(clip)], **({"steps": steps} if steps is not None else {}))
    return train_run(cfg, out)


def masks_of(clip: Path, model: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Up to SHOWN frames spread over the clip (at most SHEET_WIDTH wide), their masks and ms per frame."""
    from training.data import load_footage, spread_stride
    from training.predict import load_predictor

    probe = load_footage([str(clip)], max_frames=1, progress=False).frames[0]
    h, w = probe.shape[:2]
    size = None if w <= SHEET_WIDTH else (SHEET_WIDTH, max(1, round(h * SHEET_WIDTH / w)))
    frames = load_footage([str(clip)], size=size, stride=spread_stride([clip], SHOWN), max_frames=SHOWN, progress=False).frames
    predictor = load_predictor(model)
    masks, t0 = [], time.perf_counter()
    for i in range(0, len(frames), 16):
        masks.append(predictor.predict(frames[i : i + 16])[1])
    ms = (time.perf_counter() - t0) * 1000 / len(frames)
    return frames, np.concatenate(masks), ms


def mask_stats(masks: np.ndarray) -> dict[str, float]:
    """How much of each frame is masked: median and 95th percentile (%), share of frames with any mask (%)."""
    frac = masks.reshape(len(masks), -1).mean(axis=1) * 100
    return {"fg_median_pct": round(float(np.median(frac)), 2), "fg_p95_pct": round(float(np.percentile(frac, 95)), 2),
            "frames_with_fg_pct": round(float((frac > 0).mean() * 100), 1)}


def overlay(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The frame (BGR) with its mask drawn in red at half opacity."""
    red = frame.copy()
    red[mask] = (0, 0, 255)
    return cv2.addWeighted(frame, 0.5, red, 0.5, 0)


def sheet_row(name: str, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """frame | mask overlay for the frame with the most foreground and for the middle frame, labelled."""
    busiest = int(masks.reshape(len(masks), -1).sum(axis=1).argmax())
    tiles = []
    for i in (busiest, len(frames) // 2):
        pair = np.hstack([frames[i], overlay(frames[i], masks[i])])  # load_footage gives BGR, gray clips too
        scale = SHEET_WIDTH * 2 / pair.shape[1]
        tiles.append(cv2.resize(pair, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    height = max(t.shape[0] for t in tiles)
    row = np.hstack([cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, 4, cv2.BORDER_CONSTANT) for t in tiles])
    cv2.putText(row, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return row


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    return np.vstack([cv2.copyMakeBorder(r, 0, 4, 0, width - r.shape[1], cv2.BORDER_CONSTANT) for r in rows])


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| clip | frames | model | train s | threshold | masked % (median / p95) | frames with a mask % | ms/frame |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['frames']} | {r['model_size']} | {r['train_seconds']:.0f} | {r['threshold']:.3f} | "
                     f"{r['fg_median_pct']:.2f} / {r['fg_p95_pct']:.2f} | {r['frames_with_fg_pct']:.0f} | {r['ms_per_frame']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data_root(), help=f"data folder holding {FOLDER}/ (default ../shared/data)")
    ap.add_argument("--clip", action="append", dest="clips", help="clip name in that folder (repeatable; default: all)")
    ap.add_argument("--steps", type=integer(1), help="training steps (default: the trainer's default)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "footage", help="runs and sheet.png go here")
    ap.add_argument("--json", type=json_target(), help="write the figures here")
    args = ap.parse_args()
    folder = args.data / FOLDER
    if not folder.is_dir():
        raise UserError(f"{folder} not found; pass --data")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file; give a folder for the runs and sheet.png")
    clips = clips_in(folder)
    if args.clips:
        by_name = {c.name: c for c in clips} | {c.stem: c for c in clips}
        unknown = [n for n in args.clips if n not in by_name]
        if unknown:
            raise UserError(f"no clip {', '.join(unknown)} in {folder}; there are: {', '.join(c.name for c in clips)}")
        clips = [by_name[n] for n in args.clips]
    if not clips:
        raise UserError(f"no videos or image folders in {folder}")
    check_runs(args.out, args.data, [args.out / clip.stem for clip in clips])  # before the first training
    results: dict[str, dict[str, Any]] = {}
    rows = []
    for clip in clips:
        print(f"== {clip.name}", file=sys.stderr, flush=True)
        replace_run(args.out / clip.stem)  # an earlier run of this clip, never anything else
        try:
            summary = train_clip(clip, args.out / clip.stem, args.steps)
            if summary is None:  # interrupted: the checkpoint is saved, nothing to show
                return 130
            frames, masks, ms = masks_of(clip, args.out / clip.stem / "model.pt")
        except UserError as exc:  # an unreadable clip: say so and go on with the others
            print(f"   skipped: {exc}", file=sys.stderr)
            continue
        w, h = summary["model_size"]
        results[clip.stem] = {"frames": summary["frames_used"], "model_size": f"{w}x{h}", "train_seconds": summary["train_seconds"],
                              "threshold": round(float(summary["threshold"]), 4), "ms_per_frame": round(ms, 2), **mask_stats(masks)}
        rows.append(sheet_row(clip.stem, frames, masks))
        if args.json:  # as we go: a long run that dies keeps what it measured
            write_json(args.json, results)
    if not results:
        print("no clip could be used", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    sheet = args.out / "sheet.png"
    cv2.imwrite(str(sheet), stack_rows(rows))
    print(markdown(results))
    print(f"\ncontact sheet: {sheet} (per clip: the frame with the most foreground, then the middle frame; mask in red)")
    return 0


if __name__ == "__main__":
    run(main)
