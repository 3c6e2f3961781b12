"""`sparsecam serve`: capture -> onnxruntime -> masks on ZeroMQ, one thread per camera.

The main thread takes the newest frame of each camera, runs the model (one batch across
cameras when ``model.batch_cameras`` is set and sizes agree), and publishes each mask on
``mask/<camera>/``. Beside it: Prometheus metrics, /healthz, /readyz and a live /preview on
one HTTP server, hot model reload (file change or SIGHUP), and camera up/down tracking.
SIGINT/SIGTERM stop capture, publish "offline", stop (SIGTERM) any retrain this daemon started,
and exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream.argtypes import Parser, seconds
from stream.capture import CameraThread, Frame, stop_all
from stream.config import DaemonConfig, load_config
from stream.errors import UserError
from stream.engine import Engine, require_gpu_provider
from stream.httpserver import Health, HttpServer, PreviewStore
from stream.metrics import DaemonMetrics
from stream.publisher import MaskPublisher
from stream.bootstrap import Mog2Engine
from stream.reload import ModelReloader
from stream.roi import WatchRegion
from stream.sdnotify import Notifier
from stream.sources import make_source, redact

log = logging.getLogger("sparsecam.daemon")

EngineLike = Engine | Mog2Engine  # run(frames) -> masks, model_version, provider
SHUTDOWN_S = 2.0  # after "offline" is out: what the reloaders and recorders get to finish, together


def nightly_due(now: time.struct_time, at: str, last_day: str) -> bool:
    """Is today's HH:MM slot reached and not yet run? (``last_day``: YYYY-MM-DD of the last run)"""
    return time.strftime("%H:%M", now) >= at and time.strftime("%Y-%m-%d", now) != last_day


def command_argv(cmd: str) -> list[str]:
    """The retrain command's argv; a leading ``sparsecam`` is this installation's own.

    systemd starts the daemon as /opt/sparsecam/.venv/bin/sparsecam without that folder on PATH,
    so a bare ``sparsecam`` could not be found: use the script beside this interpreter, else
    ``python -m stream.cli``."""
    argv = shlex.split(cmd)
    if argv and argv[0] == "sparsecam":
        script = Path(sys.executable).parent / "sparsecam"
        argv[:1] = [str(script)] if script.is_file() and os.access(script, os.X_OK) else [sys.executable, "-m", "stream.cli"]
    return argv


@dataclass
class CameraStats:
    """Rolling figures for the status line, and whether the camera is up."""

    e2e: deque = field(default_factory=lambda: deque(maxlen=256))
    infer: deque = field(default_factory=lambda: deque(maxlen=256))
    stamps: deque = field(default_factory=lambda: deque(maxlen=256))
    fg_ratio: float = 0.0
    up: bool = True


