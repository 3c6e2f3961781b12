"""Check a training configuration before anything is loaded or written: one clear line per mistake.

``sparsecam train`` options and ``sparsecam retrain --train-option FIELD=VALUE`` both end up as a
``TrainConfig``; its ``__post_init__`` calls :func:`check_settings`, so a bad value is refused
(``UserError``: exit 2) before the footage loads, the run directory is claimed or a retrain
snapshot is written — never as a traceback from deep inside torch after minutes of work.
"""

from __future__ import annotations

import math
import re
from typing import Any

from stream.errors import UserError
from stream.maskclean import CleanUp
from training.data import check_selection
from training.model import INPUT_MODES, MAX_ALIGN, NORMS, OUTPUTS, SCORE_FILTERS

MIN_SIDE = 32  # model pixels: the U-Net, the synthetic parity scene of `export` and the median filter need room
MAX_SIDE = 1920  # a model wider than a full-HD frame costs memory and time no camera model needs
MAX_DEPTH = 6
MAX_WIDTH = 256
DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

# the `sparsecam train` option of each field, where it is not the field name with dashes
_FLAGS = {"width_px": "--size", "height": "--size", "lam": "--lambda", "lam_scale": "--lambda-scale",
          "frame_range": "--frames"}
_INTS = ("width_px", "height", "stride", "batch", "crop", "steps", "prox_steps", "width", "depth", "bg_frames", "align",
         "seed", "checkpoint_every")
_FLOATS = ("lr", "prox_lr", "lam_scale", "fill_holes", "min_object")
_OPTIONAL_FLOATS = ("lam", "threshold")
_BOOLS = ("gray", "exposure")


def _name(field: str) -> str:
    return f"{field} ({_FLAGS.get(field, '--' + field.replace('_', '-'))})"


def _bad(field: str, value: Any, why: str) -> UserError:
    return UserError(f"training setting {_name(field)} = {value!r}: {why}")


def _as_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, value, "must be a whole number")
    return value


def _as_float(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(field, value, "must be a number")
    if not math.isfinite(value):
        raise _bad(field, value, "must be a finite number")
    return float(value)


def check_settings(cfg: Any) -> None:
    """Raise ``UserError`` naming the first setting of ``cfg`` (a TrainConfig) that cannot train."""
    for f in _INTS:
        _as_int(f, getattr(cfg, f))
    for f in _FLOATS:
        setattr(cfg, f, _as_float(f, getattr(cfg, f)))
    for f in _OPTIONAL_FLOATS:
        if getattr(cfg, f) is not None:
            setattr(cfg, f, _as_float(f, getattr(cfg, f)))
    for f in _BOOLS:
        if not isinstance(getattr(cfg, f), bool):
            raise _bad(f, getattr(cfg, f), "must be true or false")
    if cfg.max_frames is not None:
        _as_int("max_frames", cfg.max_frames)

    def need(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise _bad(field, getattr(cfg, field), why)

    need(MIN_SIDE <= cfg.width_px <= MAX_SIDE, "width_px", f"the model's width must be {MIN_SIDE} to {MAX_SIDE} pixels")
    need(cfg.height == 0 or MIN_SIDE <= cfg.height <= MAX_SIDE, "height",
         f"the model's height must be {MIN_SIDE} to {MAX_SIDE} pixels (0: keep the footage's aspect)")
    need(cfg.batch >= 2, "batch", "a low-rank batch needs at least 2 frames (default 16)")
    need(cfg.steps >= 0 and cfg.prox_steps >= 0, "steps" if cfg.steps < 0 else "prox_steps", "must be >= 0")
    need(cfg.steps + cfg.prox_steps >= 1, "steps", "nothing to train: give at least one Adam or proximal step")
    need(cfg.lr > 0, "lr", "the learning rate must be > 0")
    need(cfg.prox_lr > 0, "prox_lr", "the learning rate must be > 0")
    if cfg.lam is not None:
        need(cfg.lam > 0, "lam", "the sparsity weight must be > 0 (leave it out for 1/sqrt(max(N, P)))")
    need(cfg.lam_scale > 0, "lam_scale", "must be > 0 (1 = the default lambda)")
    need(1 <= cfg.width <= MAX_WIDTH, "width", f"the U-Net's first-level width must be 1 to {MAX_WIDTH}")
    need(1 <= cfg.depth <= MAX_DEPTH, "depth", f"the U-Net needs 1 to {MAX_DEPTH} down-samplings")
    for side in ("width_px", "height"):  # a smaller side was raised to 2**depth without a word (another aspect)
        need(getattr(cfg, side) in (0, None) or getattr(cfg, side) >= 2 ** cfg.depth, side,
             f"too small for a depth-{cfg.depth} U-Net: each side needs {2 ** cfg.depth} pixels or more (or a smaller --depth)")
    need(cfg.crop == 0 or cfg.crop >= 2 ** (cfg.depth + 1), "crop",
         f"0 (whole frames) or a window of at least {2 ** (cfg.depth + 1)} pixels for a depth-{cfg.depth} U-Net")
    need(cfg.bg_frames >= 1, "bg_frames", "the background median needs at least 1 frame (default 200)")
    need(0 <= cfg.align <= MAX_ALIGN, "align", f"must be 0 (off) to {MAX_ALIGN} model pixels")
    need(cfg.checkpoint_every >= 1, "checkpoint_every", "must be >= 1 step")
    if cfg.threshold is not None:
        need(0 < cfg.threshold < 1, "threshold", "the mask threshold is a score in (0, 1); leave it out to choose it from the footage")
    need(isinstance(cfg.device, str) and bool(DEVICE_RE.match(cfg.device)), "device", "use auto, cpu, cuda or cuda:K")
    for f, allowed in (("norm", NORMS), ("input_mode", INPUT_MODES), ("output", OUTPUTS), ("score_filter", SCORE_FILTERS)):
        need(getattr(cfg, f) in allowed, f, f"use one of {', '.join(allowed)}")
    fr = cfg.frame_range
    if fr is not None:
        need(isinstance(fr, (list, tuple)) and len(fr) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in fr),
             "frame_range", "a first and a last frame number, e.g. 1-469")
        cfg.frame_range = tuple(fr)
    check_selection(cfg.stride, cfg.max_frames, cfg.frame_range)  # footage selection: the readers' own rule
    for f in ("fill_holes", "min_object"):
        try:
            CleanUp(**{f: getattr(cfg, f)})  # the clean-up's own rule
        except ValueError:
            raise _bad(f, getattr(cfg, f), "must be a fraction of the frame in [0, 1)") from None
