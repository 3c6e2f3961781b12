"""`sparsecam export`: a training checkpoint -> one self-contained ONNX file, checked against PyTorch.

The graph is ``training.wrapper.FramesToMask``: uint8 BGR frames (N, H, W, 3) of any size in,
``mask`` uint8 0/255 and ``score`` float32 (N, H, W) out, plus ``score_model`` (N, h, w) at the
model's resolution for the run time's mask clean-up (stream/maskclean.py; its settings travel
in the metadata), with the resizes (training.resize), the median score filter and the threshold
inside. It is exported with the dynamo exporter with
dynamic N, H and W, constant-folded (BatchNorm folded into the convolutions), weights embedded,
and the ``sparsecam.*`` metadata of ``stream.modelinfo``.

Precisions: fp32; fp16 (the U-Net in float16 between casts; uint8 in/out and the float32
threshold compare are kept); int8 (static QDQ quantization of the convolutions, see quantize.py).
Before the file is written (temp file + atomic rename) onnxruntime is run against the PyTorch
fp32 model on synthetic frames at the native size and at twice it, and on the training
footage when it can still be read; a model outside the tolerances is not written.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

import stream
from stream.argtypes import Parser
from stream.errors import UserError
from stream.modelinfo import INPUT_NAME, MASK_OUTPUT, MODEL_FORMAT, SCORE_MODEL_OUTPUT, SCORE_OUTPUT, ModelInfo
from training.checkpoint import load_finished
from training.metrics import Confusion, confusion, scores
from training.model import UNet
from training.rollback import read_model_version
from training.wrapper import FramesToMask

log = logging.getLogger("sparsecam.export")

PRECISIONS = ("fp32", "fp16", "int8")
MIN_OPSET = 18  # the dynamo exporter writes opset 18 natively; lower ones need a lossy conversion
# parity tolerances against the PyTorch fp32 model. The score tolerance (0.26 grey levels) leaves room
# for the background alignment's sub-pixel fit, which turns float rounding into a slightly other shift
# on frames unlike the camera's: the waving-trees model measured 1.1e-4 over a whole synthetic frame
# with every mask pixel equal, and 1e-4 refused it. The mask agreement is the binding test.
FP32_MAX_SCORE_DIFF = 1e-3
FP32_MIN_AGREEMENT = 0.999
REDUCED_MIN_AGREEMENT = 0.99  # fp16 / int8
REDUCED_MAX_F_DROP = 0.02
# parity frames
NATIVE_FRAMES = 8
DOUBLE_FRAMES = 3
FOOTAGE_FRAMES = 8
FOOTAGE_SOURCES = 3
FP16_NOTE = ("fp16 is meant for GPU execution providers: onnxruntime's CPU provider casts the float16 "
             "part back to float32, so on CPU it only halves the file")
QUIET_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir", "onnxruntime.quantization")


# --------------------------------------------------------------------------- graph
class HalfNet(nn.Module):
    """The U-Net in float16 between two casts: float32 in, float32 S out (the fp16 export)."""

    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.cfg = net.cfg
        self.net = copy.deepcopy(net).half().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings and its optimizer's INFO lines (torchvision absent, deprecations)."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def strip_debug_info(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop metadata and doc strings everywhere (the exporter's stack traces, fx node names), in place."""
    del model.metadata_props[:]
    model.doc_string = ""
    graphs = [model.graph] + [a.g for n in model.graph.node for a in n.attribute if a.HasField("g")]
    for g in graphs:
        g.doc_string = ""
        if hasattr(g, "metadata_props"):
            del g.metadata_props[:]
        for coll in (g.node, g.input, g.output, g.value_info, g.initializer):
            for item in coll:
                item.doc_string = ""
                if hasattr(item, "metadata_props"):
                    del item.metadata_props[:]
    return model


