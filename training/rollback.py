"""`sparsecam rollback`: put a camera's previous model back, and the file moves `retrain` shares.

Layout of ``<models>/<camera>/`` (the daemon serves ``current.onnx`` and reloads it when the
file changes): ``current.onnx``; ``history/<UTC-timestamp>-<model_version>.onnx``, the models
it replaced (newest first by name); ``history/...-rolledback.onnx``, models taken out by a
rollback (never restored by the next one); ``work/``, the retraining run.

``current.onnx`` is only ever replaced by ``os.replace`` of a complete copy written next to it
(``.current.onnx.tmp``), and the model it replaces is hard-linked into ``history/`` *before*
the swap, so a crash at any point leaves a complete ``current.onnx``. No torch here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from stream.argtypes import Parser
from stream.config import CURRENT_MODEL, load_config
from stream.errors import UserError
from stream.files import fsync_dir
from stream.protocol import ProtocolError, validate_camera

log = logging.getLogger("sparsecam.rollback")

CURRENT = CURRENT_MODEL
TMP = ".current.onnx.tmp"
HISTORY = "history"
ROLLED_BACK = "-rolledback"
LOCK = ".lock"
HISTORY_RE = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)-(.+?)(-rolledback)?\.onnx$")
DEFAULT_KEEP = 5


def camera_dir(models: Path, camera: str) -> Path:
    """``<models>/<camera>``; the id must be a plain name (no path tricks)."""
    try:
        return Path(models) / validate_camera(camera)
    except ProtocolError as exc:
        raise UserError(f"{exc} (as in the daemon's config)") from None


def utc_stamp() -> str:
    """Fixed-width UTC timestamp that sorts by time: 20250101T030000.123456Z."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def read_model_version(path: Path) -> str | None:
    """``sparsecam.model_version`` of an ONNX file (None when unreadable or not a sparsecam model)."""
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        return sess.get_modelmeta().custom_metadata_map.get("sparsecam.model_version") or None
    except Exception:  # noqa: BLE001 - any unreadable file: no version
        return None


def history_entries(cam_dir: Path, rolled_back: bool = False) -> list[tuple[str, str, Path]]:
    """(timestamp, version, path) of history models, newest first; restorable ones unless ``rolled_back``."""
    hist = cam_dir / HISTORY
    if not hist.is_dir():
        return []
    out = []
    for p in hist.iterdir():
        m = HISTORY_RE.match(p.name)
        if m and p.is_file() and bool(m.group(3)) == rolled_back:
            out.append((m.group(1), m.group(2), p))
    return sorted(out, reverse=True)


def _copy_durable(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())
    os.chmod(dst, 0o644)


def archive_current(cam_dir: Path, suffix: str = "") -> Path | None:
    """Link (or copy) ``current.onnx`` into ``history/<stamp>-<version><suffix>.onnx``; None if no current."""
    current = cam_dir / CURRENT
    if not current.is_file():
        return None
    version = read_model_version(current) or "unknown"
    hist = cam_dir / HISTORY
    hist.mkdir(parents=True, exist_ok=True)
    dst = hist / f"{utc_stamp()}-{version}{suffix}.onnx"
    try:
        os.link(current, dst)
    except OSError:  # no hard links here (some network file systems): a complete copy instead
        tmp = hist / f".{dst.name}.tmp"
        _copy_durable(current, tmp)
        os.replace(tmp, dst)
    fsync_dir(hist)
    return dst


def install(cam_dir: Path, model: Path) -> None:
    """Copy ``model`` to ``.current.onnx.tmp`` and ``os.replace`` it onto ``current.onnx``."""
    cam_dir.mkdir(parents=True, exist_ok=True)
    tmp = cam_dir / TMP
    try:
        _copy_durable(model, tmp)
        os.replace(tmp, cam_dir / CURRENT)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(f"cannot write {cam_dir / CURRENT}: {exc.strerror}; check free space and permissions") from None
    fsync_dir(cam_dir)


def prune_history(cam_dir: Path, keep: int) -> list[Path]:
    """Keep the newest ``keep`` restorable and the newest ``keep`` rolled-back models; returns those removed."""
    removed = []
    for rolled in (False, True):
        for _, _, p in history_entries(cam_dir, rolled)[max(keep, 0):]:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            removed.append(p)
    return removed


def promote(cam_dir: Path, candidate: Path, keep: int = DEFAULT_KEEP) -> Path | None:
    """Make ``candidate`` the camera's current model; returns where the previous one went (None when
    there was none, or when ``keep`` 0 pruned it right away)."""
    archived = archive_current(cam_dir)
    install(cam_dir, candidate)
    removed = prune_history(cam_dir, keep)
    return None if archived in removed else archived


