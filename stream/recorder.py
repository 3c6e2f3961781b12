"""Recording footage for retraining: a little of every camera, on disk, never at the masks' cost.

Policy per camera: one frame every ``every`` seconds, plus a short burst when the foreground
ratio jumps (the scene changed: something worth learning from). Frames are written by a
background thread (a bounded queue: when the disk is slow, recording drops, the pipeline
does not wait) as ``<dir>/<camera>/<seq>.jpg`` through a temporary file and an atomic rename,
then listed in ``manifest.jsonl`` (timestamps, camera id, size) which `sparsecam train` reads.
A disk quota deletes the oldest frames first. Disk full or an unwritable folder is logged
and counted, and the masks go on.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.argtypes import Parser, seconds
from stream.errors import UserError

log = logging.getLogger("sparsecam.recorder")

MANIFEST = "manifest.jsonl"


def read_manifest(path: Path, strict: bool = True) -> list[dict[str, Any]]:
    """Entries of a recordings manifest in file order: its JSON objects, with ``t`` as a float.

    An entry needs a plain file name ``file`` (no folder, not hidden) and a number ``t``. A
    line that is not one is a UserError naming it when ``strict`` (training on footage the
    user pointed at), else skipped with a warning (the nightly retrain must go on). A last line
    without its newline that does not parse is skipped either way: it is being written, or a crash
    cut it.
    """
    try:
        text = Path(path).read_text()
        lines = text.splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    entries: list[dict[str, Any]] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            name, t = rec["file"], rec["t"]
            if (not isinstance(name, str) or "/" in name or name.startswith(".")
                    or isinstance(t, bool) or not isinstance(t, (int, float))):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            if lineno == len(lines) and not text.endswith("\n"):
                log.warning("%s: its last line is half-written (being recorded, or cut by a crash); skipped", path)
                continue
            if strict:
                raise UserError(f'{path} line {lineno} is not a recording entry (a JSON object with a plain file '
                                f'name "file" and a number "t"); fix or delete that line') from None
            log.warning("%s line %d is not a valid recording entry; skipped", path, lineno)
            continue
        entries.append({**rec, "t": float(t)})
    return entries


def _listed_file(line: str) -> str | None:
    """The file a manifest line names; None for a line that is not an entry (the compaction drops it)."""
    try:
        name = json.loads(line).get("file")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


MB = 10**6  # the unit of recording.quota_mb, and of the sizes `sparsecam record` prints
# What `sparsecam retrain` needs of a camera's recordings (training/retrain.py), known here so
# that the daemon's configuration (retrain.min_frames) can be checked without torch.
RETRAIN_MIN_TRAIN = 16  # frames it trains on, at least
RETRAIN_MIN_HOLDOUT = 8  # newest frames it holds out to validate the new model on, at least
RETRAIN_MIN_FRAMES = RETRAIN_MIN_TRAIN + RETRAIN_MIN_HOLDOUT


@dataclass(frozen=True)
class RecordPolicy:
    """When a camera's frames are recorded; stream.config.RecordingSection takes its defaults from here."""

    every: float = 10.0  # seconds between periodic frames
    burst_on_change: float = 0.05  # a foreground-ratio jump of this much starts a burst (0 = off)
    burst_frames: int = 5
    burst_interval: float = 0.5  # seconds between burst frames
    quota_bytes: int = 1024 * MB  # per camera
    jpeg_quality: int = 92


