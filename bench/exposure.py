#!/usr/bin/env python3
"""Exposure benchmark: how a trained model holds up when the camera's exposure changes after training.

Auto-exposure, auto white balance, a passing cloud or dusk scale the whole image. This trains a
model on each labeled set (as bench/quality.py does, or takes --model), then evaluates it under the
CDnet protocol on the scored frames multiplied by each exposure factor (uint8, saturating), with the
model's exposure step on and off (same weights; off = the frame compared at the exposure it has).

    python bench/exposure.py [--data DIR] [--set NAME ...] [--factors 0.8,0.9,1,1.1,1.25] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cli import check_runs, run  # noqa: E402
from bench.quality import add_set_args, chosen_sets, run_dir, train_model  # noqa: E402
from stream.argtypes import json_target  # noqa: E402
from stream.errors import UserError  # noqa: E402
from stream.files import write_json  # noqa: E402
from training.evaluate import evaluate  # noqa: E402

DEFAULT_FACTORS = (0.8, 0.9, 1.0, 1.1, 1.25)


def parse_factors(text: str) -> list[float]:
    try:
        factors = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--factors takes numbers separated by commas, got {text!r}") from None
    if not factors or any(not 0.1 <= f <= 10 for f in factors):
        raise argparse.ArgumentTypeError(f"exposure factors must lie in [0.1, 10], got {text!r}")
    return list(dict.fromkeys(factors))  # 1,1.0: one column


def with_exposure(model: Path, exposure: bool, folder: Path) -> Path:
    """A copy of the checkpoint with its exposure matching set as asked (same weights)."""
    from training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(model)
    state["config"] = {**state["config"], "exposure": exposure}
    out = folder / f"{model.stem}-exposure-{'on' if exposure else 'off'}.pt"
    save_checkpoint(out, state)
    return out


def scale(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    """Frames (uint8) -> the same at ``factor`` times the exposure, saturating as a sensor does."""
    def apply(frames: np.ndarray) -> np.ndarray:
        return np.clip(frames.astype(np.float32) * factor + 0.5, 0, 255).astype(np.uint8)
    return apply


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_set_args(ap)
    ap.add_argument("--model", type=Path, help="evaluate this checkpoint (with one --set) instead of training one")
    ap.add_argument("--factors", type=parse_factors, default=list(DEFAULT_FACTORS), help="exposure factors, comma-separated")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "exposure", help="where the trained runs go")
    ap.add_argument("--json", type=json_target(), help="write {set: {on|off: {factor: F}}} here")
    args = ap.parse_args()
    sets = chosen_sets(args)
    if args.model is not None and len(sets) != 1:
        raise UserError("--model needs exactly one --set (the scene it was trained on)")
    if args.model is not None:
        from training.checkpoint import load_checkpoint

        load_checkpoint(args.model)  # a missing or foreign file: one line now, not a traceback after the set loads
    else:
        check_runs(args.out, args.data, [run_dir(args.out, name) for name in sets])  # before the first training
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sets:
            root = args.data / name
            print(f"== {name}", file=sys.stderr, flush=True)
            model = args.model or train_model(name, root, args.out, None)[0]
            res: dict[str, dict] = {}
            for mode in ("on", "off"):
                variant = with_exposure(model, mode == "on", Path(tmp))
                res[mode] = {str(f): round(float(evaluate(root, str(variant), frame_transform=scale(f))["metrics"]["f"]), 4)
                             for f in args.factors}
                print(f"   exposure matching {mode}: " + ", ".join(f"x{f} F {v:.3f}" for f, v in res[mode].items()), file=sys.stderr, flush=True)
            results[name] = res
            if args.json:
                write_json(args.json, results)
    print(markdown(results, args.factors))
    return 0


def markdown(results: dict, factors: list[float]) -> str:
    lines = ["| set | exposure matching | " + " | ".join(f"x{f:g}" for f in factors) + " |", "|---|---|" + "---|" * len(factors)]
    for name, res in results.items():
        for mode in ("on", "off"):
            lines.append(f"| {name} | {mode} | " + " | ".join(f"{res[mode][str(f)]:.3f}" for f in factors) + " |")
    lines.append("")
    lines.append("F under the CDnet protocol, the model's own threshold; x1 = the footage as recorded.")
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
