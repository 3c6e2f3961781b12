"""`sparsecam retrain`: retrain one camera's model from its own recordings, validate it, swap it in.

1. Footage: the newest ``--max-frames`` recorded frames of the camera (``<recordings>/<camera>/``,
   written by the daemon or `sparsecam record`), split by time: the newest 20 % (at least 8)
   are held out, the rest (at least 16) train. They are hard-linked (else copied) into
   ``<models>/<camera>/work/{frames,holdout}/`` and listed in ``work/snapshot.json``, so the
   recorder's quota cannot pull frames from under a long run.
2. Training with the project's default recipe (``TrainConfig`` defaults; ``--steps`` and
   ``--train-option FIELD=VALUE`` override) in ``work/run/``. An unfinished run (no
   ``work/report.json``) is resumed from its last checkpoint with its own snapshot and settings,
   so a killed retrain loses at most ``checkpoint_every`` steps and never touches ``current.onnx``.
   ``--from-current`` starts from the weights of the current model when this tool trained it
   (its checkpoint is kept as ``<camera>/checkpoints/<model_version>.pt``) and the architecture
   is unchanged; otherwise, and without the flag, training starts from scratch.
3. Export to ``work/candidate.onnx`` (fp32, parity-checked against PyTorch).
4. Validation without ground truth on the held-out frames (``training/validate.py``).
5. Only a model that passes becomes ``current.onnx`` (atomic: a copy next to it, then
   ``os.replace``); the previous one goes to ``history/`` (the newest ``--keep`` are kept).
   Exit status: 0 promoted (or identical to the current model), 1 rejected, 2 usage/footage errors
   or a failed attempt (written to ``work/report.json``, so the next retrain starts afresh),
   130 interrupted (SIGINT/SIGTERM: checkpoint saved, the next retrain resumes).

``work/report.json`` (and ``--json``) holds the old and new model_version, the training facts
(steps, seconds, resumed_from_step) and the validation figures. One retrain or rollback per
camera at a time (``<camera>/.lock``). ``--threads`` limits torch/onnxruntime threads, which on a
box shared with the daemon also avoids OpenMP spinning on busy cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from stream.argtypes import Parser, fraction
from stream.errors import UserError
from stream.files import write_json
from stream.recorder import MANIFEST, RETRAIN_MIN_FRAMES, RETRAIN_MIN_HOLDOUT, RETRAIN_MIN_TRAIN, read_manifest
from training.rollback import (CURRENT, DEFAULT_KEEP, camera_dir, camera_folders, camera_lock, history_entries,
                               promote, read_model_version)

log = logging.getLogger("sparsecam.retrain")

HOLDOUT_SHARE = 0.2
DEFAULT_MAX_FRAMES = 600
SNAPSHOT_FORMAT = 1
SHORT_FOOTAGE_S = 60.0  # below this a rejected candidate gets a hint: slow objects end up in the background


@dataclasses.dataclass
class RetrainOptions:
    camera: str
    models: Path = Path("models")
    recordings: Path = Path("recordings")
    steps: int | None = None
    max_frames: int = DEFAULT_MAX_FRAMES
    from_current: bool = False
    keep: int = DEFAULT_KEEP
    train_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    requirements: Any = None  # training.validate.Requirements; None = defaults
    progress: bool = False
    threads: int = 0  # torch and onnxruntime threads; 0 = their defaults


# --------------------------------------------------------------------------- footage
def recorded_frames(rec_dir: Path) -> list[dict[str, Any]]:
    """Manifest entries of ``rec_dir`` whose files exist, oldest first: in the manifest's order, the order
    they were recorded in (``t`` is the wall clock, which NTP may step back)."""
    manifest = rec_dir / MANIFEST
    if not manifest.is_file():
        raise UserError(f"no recordings in {rec_dir} (no {MANIFEST}); enable recording in the daemon's config "
                        "(recording.enabled: true) or run `sparsecam record`, and check --recordings")
    return [rec for rec in read_manifest(manifest, strict=False) if (rec_dir / rec["file"]).is_file()]


def footage_span(snap: dict[str, Any]) -> float:
    """Seconds between the first and the last recorded frame of a snapshot (training and held out)."""
    times = [e["t"] for e in snap["train"] + snap["holdout"]]
    return float(max(times) - min(times)) if times else 0.0


def format_span(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def split_footage(entries: list[dict[str, Any]], max_frames: int) -> tuple[list[dict], list[dict]]:
    """(train, holdout): the newest ``max_frames``; the newest 20 % (>= 8) held out, >= 16 to train."""
    need = RETRAIN_MIN_FRAMES
    if max_frames < need:
        raise UserError(f"--max-frames {max_frames} is too small: retraining needs at least {need} frames")
    chosen = entries[-max_frames:]
    if len(chosen) < need:
        raise UserError(f"not enough footage: {len(chosen)} frames, need {need}; let the daemon record longer")
    n_hold = max(RETRAIN_MIN_HOLDOUT, int(round(HOLDOUT_SHARE * len(chosen))))
    return chosen[:-n_hold], chosen[-n_hold:]


def _link_frames(entries: list[dict], src: Path, dst: Path) -> list[dict]:
    """Hard-link (else copy) the frames into ``dst`` with a manifest; returns the entries linked."""
    dst.mkdir(parents=True, exist_ok=True)
    done = []
    for e in entries:
        try:
            try:
                os.link(src / e["file"], dst / e["file"])
            except OSError:
                shutil.copy2(src / e["file"], dst / e["file"])
        except FileNotFoundError:  # deleted by the recorder's quota since the manifest was read
            continue
        done.append(e)
    (dst / MANIFEST).write_text("".join(json.dumps(e) + "\n" for e in done))
    return done


# --------------------------------------------------------------------------- config
def train_config(footage: Path, steps: int | None, options: dict[str, Any]):
    """The default recipe on ``footage`` with ``--steps`` and ``--train-option`` overrides."""
    from training.train import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"footage"}
    bad = sorted(set(options) - names)
    if bad:
        raise UserError(f"--train-option {', '.join(bad)}: not a training setting; use one of {', '.join(sorted(names))}")
    cfg = TrainConfig(footage=[str(footage)])
    over = dict(options)
    if steps is not None:
        if steps < 1:
            raise UserError(f"--steps {steps} must be >= 1")
        over["steps"] = steps
    return dataclasses.replace(cfg, **over)


def _config_from_dict(d: dict[str, Any]):
    from training.train import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in d.items() if k in names}
    if isinstance(kw.get("frame_range"), list):
        kw["frame_range"] = tuple(kw["frame_range"])
    return TrainConfig(**kw)


def _resumable(work: Path) -> tuple[dict[str, Any], Any] | None:
    """(snapshot, config) of an unfinished run in ``work``, else None."""
    snap_path = work / "snapshot.json"
    if not snap_path.is_file() or (work / "report.json").exists():
        return None
    try:
        snap = json.loads(snap_path.read_text())
        cfg = _config_from_dict(snap["train_config"])
    except (OSError, ValueError, KeyError, TypeError, UserError) as exc:  # UserError: settings that cannot train
        log.warning("%s is unreadable (%s): starting a new run", snap_path, exc)
        return None
    if snap.get("format") != SNAPSHOT_FORMAT:
        return None
    run_meta = work / "run" / "run.json"
    if run_meta.is_file():
        try:
            same = json.loads(run_meta.read_text()).get("identity") == cfg.identity()
        except (OSError, ValueError):
            same = False
        if not same:
            log.warning("the unfinished run in %s was made with other training settings: starting a new run", work)
            return None
    return snap, cfg


def _new_snapshot(work: Path, rec_dir: Path, opts: RetrainOptions) -> tuple[dict[str, Any], Any]:
    entries = recorded_frames(rec_dir)
    train_e, hold_e = split_footage(entries, opts.max_frames)
    cfg = train_config((work / "frames").resolve(), opts.steps, opts.train_options)  # checks options before wiping
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    train_e = _link_frames(train_e, rec_dir, work / "frames")
    hold_e = _link_frames(hold_e, rec_dir, work / "holdout")
    if len(train_e) < RETRAIN_MIN_TRAIN or len(hold_e) < RETRAIN_MIN_HOLDOUT:
        raise UserError(f"not enough footage: {len(train_e) + len(hold_e)} frames, need {RETRAIN_MIN_FRAMES}; "
                        "let the daemon record longer")
    snap = {
        "format": SNAPSHOT_FORMAT, "camera": opts.camera, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recordings": str(rec_dir.resolve()),
        "train": [{"file": str((rec_dir / e["file"]).resolve()), "t": e["t"]} for e in train_e],
        "holdout": [{"file": str((rec_dir / e["file"]).resolve()), "t": e["t"]} for e in hold_e],
        "train_config": dataclasses.asdict(cfg),
    }
    write_json(work / "snapshot.json", snap)  # written last: its presence marks a usable run
    return snap, cfg


# --------------------------------------------------------------------------- training
def _init_from_current(tr: Any, cam_dir: Path) -> str | None:
    """Load the current model's weights into the fresh trainer; returns its version, or None (from scratch)."""
    from training.checkpoint import load_checkpoint

    version = read_model_version(cam_dir / CURRENT)
    if version is None:
        log.warning("--from-current: no sparsecam model at %s; training from scratch", cam_dir / CURRENT)
        return None
    ckpt = cam_dir / "checkpoints" / f"{version}.pt"
    if not ckpt.is_file():
        log.warning("--from-current: the current model %s was not made by `sparsecam retrain` (no %s); training from scratch", version, ckpt)
        return None
    try:
        weights = {k: v for k, v in load_checkpoint(ckpt)["model"].items() if k != "background"}
    except UserError as exc:
        log.warning("--from-current: %s; training from scratch", exc)
        return None
    own = {k: v for k, v in tr.model.state_dict().items() if k != "background"}
    if set(weights) != set(own) or any(weights[k].shape != own[k].shape for k in own):
        log.warning("--from-current: the current model %s has another architecture; training from scratch", version)
        return None
    tr.model.load_state_dict(weights, strict=False)
    log.info("--from-current: starting from the weights of %s", version)
    return version