class Daemon:
    """Owns the cameras, the engine, the publisher and the HTTP server; ``run()`` until stopped."""

    def __init__(self, cfg: DaemonConfig, engine: Engine | None = None) -> None:
        self.cfg = cfg
        ids = [c.id for c in cfg.cameras]
        self.rois = {c.id: WatchRegion(c.roi, c.id) for c in cfg.cameras if c.roi is not None}  # first: a bad one fails fast
        self.engines: dict[str, EngineLike] = {}  # camera -> the model serving it
        self.model_paths: dict[str, Path] = {}  # camera -> the model file it watches for reloads
        self.bootstrapping: set[str] = set()  # cameras on MOG2 until their model file appears
        self._assign_models(engine)
        self.metrics = DaemonMetrics(cameras=ids)
        for cam_id, eng in self.engines.items():
            self.metrics.set_model(cam_id, eng.model_version, eng.provider)
        self.health = Health(stale_after=5.0)
        self.serving_since = time.monotonic()  # reset when serving starts (run)
        self.health.set_model_loaded(True)
        for cam in cfg.cameras:
            self.health.add_camera(cam.id, timeout_s=cam.timeout)
        self.preview = PreviewStore()
        self.reloaders = [
            ModelReloader(path, self.load_engine, lambda e, p=path: self.swap_engine(p, e), self._reload_result)
            for path in sorted(set(self.model_paths.values()))
        ]
        self.stop_event = threading.Event()
        self._hup_missing: list[Path] = []  # model files a SIGHUP did not find
        self.cameras: dict[str, CameraThread] = {}
        self.stats: dict[str, CameraStats] = {c.id: CameraStats() for c in cfg.cameras}
        self.timeouts = {c.id: c.timeout for c in cfg.cameras}
        self._stopped_by = ""  # the signal that asked the daemon to stop, for the log
        self.inference_errors: dict[str, str] = {}  # camera -> why the model failed on its last frame
        self.http: HttpServer | None = None
        self.notifier = Notifier()
        self._watchdog_every = (self.notifier.watchdog_interval() or 0.0) / 2
        self._last_watchdog = 0.0
        self.recorders = {}
        if cfg.recording.enabled:
            from stream.recorder import CameraRecorder

            self.recorders = {c.id: CameraRecorder(cfg.recording.dir, c.id, cfg.recording.policy()) for c in cfg.cameras}
        self.first_training: dict[str, subprocess.Popen | None] = {}  # None: it could not start (logged; not retried)
        self._quota_warned: set[str] = set()  # cameras whose quota keeps fewer than min_frames (said once)
        self.retrains: dict[str, subprocess.Popen] = {}
        # a daemon started after today's slot waits for tomorrow's
        self._nightly_done = time.strftime("%Y-%m-%d") if cfg.retrain.nightly_at and nightly_due(time.localtime(), cfg.retrain.nightly_at, "") else ""
        try:
            # SNDHWM must hold one burst (a mask per camera) or a fast subscriber loses masks too.
            self.publisher = MaskPublisher(
                cfg.publish.endpoints, sndhwm=max(cfg.publish.sndhwm, 2 * len(cfg.cameras)), encoding=cfg.publish.encoding,
                heartbeat_interval=cfg.publish.status_interval,
                curve_secret_key=cfg.security.server_secret_key if cfg.security.curve else None,
                curve_allowed_dir=cfg.security.allowed_clients_dir,
            )
        except BaseException:
            self._close_recorders(timeout=0.5)
            raise
        try:
            self.health.set_sockets_bound(True)
            for cam in cfg.cameras:
                source = make_source(cam.source, size=cam.size, fps=cam.fps, loop=cam.loop)
                self.cameras[cam.id] = CameraThread(cam.id, source, size=cam.size, pace=cam.pace)
            if cfg.metrics.enabled:
                self.http = HttpServer(cfg.metrics.bind, self.metrics.registry, self.health, self.preview, ids).start()
        except BaseException:
            self.publisher.close([])
            self._close_recorders(timeout=0.5)
            raise

    def _close_recorders(self, timeout: float) -> None:
        """Write what each recorder has queued, all of them within ``timeout`` s together."""
        deadline = time.monotonic() + timeout
        for rec in self.recorders.values():
            rec.close(timeout=max(0.05, deadline - time.monotonic()))

    def _assign_models(self, engine: Engine | None) -> None:
        """Each camera's model: ``engine`` for all when given, else its own file (loaded once per
        file, shared by the cameras that use it), or MOG2 while it bootstraps."""
        problem = self.cfg.model.dir_problem()
        if problem:  # bootstrapping cameras would wait for a model forever
            raise UserError(problem)
        if self.cfg.model.require_gpu:
            require_gpu_provider(self.cfg.model.providers)
        shared: dict[Path, EngineLike] = {}
        for cam in self.cfg.cameras:
            path, bootstraps = self.cfg.camera_model(cam)
            self.model_paths[cam.id] = path
            if engine is not None:
                self.engines[cam.id] = engine
            elif bootstraps:
                log.warning("camera %s has no model yet (%s): serving MOG2 masks until one appears", cam.id, path)
                self.engines[cam.id] = Mog2Engine()
                self.bootstrapping.add(cam.id)
            else:
                if path not in shared:
                    shared[path] = self.load_engine(path)
                self.engines[cam.id] = shared[path]

    @property
    def engine(self) -> EngineLike:
        """The first camera's model (the one a single-camera daemon serves)."""
        return next(iter(self.engines.values()))

    # -- model ---------------------------------------------------------------------------
    def load_engine(self, path: Path) -> Engine:
        m = self.cfg.model
        return Engine(path, m.providers, m.intra_op_threads, m.require_gpu, cleanup=m.cleanup)

    def swap_engine(self, path: Path, engine: Engine) -> None:
        """Called from a reload thread: the next frame of every camera using ``path`` uses it."""
        for cam_id, cam_path in self.model_paths.items():
            if cam_path != path:
                continue
            self.metrics.set_model(cam_id, engine.model_version, engine.provider)
            old, self.engines[cam_id] = self.engines[cam_id], engine
            if cam_id in self.bootstrapping:
                self.bootstrapping.discard(cam_id)
                log.info("camera %s: switching from %s to its own model %s", cam_id, old.model_version, engine.model_version)
            if old.model_version != engine.model_version and cam_id in self.cameras:
                try:
                    self.publisher.publish_status(cam_id, "online", model_version=engine.model_version, provider=engine.provider)
                except RuntimeError:  # the daemon is stopping: its publisher closed while this reload ran
                    pass

    def _reload_result(self, result: str, detail: str) -> None:
        self.metrics.model_reloaded(result == "success")
        self.notifier.status(f"model reload {result}: {detail[:200]}")

    # -- lifecycle ---------------------------------------------------------------------
    def request_stop(self, signum: int | None = None, *_: object) -> None:
        if signum is not None and not self.stop_event.is_set():
            self._stopped_by = signal.Signals(signum).name
        self.stop_event.set()

    def request_reload(self, *_: object) -> None:
        for reloader in self.reloaders:
            if reloader.path.exists():
                reloader.request()
            else:
                self._hup_missing.append(reloader.path)  # said by the main loop: no logging in a signal handler

    def _report_missing_on_hup(self) -> None:
        """A SIGHUP that found no model file was silent; a camera waiting for its first model is not news."""
        missing, self._hup_missing = self._hup_missing, []
        for path in dict.fromkeys(missing):
            cams = [c for c, p in self.model_paths.items() if p == path and c not in self.bootstrapping]
            if cams:
                log.warning("SIGHUP: no model file at %s; %s keep%s serving %s", path, ", ".join(cams),
                            "s" if len(cams) == 1 else "", self.engines[cams[0]].model_version)

    def run(self, duration: float | None = None) -> int:
        code = 0
        try:
            wait = self.cfg.publish.wait_for_subscriber
            t_wait = time.monotonic() + wait
            while wait and time.monotonic() < t_wait and not self.stop_event.is_set():
                self.health.beat()
                if self.publisher.wait_for_subscriber(min(0.5, t_wait - time.monotonic())):
                    break
            for cam in self.cameras.values():
                cam.start()
            self.serving_since = time.monotonic()  # a camera's timeout counts from here until its first frame
            for reloader in self.reloaders:
                reloader.start()
            self._online()
            self.notifier.ready(f"serving {len(self.cameras)} camera(s) with model {self.engine.model_version}")
            deadline = time.monotonic() + duration if duration is not None else None
            next_line = time.monotonic() + 1.0
            while not self.stop_event.is_set():
                if deadline and time.monotonic() >= deadline:
                    break
                self.health.beat()
                if not self._step() and all(c.finished for c in self.cameras.values()):
                    failed = [cid for cid, c in self.cameras.items() if c.error is not None]
                    log.log(logging.ERROR if failed else logging.INFO, "every source has ended%s",
                            f"; failed: {', '.join(failed)}" if failed else "")
                    code = 1 if failed else 0  # so that systemd's Restart=on-failure applies
                    break
                self._housekeeping()
                if time.monotonic() >= next_line:
                    next_line += 1.0
                    if self.cfg.status_line:
                        print(self.status_line(), file=sys.stderr, flush=True)
        finally:
            self.shutdown()
        return code

    def _online(self) -> None:
        for cam_id in self.cameras:
            eng = self.engines[cam_id]
            self.publisher.publish_status(cam_id, "online", model_version=eng.model_version, provider=eng.provider)

    def _housekeeping(self) -> None:
        """Counters from the capture threads, camera up/down transitions, heartbeats."""
        for cam_id, cam in self.cameras.items():
            self.metrics.sync_camera(cam)
            st = self.stats[cam_id]
            age = self.health.frame_age(cam_id)  # one record of the last frame: Health's (monotonic)
            if age is None:
                age = time.monotonic() - self.serving_since
            up = (cam.running or cam.queue_depth > 0) and age <= self.timeouts[cam_id]  # an ended file's last frames still count
            ended = not up and self._ended(cam)
            if ended:
                self.health.camera_ended(cam_id)  # /readyz: expected, not a fault
            if up != st.up:
                st.up = up
                reason = "frames again" if up else "the source has ended" if ended else "no frame for %.0f s" % age
                failing = self.inference_errors.get(cam_id)
                detail = cam.last_error or (f"the model fails on its frames: {failing}" if failing else None)  # already redacted
                if not up and not ended and detail:
                    reason += f": {detail}"
                if ended:  # a file or folder played to its end: expected, not a fault
                    log.info("camera %s: its source has ended", cam_id)
                else:
                    log.warning("camera %s is %s (%s)", cam_id, "up" if up else "DOWN", reason)
                self.publisher.publish_status(cam_id, "online" if up else "offline", reason=reason, model_version=self.engines[cam_id].model_version)
            self.metrics.camera_state(cam_id, up, ended)
        self.publisher.maybe_heartbeat({c: {"model_version": self.engines[c].model_version} for c, st in self.stats.items() if st.up})
        if self.cfg.retrain.auto_first and self.recorders:
            self._maybe_start_first_training()
        if self.cfg.retrain.nightly_at and self.cfg.model.dir is not None:
            self._maybe_start_nightly()
        self._report_exits()
        self._report_missing_on_hup()
        # systemd's watchdog is fed while this loop turns: a hung inference or publish stops it and
        # systemd restarts the daemon. A camera that is down is not a reason: its capture thread
        # reopens it, and camera_up / the alerts report it (a restart would not bring it back).
        mono = time.monotonic()
        if self._watchdog_every and mono - self._last_watchdog >= self._watchdog_every:
            self.notifier.watchdog()
            self._last_watchdog = mono

    def _spawn_retrain(self, cam_id: str, why: str) -> subprocess.Popen | None:
        """Run the retrain command for one camera at the lowest CPU priority (never blocks).

        The priority comes from nice(1): a ``preexec_fn`` is not safe in this many-threaded
        process (the child may deadlock before it executes the command)."""
        cmd = self.cfg.retrain.command.format(camera=cam_id, models=self.cfg.model.dir, recordings=self.cfg.recording.dir)
        argv = command_argv(cmd)
        if not argv or shutil.which(argv[0]) is None:
            log.error("camera %s: cannot start %r (%s: no such program)", cam_id, cmd, argv[0] if argv else "empty command")
            return None
        nice = shutil.which("nice")
        log.info("camera %s: %s (%s): %s", cam_id, why, "at low priority" if nice else "nice(1) not found: at normal priority", cmd)
        try:
            proc = subprocess.Popen([nice, "-n", "19", *argv] if nice else argv, stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.error("camera %s: cannot start %r (%s)", cam_id, cmd, exc)
            return None
        return proc

    def _children(self) -> list[tuple[str, str, subprocess.Popen]]:
        """(kind, camera, process) of every retrain child started, first trainings first."""
        return [(kind, cam_id, proc) for kind, procs in (("first training", self.first_training), ("retrain", self.retrains))
                for cam_id, proc in procs.items() if proc is not None]

    def _stop_retrains(self) -> list[tuple[str, str, subprocess.Popen]]:
        """SIGTERM every running retrain child: it saves a checkpoint and the next retrain resumes.

        Left running, it died anyway, without a checkpoint: systemd (KillMode=mixed) SIGKILLs what is
        left of the unit once the daemon exits, and so does a container runtime."""
        running = [(kind, cam_id, proc) for kind, cam_id, proc in self._children() if proc.poll() is None]
        for kind, cam_id, proc in running:
            log.info("camera %s: stopping the %s (pid %d): it saves a checkpoint if it can within the shutdown deadline",
                     cam_id, kind, proc.pid)
            proc.terminate()
        return running

    @staticmethod
    def _wait_retrains(stopped: list[tuple[str, str, subprocess.Popen]], deadline: float) -> None:
        """Reap the stopped retrain children within the shutdown deadline; say how each ended."""
        for _, cam_id, proc in stopped:
            try:
                code = proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("camera %s: retrain (pid %d) still saving its checkpoint at exit", cam_id, proc.pid)
                continue
            proc.reported = True  # type: ignore[attr-defined]
            log.info("camera %s: retrain stopped (exit %d%s)", cam_id, code,
                     ": checkpoint saved, the next retrain resumes" if code == 130 else "")

    def _report_exits(self) -> None:
        """Log each retrain child's exit once (which also reaps it), whatever the camera is doing now."""
        for kind, cam_id, proc in self._children():
            if not getattr(proc, "reported", False) and proc.poll() is not None:
                proc.reported = True  # type: ignore[attr-defined]
                log.log(logging.INFO if proc.returncode == 0 else logging.ERROR,
                        "camera %s: %s exited with %d", cam_id, kind, proc.returncode)

    def _maybe_start_nightly(self) -> None:
        """retrain.nightly_at: once a day at HH:MM (local time), retrain every camera that serves its own
        model from model.dir (what a retrain replaces); not one on MOG2, the bundled model or a model: path."""
        now = time.localtime()
        if not nightly_due(now, self.cfg.retrain.nightly_at, self._nightly_done):  # type: ignore[arg-type]
            return
        self._nightly_done = time.strftime("%Y-%m-%d", now)
        for cam_id in self.cameras:
            running = self.retrains.get(cam_id)
            own = self.cfg.model.camera_file(cam_id)
            if own is None or self.model_paths.get(cam_id) != own or not own.is_file():
                continue
            if cam_id in self.bootstrapping or (running is not None and running.poll() is None):
                continue
            proc = self._spawn_retrain(cam_id, "nightly retrain")
            if proc is not None:
                self.retrains[cam_id] = proc

    def _maybe_start_first_training(self) -> None:
        """Bootstrap: once a camera without a model has recorded enough, train its first model."""
        cfg = self.cfg.retrain
        for cam_id in sorted(self.bootstrapping):
            if cam_id in self.first_training:  # started once (or could not start): its exit is _report_exits'
                continue
            rec = self.recorders[cam_id]
            kept = rec.frames_on_disk
            if kept < cfg.min_frames:
                if rec.deleted and cam_id not in self._quota_warned:  # the quota deletes before min_frames are kept
                    log.warning("camera %s: recording.quota_mb deleted frames with only %d kept, fewer than retrain.min_frames %d: "
                                "its first training waits until the quota keeps that many; raise the quota or lower min_frames",
                                cam_id, kept, cfg.min_frames)
                    self._quota_warned.add(cam_id)
                continue
            proc = self._spawn_retrain(cam_id, f"{kept} frames recorded, starting its first training")
            self.first_training[cam_id] = proc  # None (could not start): logged once, not retried every loop

    def shutdown(self) -> None:
        """Subscribers hear ``offline`` first; then the threads get one shared deadline (systemd
        kills the daemon TimeoutStopSec=5 after SIGTERM)."""
        log.info("stopping%s", f" ({self._stopped_by})" if self._stopped_by else "")
        self.notifier.stopping()
        for reloader in self.reloaders:
            reloader.stop(wait=0)
        stop_all(self.cameras.values(), timeout=0.5)
        self.publisher.close(list(self.cameras), reason="stopped")
        children = self._stop_retrains()
        deadline = time.monotonic() + SHUTDOWN_S
        for reloader in self.reloaders:
            reloader.stop(wait=max(0.05, deadline - time.monotonic()))
        self._close_recorders(timeout=max(0.05, deadline - time.monotonic()))
        self._wait_retrains(children, deadline)
        if self.http is not None:
            self.http.stop()
        log.info("stopped")

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
        t_pick = time.time()
        groups: list[tuple[EngineLike, list[Frame]]] = []
        if self.cfg.model.batch_cameras and len(frames) > 1:
            by_key: dict[tuple, list[Frame]] = {}
            for f in frames:  # one batch per (model, frame size); a reload's swap applies from the next lookup
                by_key.setdefault((id(self.engines[f.camera]), f.image.shape), []).append(f)
            groups = [(self.engines[g[0].camera], g) for g in by_key.values()]
        else:
            groups = [(self.engines[f.camera], [f]) for f in frames]
        for engine, group in groups:
            t0 = time.perf_counter()
            batch = np.stack([f.image for f in group])
            t1 = time.perf_counter()
            try:
                masks = engine.run(batch)
            except Exception as exc:  # noqa: BLE001 - e.g. out of GPU memory: these frames are lost, not the daemon
                self._inference_failed(group, exc)
                continue
            t2 = time.perf_counter()
            t_done = time.time()
            share = 1.0 / len(group)
            for frame, mask in zip(group, masks):
                if frame.camera in self.rois:
                    mask = self.rois[frame.camera].apply(mask)
                fg = float(np.count_nonzero(mask)) / mask.size
                sent = self.publisher.publish_mask(frame.camera, frame.seq, mask, frame.t_capture, t_done, engine.model_version, fg)
                now = time.time()
                e2e = now - frame.t_capture
                stages = {"capture": t_pick - frame.t_capture, "preprocess": (t1 - t0) * share, "inference": (t2 - t1) * share,
                          "encode": self.publisher.last_encode_s, "publish": self.publisher.last_send_s}
                self.metrics.observe_frame(frame.camera, t_capture=frame.t_capture, stages=stages, e2e=e2e, bytes_sent=sent, fg_ratio=fg)
                self.health.camera_frame(frame.camera, frame.t_capture)
                self.preview.update(frame.camera, frame.image, mask, e2e)
                if self.recorders:
                    self.recorders[frame.camera].offer(frame.image, frame.t_capture, fg)
                st = self.stats[frame.camera]
                st.e2e.append(e2e)
                st.infer.append((t2 - t1) * share)
                st.stamps.append(time.monotonic())
                st.fg_ratio = fg
                self.inference_errors.pop(frame.camera, None)
        return True

    def _inference_failed(self, group: list[Frame], exc: Exception) -> None:
        """Count the group's frames as dropped and log each camera's failure once (until it recovers)."""
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        for frame in group:
            self.metrics.dropped(frame.camera, "inference")
            if self.inference_errors.get(frame.camera) != why:
                log.error("camera %s: the model failed on its frame (%s, dropped; counted in "
                          "sparsecam_frames_dropped_total{reason=\"inference\"}): %s", frame.camera,
                          f"{frame.image.shape[1]}x{frame.image.shape[0]}", why)
                self.inference_errors[frame.camera] = why

    @staticmethod
    def _ended(cam: CameraThread) -> bool:
        """The camera's file or folder played to its end (not a failure) and its last frame has been served."""
        return cam.finished and cam.error is None and cam.queue_depth == 0

    def status_line(self) -> str:
        parts = []
        now = time.monotonic()
        for cam_id, st in self.stats.items():
            fps = sum(1 for t in st.stamps if now - t <= 2.0) / 2.0
            e2e = np.array(st.e2e) * 1000 if st.e2e else np.zeros(1)
            inf = np.array(st.infer) * 1000 if st.infer else np.zeros(1)
            cam = self.cameras[cam_id]
            state = "" if st.up else " ENDED" if self._ended(cam) else " DOWN"
            parts.append(f"{cam_id}{state}: {fps:5.1f} fps  e2e p50 {np.percentile(e2e, 50):5.1f} ms p99 {np.percentile(e2e, 99):5.1f} ms  "
                         f"infer {np.median(inf):4.1f} ms  drops {cam.dropped}  fg {100 * st.fg_ratio:4.1f}%")
        return " | ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sparsecam serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="YAML configuration (default: synthetic camera, bundled model)")
    p.add_argument("--duration", type=seconds, help="stop after this many seconds (> 0; default: run until stopped)")
    p.add_argument("--model", type=Path, help="override model.path")
    p.add_argument("--source", help="override the first camera's source")
    p.add_argument("--endpoint", action="append", help="override publish.endpoints (repeatable)")
    p.add_argument("--metrics-bind", help="override metrics.bind (host:port)")
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
    if args.metrics_bind:
        cfg.metrics.bind = args.metrics_bind
    if args.quiet:
        cfg.status_line = False
    daemon = Daemon(cfg)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    signal.signal(signal.SIGHUP, daemon.request_reload)
    eps = " ".join(f"--endpoint {e}" for e in daemon.publisher.endpoints)
    for cam in cfg.cameras:
        eng = daemon.engines[cam.id]
        model = f"{daemon.model_paths[cam.id].name} [{eng.model_version}]" if cam.id not in daemon.bootstrapping else f"MOG2 bootstrap (waiting for {daemon.model_paths[cam.id]})"
        print(f"sparsecam serve: {cam.id} ({redact(cam.source)}) -> {model} on {eng.provider}", file=sys.stderr)
    print(f"publishing on {', '.join(daemon.publisher.endpoints)}", file=sys.stderr)
    if daemon.http is not None:
        print(f"metrics {daemon.http.url}/metrics, live preview {daemon.http.url}/preview", file=sys.stderr)
    print(f"try it: sparsecam subscribe {eps} --count 10", file=sys.stderr, flush=True)
    return daemon.run(args.duration)
