"""`sparsecam serve`: capture -> onnxruntime -> masks on ZeroMQ, one thread per camera.

The main thread takes the newest frame of each camera, runs the model (one batch across
cameras when ``model.batch_cameras`` is set and sizes agree), and publishes each mask on
``mask/<camera>/``. SIGINT/SIGTERM stop capture, publish "offline" and exit 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream.capture import CameraThread, Frame, make_source, redact
from stream.config import DaemonConfig, load_config
from stream.engine import Engine
from stream.errors import UserError
from stream.publisher import MaskPublisher
from stream.reload import ModelReloader

log = logging.getLogger("sparsecam.daemon")


@dataclass
class CameraStats:
    """Rolling figures for the status line (last ~2 s of frames)."""

    published: int = 0
    e2e: deque = field(default_factory=lambda: deque(maxlen=256))
    infer: deque = field(default_factory=lambda: deque(maxlen=256))
    stamps: deque = field(default_factory=lambda: deque(maxlen=256))
    fg_ratio: float = 0.0


class Daemon:
    """Owns the cameras, the engine and the publisher; ``run()`` until stopped or ``duration``."""

    def __init__(self, cfg: DaemonConfig, engine: Engine | None = None) -> None:
        self.cfg = cfg
        self.engine = engine or self.load_engine(cfg.model.resolved_path())
        self.reloads = {"success": 0, "failure": 0}
        self.reloader = ModelReloader(cfg.model.resolved_path(), self.load_engine, self.swap_engine, self._reload_result)
        self.stop_event = threading.Event()
        self.cameras: dict[str, CameraThread] = {}
        self.stats: dict[str, CameraStats] = {c.id: CameraStats() for c in cfg.cameras}
        # SNDHWM must hold one burst (a mask per camera) or a fast subscriber loses masks too.
        self.publisher = MaskPublisher(cfg.publish.endpoints, sndhwm=max(cfg.publish.sndhwm, 2 * len(cfg.cameras)), encoding=cfg.publish.encoding, heartbeat_interval=cfg.publish.status_interval,
                                      curve_secret_key=cfg.security.server_secret_key if cfg.security.curve else None,
                                      curve_allowed_dir=cfg.security.allowed_clients_dir)
        try:
            for cam in cfg.cameras:
                source = make_source(cam.source, size=cam.size, fps=cam.fps, loop=cam.loop)
                self.cameras[cam.id] = CameraThread(cam.id, source, size=cam.size, pace=cam.pace)
        except BaseException:
            self.publisher.close([])
            raise

    # -- model ---------------------------------------------------------------------------
    def load_engine(self, path: Path) -> Engine:
        m = self.cfg.model
        return Engine(path, m.providers, m.intra_op_threads, m.require_gpu)

    def swap_engine(self, engine: Engine) -> None:
        """Called from the reload thread: the next frame uses the new model."""
        old, self.engine = self.engine, engine
        if old.model_version != engine.model_version:
            for cam_id in self.cameras:
                self.publisher.publish_status(cam_id, "online", model_version=engine.model_version, provider=engine.provider)

    def _reload_result(self, result: str, detail: str) -> None:
        self.reloads[result] = self.reloads.get(result, 0) + 1

    # -- lifecycle ---------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self.stop_event.set()

    def request_reload(self, *_: object) -> None:
        self.reloader.request()

    def run(self, duration: float | None = None) -> int:
        try:
            if self.cfg.publish.wait_for_subscriber:
                if not self.publisher.wait_for_subscriber(self.cfg.publish.wait_for_subscriber):
                    log.info("no subscriber after %.1f s; starting anyway", self.cfg.publish.wait_for_subscriber)
            for cam in self.cameras.values():
                cam.start()
            self.reloader.start()
            self._online()
            deadline = time.monotonic() + duration if duration else None
            next_line = time.monotonic() + 1.0
            while not self.stop_event.is_set():
                if deadline and time.monotonic() >= deadline:
                    break
                if not self._step():
                    if all(c.finished for c in self.cameras.values()):
                        log.info("every source has ended")
                        break
                self.publisher.maybe_heartbeat(self.cameras, model_version=self.engine.model_version)
                if time.monotonic() >= next_line:
                    next_line += 1.0
                    if self.cfg.status_line:
                        print(self.status_line(), file=sys.stderr, flush=True)
        finally:
            self.shutdown()
        return 0

    def _online(self) -> None:
        for cam_id in self.cameras:
            self.publisher.publish_status(cam_id, "online", model_version=self.engine.model_version, provider=self.engine.provider)

    def shutdown(self) -> None:
        self.reloader.stop()
        for cam in self.cameras.values():
            cam.stop(timeout=0.5)
        self.publisher.close(list(self.cameras), reason="stopped")

    # -- the pipeline ------------------------------------------------------------------
    def _gather(self) -> list[Frame]:
        """One frame from every camera that has one; waits briefly when none has."""
        frames = [f for f in (c.get(timeout=0) for c in self.cameras.values()) if f is not None]
        if frames:
            return frames
        if len(self.cameras) == 1:
            frame = next(iter(self.cameras.values())).get(timeout=0.05)
            return [frame] if frame is not None else []
        time.sleep(0.002)
        return []

    def _step(self) -> bool:
        frames = self._gather()
        if not frames:
            return False
        groups: list[list[Frame]]
        if self.cfg.model.batch_cameras and len(frames) > 1 and len({f.image.shape for f in frames}) == 1:
            groups = [frames]
        else:
            groups = [[f] for f in frames]
        engine = self.engine  # one model per step: a reload swaps between frames
        for group in groups:
            t0 = time.time()
            masks = engine.run(np.stack([f.image for f in group]))
            t_done = time.time()
            for frame, mask in zip(group, masks):
                fg = float(np.count_nonzero(mask)) / mask.size
                self.publisher.publish_mask(frame.camera, frame.seq, mask, frame.t_capture, t_done, engine.model_version, fg)
                st = self.stats[frame.camera]
                now = time.time()
                st.published += 1
                st.e2e.append(now - frame.t_capture)
                st.infer.append((t_done - t0) / len(group))
                st.stamps.append(now)
                st.fg_ratio = fg
        return True

    def status_line(self) -> str:
        parts = []
        now = time.time()
        for cam_id, st in self.stats.items():
            recent = [t for t in st.stamps if now - t <= 2.0]
            fps = len(recent) / 2.0
            e2e = np.array(st.e2e) * 1000 if st.e2e else np.zeros(1)
            inf = np.array(st.infer) * 1000 if st.infer else np.zeros(1)
            cam = self.cameras[cam_id]
            parts.append(f"{cam_id}: {fps:5.1f} fps  e2e p50 {np.percentile(e2e, 50):5.1f} ms p99 {np.percentile(e2e, 99):5.1f} ms  "
                         f"infer {np.median(inf):4.1f} ms  drops {cam.dropped}  fg {100 * st.fg_ratio:4.1f}%")
        return " | ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparsecam serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="YAML configuration (default: synthetic camera, bundled model)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--model", type=Path, help="override model.path")
    p.add_argument("--source", help="override the first camera's source")
    p.add_argument("--endpoint", action="append", help="override publish.endpoints (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no status line")
    return p


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config)
    if args.model:
        cfg.model.path = args.model
    if args.source:
        cfg.cameras[0].source = args.source
    if args.endpoint:
        cfg.publish.endpoints = args.endpoint
    if args.quiet:
        cfg.status_line = False
    daemon = Daemon(cfg)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    signal.signal(signal.SIGHUP, daemon.request_reload)
    eps = " ".join(f"--endpoint {e}" for e in daemon.publisher.endpoints)
    cams = ", ".join(f"{cid} ({redact(c.source)})" for cid, c in zip(daemon.cameras, cfg.cameras))
    print(f"sparsecam serve: {cams} -> model {daemon.engine.path.name} [{daemon.engine.model_version}] on {daemon.engine.provider} -> {', '.join(daemon.publisher.endpoints)}", file=sys.stderr)
    print(f"try it: sparsecam subscribe {eps} --count 10", file=sys.stderr, flush=True)
    return daemon.run(args.duration)
