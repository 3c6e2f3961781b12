"""`sparsecam train`: learn a foreground model from unlabeled footage of one fixed camera.

Loss over a batch of N frames of one scene (default: 16 whole frames at model resolution;
``--crop`` takes one random window shared by the batch instead, cheaper but it loses the
context the net needs on shaking cameras and slow large objects):
``||D - f(D)||_* + lambda * ||f(D)||_1``, with the gradients of both norms given by their
proximal mappings (training/prox.py). Phase 1 uses Adam; an optional phase 2 uses plain SGD.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from tqdm import tqdm

from stream.argtypes import Parser, size_wxh
from stream.errors import UserError
from stream.files import write_json
from stream.maskclean import CleanUp, clean_masks
from stream.synthetic import SPEC_HELP
from training.align import aligned_backgrounds, aligned_median, max_radius, normalised_frames
from training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from training.data import Footage, load_footage, spread_stride, window_batch
from training.model import (INPUT_MODES, LEGACY_ALIGN, LEGACY_EXPOSURE, NORMS, OUTPUTS, SCORE_FILTERS, ModelConfig, UNet,
                            count_parameters, foreground_score)
from training.prox import default_lambda, low_rank_sparse_loss
from training.settings_check import MIN_SIDE, check_settings
from training.stopsignal import StopRequest
from training.threshold import choose_threshold

log = logging.getLogger("sparsecam.train")


@dataclass
class TrainConfig:
    """Everything that defines a run; a run directory holds exactly one."""

    footage: list[str]
    width_px: int = 160
    height: int = 0  # 0 = keep the footage's aspect ratio
    gray: bool = False
    frame_range: tuple[int, int] | None = None
    max_frames: int | None = 2000
    stride: int = 1
    batch: int = 16
    crop: int = 0  # square crop side; 0 = whole frame (default: context matters for camera shake)
    steps: int = 300
    prox_steps: int = 0
    lr: float = 3e-3
    prox_lr: float = 1e-3
    lam: float | None = None  # None = lam_scale/sqrt(max(N, P))
    lam_scale: float = 1.0
    width: int = 8
    depth: int = 3
    norm: str = "batch"
    input_mode: str = "background"
    output: str = "gated"
    bg_frames: int = 200  # frames in the temporal median (evenly spaced)
    score_filter: str = "median5"  # filter on the score before the threshold (training.model.foreground_score)
    fill_holes: float = CleanUp.fill_holes  # mask clean-up (stream/maskclean.py): fill enclosed holes up to this fraction of the frame
    min_object: float = CleanUp.min_object  # ... and drop foreground components smaller than this fraction
    align: int = 8  # background mode: align the background to each frame within this many model pixels (0 = off)
    exposure: bool = True  # background mode: bring each frame to the background's exposure (per-channel gain)
    seed: int = 0
    checkpoint_every: int = 50
    device: str = "auto"
    threshold: float | None = None  # None = chosen from the footage (training/threshold.py)

    def __post_init__(self) -> None:
        check_settings(self)  # a bad value is one line (UserError) before anything loads or is written

    def identity(self) -> str:
        """Hash of the settings that make two runs different (not steps, device, schedule or post-processing)."""
        post = ("steps", "prox_steps", "checkpoint_every", "device", *POST_PROCESSING)
        keys = {k: v for k, v in self.__dict__.items() if k not in post}
        for k, default in _LATER_FIELDS.items():  # fields added later hash as before while at their default
            if keys.get(k) == default:
                keys.pop(k)
        return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


_LATER_FIELDS = {"lam_scale": 1.0, "output": "gated", "bg_frames": 200, "align": LEGACY_ALIGN, "exposure": LEGACY_EXPOSURE}


class LogLines:
    """A stream for tqdm when stderr is a log: each redraw (tqdm starts it with a carriage return)
    becomes a line of its own, so journald, ``tail -f`` and CI show it when it is drawn."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip("\n")
        if line.strip():
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


