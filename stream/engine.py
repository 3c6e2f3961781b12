"""The onnxruntime session: provider choice, validation, warm-up, and frames -> masks.

onnxruntime-gpu falls back to the CPU silently (it only logs) when the CUDA libraries are
missing, so the provider actually in use is read back from the session, compared with what
was asked, and reported; with ``require_gpu`` a CPU fallback refuses to start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stream.errors import UserError
from stream.maskclean import OFF, CleanUp, clean_masks
from stream.modelinfo import INPUT_NAME, MASK_OUTPUT, SCORE_MODEL_OUTPUT, SCORE_OUTPUT, ModelInfo

log = logging.getLogger("sparsecam.engine")

# Best first. Only those that get_available_providers() lists are tried.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider", "OpenVINOExecutionProvider"}


@dataclass(frozen=True)
class ProviderChoice:
    asked: list[str]
    used: str
    fallback_reason: str | None


def choose_providers(requested: list[str] | None) -> tuple[list[str], str | None]:
    """Providers to ask for, best first, and why any requested one is missing."""
    available = ort.get_available_providers()
    if not requested:
        return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"], None
    missing = [p for p in requested if p not in available]
    asked = [p for p in requested if p in available]
    if "CPUExecutionProvider" not in asked:
        asked.append("CPUExecutionProvider")
    reason = f"not available in this onnxruntime build: {', '.join(missing)} (available: {', '.join(available)})" if missing else None
    return asked, reason


def require_gpu_provider(requested: list[str] | None) -> None:
    """``require_gpu`` checked before any model is loaded: a daemon whose cameras all wait for their
    first model (MOG2 meanwhile) started on a CPU-only onnxruntime and could never serve one."""
    asked, reason = choose_providers(requested)
    if not any(p in GPU_PROVIDERS for p in asked):
        raise UserError("a GPU was required but onnxruntime offers no GPU provider here "
                        f"({reason or 'available: ' + ', '.join(ort.get_available_providers())}); "
                        "install onnxruntime-gpu with CUDA, or unset require_gpu")


def _preload_gpu_libraries(asked: list[str]) -> None:
    """onnxruntime >= 1.21 can load the CUDA/cuDNN libraries installed with PyTorch or pip."""
    if any(p in GPU_PROVIDERS for p in asked) and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - best effort: the session reports what it got
            log.warning("onnxruntime.preload_dlls() failed: %s", exc)


def model_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a model to serve without opening it (a folder, missing, a torch checkpoint), else None."""
    if path.is_dir():
        return f"model {path} is a folder; pass the .onnx file in it"
    if not path.is_file():
        return f"model {path} does not exist (export one with `sparsecam export`, or omit it to use the bundled model)"
    if path.suffix in (".pt", ".pth"):
        return f"model {path} is a training checkpoint; the daemon runs ONNX: sparsecam export {path} --out model.onnx"
    return None


def load_session(path: Path, providers: list[str] | None = None, intra_op_threads: int = 0, require_gpu: bool = False) -> tuple[ort.InferenceSession, ModelInfo, ProviderChoice]:
    """Open and validate a sparsecam model; every failure is a UserError naming the file."""
    path = Path(path)
    problem = model_file_problem(path)
    if problem:
        raise UserError(problem)
    asked, reason = choose_providers(providers)
    _preload_gpu_libraries(asked)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        opts.intra_op_num_threads = int(intra_op_threads)
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=asked)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types for bad files
        raise UserError(f"model {path} cannot be loaded by onnxruntime: {str(exc).splitlines()[0][:200]}") from None
    info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if INPUT_NAME not in inputs or inputs[INPUT_NAME].type != "tensor(uint8)":
        raise UserError(f"model {path} must take a uint8 input named {INPUT_NAME!r}")
    if MASK_OUTPUT not in outputs:
        raise UserError(f"model {path} has no output named {MASK_OUTPUT!r}")
    shape = inputs[INPUT_NAME].shape
    fixed = [axis for axis, dim in zip(("batch", "height", "width"), shape) if isinstance(dim, int)]
    if len(shape) != 4 or fixed:
        raise UserError(f"model {path} takes frames of one fixed {' and '.join(fixed) or 'shape'} ({shape}); the daemon serves "
                        "cameras of any size, in batches: export it with `sparsecam export` (dynamic batch and size)")
    used = session.get_providers()[0]
    if used != asked[0]:
        why = f"{asked[0]} could not be initialised (missing CUDA/cuDNN/TensorRT libraries?)"
        reason = f"{reason}; {why}" if reason else why
    if require_gpu and used not in GPU_PROVIDERS:
        raise UserError(f"a GPU was required but onnxruntime runs {path.name} on {used}" + (f": {reason}" if reason else "") + "; install onnxruntime-gpu with CUDA, or unset require_gpu")
    return session, info, ProviderChoice(asked=asked, used=used, fallback_reason=reason)