class CameraRecorder:
    """Decides (cheaply, on the hot path) which frames to keep; a thread writes them."""

    def __init__(self, root: Path, camera: str, policy: RecordPolicy = RecordPolicy(), queue_size: int = 8) -> None:
        self.dir = Path(root) / camera
        self.camera = camera
        self.policy = policy
        self.written = 0
        self.errors = 0
        self.dropped = 0  # frames chosen but not queued (writer behind)
        self.deleted = 0
        self.last_error: str | None = None
        self._last_periodic = -float("inf")
        self._last_burst = -float("inf")
        self._burst_left = 0
        self._last_fg: float | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._seq = 0
        self.existing = 0  # frames found from earlier runs
        self._bytes = 0
        self._files: list[tuple[str, int]] = []  # (name, size), oldest first
        self._thread = threading.Thread(target=self._run, name=f"record-{camera}", daemon=True)
        self._stop = threading.Event()
        self._scan()
        self._thread.start()

    # -- hot path ------------------------------------------------------------------------
    def offer(self, frame: np.ndarray, t: float, fg_ratio: float | None = None) -> bool:
        """Keep this frame? If so queue it for writing (never blocks); returns True if queued."""
        p = self.policy
        reason = None
        if fg_ratio is not None and self._last_fg is not None and p.burst_on_change and abs(fg_ratio - self._last_fg) >= p.burst_on_change:
            self._burst_left = p.burst_frames
        if fg_ratio is not None:
            self._last_fg = fg_ratio
        # A clock stepped back (NTP) makes t - last negative: due now, not an hour later.
        if self._burst_left and not 0 <= t - self._last_burst < p.burst_interval:
            self._burst_left -= 1
            self._last_burst = t
            reason = "burst"
        elif not 0 <= t - self._last_periodic < p.every:
            self._last_periodic = t
            reason = "periodic"
        if reason is None:
            return False
        try:
            self._queue.put_nowait((frame, t, fg_ratio, reason))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    # -- writer thread -------------------------------------------------------------------
    def _scan(self) -> None:
        """Pick up what an earlier run recorded (numbering and quota continue)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            files = sorted(p for p in self.dir.glob("*.jpg"))
        except OSError as exc:
            self._error(exc)
            return
        self._repair_manifest()
        for leftover in [*self.dir.glob(".*.jpg.tmp"), self.dir / (MANIFEST + ".tmp")]:  # a crash's half-written files
            try:
                leftover.unlink(missing_ok=True)
            except OSError as exc:
                self._error(exc)
        for p in files:
            size = p.stat().st_size
            self._files.append((p.name, size))
            self._bytes += size
        self.existing = len(files)
        if files:
            try:
                self._seq = int(files[-1].stem) + 1
            except ValueError:
                self._seq = len(files)

    def _repair_manifest(self) -> None:
        """End the manifest with a newline, so the next entry starts a line: a last line a crash left
        half-written is cut; a whole one (written by hand, say) only gets its newline."""
        path = self.dir / MANIFEST
        try:
            with open(path, "rb+") as fh:
                data = fh.read()
                if data and not data.endswith(b"\n"):
                    start = data.rfind(b"\n") + 1
                    if _listed_file(data[start:].decode(errors="replace")) is not None:
                        fh.write(b"\n")
                    else:
                        fh.truncate(start)
                        log.warning("camera %s: %s ended in a half-written line (a crash while recording); removed it",
                                    self.camera, path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._error(exc)

    def _append_manifest(self, entry: dict[str, Any]) -> None:
        """Append one line whole or not at all: a failed write (disk full) is cut back off."""
        data = (json.dumps(entry) + "\n").encode()
        fd = os.open(self.dir / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise
        finally:
            os.close(fd)

    def _error(self, exc: OSError) -> None:
        self.errors += 1
        msg = {errno.ENOSPC: "disk full", errno.EACCES: "permission denied", errno.EROFS: "read-only file system"}.get(exc.errno or 0, str(exc))
        if msg != self.last_error:  # log each kind of failure once, not per frame
            log.error("camera %s: cannot record to %s: %s (masks continue; recording retries)", self.camera, self.dir, msg)
        self.last_error = msg

    def _write(self, frame: np.ndarray, t: float, fg: float | None, reason: str) -> None:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.policy.jpeg_quality])
        if not ok:
            return
        name = f"{self._seq:09d}.jpg"
        tmp = self.dir / f".{name}.tmp"
        entry = {"file": name, "t": t, "camera": self.camera, "width": int(frame.shape[1]), "height": int(frame.shape[0]), "reason": reason}
        if fg is not None:
            entry["fg_ratio"] = round(float(fg), 5)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(buf.tobytes())
            os.replace(tmp, self.dir / name)
            self._append_manifest(entry)
        except OSError as exc:
            self._error(exc)
            for leftover in (tmp, self.dir / name):  # a frame the manifest does not list is not kept
                try:
                    leftover.unlink(missing_ok=True)
                except OSError:
                    pass
            return
        self.last_error = None
        self._seq += 1
        self.written += 1
        self._files.append((name, len(buf)))
        self._bytes += len(buf)
        self._enforce_quota()

    def _enforce_quota(self) -> None:
        removed = set()
        while self._bytes > self.policy.quota_bytes and len(self._files) > 1:
            name, size = self._files.pop(0)
            try:
                (self.dir / name).unlink(missing_ok=True)
            except OSError as exc:
                self._error(exc)
                self._files.insert(0, (name, size))
                break
            self._bytes -= size
            self.deleted += 1
            removed.add(name)
        if removed:
            self._rewrite_manifest(removed)

    def _rewrite_manifest(self, removed: set[str]) -> None:
        path = self.dir / MANIFEST
        try:
            lines = path.read_text().splitlines(keepends=True) if path.exists() else []
            keep = [ln for ln in lines if _listed_file(ln) not in removed | {None}]  # and lines that are no entry
            tmp = path.with_name(MANIFEST + ".tmp")
            tmp.write_text("".join(keep))
            os.replace(tmp, path)
        except (OSError, ValueError) as exc:
            log.warning("camera %s: could not compact %s: %s", self.camera, path, exc)

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._write(*item)

    @property
    def bytes_on_disk(self) -> int:
        return self._bytes

    @property
    def frames_on_disk(self) -> int:
        """Frames recorded and still kept (earlier runs' included, the quota's deletions not)."""
        return len(self._files)

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (up to ``timeout``), then stop."""
        self._stop.set()
        self._thread.join(timeout=timeout)