def trace_onnx(net: UNet, threshold: float, precision: str = "fp32", opset: int = MIN_OPSET) -> onnx.ModelProto:
    """``FramesToMask(net, threshold)`` as ONNX, dynamic N/H/W; fp16 runs the U-Net in float16."""
    inner: nn.Module = HalfNet(net) if precision == "fp16" else net
    module = FramesToMask(inner, threshold).eval()  # type: ignore[arg-type]
    cfg = net.cfg
    # an example size unlike the native one, so no size-dependent branch gets specialised
    example = torch.zeros((2, cfg.height + 8, cfg.width_px + 8, 3), dtype=torch.uint8)
    dims = {"frames": {0: torch.export.Dim("N"), 1: torch.export.Dim("H"), 2: torch.export.Dim("W")}}
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(module, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[MASK_OUTPUT, SCORE_OUTPUT, SCORE_MODEL_OUTPUT], dynamic_shapes=dims,
                                    opset_version=opset, optimize=True, verbose=False, external_data=False)
    return strip_debug_info(program.model_proto)


def model_version(model: onnx.ModelProto) -> str:
    """Content hash of the graph and weights (sha256, 16 hex): metadata and timestamps excluded."""
    h = hashlib.sha256()
    for op in sorted(model.opset_import, key=lambda o: o.domain):
        h.update(f"{op.domain}:{op.version};".encode())
    graph = copy.deepcopy(model.graph)
    graph.doc_string = ""
    if hasattr(graph, "metadata_props"):
        del graph.metadata_props[:]
    h.update(graph.SerializeToString(deterministic=True))
    return h.hexdigest()[:16]


def _count_ops(model: onnx.ModelProto, op: str) -> int:
    return sum(n.op_type == op for n in model.graph.node)


# --------------------------------------------------------------------------- parity
@dataclass
class FrameSet:
    """Frames to compare on: (N, H, W, 3) uint8 BGR, with ground truth (N, H, W) when known."""

    name: str
    frames: np.ndarray
    gt: np.ndarray | None = None
    footage: bool = False  # the camera's own frames (the training footage), not the synthetic scene


def parity_sets(state: dict[str, Any], width: int, height: int) -> list[FrameSet]:
    """The synthetic scene at the native size and at twice it, plus the readable training footage."""
    from stream.synthetic import SceneConfig, SyntheticScene
    from training.data import footage_here, load_footage, spread_stride

    sets = []
    for k, n in ((1, NATIVE_FRAMES), (2, DOUBLE_FRAMES)):
        w, h = max(32, k * width), max(32, k * height)
        scene = SyntheticScene(SceneConfig(width=w, height=h))
        frames, gts = zip(*(scene.frame(t) for t in range(0, 17 * n, 17)))  # spread over the objects' paths
        sets.append(FrameSet(f"synthetic {w}x{h}", np.stack(frames), np.stack(gts)))
    for src in [str(s) for s in state.get("footage") or []][:FOOTAGE_SOURCES]:
        if not footage_here(src):
            log.info("footage %s is not here: not used in the parity check", src)
            continue
        try:
            frames = load_footage([src], max_frames=FOOTAGE_FRAMES, stride=spread_stride([src], FOOTAGE_FRAMES), progress=False).frames
        except UserError as exc:
            log.warning("footage %s unreadable, not used in the parity check: %s", src, exc)
            continue
        if frames.shape[-1] == 3:
            sets.append(FrameSet(f"footage {Path(src).name or src} {frames.shape[2]}x{frames.shape[1]}", frames, footage=True))
    return sets


