"""The daemon's configuration: one YAML file validated with pydantic, SPARSECAM_* overrides.

Every field has a default, so no file at all means: the synthetic camera, the bundled
model, masks on tcp://127.0.0.1:5556.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stream.argtypes import Parser
from stream.errors import UserError
from stream.modelinfo import BUNDLED_CAMERA, BUNDLED_MODEL
from stream.protocol import validate_camera
from stream.recorder import MB, RETRAIN_MIN_FRAMES, RecordPolicy

log = logging.getLogger("sparsecam.config")

ENV_PREFIX = "SPARSECAM_"
CURRENT_MODEL = "current.onnx"  # a camera's own model: <model.dir>/<camera>/current.onnx, what retrain writes
# What Kubernetes puts in every pod for each Service of the namespace (a Service "sparsecam-grafana":
# SPARSECAM_GRAFANA_SERVICE_HOST, SPARSECAM_GRAFANA_PORT_3000_TCP_ADDR, ...): not configuration.
_SERVICE_LINK = re.compile(r"SPARSECAM(_[A-Z0-9]+)*_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)")


def _parse_size(value: object) -> object:
    """'320x240' -> (320, 240) for pydantic (the one parser is stream.synthetic.parse_size)."""
    if isinstance(value, str):
        from stream.synthetic import parse_size

        try:
            return parse_size(value, what="size")
        except UserError as exc:
            raise ValueError(str(exc)) from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraConfig(_Strict):
    id: str = "cam0"  # the rule is stream.protocol.validate_camera (topics, recordings, model folders)
    source: str = "synthetic"
    size: tuple[int, int] | None = None  # resize captured frames to WxH
    fps: float | None = Field(None, gt=0)  # synthetic: frames per second (then live); file/folder: with pace
    loop: bool = False  # loop a video file or image folder
    pace: bool = False  # play a file or folder in real time (then frames may be dropped)
    timeout: float = Field(5.0, gt=0)  # seconds without a frame before the camera counts as down
    model: Path | None = None  # this camera's model (default: model.dir/<id>/current.onnx, else model.path)
    roi: Path | None = None  # region image: white = watched, black = cleared from every mask (a clock, a neighbour's window)

    _size = field_validator("size", mode="before")(_parse_size)
    _id = field_validator("id")(validate_camera)

    @field_validator("source", mode="before")
    @classmethod
    def _camera_index(cls, value: object) -> object:
        """`source: 0` in YAML is an int: camera index 0."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _pace_needs_a_rate(self) -> CameraConfig:
        """A synthetic scene has no frame rate of its own: `pace: true` without fps ran it unpaced, silently."""
        from stream.synthetic import is_synthetic_spec, parse_synthetic_spec

        if not (self.pace and self.fps is None and is_synthetic_spec(self.source)):
            return self
        try:
            rate = parse_synthetic_spec(self.source).fps  # the spec's own fps=, if any
        except UserError:
            return self  # a malformed spec: check-config and serve report it (stream.preflight)
        if rate is None:
            raise ValueError("pace: true needs fps for a synthetic source (it has no frame rate of its own), e.g. fps: 25")
        return self


class ModelSection(_Strict):
    path: Path | None = None  # None: the bundled model
    providers: list[str] | None = None  # None: best of TensorRT, CUDA, CPU available
    intra_op_threads: int = Field(0, ge=0)
    require_gpu: bool = False
    batch_cameras: bool = False  # run frames of cameras sharing a model in one batch
    dir: Path | None = None  # per-camera models: <dir>/<camera>/current.onnx (what `sparsecam retrain` writes)
    bootstrap: bool = True  # with dir: a camera without a model yet gets MOG2 masks ("bootstrap-mog2")
    cleanup: bool = True  # the model's mask clean-up: fill small holes, drop specks (stream/maskclean.py)

    def resolved_path(self) -> Path:
        return self.path if self.path is not None else BUNDLED_MODEL

    def camera_file(self, camera: str) -> Path | None:
        """``<dir>/<camera>/current.onnx``, the camera's own model (what retrain writes); None without ``dir``."""
        return None if self.dir is None else self.dir / camera / CURRENT_MODEL

    def dir_problem(self) -> str | None:
        """Why ``dir`` cannot hold per-camera models (it is a file), else None; a missing one is created by retrain."""
        if self.dir is not None and self.dir.exists() and not self.dir.is_dir():
            return f"model.dir {self.dir} is a file; give the folder of per-camera models"
        return None


