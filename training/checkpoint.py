"""Checkpoints: written atomically, loaded without pickle (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch

from stream.errors import UserError
from stream.files import write_atomic
from training.model import LEGACY_ALIGN, LEGACY_CLEANUP, LEGACY_EXPOSURE, LEGACY_SCORE_FILTER, ModelConfig, UNet

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` whole or not at all, and durably (stream.files.write_atomic).

    Serialised in memory first: torch.save straight to a file on a full disk failed with a RuntimeError
    from its zip writer ("unexpected pos ..."), not an OSError that names the cause.
    """
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
    write_atomic(Path(path), buf.getvalue(), durable=True)  # resumable after a power cut


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint; a missing, corrupt or foreign file is a UserError."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder; pass the file in it (a run's model.pt)")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise UserError(f"checkpoint {path} is corrupt or not a sparsecam checkpoint ({type(exc).__name__}); retrain or pick another file") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise UserError(f"{path} is not a sparsecam checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> UNet:
    """Rebuild the network (eval mode) from a loaded checkpoint."""
    cfg = ModelConfig(**{"score_filter": LEGACY_SCORE_FILTER, "align": LEGACY_ALIGN, "exposure": LEGACY_EXPOSURE, **LEGACY_CLEANUP, **state["config"]})
    model = UNet(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    return model


def load_finished(checkpoint: Path) -> tuple[dict[str, Any], UNet]:
    """Load a checkpoint of a finished run and rebuild its network; anything else is a UserError."""
    state = load_checkpoint(checkpoint)
    threshold = state.get("threshold")
    if threshold is None:
        raise UserError(f"{checkpoint} has no threshold: its training run did not finish (an unfinished training "
                        "checkpoint); finish it with `sparsecam train ... --resume` and use the run's model.pt")
    try:
        if not math.isfinite(float(threshold)):
            raise ValueError(threshold)
        net = model_from_checkpoint(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise UserError(f"{checkpoint}: cannot rebuild the model ({type(exc).__name__}: {first}); "
                        "the checkpoint is damaged or from another sparsecam version") from None
    return state, net