@torch.inference_mode()
def _run_torch(module: FramesToMask, frames: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    masks, scores_ = [], []
    for i in range(0, len(frames), batch):
        m, s, _ = module(torch.from_numpy(np.ascontiguousarray(frames[i:i + batch])))
        masks.append(m.numpy())
        scores_.append(s.numpy())
    return np.concatenate(masks), np.concatenate(scores_)


def _run_ort(session: Any, frames: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    masks, scores_ = [], []
    for i in range(0, len(frames), batch):
        m, s = session.run([MASK_OUTPUT, SCORE_OUTPUT], {INPUT_NAME: np.ascontiguousarray(frames[i:i + batch])})
        masks.append(m)
        scores_.append(s)
    return np.concatenate(masks), np.concatenate(scores_)


def compare(session: Any, reference: FramesToMask, sets: list[FrameSet]) -> dict[str, Any]:
    """onnxruntime vs the PyTorch reference on every set: score diff, mask agreement, synthetic F."""
    rows = []
    conf_ref, conf_onnx = Confusion(0, 0, 0, 0), Confusion(0, 0, 0, 0)
    binary = True
    for s in sets:
        m_ref, s_ref = _run_torch(reference, s.frames)
        m_onnx, s_onnx = _run_ort(session, s.frames)
        if m_onnx.shape != m_ref.shape or s_onnx.shape != s_ref.shape or m_onnx.dtype != np.uint8:
            raise UserError(f"the exported graph gives outputs {m_onnx.dtype}{m_onnx.shape}/{s_onnx.shape} for "
                            f"frames {s.frames.shape}, expected uint8{m_ref.shape}; nothing written")
        binary &= bool(np.isin(m_onnx, (0, 255)).all())
        diff = np.abs(s_onnx.astype(np.float64) - s_ref.astype(np.float64))
        rows.append({"set": s.name, "frames": len(s.frames), "footage": s.footage,
                     "max_diff": float(np.nan_to_num(diff, nan=np.inf).max()),
                     "agreement": float((m_onnx == m_ref).mean())})
        if s.gt is not None:
            for i in range(len(s.frames)):
                conf_ref += confusion(m_ref[i] > 0, s.gt[i])
                conf_onnx += confusion(m_onnx[i] > 0, s.gt[i])
    f_ref, f_onnx = scores(conf_ref)["f"], scores(conf_onnx)["f"]
    return {
        "sets": rows,
        "max_diff": max(r["max_diff"] for r in rows),
        "agreement": min(r["agreement"] for r in rows),
        "f_torch": f_ref,
        "f_onnx": f_onnx,
        "f_change": f_onnx - f_ref,
        "mask_binary": binary,
    }


def binding_agreement(result: dict[str, Any], precision: str) -> tuple[float, str]:
    """The mask agreement that decides, and on which set.

    fp32 must agree everywhere. fp16/int8 are judged on the camera's own frames when the training
    footage could be read: a model of a real camera, run on the synthetic scene, fires on frames it
    was never meant for, and its reduced-precision masks may differ there (98.8 % for the vtest
    pedestrians model in int8) while they agree 100 % on the camera's frames.
    """
    rows = result.get("sets") or [{"set": "all frames", "agreement": result["agreement"], "footage": False}]
    own = [r for r in rows if r.get("footage")]
    judged = own if precision != "fp32" and own else rows
    worst = min(judged, key=lambda r: r["agreement"])
    return float(worst["agreement"]), str(worst["set"])


def parity_failures(result: dict[str, Any], precision: str) -> list[str]:
    """Why a compared model must not be written (empty when it passes)."""
    out = []
    agreement, where = binding_agreement(result, precision)
    if not result["mask_binary"]:
        out.append("mask holds values other than 0/255")
    if precision == "fp32":
        if not result["max_diff"] <= FP32_MAX_SCORE_DIFF:
            out.append(f"score max diff {result['max_diff']:.2e} > {FP32_MAX_SCORE_DIFF:.0e}")
        if agreement < FP32_MIN_AGREEMENT:
            out.append(f"mask agreement {100 * agreement:.3f} % < {100 * FP32_MIN_AGREEMENT:.1f} % on {where}")
    else:
        if agreement < REDUCED_MIN_AGREEMENT:
            out.append(f"mask agreement with fp32 {100 * agreement:.3f} % < {100 * REDUCED_MIN_AGREEMENT:.0f} % on {where}")
        if result["f_change"] < -REDUCED_MAX_F_DROP:
            out.append(f"synthetic F {result['f_torch']:.3f} -> {result['f_onnx']:.3f}, "
                       f"a drop of more than {REDUCED_MAX_F_DROP}")
    return out


def ms_per_frame(session: Any, frame: np.ndarray, min_s: float = 0.3, max_runs: int = 50) -> float:
    """Median onnxruntime latency of one (H, W, 3) frame, batch 1, in milliseconds."""
    x = {INPUT_NAME: np.ascontiguousarray(frame[None])}
    for _ in range(2):
        session.run(None, x)
    times: list[float] = []
    end = time.perf_counter() + min_s
    while len(times) < 5 or (time.perf_counter() < end and len(times) < max_runs):
        t = time.perf_counter()
        session.run(None, x)
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


def _session(path: Path, optimized: Path | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # no warning about saving the optimized model
    if optimized is not None:
        opts.optimized_model_filepath = str(optimized)
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UserError(f"onnxruntime cannot load the exported model ({type(exc).__name__}: {first}); nothing written") from None


def verify(path: Path, net: UNet, threshold: float, state: dict[str, Any], precision: str) -> dict[str, Any]:
    """Run the file at ``path`` in onnxruntime against the PyTorch fp32 model; figures for the report."""
    cfg = net.cfg
    with tempfile.TemporaryDirectory(prefix="sparsecam-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx" if precision == "fp16" else None
        session = _session(path, optimized)
        extra: dict[str, Any] = {}
        if optimized is not None and optimized.exists():
            extra["ort_inserted_casts"] = (_count_ops(onnx.load_model(str(optimized)), "Cast")
                                           - _count_ops(onnx.load_model(str(path)), "Cast"))
    reference = FramesToMask(net, threshold).eval()
    sets = parity_sets(state, cfg.width_px, cfg.height)
    result = compare(session, reference, sets)
    native = sets[0].frames[0]
    if native.shape[:2] != (cfg.height, cfg.width_px):
        native = np.zeros((cfg.height, cfg.width_px, 3), np.uint8)
    result["ms_per_frame"] = ms_per_frame(session, native)
    result.update(extra)
    return result


# --------------------------------------------------------------------------- export
def export_model(checkpoint: Path, out: Path, precision: str = "fp32", calibration: str = "auto",
                 opset: int = MIN_OPSET, check: bool = True) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out`` (ONNX); returns the report. Nothing is written on failure."""
    checkpoint, out = Path(checkpoint), Path(out)
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    max_opset = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= max_opset:
        raise UserError(f"opset {opset} is not supported: use {MIN_OPSET}..{max_opset} (the exporter writes {MIN_OPSET} natively)")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as {out / 'model.onnx'}")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"--out {out}: {blocking} is a file, not a folder")
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--out {out}: give a file name ending in .onnx (serve, eval and retrain know models by it)")
    if out.exists() and checkpoint.exists() and out.resolve() == checkpoint.resolve():
        raise UserError(f"--out {out} is the checkpoint itself; choose another file name")
    replaced = read_model_version(out) if out.exists() else None
    if out.exists() and replaced is None:
        raise UserError(f"--out {out} exists and is not a sparsecam model; choose another file name "
                        "(an earlier sparsecam export there would be replaced)")
    if calibration != "auto" and precision != "int8":
        raise UserError(f"--calibration {calibration} applies to --precision int8 only")
    state, net = load_finished(checkpoint)
    threshold = float(state["threshold"])
    cfg = net.cfg
    if precision == "int8":  # before the trace: a bad --calibration is said at once
        from export.quantize import calibration_frames, quantize_int8

        frames, used = calibration_frames(calibration, [str(s) for s in state.get("footage") or []], (cfg.width_px, cfg.height))

    t0 = time.perf_counter()
    log.info("tracing %s to ONNX (%s, opset %d)...", checkpoint, precision, opset)
    model = trace_onnx(net, threshold, "fp16" if precision == "fp16" else "fp32", opset)
    notes = []
    if precision == "int8":
        with _quiet_exporter():
            model, how = quantize_int8(model, frames)
        strip_debug_info(model)
        notes.append(f"int8 QDQ (Conv, per-channel), {how}, calibrated on {len(frames)} {used} frames")
    elif precision == "fp16":
        notes.append(FP16_NOTE)
    export_s = time.perf_counter() - t0

    version = model_version(model)
    info = ModelInfo(
        format=MODEL_FORMAT, width=cfg.width_px, height=cfg.height, channels=cfg.channels, threshold=threshold,
        model_version=version, trained_on=[str(s) for s in state.get("footage") or []],
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sparsecam_version=stream.__version__, precision=precision, input_mode=cfg.input_mode,
        fill_holes=cfg.fill_holes, min_object=cfg.min_object,
    )
    onnx.helper.set_model_props(model, info.to_metadata())
    ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props}, source=str(out))  # self-check
    onnx.checker.check_model(model)
    data = model.SerializeToString()

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise UserError(f"cannot write to {out.parent}: {exc.strerror}; choose a writable --out") from None
    tmp = Path(tmp_name)
    report: dict[str, Any] = {
        "out": str(out), "checkpoint": str(checkpoint), "precision": precision, "bytes": len(data),
        "model_version": version, "threshold": threshold, "size": [cfg.width_px, cfg.height],
        "channels": cfg.channels, "input_mode": cfg.input_mode, "opset": opset, "export_s": round(export_s, 2),
        "batchnorm_nodes": _count_ops(model, "BatchNormalization"), "checked": check, "notes": notes,
        "replaced": replaced,  # the model_version of the earlier export at --out, if there was one
    }
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        if check:
            log.info("checking the %s graph in onnxruntime against PyTorch...", precision)
            report.update(verify(tmp, net, threshold, state, precision))
            failures = parity_failures(report, precision)
            if failures:
                raise UserError(f"{out}: the {precision} export failed the parity check against PyTorch "
                                f"({'; '.join(failures)}); nothing written")
        os.replace(tmp, out)
    except OSError as exc:  # a full disk, say: one line, and an earlier export at --out stays whole
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return report


def format_report(r: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"exported {r['out']}: {r['precision']}, {r['bytes'] / 1024:.0f} KiB, model {r['size'][0]}x{r['size'][1]} "
             f"{'gray' if r['channels'] == 1 else 'BGR'}, threshold {r['threshold']:.4g}, version {r['model_version']}"]
    if r.get("checked"):
        agreement = ", ".join(f"{s['set']} {100 * s['agreement']:.3f} %" for s in r["sets"])
        lines.append(f"parity vs PyTorch fp32: score max diff {r['max_diff']:.2e}; mask agreement {agreement}")
        lines.append(f"F on the synthetic scene (checks the export, not the model: one trained on a real camera scores low here): "
                     f"PyTorch fp32 {r['f_torch']:.4f}, ONNX {r['f_onnx']:.4f} (change {r['f_change']:+.4f}); "
                     f"onnxruntime CPU {r['ms_per_frame']:.1f} ms/frame at {r['size'][0]}x{r['size'][1]}")
    else:
        lines.append("not checked against PyTorch (--no-check)")
    if "ort_inserted_casts" in r:
        lines.append(f"onnxruntime CPU inserted {r['ort_inserted_casts']} casts around the float16 ops")
    lines += r["notes"]
    if r.get("replaced"):
        same = " (the same weights)" if r["replaced"] == r["model_version"] else ""
        lines.append(f"replaced the earlier export at {r['out']}, version {r['replaced']}{same}")
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    p = Parser(prog="sparsecam export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="model.pt of a finished training run")
    p.add_argument("--out", help="ONNX file to write (default: the checkpoint with .onnx); an earlier export there is replaced")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--calibration", default="auto",
                   help="int8 calibration frames: 'auto' (the checkpoint's footage when readable, else 'synthetic'), "
                        "'synthetic', 'footage' or a footage path")
    p.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the parity check against PyTorch")
    args = p.parse_args(argv)
    if args.out is not None and args.out.endswith(("/", os.sep)):  # Path() would drop the slash and write a file
        raise UserError(f"--out {args.out} names a folder; give a file name such as {Path(args.out) / 'model.onnx'}")
    out = Path(args.out) if args.out is not None else args.checkpoint.with_suffix(".onnx")
    report = export_model(args.checkpoint, out, precision=args.precision, calibration=args.calibration,
                          opset=args.opset, check=args.check)
    print(format_report(report))
    return 0