class RetrainSection(_Strict):
    """The daemon running `retrain.command` itself, at low priority: a new camera's first training
    (bootstrap, ``auto_first``) and a daily retrain of every camera that serves its own
    ``<model.dir>/<camera>/current.onnx`` (``nightly_at``). Both need model.dir; auto_first always needs
    recording, nightly_at when the command trains on the recordings (the default does)."""

    auto_first: bool = False  # when a bootstrapping camera has recorded min_frames, run the command once
    min_frames: int = Field(300, ge=RETRAIN_MIN_FRAMES)  # what retrain needs at least (train + held-out frames)
    nightly_at: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # "03:00": daily (local time), cameras with their own model in model.dir
    command: str = "sparsecam retrain --camera {camera} --models {models} --recordings {recordings} --threads 1"


class PublishSection(_Strict):
    endpoints: list[str] = Field(default_factory=lambda: ["tcp://127.0.0.1:5556"], min_length=1)
    encoding: Literal["raw", "packbits", "png"] = "packbits"
    sndhwm: int = Field(4, ge=1)
    status_interval: float = Field(5.0, gt=0)
    # Before the first frame, wait up to this many seconds for a subscriber (0 = do not wait):
    # with a file source and no pacing, a late subscriber would otherwise miss the first masks.
    wait_for_subscriber: float = Field(0.0, ge=0)


_POLICY = RecordPolicy()  # the recording defaults


class RecordingSection(_Strict):
    enabled: bool = False
    dir: Path = Path("recordings")  # <dir>/<camera>/NNNNNNNNN.jpg + manifest.jsonl
    every: float = Field(_POLICY.every, gt=0)  # seconds between periodic frames
    burst_on_change: float = Field(_POLICY.burst_on_change, ge=0)  # foreground-ratio jump that starts a burst (0 = off)
    burst_frames: int = Field(_POLICY.burst_frames, ge=0)
    quota_mb: float = Field(_POLICY.quota_bytes / MB, gt=0)  # per camera; oldest frames are deleted first

    def policy(self) -> RecordPolicy:
        return RecordPolicy(every=self.every, burst_on_change=self.burst_on_change, burst_frames=self.burst_frames,
                            quota_bytes=int(self.quota_mb * MB))


class MetricsSection(_Strict):
    enabled: bool = True
    bind: str = "127.0.0.1:9108"  # /metrics, /healthz, /readyz, /preview; 0.0.0.0:9108 to expose


class SecuritySection(_Strict):
    curve: bool = False  # CurveZMQ on the mask bus (keys from `sparsecam keygen`)
    server_secret_key: Path | None = None  # the daemon's NAME.key_secret
    allowed_clients_dir: Path | None = None  # folder of subscribers' public NAME.key files

    @model_validator(mode="after")
    def _keys_when_curve(self) -> SecuritySection:
        if self.curve and (self.server_secret_key is None or self.allowed_clients_dir is None):
            raise ValueError("curve: true needs server_secret_key and allowed_clients_dir")
        return self


class DaemonConfig(_Strict):
    cameras: list[CameraConfig] = Field(default_factory=lambda: [CameraConfig(source=BUNDLED_CAMERA, fps=30.0)], min_length=1)
    model: ModelSection = Field(default_factory=ModelSection)
    publish: PublishSection = Field(default_factory=PublishSection)
    security: SecuritySection = Field(default_factory=SecuritySection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    recording: RecordingSection = Field(default_factory=RecordingSection)
    retrain: RetrainSection = Field(default_factory=RetrainSection)

    def camera_model(self, cam: CameraConfig) -> tuple[Path, bool]:
        """(model path of this camera, whether it bootstraps now: MOG2 masks until that file appears)."""
        if cam.model is not None:
            return cam.model, False
        path = self.model.camera_file(cam.id)
        if path is not None:
            if path.exists() or self.model.bootstrap:
                return path, self.model.bootstrap and not path.exists()
        return self.model.resolved_path(), False
    status_line: bool = True  # a live line each second on stderr

    @model_validator(mode="after")
    def _retrain_has_what_it_needs(self) -> DaemonConfig:
        """auto_first without recording never started (it counts recorded frames), and either without
        model.dir ran the command with --models None: both silently."""
        r = self.retrain
        for name, on in (("auto_first", r.auto_first), ("nightly_at", r.nightly_at is not None)):
            if not on:
                continue
            if self.model.dir is None:
                raise ValueError(f"retrain.{name} needs model.dir: a retrain writes <dir>/<camera>/current.onnx, "
                                 "which the daemon serves and reloads")
            if not self.recording.enabled and (name == "auto_first" or "{recordings}" in r.command):
                raise ValueError(f"retrain.{name} needs recording.enabled: true (the retrain trains on the camera's recordings)")
        return self

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cams: list[CameraConfig]) -> list[CameraConfig]:
        ids = [c.id for c in cams]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"camera ids must be unique, repeated: {', '.join(dup)}")
        return cams