def cli(argv: list[str]) -> int:
    """`sparsecam record`: capture and record footage without serving masks."""
    from stream.capture import CameraThread, stop_all
    from stream.sources import make_source
    from stream.config import load_config

    p = Parser(prog="sparsecam record", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="the daemon's YAML (cameras and recording sections)")
    p.add_argument("--dir", type=Path, help="override recording.dir")
    p.add_argument("--every", type=seconds, help="override recording.every (seconds, > 0)")
    p.add_argument("--duration", type=seconds, help="stop after this many seconds (> 0; default: until stopped)")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    rec_cfg = cfg.recording
    root = args.dir or rec_cfg.dir
    policy = rec_cfg.policy()
    if args.every is not None:
        policy = RecordPolicy(**{**policy.__dict__, "every": args.every})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cams = {c.id: CameraThread(c.id, make_source(c.source, size=c.size, fps=c.fps, loop=c.loop), size=c.size, pace=c.pace) for c in cfg.cameras}
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the recording folder {root}: {exc.strerror or exc}; pass another --dir") from None
    recs = {cid: CameraRecorder(root, cid, policy) for cid in cams}
    for cam in cams.values():
        cam.start()
    print(f"sparsecam record: {', '.join(cams)} -> {root} (every {policy.every:g} s; Ctrl-C to stop)", flush=True)
    deadline = time.monotonic() + args.duration if args.duration is not None else None
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            got = False
            for cid, cam in cams.items():
                frame = cam.get(timeout=0)
                if frame is not None:
                    got = True
                    recs[cid].offer(frame.image, frame.t_capture)
            if not got:
                if all(c.finished for c in cams.values()):
                    break
                time.sleep(0.01)
    finally:
        stop_all(cams.values())  # 1 s for all of them, not 1 s per hung camera
        for rec in recs.values():
            rec.close()
    for cid, rec in recs.items():
        print(f"{cid}: {rec.written} frames written ({rec.bytes_on_disk / MB:.1f} MB on disk), {rec.errors} errors, {rec.deleted} deleted by quota")
    failed = sum(rec.errors for rec in recs.values())
    if failed:
        print(f"sparsecam record: {failed} frame(s) could not be written to {root}; see the log above", file=sys.stderr)
    return 1 if failed else 0
