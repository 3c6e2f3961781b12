"""int8 post-training quantization of an exported fp32 model (onnxruntime static QDQ).

Only the convolutions are quantized (uint8 activations, int8 per-channel weights): the
pre- and post-processing (uint8 -> float, resizes, median filter, threshold) stays in float, and
the int64 shape arithmetic feeding ``Resize`` is left alone. Calibration runs the model on
frames at its native size: the checkpoint's training footage (by default, when it can be read),
the synthetic scene or any footage path.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from stream.errors import UserError
from stream.modelinfo import INPUT_NAME
from training.resize import resize_image

log = logging.getLogger("sparsecam.export")

CALIBRATION_FRAMES = 16


def calibration_frames(spec: str, footage: Sequence[str], size: tuple[int, int],
                       n: int = CALIBRATION_FRAMES) -> tuple[np.ndarray, str]:
    """(n, H, W, 3) uint8 BGR frames at the model's native ``size`` = (width, height), and what they are.

    ``spec``: "auto" (the checkpoint's training footage when it can be read here, else the
    synthetic scene), "synthetic" (the built-in scene), "footage" (the checkpoint's footage) or a
    footage path / ``synthetic:...`` spec readable by ``training.data.load_footage``. Footage
    frames are spread over the whole of it. A model quantized with ranges from another scene
    clips or wastes its int8 steps on the camera's own frames.
    """
    from training.data import footage_here

    w, h = size
    if spec == "auto":
        readable = [p for p in footage if footage_here(p)]
        if readable:
            try:
                return _footage_frames(readable, size, n), "footage"
            except UserError as exc:
                log.warning("training footage unreadable (%s): calibrating on the synthetic scene", exc)
        spec = "synthetic"
    if spec == "synthetic":
        from stream.synthetic import SceneConfig, SyntheticScene

        scene = SyntheticScene(SceneConfig(width=max(32, w), height=max(32, h)))
        frames = [scene.frame(t)[0] for t in range(0, 13 * n, 13)]  # spread over the objects' paths
        return np.stack([resize_image(f, (w, h)) for f in frames]), "synthetic"
    if spec != "footage" and not footage_here(spec):
        raise UserError(f"--calibration {spec}: no such footage; use auto, synthetic, footage or a video/folder path")
    paths = list(footage) if spec == "footage" else [spec]
    if not paths:
        raise UserError("--calibration footage: the checkpoint names no footage; use --calibration synthetic or a path")
    return _footage_frames(paths, size, n), spec


def _footage_frames(paths: Sequence[str], size: tuple[int, int], n: int) -> np.ndarray:
    from training.data import load_footage, spread_stride

    return load_footage(paths, size=size, max_frames=n, stride=spread_stride(paths, n), progress=False).frames


def quantize_int8(model: onnx.ModelProto, frames: np.ndarray) -> tuple[onnx.ModelProto, str]:
    """Static QDQ int8 quantization of ``model`` calibrated on ``frames``; returns (model, note).

    The model is first pre-processed (``quant_pre_process``: shape inference); symbolic shape inference
    does not handle the dynamic resizes, so it falls back to ONNX shape inference, and to the raw model if
    pre-processing fails altogether. Its ORT graph optimisation is skipped: it folded the background's
    shifted and exposure-scaled copies into constants (a 2.5 MB file instead of 0.5 MB; its CPU speed was
    within this machine's run-to-run spread either way: bench/throughput.py figures in the README).
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class FrameReader(CalibrationDataReader):
        """Feeds the calibration frames one at a time, as (1, H, W, 3) uint8."""

        def __init__(self) -> None:
            self._it = iter(frames)

        def get_next(self) -> dict[str, np.ndarray] | None:
            frame = next(self._it, None)
            return None if frame is None else {INPUT_NAME: np.ascontiguousarray(frame[None])}

    reader = FrameReader()
    with tempfile.TemporaryDirectory(prefix="sparsecam-int8-") as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(model, str(src))
        note = "quant_pre_process"
        try:
            quant_pre_process(str(src), str(pre), skip_optimization=True)
        except Exception as exc:  # symbolic shape inference fails on dynamic Resize sizes
            log.debug("quant_pre_process with symbolic shapes failed (%s); retrying without", exc)
            try:
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True, skip_optimization=True)
                note = "quant_pre_process (no symbolic shape inference)"
            except Exception as exc2:
                log.warning("quant_pre_process failed (%s); quantizing the model as exported", exc2)
                pre, note = src, "not pre-processed"
        try:
            quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv"], per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:
            raise UserError(f"int8 quantization failed ({type(exc).__name__}: {exc}); export fp32 or fp16 instead") from None
        return onnx.load_model(str(dst)), note