@dataclass
class History:
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    nuclear: list[float] = field(default_factory=list)
    sparse: list[float] = field(default_factory=list)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for a GPU but torch sees none (CPU build or no driver); use --device cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: torch sees {torch.cuda.device_count()} GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def model_size(footage: Footage, cfg: TrainConfig) -> tuple[int, int]:
    """(width, height) of the model: cfg.width_px rounded to a multiple of 2**depth; cfg.height as
    given, else the footage's aspect, rounded likewise. Refuses sides under MIN_SIDE and an
    ``align`` the model is too small to search."""
    _, h, w, _ = footage.frames.shape
    mult = 2**cfg.depth
    width = max(mult, int(round(cfg.width_px / mult)) * mult)
    height = max(mult, cfg.height or int(round(width * h / w / mult)) * mult)
    if min(width, height) < MIN_SIDE:
        raise UserError(f"the model would be {width}x{height} for {w}x{h} footage; each side needs {MIN_SIDE} pixels or more: "
                        "pass a larger --size WxH")
    fits = max_radius(width, height)
    if cfg.input_mode == "background" and cfg.align > fits:
        raise UserError(f"--align {cfg.align} is too large for a {width}x{height} model: at most {fits} (0 turns it off), "
                        "or a larger --size")
    return width, height


