"""The metadata every sparsecam ONNX model carries, written by export and read by the run time.

Kept in ``stream/`` (no torch) so that the daemon can validate a model it did not build.
The graph contract (MODEL_FORMAT 1): input ``frames`` uint8 (N, H, W, 3) BGR, any N, H, W;
outputs ``mask`` uint8 (N, H, W) with 0/255, ``score`` float32 (N, H, W) and (models exported
since the mask clean-up) ``score_model`` float32 (N, h, w) at the model's resolution, which the
run time cleans up with the ``fill_holes`` / ``min_object`` settings (stream/maskclean.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stream.errors import UserError
from stream.maskclean import CleanUp

MODEL_FORMAT = 1
INPUT_NAME = "frames"
MASK_OUTPUT = "mask"
SCORE_OUTPUT = "score"
SCORE_MODEL_OUTPUT = "score_model"
PREFIX = "sparsecam."
# Trained on the built-in synthetic camera BUNDLED_CAMERA at the model's native resolution
# (160x120); regenerate with `make default-model`.
BUNDLED_MODEL = Path(__file__).resolve().parent / "models" / "default.onnx"
BUNDLED_CAMERA = "synthetic:size=160x120"


@dataclass(frozen=True)
class ModelInfo:
    """What a model says about itself (ONNX ``metadata_props``, all prefixed ``sparsecam.``)."""

    format: int
    width: int  # the model's native resolution; frames of any size are resized in the graph
    height: int
    channels: int  # 1 gray or 3 colour, as trained (the input is always BGR)
    threshold: float
    model_version: str
    trained_on: list[str] = field(default_factory=list)
    created: str = ""
    sparsecam_version: str = ""
    precision: str = "fp32"
    input_mode: str = "background"
    fill_holes: float = 0.0  # mask clean-up (stream/maskclean.py); 0 in models exported before it
    min_object: float = 0.0

    def cleanup(self) -> CleanUp:
        return CleanUp(self.fill_holes, self.min_object)

    def to_metadata(self) -> dict[str, str]:
        out = {}
        for key, value in asdict(self).items():
            out[PREFIX + key] = json.dumps(value) if isinstance(value, list) else str(value)
        return out

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = "model") -> ModelInfo:
        """Parse and validate; a missing or malformed field is a UserError naming it."""
        def get(key: str) -> str:
            if PREFIX + key not in props:
                raise UserError(f"{source} lacks metadata {PREFIX + key}: not a sparsecam model (re-export it with `sparsecam export`)")
            return props[PREFIX + key]

        try:
            fmt = int(get("format"))
            if fmt != MODEL_FORMAT:
                raise UserError(f"{source} has model format {fmt}; this sparsecam reads format {MODEL_FORMAT}")
            info = cls(
                format=fmt,
                width=int(get("width")),
                height=int(get("height")),
                channels=int(get("channels")),
                threshold=float(get("threshold")),
                model_version=get("model_version"),
                trained_on=list(json.loads(props.get(PREFIX + "trained_on", "[]"))),
                created=props.get(PREFIX + "created", ""),
                sparsecam_version=props.get(PREFIX + "sparsecam_version", ""),
                precision=props.get(PREFIX + "precision", "fp32"),
                input_mode=props.get(PREFIX + "input_mode", "background"),
                fill_holes=float(props.get(PREFIX + "fill_holes", "0")),
                min_object=float(props.get(PREFIX + "min_object", "0")),
            )
            info.cleanup()  # range check
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise UserError(f"{source} has malformed sparsecam metadata ({exc})") from None
        if info.channels not in (1, 3) or info.width < 1 or info.height < 1 or not info.model_version:
            raise UserError(f"{source} has implausible metadata: {info}")
        return info