@contextlib.contextmanager
def camera_lock(cam_dir: Path) -> Iterator[None]:
    """One retrain/rollback per camera at a time (``<camera>/.lock``, released when the process dies)."""
    try:
        cam_dir.mkdir(parents=True, exist_ok=True)
        fh = open(cam_dir / LOCK, "a")
    except OSError as exc:
        raise UserError(f"cannot create {cam_dir}: {exc.strerror}; check --models and permissions") from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise UserError(f"another retrain or rollback of camera {cam_dir.name} is running (lock {cam_dir / LOCK}); "
                                "wait for it to finish") from None
            raise
        yield
    finally:
        fh.close()


def rollback(models: Path, camera: str) -> dict[str, str | None]:
    """Restore the newest restorable history model; the replaced current goes to history as rolled back."""
    cam_dir = camera_dir(models, camera)
    if not cam_dir.is_dir():
        raise UserError(f"{cam_dir} does not exist: camera {camera!r} has no models under {models}; check --models and --camera")
    with camera_lock(cam_dir):
        entries = history_entries(cam_dir)
        if not entries:
            raise UserError(f"nothing to roll back to: {cam_dir / HISTORY} holds no previous model of camera {camera}")
        _, version, restored = entries[0]
        current = cam_dir / CURRENT
        old = read_model_version(current) if current.is_file() else None
        archived = archive_current(cam_dir, suffix=ROLLED_BACK)
        install(cam_dir, restored)
        restored.unlink()
        fsync_dir(restored.parent)
    return {"camera": camera, "current": str(current), "old_version": old, "new_version": version,
            "restored_from": str(restored), "rolled_back_to": str(archived) if archived else None}


def camera_folders(camera: str, config: Path | None, models: Path | None,
                   recordings: Path | None = None) -> tuple[Path, Path]:
    """(models, recordings) folders for ``camera``: the options given, else the daemon's YAML
    (model.dir, recording.dir; the camera must be one of its cameras), else ``models`` and
    ``recordings``. What `sparsecam retrain` and `sparsecam rollback` both take from --config; a camera
    the daemon does not serve from ``<model.dir>/<camera>/current.onnx`` is refused."""
    if config is not None:
        cfg = load_config(config)
        known = [c.id for c in cfg.cameras]
        if camera not in known:
            raise UserError(f"camera {camera!r} is not in {config} (cameras: {', '.join(known)}); check --camera")
        cam = next(c for c in cfg.cameras if c.id == camera)
        models = models or cfg.model.dir
        target = Path(models or "models") / camera / CURRENT
        served = cam.model if cam.model is not None else cfg.model.camera_file(camera)
        if served is None or served.resolve() != target.resolve():
            fix = ("remove that camera's model: line" if cam.model is not None else "set model.dir" if cfg.model.dir is None
                   else "leave out --models")
            what = f"its own model: {cam.model}" if cam.model is not None else \
                f"model.path {cfg.model.resolved_path()} (there is no model.dir)" if cfg.model.dir is None else str(served)
            raise UserError(f"camera {camera} in {config} serves {what}, not {target}, which retrain and rollback write: {fix} "
                            "so that the daemon serves retrained models (or leave out --config)")
        recordings = recordings or cfg.recording.dir
    return Path(models or "models"), Path(recordings or "recordings")


def cli(argv: list[str]) -> int:
    p = Parser(prog="sparsecam rollback", description="Restore a camera's previous model (the newest in "
                                "<models>/<camera>/history/) as current.onnx, atomically; the replaced model is kept in "
                                "history marked -rolledback, so the next rollback goes one model further back.")
    p.add_argument("--camera", required=True, help="camera id (as in the daemon's config)")
    p.add_argument("--models", type=Path, help="models folder (default: model.dir of --config, else models/)")
    p.add_argument("--config", type=Path, help="the daemon's YAML, for model.dir")
    args = p.parse_args(argv)
    r = rollback(camera_folders(args.camera, args.config, args.models)[0], args.camera)
    print(f"rollback {r['camera']}: {r['old_version'] or '(none)'} -> {r['new_version']}; {r['current']} restored from "
          f"{Path(r['restored_from']).name}" + (f"; previous kept as {Path(r['rolled_back_to']).name}" if r["rolled_back_to"] else ""))
    return 0


if __name__ == "__main__":
    from stream.cli import main

    sys.exit(main(["rollback", *sys.argv[1:]]))