def _train(cfg: Any, run_dir: Path, resume: bool, opts: RetrainOptions, cam_dir: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(summary or None when interrupted, facts about the training)."""
    from training.train import Trainer, finish_run

    summary_path = run_dir / "summary.json"
    if resume and summary_path.is_file() and (run_dir / "model.pt").is_file():
        summary = json.loads(summary_path.read_text())
        return summary, {"resumed": True, "resumed_from_step": int(summary.get("steps", 0)), "initialised_from": None,
                         "trained_now_s": 0.0}
    tr = Trainer(cfg, run_dir, resume=resume, progress=opts.progress)
    facts: dict[str, Any] = {"resumed": tr.step > 0, "resumed_from_step": tr.step, "initialised_from": None}
    if tr.step > 0:
        log.info("resuming the unfinished retrain in %s from step %d of %d", run_dir.parent, tr.step, cfg.steps + cfg.prox_steps)
    elif opts.from_current:
        facts["initialised_from"] = _init_from_current(tr, cam_dir)
    t0 = time.time()
    if not tr.run():
        return None, facts
    facts["trained_now_s"] = round(time.time() - t0, 2)
    return finish_run(tr), facts


def _keep_checkpoint(cam_dir: Path, model_pt: Path, version: str) -> None:
    """``checkpoints/<version>.pt`` for --from-current; drop those of models no longer current or in history."""
    ck_dir = cam_dir / "checkpoints"
    ck_dir.mkdir(exist_ok=True)
    tmp = ck_dir / f".{version}.pt.tmp"
    shutil.copyfile(model_pt, tmp)
    os.replace(tmp, ck_dir / f"{version}.pt")
    alive = {version} | {v for _, v, _ in history_entries(cam_dir)} | {v for _, v, _ in history_entries(cam_dir, True)}
    for p in ck_dir.glob("*.pt"):
        if p.stem not in alive:
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- retrain
def _attempt(opts: RetrainOptions, cam_dir: Path, work: Path, snap: dict[str, Any], cfg: Any, resume: bool,
             t_start: float) -> tuple[int, dict[str, Any]]:
    """Train (or resume), export, validate and maybe promote; returns (exit status, report)."""
    n_train, n_hold = len(snap["train"]), len(snap["holdout"])
    span = footage_span(snap)
    print(f"retrain {opts.camera}: {n_train} training + {n_hold} held-out frames spanning {format_span(span)} from "
          f"{snap['recordings']}{' (resuming)' if resume else ''}", flush=True)

    summary, facts = _train(cfg, work / "run", resume, opts, cam_dir)
    if summary is None:
        print(f"retrain {opts.camera}: interrupted; checkpoint saved in {work / 'run'}; run retrain again to resume")
        return 130, {"camera": opts.camera, "status": "interrupted", **facts}
    resumed = (f", resumed from step {facts['resumed_from_step']} ({facts['trained_now_s']:.1f} s of it in this run)"
               if facts["resumed"] else "")
    init = f", initialised from {facts['initialised_from']}" if facts.get("initialised_from") else ""
    print(f"trained {summary['steps']} steps in {summary['train_seconds']:.1f} s on {summary['device']}{resumed}{init}", flush=True)
    try:
        return _finish(opts, cam_dir, work, snap, span, summary, facts, t_start)
    except KeyboardInterrupt:  # SIGINT/SIGTERM during export or validation: the trained model is kept
        print(f"retrain {opts.camera}: interrupted after training; the trained model is kept in {work / 'run'}; "
              "run retrain again to export and validate it", flush=True)
        return 130, {"camera": opts.camera, "status": "interrupted", **facts}


def _finish(opts: RetrainOptions, cam_dir: Path, work: Path, snap: dict[str, Any], span: float, summary: dict[str, Any],
            facts: dict[str, Any], t_start: float) -> tuple[int, dict[str, Any]]:
    """Export the trained model, validate it on the held-out frames and promote it if it passes."""
    from export.onnx_export import export_model
    from training.data import load_footage
    from training.validate import Requirements, format_validation, validate

    n_train, n_hold = len(snap["train"]), len(snap["holdout"])
    candidate = work / "candidate.onnx"
    if not candidate.is_file():  # a complete file only (export writes atomically)
        export_model(work / "run" / "model.pt", candidate, precision="fp32")
    new_version = read_model_version(candidate)
    current = cam_dir / CURRENT
    old_version = read_model_version(current) if current.is_file() else None

    report: dict[str, Any] = {
        "camera": opts.camera, "old_version": old_version, "new_version": new_version,
        "candidate": str(candidate), "current": str(current), "snapshot": str(work / "snapshot.json"),
        "frames_train": n_train, "frames_holdout": n_hold, "footage_seconds": round(span, 1),
        "train": {"steps": summary["steps"], "train_seconds": summary["train_seconds"], "device": summary["device"],
                  "threshold": summary["threshold"], "model_size": summary["model_size"], **facts},
    }
    if new_version is not None and new_version == old_version:
        report.update(status="unchanged", passed=True, validation=None, history_file=None)
        print(f"model {new_version} is identical to the current model; nothing to do")
    else:
        size = tuple(summary["model_size"])
        held = load_footage([str(work / "holdout")], size=size, progress=False).frames
        v = validate(candidate, held, current if current.is_file() else None, opts.requirements or Requirements(),
                     threads=opts.threads)
        report["validation"] = v
        report["passed"] = v["passed"]
        print(f"validation: {format_validation(v)}: {'PASS' if v['passed'] else 'FAIL'}", flush=True)
        if v["passed"]:
            archived = promote(cam_dir, candidate, opts.keep)
            _keep_checkpoint(cam_dir, work / "run" / "model.pt", new_version or "unknown")
            report.update(status="promoted", history_file=str(archived) if archived else None)
            print(f"model {old_version or '(none)'} -> {new_version}; {current} replaced"
                  + (f" (previous kept as {archived.relative_to(cam_dir)})" if archived else ""))
        else:
            report.update(status="rejected", history_file=None)
            short = (f" The footage spans only {format_span(span)}: whatever stays put that long is learned as background;"
                     " let the daemon record for longer (more frames, or a larger recording.every) before retraining."
                     if span < SHORT_FOOTAGE_S else "")
            print(f"retrain {opts.camera}: the new model was NOT promoted: {'; '.join(v['reasons'])}. "
                  f"{current.name} is unchanged; the candidate stays in {candidate} for inspection.{short}", file=sys.stderr)
    report["wall_seconds"] = round(time.time() - t_start, 2)
    write_json(work / "report.json", report)
    print(f"retrain {opts.camera}: {report['status']} in {report['wall_seconds']:.1f} s; report {work / 'report.json'}")
    return (0 if report["passed"] else 1), report


def retrain(opts: RetrainOptions) -> tuple[int, dict[str, Any]]:
    """The whole retrain of one camera; returns (exit status, report)."""
    t_start = time.time()
    cam_dir = camera_dir(opts.models, opts.camera)
    rec_dir = opts.recordings / opts.camera
    if opts.keep < 0:
        raise UserError(f"--keep {opts.keep} must be >= 0")
    if opts.threads < 0:
        raise UserError(f"--threads {opts.threads} must be >= 0")
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    if not (cam_dir / "work" / "snapshot.json").is_file():
        recorded_frames(rec_dir)  # no recordings at all: say so before the camera's folder and lock are created
    with camera_lock(cam_dir):
        work = cam_dir / "work"
        found = _resumable(work)
        if found:
            snap, cfg = found
            log.info("resuming the unfinished retrain in %s (snapshot of %s, %d + %d frames); its own settings apply",
                     work, snap["created"], len(snap["train"]), len(snap["holdout"]))
        else:
            snap, cfg = _new_snapshot(work, rec_dir, opts)
        try:
            return _attempt(opts, cam_dir, work, snap, cfg, bool(found), t_start)
        except Exception as exc:  # a failed attempt is finished (whatever failed): the next retrain starts afresh
            write_json(work / "report.json", {"camera": opts.camera, "status": "failed", "passed": False, "error": str(exc)})
            raise


# --------------------------------------------------------------------------- CLI
def _train_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    for number in (int, float):  # YAML 1.1 reads 1e-3 as a string
        try:
            return key.strip(), number(value)
        except ValueError:
            pass
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"cannot parse the value in {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sparsecam retrain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--camera", required=True, help="camera id (as in the daemon's config)")
    p.add_argument("--models", type=Path, help="models folder: <models>/<camera>/current.onnx (default: model.dir of --config, else models/)")
    p.add_argument("--recordings", type=Path, help="recordings folder (default: recording.dir of --config, else recordings/)")
    p.add_argument("--config", type=Path, help="the daemon's YAML, for model.dir and recording.dir")
    p.add_argument("--steps", type=int, help="training steps (default: the training recipe's)")
    p.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="use the newest N recorded frames (default 600)")
    p.add_argument("--from-current", action="store_true", help="start from the current model's weights when retrain made it")
    p.add_argument("--keep", type=int, default=DEFAULT_KEEP, help="previous models kept in history/ (default 5)")
    p.add_argument("--json", type=Path, help="also write the report to this file")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="CPU threads for training and validation (default: half the cores: a retrain runs beside the "
                        "daemon, and both slow down badly when their threads want every core; 0 = all cores)")
    p.add_argument("--train-option", type=_train_option, action="append", default=[], metavar="FIELD=VALUE",
                   help="override a training setting (a TrainConfig field, e.g. width=8); repeatable")
    p.add_argument("--rpca-tolerance", type=fraction, default=0.02, help="allowed drop of the RPCA agreement F vs the current model")
    p.add_argument("--min-object-f", type=fraction, default=0.5, help="required F on pasted synthetic objects")
    return p


def cli(argv: list[str]) -> int:
    from training.validate import Requirements

    a = build_parser().parse_args(argv)
    models, recordings = camera_folders(a.camera, a.config, a.models, a.recordings)
    opts = RetrainOptions(
        camera=a.camera, models=models, recordings=recordings, steps=a.steps,
        max_frames=a.max_frames, from_current=a.from_current, keep=a.keep, train_options=dict(a.train_option),
        requirements=Requirements(rpca_tolerance=a.rpca_tolerance, min_object_f=a.min_object_f),
        progress=True, threads=a.threads,  # in a log (the daemon's journal) a line every 30 s
    )
    # SIGTERM (systemd stop) like Ctrl-C: training stops at a step boundary with a checkpoint saved
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code, report = retrain(opts)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if a.json is not None:
        try:
            write_json(a.json, report)
        except OSError as exc:
            raise UserError(f"cannot write --json {a.json}: {exc.strerror}") from None
    return code


if __name__ == "__main__":
    from stream.cli import main

    sys.exit(main(["retrain", *sys.argv[1:]]))