def to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N,H,W,C) -> float (N,C,H,W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


@dataclass(frozen=True)
class Dist:
    """torchrun's process group, or a single process (rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> Dist:
    """Join torchrun's process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local)


class Trainer:
    """Holds the model, optimiser and data of one run; ``run()`` trains with checkpoints.

    Under torchrun (WORLD_SIZE > 1) every rank draws its own whole low-rank batches of the
    camera (other seeds), gradients are averaged by DistributedDataParallel, and only rank 0
    writes the run directory.
    """

    def __init__(self, cfg: TrainConfig, out: Path, resume: bool = False, progress: bool = True) -> None:
        self.dist = init_distributed(cfg.device)
        self.cfg, self.out, self.progress = cfg, Path(out), progress and self.dist.main
        self.device = pick_device(cfg.device)
        if self.device.type == "cuda" and self.dist.world > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.ckpt_path = self.out / "checkpoint.pt"
        self._on_rank0_for_all(lambda: self._check_run_dir(resume))
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.rng = np.random.default_rng(cfg.seed + 1000 * self.dist.rank)  # other batches per rank
        probe = load_footage(cfg.footage[:1], gray=cfg.gray, max_frames=1, progress=False)
        width, height = model_size(probe, cfg)
        self.stride = spread_stride(cfg.footage, cfg.max_frames, cfg.stride, cfg.frame_range)  # over all of the footage
        if self.stride != cfg.stride:
            log.info("the footage holds more than --max-frames %d frames: reading one frame in %d so they span all of it", cfg.max_frames, self.stride)
        footage = load_footage(cfg.footage, size=(width, height), gray=cfg.gray, frame_range=cfg.frame_range, max_frames=cfg.max_frames,
                               stride=self.stride, min_frames=max(8, min(cfg.batch, 16)), progress=progress)
        # claimed only once the footage loaded: a bad path leaves --out free for the corrected command
        self._on_rank0_for_all(self._claim_run_dir)
        self.frames = footage.frames  # replaced by the exposure-matched copy below, so the original can go
        bg_mode = cfg.input_mode == "background"
        align, exposure = (cfg.align, cfg.exposure) if bg_mode else (0, False)
        self.background = aligned_median(self.frames, align, cfg.bg_frames)
        if exposure:  # train on the frames at the background's exposure, as the model sees them
            self.frames = normalised_frames(self.frames, self.background)
        mcfg = ModelConfig(channels=self.frames.shape[3], width=cfg.width, depth=cfg.depth, norm=cfg.norm, input_mode=cfg.input_mode,
                           output=cfg.output, score_filter=cfg.score_filter, align=align, exposure=exposure, height=height, width_px=width,
                           fill_holes=cfg.fill_holes, min_object=cfg.min_object)
        bg = to_tensor(self.background[None], torch.device("cpu"))
        self.model = UNet(mcfg, bg).to(self.device)
        # the background each training frame is compared with, aligned once (the model's buffer does not train)
        self.frame_backgrounds = aligned_backgrounds(self.frames, self.background, align) if align else None
        self.net: torch.nn.Module = self.model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.sched = self._schedule(last_step=0)
        self.sgd = torch.optim.SGD(self.model.parameters(), lr=cfg.prox_lr)
        self.step = 0
        self.history = History()
        self.started = time.time()
        self.train_seconds = 0.0
        if resume and self.ckpt_path.exists():
            state = load_checkpoint(self.ckpt_path)
            try:
                self._load(state)
            except (KeyError, TypeError, ValueError) as exc:  # a model.pt copied over it, a foreign .pt
                raise UserError(f"{self.ckpt_path} is not a resumable training checkpoint ({type(exc).__name__}: {exc}); "
                                f"train into another --out, or delete {self.ckpt_path.name} and model.pt there to start over") from None

    def _schedule(self, last_step: int) -> torch.optim.lr_scheduler.LRScheduler:
        """One-cycle learning rate over the Adam steps; a pure function of the step, so a
        resumed run (even with another --steps) continues it without stored state."""
        total = max(self.cfg.steps, 1)
        for group in self.opt.param_groups:
            group.setdefault("initial_lr", self.cfg.lr / 25.0)
        return torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=self.cfg.lr, total_steps=max(total, last_step + 1), pct_start=0.15,
                                                   last_epoch=min(last_step, total) - 1)

    def _on_rank0_for_all(self, check: Any) -> None:
        """Run ``check`` on rank 0; under torchrun every rank learns whether it refused the run and
        stops with it (otherwise the others would wait in the next collective until its timeout)."""
        error = None
        if self.dist.main:
            try:
                check()
            except UserError as exc:
                error = exc
        if self.dist.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([float(error is not None)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and error is None:
                raise UserError("rank 0 refused the run (its message says why)")
        if error is not None:
            raise error

    def _barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.barrier()

    # -- run directory -------------------------------------------------------------------
    def _check_run_dir(self, resume: bool) -> None:
        """Refuse an --out that holds another run (or this one without --resume), or one that cannot be written; writes nothing."""
        meta = self.out / "run.json"
        parent = next((p for p in (self.out, *self.out.parents) if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise UserError(f"--out {self.out}: {parent} is a file; pass a folder for the run")
        if parent is not None and not os.access(parent, os.W_OK):
            raise UserError(f"--out {self.out}: cannot write in {parent}; pick another --out")
        saved_nothing = not (self.ckpt_path.exists() or (self.out / "model.pt").exists())
        if meta.exists() and saved_nothing:  # killed before its first checkpoint: nothing to resume or to lose
            log.info("%s holds a run that stopped before its first checkpoint: starting this one there", self.out)
        elif meta.exists():
            try:
                old = json.loads(meta.read_text())
            except (OSError, json.JSONDecodeError):
                raise UserError(f"{meta} is unreadable; pick another --out") from None
            if old.get("identity") != self.cfg.identity():
                raise UserError(f"{self.out} already holds a different run (other footage or settings); pick another --out")
            if not resume:
                raise UserError(f"{self.out} already holds this run; add --resume to continue it or pick another --out")
            if not self.ckpt_path.exists():
                raise UserError(f"{self.out} holds this run's model.pt but no checkpoint.pt to resume from; "
                                "pick another --out to train again (it would be replaced)")
        elif self.out.exists() and any(self.out.iterdir()):
            raise UserError(f"{self.out} is not empty and holds no sparsecam run; pick another --out")
        elif resume:
            log.info("nothing to resume in %s: starting a new run", self.out)

    def _claim_run_dir(self) -> None:
        """Mark --out as this run's (run.json: identity and settings)."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the run folder {self.out}: {exc.strerror}; pick another --out") from None
        write_json(self.out / "run.json", {"identity": self.cfg.identity(), "config": self.cfg.__dict__})

    # -- checkpoints ---------------------------------------------------------------------
    def state(self, threshold: float | None = None) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "config": self.model.cfg.to_dict(),
            "opt": self.opt.state_dict(),
            "sgd": self.sgd.state_dict(),
            "step": self.step,
            "history": self.history.__dict__,
            "train_seconds": self.train_seconds,
            "threshold": threshold,
            "footage": [str(p) for p in self.cfg.footage],
            "frames_used": int(len(self.frames)),
            "train_config": json.dumps(self.cfg.__dict__, default=str),
            "rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
        }

    def _load(self, state: dict[str, Any]) -> None:
        bg_now = self.model.background.detach().clone() if self.model.background is not None else None
        self.model.load_state_dict(state["model"])
        then = int(state.get("frames_used", len(self.frames)))
        if then != len(self.frames) or (bg_now is not None and not torch.allclose(self.model.background, bg_now, atol=2 / 255)):
            # the stored background (what the model will compare with) would not be the one it trains against
            raise UserError(f"{self.ckpt_path}: the footage changed since this checkpoint ({then} frames then, {len(self.frames)} "
                            "now, or other frames); it cannot be resumed: train into another --out")
        self.opt.load_state_dict(state["opt"])
        self.sgd.load_state_dict(state["sgd"])
        self.step = int(state["step"])
        self.sched = self._schedule(last_step=self.step)
        self.history = History(**state["history"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if self.dist.main:
            self.rng.bit_generator.state = json.loads(state["rng"])
        else:  # only rank 0's state is saved: the others draw their own batches again, not a copy of its
            self.rng = np.random.default_rng([self.cfg.seed, self.dist.rank, self.step])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed %s at step %d", self.ckpt_path, self.step)

    def save(self, threshold: float | None = None) -> None:
        if self.dist.main:
            save_checkpoint(self.ckpt_path, self.state(threshold))

    # -- training ------------------------------------------------------------------------
    def backgrounds(self, idx: np.ndarray) -> np.ndarray:
        """The background each of the frames ``idx`` is compared with: (N, H, W, C) aligned, or (1, H, W, C)."""
        return self.background[None] if self.frame_backgrounds is None else self.frame_backgrounds[idx]

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """N frames of the scene and the background, all cropped at one random window."""
        n_total, h, w, _ = self.frames.shape
        idx, rows, cols = window_batch(n_total, (h, w), self.cfg.batch, self.cfg.crop, self.rng)
        d = to_tensor(self.frames[idx, rows, cols], self.device)
        bg = to_tensor(self.backgrounds(idx)[:, rows, cols], self.device)
        return d, bg

    def train_step(self, opt: torch.optim.Optimizer) -> tuple[float, float, float]:
        self.model.train()
        d, bg = self.sample()
        s = self.net(d, bg, aligned=True)  # frames and backgrounds were prepared once (exposure, shift)
        lam = self.cfg.lam
        if lam is None:
            lam = self.cfg.lam_scale * default_lambda(d.shape[0], d[0].numel())
        loss, nuc, sp = low_rank_sparse_loss(d, s, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()), float(nuc), float(sp)

    def _stop_everywhere(self, requested: bool) -> bool:
        """True when this rank, or under torchrun any rank, was asked to stop: all stop at the same step."""
        if self.dist.world <= 1:
            return requested
        import torch.distributed as dist

        flag = torch.tensor([float(requested)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def run(self) -> bool:
        """Train to the configured number of steps; returns False if interrupted (checkpoint saved).

        Ctrl-C / SIGTERM stop at the next step boundary (training/stopsignal.py); a second one stops at once."""
        total = self.cfg.steps + self.cfg.prox_steps
        interrupted = False
        t0 = time.time()
        # In a log (no terminal) a line every 30 s, not a redraw per step.
        tty = sys.stderr.isatty()
        bar = tqdm(total=total, initial=self.step, desc="train", unit="step", disable=not self.progress, dynamic_ncols=True,
                   file=sys.stderr if tty else LogLines(sys.stderr), mininterval=0.1 if tty else 30.0, maxinterval=10.0 if tty else 30.0)
        try:
            with StopRequest() as stop:
                while self.step < total:
                    if self._stop_everywhere(stop.requested):
                        interrupted = True
                        break
                    adam = self.step < self.cfg.steps
                    try:
                        loss, nuc, sp = self.train_step(self.opt if adam else self.sgd)
                    except FloatingPointError:  # the network's output went NaN/inf: the loss diverged
                        raise UserError(f"the loss diverged at step {self.step + 1}; lower --lr (now {self.cfg.lr})") from None
                    if adam and self.step < self.sched.total_steps - 1:
                        self.sched.step()
                    self.step += 1
                    h = self.history
                    h.step.append(self.step), h.loss.append(loss), h.nuclear.append(nuc), h.sparse.append(sp)
                    # refresh=False: the bar redraws on its own clock (every 30 s in a log), not on every step
                    bar.set_postfix(loss=f"{loss:.3g}", nuc=f"{nuc:.3g}", l1=f"{sp:.3g}", phase="adam" if adam else "prox-sgd", refresh=False)
                    bar.update(1)
                    if not math.isfinite(loss):
                        raise UserError(f"the loss diverged at step {self.step}; lower --lr (now {self.cfg.lr})")
                    if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0 and self.step < total:
                        self.train_seconds += time.time() - t0
                        t0 = time.time()
                        self.save()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            self.train_seconds += time.time() - t0
        if interrupted:
            self.save()
            return False
        return True

    @torch.no_grad()
    def scores(self, frames: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Foreground scores and S for frames at model size: (N,H,W) and (N,H,W,C)."""
        self.model.eval()
        out_scores, out_s = [], []
        for i in range(0, len(frames), batch):
            s = self.model(to_tensor(frames[i : i + batch], self.device))
            out_scores.append(foreground_score(s, self.model.cfg.score_filter).cpu().numpy())
            out_s.append(s.permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out_scores), np.concatenate(out_s)


def finish_run(tr: Trainer) -> dict[str, Any]:
    """Choose the threshold, write model.pt, plots and summary.json."""
    from training.plots import save_loss_curve, save_montage

    idx = np.linspace(0, len(tr.frames) - 1, min(len(tr.frames), 200)).round().astype(int)
    scores, s = tr.scores(tr.frames[idx])
    threshold = tr.cfg.threshold if tr.cfg.threshold is not None else choose_threshold(scores, tr.frames[idx], tr.backgrounds(idx))
    tr.save(threshold)
    state = tr.state(threshold)
    for key in ("opt", "sgd"):  # model.pt: what inference and export need, no optimiser state
        state.pop(key)
    save_checkpoint(tr.out / "model.pt", state)
    pick = idx[np.linspace(0, len(idx) - 1, 4).round().astype(int)]
    pick_pos = [int(np.where(idx == p)[0][0]) for p in pick]
    masks = clean_masks(np.where(scores[pick_pos] > threshold, 255, 0).astype(np.uint8), scores[pick_pos], threshold, tr.model.cfg.cleanup())
    try:  # the model is saved: a plot that cannot be written is a warning, not a lost run
        save_loss_curve(tr.history, tr.out / "loss.png")
        save_montage(tr.frames[pick], s[pick_pos], masks > 0, tr.out / "montage.png")
    except OSError as exc:
        log.warning("could not write the run's plots: %s", exc)
    summary = {
        "footage": [str(p) for p in tr.cfg.footage],
        "frames_used": int(len(tr.frames)),
        "stride": tr.stride,
        "model_size": [tr.model.cfg.width_px, tr.model.cfg.height],
        "channels": tr.model.cfg.channels,
        "input_mode": tr.model.cfg.input_mode,
        "parameters": count_parameters(tr.model),
        "steps": tr.step,
        "train_seconds": round(tr.train_seconds, 2),
        "device": str(tr.device),
        "world_size": tr.dist.world,
        "threshold": threshold,
        "final_loss": tr.history.loss[-1] if tr.history.loss else None,
        "fg_ratio_train": float((scores > threshold).mean()),
        "config": tr.cfg.__dict__,
    }
    write_json(tr.out / "summary.json", summary)
    return summary


POST_PROCESSING = ("threshold", "score_filter", "fill_holes", "min_object")  # a resumed finished run redoes these when changed


def _finished_summary(out: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The summary of the finished run in ``out`` when ``cfg`` asks for nothing it has not done, else None."""
    try:
        summary = json.loads((out / "summary.json").read_text())
        same = all(summary["config"][k] == getattr(cfg, k) for k in POST_PROCESSING)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return summary if same and (out / "model.pt").is_file() else None


def train(cfg: TrainConfig, out: Path, resume: bool = False, progress: bool = True) -> dict[str, Any] | None:
    """Train (or resume) a run; returns the summary, or None when interrupted."""
    tr = Trainer(cfg, out, resume=resume, progress=progress)
    done = _finished_summary(Path(out), cfg) if resume and tr.step >= cfg.steps + cfg.prox_steps else None
    if done is not None:  # nothing to train and nothing to redo: nothing is rewritten
        return {"rank": tr.dist.rank, "steps": tr.step} if not tr.dist.main else {**done, "already_finished": True}
    if not tr.run():
        return None
    if not tr.dist.main:  # rank 0 writes the run; the others are done
        tr._barrier()
        return {"rank": tr.dist.rank, "steps": tr.step}
    summary = finish_run(tr)
    tr._barrier()
    return summary


def parse_range(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"range must look like 1-469, got {text!r}") from None
    return a, b


def parse_fraction(text: str) -> float:
    """A fraction of the frame's area for the mask clean-up options, checked by CleanUp's own rule."""
    try:
        value = float(text)
        CleanUp(fill_holes=value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a fraction of the frame in [0, 1) such as 0.01, got {text!r}") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(footage=[])
    p = Parser(prog="sparsecam train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("footage", nargs="+", help=f"video files, image folders, CDnet folders, recordings, or '{SPEC_HELP}'")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, model.pt, plots, summary.json)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--size", type=size_wxh, help="model resolution WxH (default: 160 wide, the footage's aspect; the width rounds to a multiple of 2**depth; a side under 2**depth is refused)")
    p.add_argument("--gray", action="store_true", help="train on gray frames instead of colour (costs quality: trained as bench/quality.py does, gray "
                        "scored F 0.773 on waving trees, colour 0.982: objects that differ from the background only in colour are lost)")
    p.add_argument("--frames", type=parse_range, dest="frame_range", help="use only frames A-B (1-based, inclusive)")
    p.add_argument("--max-frames", type=int, default=d.max_frames,
                   help=f"at most this many training frames (default {d.max_frames}), spread over all of the footage: "
                        "longer footage is read one frame in k")
    p.add_argument("--stride", type=int, default=d.stride, help="use one frame in k (widened further when --max-frames needs it)")
    p.add_argument("--steps", type=int, default=d.steps, help="Adam steps")
    p.add_argument("--prox-steps", type=int, default=d.prox_steps, help="extra plain-SGD steps (proximal phase)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--prox-lr", type=float, default=d.prox_lr)
    p.add_argument("--batch", type=int, default=d.batch, help="frames per low-rank batch (N)")
    p.add_argument("--crop", type=int, default=d.crop, help="square crop side shared by the batch; 0 = whole frame")
    p.add_argument("--lambda", type=float, dest="lam", help="sparsity weight (default 1/sqrt(max(N, P)))")
    p.add_argument("--lambda-scale", type=float, default=d.lam_scale, dest="lam_scale", help="multiplier on the default lambda")
    p.add_argument("--output", choices=OUTPUTS, default=d.output, help="background mode: gated (D-B)*sigmoid(g) or direct g(D,B)")
    p.add_argument("--score-filter", choices=SCORE_FILTERS, default=d.score_filter,
                   help="filter on the score before the threshold (model pixels); median3 keeps smaller objects")
    p.add_argument("--fill-holes", type=parse_fraction, default=d.fill_holes, metavar="FRAC",
                   help="mask clean-up: fill holes inside objects up to FRAC of the frame (0 = off)")
    p.add_argument("--min-object", type=parse_fraction, default=d.min_object, metavar="FRAC",
                   help="mask clean-up: drop foreground specks smaller than FRAC of the frame (0 = off)")
    p.add_argument("--align", type=int, default=d.align, metavar="PX",
                   help="camera shake: move the background onto each frame, shifts up to PX model pixels (0 = off)")
    p.add_argument("--exposure", action=argparse.BooleanOptionalAction, default=d.exposure,
                   help="bring each frame to the background's exposure (auto-exposure, clouds, white balance); --no-exposure turns it off")
    p.add_argument("--bg-frames", type=int, default=d.bg_frames, help="frames in the temporal-median background reference")
    p.add_argument("--width", type=int, default=d.width, help="U-Net width of the first level")
    p.add_argument("--depth", type=int, default=d.depth, help="U-Net down-samplings")
    p.add_argument("--norm", choices=NORMS, default=d.norm)
    p.add_argument("--input-mode", choices=INPUT_MODES, default=d.input_mode)
    p.add_argument("--threshold", type=float, help="mask threshold on the score (default: chosen from the footage)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda[:k]")
    return p


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    w, h = a.size if a.size else (TrainConfig.width_px, 0)
    return TrainConfig(
        footage=[str(f) for f in a.footage], width_px=w, height=h, gray=a.gray, frame_range=a.frame_range,
        max_frames=a.max_frames, stride=a.stride, batch=a.batch, crop=a.crop, steps=a.steps, prox_steps=a.prox_steps,
        lr=a.lr, prox_lr=a.prox_lr, lam=a.lam, width=a.width, depth=a.depth, norm=a.norm, input_mode=a.input_mode,
        output=a.output, lam_scale=a.lam_scale, bg_frames=a.bg_frames, score_filter=a.score_filter, align=a.align,
        exposure=a.exposure, fill_holes=a.fill_holes, min_object=a.min_object, seed=a.seed, checkpoint_every=a.checkpoint_every, device=a.device,
        threshold=a.threshold,
    )


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    # Ctrl-C and SIGTERM both stop at a step boundary with a checkpoint saved.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    summary = train(cfg, args.out, resume=args.resume)
    if summary is None:
        print(f"interrupted: checkpoint saved in {args.out / 'checkpoint.pt'}; continue with --resume")
        return 130
    if "rank" in summary:
        return 0
    if summary.get("already_finished"):
        print(f"{args.out} already finished its {summary['steps']} steps: nothing to do, model.pt unchanged "
              "(a larger --steps trains on from there; another --out starts a new run)")
        return 0
    print(f"trained {summary['steps']} steps in {summary['train_seconds']:.1f} s on {summary['device']}; "
          f"threshold {summary['threshold']:.4f}; model {args.out / 'model.pt'}")
    print(f"plots: {args.out / 'loss.png'}, {args.out / 'montage.png'}; summary: {args.out / 'summary.json'}")
    return 0