class Engine:
    """A loaded, validated, warmed-up model: ``run(frames) -> masks``, cleaned up as the model says.

    ``cleanup=False`` turns the mask clean-up (stream/maskclean.py) off; models exported before
    it have no ``score_model`` output and run without it."""

    def __init__(self, path: str | Path, providers: list[str] | None = None, intra_op_threads: int = 0, require_gpu: bool = False, warmup: bool = True, cleanup: bool = True) -> None:
        self.path = Path(path)
        self.session, self.info, self.choice = load_session(self.path, providers, intra_op_threads, require_gpu)
        outputs = {o.name for o in self.session.get_outputs()}
        self.has_score = SCORE_OUTPUT in outputs
        self.cleanup: CleanUp = self.info.cleanup() if cleanup and SCORE_MODEL_OUTPUT in outputs else OFF
        if self.choice.fallback_reason:
            log.warning("model %s runs on %s: %s", self.path.name, self.choice.used, self.choice.fallback_reason)
        log.info("model %s (version %s, %dx%d, %s, mask clean-up %s) on %s", self.path.name, self.info.model_version, self.info.width, self.info.height,
                 "gray" if self.info.channels == 1 else "colour", "on" if self.cleanup.active else "off", self.choice.used)
        if warmup:
            self.self_test()

    @property
    def provider(self) -> str:
        return self.choice.used

    @property
    def model_version(self) -> str:
        return self.info.model_version

    def self_test(self, runs: int = 2) -> None:
        """Warm up on test frames and check the output's shape and type: at the model's own size, then a
        batch of two at another size (a graph that only takes its own size would fail on the first
        camera of another size, after a reload had already swapped it in)."""
        h, w = self.info.height, self.info.width
        own = np.full((1, h, w, 3), 128, np.uint8)
        other = np.full((2, h // 2 + 1, w // 2 + 3, 3), 128, np.uint8)
        # TensorRT builds an engine per input shape: the other size would cost one more build at each (re)load.
        for frames in [own] * runs + ([other] if self.provider != "TensorrtExecutionProvider" else []):
            try:
                mask = self.run(frames)
            except Exception as exc:  # noqa: BLE001 - a broken graph fails here, not on the first real frame
                raise UserError(f"model {self.path} fails on a test batch of {frames.shape[0]} {frames.shape[2]}x{frames.shape[1]} "
                                f"frame(s): {str(exc).splitlines()[0][:200]}") from None
            if mask.shape != frames.shape[:3] or mask.dtype != np.uint8:
                raise UserError(f"model {self.path} returned a mask of shape {mask.shape} {mask.dtype} for frames of shape {frames.shape[:3]}")

    def run(self, frames: np.ndarray, with_score: bool = False, threshold: float | None = None):
        """uint8 BGR (N,H,W,3) or (H,W,3) -> mask uint8 (N,H,W) [and score float32 (N,H,W)].

        ``threshold`` replaces the model's own (evaluation): the mask is then ``score > threshold``,
        cleaned up with that threshold as the model's mask is with its own."""
        single = frames.ndim == 3
        batch = frames[None] if single else frames
        needed = ([MASK_OUTPUT] if threshold is None else []) + ([SCORE_OUTPUT] if with_score or threshold is not None else []) \
            + ([SCORE_MODEL_OUTPUT] if self.cleanup.active else [])  # the graph's mask is not read when another threshold makes it
        got = dict(zip(needed, self.session.run(needed, {INPUT_NAME: np.ascontiguousarray(batch)})))
        t = self.info.threshold if threshold is None else float(threshold)
        mask = got[MASK_OUTPUT] if threshold is None else (got[SCORE_OUTPUT] > np.float32(t)).astype(np.uint8) * 255
        if self.cleanup.active:
            mask = clean_masks(mask, got[SCORE_MODEL_OUTPUT], t, self.cleanup)
        score = got.get(SCORE_OUTPUT)
        if single:
            mask, score = mask[0], (score[0] if score is not None else None)
        return (mask, score) if with_score else mask