def format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {len(exc.errors())} error(s)"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {path}: {err['msg']}")
    return "\n".join(lines)


def _env_overrides(data: dict) -> list[str]:
    """SPARSECAM_MODEL__PATH=/x.onnx sets model.path in ``data`` ('__' separates levels, a number
    is a list index: SPARSECAM_CAMERAS__0__SOURCE; values are YAML). Returns the variables applied."""
    applied = []
    for key, raw in sorted(os.environ.items()):
        if not key.startswith(ENV_PREFIX) or key == "SPARSECAM_DATA":
            continue
        if _SERVICE_LINK.fullmatch(key):
            log.debug("environment variable %s is a Kubernetes service link, not configuration; ignored", key)
            continue
        path = key[len(ENV_PREFIX):].lower().split("__")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"environment variable {key}={raw!r} is not a YAML value; quote it or unset it") from None
        node: dict | list = data
        for depth, part in enumerate(path):
            where = ".".join(path[:depth]) or "the configuration"
            last = depth == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise UserError(f"environment variable {key}: {where} is a list of {len(node)}; "
                                    f"use an index 0-{len(node) - 1} after {where.split('.')[-1].upper()}__")
                index: int | str = int(part)
            elif isinstance(node, dict):
                index = part
            else:
                raise UserError(f"environment variable {key}: {where} is a single value, not a section")
            if last:
                node[index] = value  # type: ignore[index]
            else:
                child = node[index] if isinstance(node, list) else node.get(index)  # type: ignore[arg-type]
                if child is None:  # a missing or empty section ('model:' with nothing under it)
                    child = node[index] = {}  # type: ignore[index]
                node = child
        applied.append(key)
    return applied


def load_config(path: Path | None = None, use_env: bool = True) -> DaemonConfig:
    """Read and validate; every error (with its field path) in one UserError."""
    data: dict = {}
    source = "default configuration"
    if path is not None:
        source = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise UserError(f"config file {path} does not exist") from None
        except UnicodeDecodeError:
            raise UserError(f"config file {path} is not a text file; pass the daemon's YAML configuration") from None
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"config file {path} is not readable YAML: {exc}") from None
        if not isinstance(data, dict):
            raise UserError(f"config file {path} must hold a mapping at the top level")
    if use_env:
        applied = _env_overrides(data)
        if applied:
            source += f" with {', '.join(sorted(applied))} from the environment"
    try:
        return DaemonConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_errors(exc, source)) from None


def cli(argv: list[str]) -> int:
    """`sparsecam check-config FILE`: validate a configuration, print every error with its field path."""
    p = Parser(prog="sparsecam check-config", description=cli.__doc__)
    p.add_argument("file", type=Path, nargs="?")
    p.add_argument("--config", type=Path, help="the same FILE, spelt as `sparsecam serve` takes it")
    p.add_argument("--no-env", action="store_true", help="ignore SPARSECAM_* environment overrides")
    args = p.parse_args(argv)
    if (args.file is None) == (args.config is None):
        p.error("give the configuration file once: sparsecam check-config FILE (or --config FILE)")
    args.file = args.file or args.config
    cfg = load_config(args.file, use_env=not args.no_env)
    from stream.sources import redact
    from stream.preflight import problems

    found = problems(cfg)
    if found:
        raise UserError(f"{args.file}: valid, but `sparsecam serve` would refuse it:\n" + "\n".join(f"  {p}" for p in found))

    def served(cam: CameraConfig) -> str:
        path, bootstraps = cfg.camera_model(cam)
        return f"{path} (MOG2 until it exists)" if bootstraps else str(path)

    cams = ", ".join(f"{c.id} ({redact(c.source)}, model {served(c)})" for c in cfg.cameras)
    retrain = [k for k, on in (("auto_first", cfg.retrain.auto_first), (f"nightly at {cfg.retrain.nightly_at}", cfg.retrain.nightly_at)) if on]
    print(f"{args.file}: ok — cameras: {cams}; publish: {', '.join(cfg.publish.endpoints)}; metrics: "
          f"{cfg.metrics.bind if cfg.metrics.enabled else 'off'}; CurveZMQ: {'on' if cfg.security.curve else 'off'}; "
          f"models: {cfg.model.dir or cfg.model.path or 'bundled'}; recording: {cfg.recording.dir if cfg.recording.enabled else 'off'}; "
          f"retrain: {', '.join(retrain) or 'off'}")
    return 0
