"""Prometheus metrics of the daemon: every name is declared here, in one registry per daemon.

``DaemonMetrics`` owns a private :class:`~prometheus_client.CollectorRegistry` (never the
global default, so tests and several daemons in one process do not collide) and pre-creates
the label children of every known camera, stage, drop reason and reload result, so every
series exists, at zero, from the first scrape. The daemon feeds it with a few calls:

* ``observe_frame(...)`` once per published mask (latencies, bytes, foreground ratio);
* ``sync_camera(camera_thread)`` once per loop iteration (captured/dropped/reconnect
  counters from the capture thread's cumulative counts, queue depth);
* ``camera_state(camera, up, ended)`` with the daemon's own up/ended decision;
* ``set_model(camera, version, provider)`` and ``model_reloaded(ok)`` around (re)loads.

``METRIC_NAMES`` lists the exposed sample names (what PromQL sees), for dashboards.
"""

from __future__ import annotations

import threading
from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

STAGES = ("capture", "preprocess", "inference", "encode", "publish")
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
# overrun: the capture thread replaced a frame nobody had read yet (live source, slow model);
# read_error: a frame that could not be read or used (a failed read from a live source, an empty or
# corrupt frame of any source); publish: ZeroMQ refused the mask (high-water mark).
DROP_REASONS = ("overrun", "read_error", "inference")
RELOAD_RESULTS = ("success", "failure")

PREFIX = "sparsecam_"
# family name -> (type, help, label names)
_FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "frames_captured": ("counter", "Frames read from the camera", ("camera",)),
    "masks_published": ("counter", "Masks handed to ZeroMQ", ("camera",)),
    "frames_dropped": ("counter", "Frames lost before their mask was published, by reason (overrun, read_error, inference)", ("camera", "reason")),
    "camera_reconnects": ("counter", "Attempts to (re)open the camera's source, failed ones included (after a failed open, failed reads, a stall, a looping file coming back)", ("camera",)),
    "model_reloads": ("counter", "Model reloads by result (success, failure)", ("result",)),
    "publish_bytes": ("counter", "Bytes of mask messages handed to ZeroMQ", ("camera",)),
    "end_to_end_latency_seconds": ("histogram", "Capture to publish latency of each mask", ("camera",)),
    "stage_duration_seconds": ("histogram", "Duration of each pipeline stage (capture, preprocess, inference, encode, publish)", ("stage",)),
    "camera_up": ("gauge", "1 while the camera delivers frames, else 0", ("camera",)),
    "camera_ended": ("gauge", "1 once the camera's file or folder has played to its end (not a fault), else 0", ("camera",)),
    "last_frame_timestamp_seconds": ("gauge", "Unix time of the capture of the last published frame", ("camera",)),
    "queue_depth": ("gauge", "Frames captured but not yet taken by the model", ("camera",)),
    "foreground_ratio": ("gauge", "Fraction of foreground pixels in the last mask", ("camera",)),
    "model": ("info", "The model each camera is served by (version, onnxruntime provider)", ("camera",)),
}


def _sample_names() -> list[str]:
    names: list[str] = []
    for short, (kind, _, _) in _FAMILIES.items():
        full = PREFIX + short
        if kind == "counter":
            names.append(full + "_total")
        elif kind == "histogram":
            names += [full + "_bucket", full + "_sum", full + "_count"]
        elif kind == "info":
            names.append(full + "_info")
        else:
            names.append(full)
    return names


METRIC_NAMES: list[str] = _sample_names()


class DaemonMetrics:
    """All daemon metrics in one registry; cheap to update from the hot path."""

    def __init__(self, registry: CollectorRegistry | None = None, cameras: Iterable[str] = ()) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        d = {k: (PREFIX + k, v[1], list(v[2])) for k, v in _FAMILIES.items()}
        self.frames_captured = Counter(*d["frames_captured"], registry=r)
        self.masks_published = Counter(*d["masks_published"], registry=r)
        self.frames_dropped = Counter(*d["frames_dropped"], registry=r)
        self.camera_reconnects = Counter(*d["camera_reconnects"], registry=r)
        self.model_reloads = Counter(*d["model_reloads"], registry=r)
        self.publish_bytes = Counter(*d["publish_bytes"], registry=r)
        self.end_to_end_latency = Histogram(*d["end_to_end_latency_seconds"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage_duration = Histogram(*d["stage_duration_seconds"], buckets=LATENCY_BUCKETS, registry=r)
        self.camera_up = Gauge(*d["camera_up"], registry=r)
        self.camera_ended = Gauge(*d["camera_ended"], registry=r)
        self.last_frame_timestamp = Gauge(*d["last_frame_timestamp_seconds"], registry=r)
        self.queue_depth = Gauge(*d["queue_depth"], registry=r)
        self.foreground_ratio = Gauge(*d["foreground_ratio"], registry=r)
        self.model = Info(*d["model"], registry=r)
        for result in RELOAD_RESULTS:
            self.model_reloads.labels(result)
        self._stage_children = {s: self.stage_duration.labels(s) for s in STAGES}
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, int]] = {}  # camera -> last cumulative counts synced
        for cam in cameras:
            self.add_camera(cam)

    # -- setup --------------------------------------------------------------------------
    def add_camera(self, camera: str) -> None:
        """Create every per-camera series (at zero) so dashboards see the camera at once."""
        for metric in (self.frames_captured, self.masks_published, self.camera_reconnects, self.publish_bytes,
                       self.end_to_end_latency, self.camera_up, self.camera_ended, self.last_frame_timestamp, self.queue_depth, self.foreground_ratio):
            metric.labels(camera)
        for reason in DROP_REASONS:
            self.frames_dropped.labels(camera, reason)
        with self._lock:
            self._seen.setdefault(camera, {})

    def set_model(self, camera: str, version: str, provider: str) -> None:
        self.model.labels(camera).info({"version": str(version), "provider": str(provider)})

    def model_reloaded(self, ok: bool) -> None:
        self.model_reloads.labels("success" if ok else "failure").inc()

    # -- hot path -----------------------------------------------------------------------
    def observe_frame(self, camera: str, *, t_capture: float, stages: Mapping[str, float] | None = None,
                      e2e: float | None = None, bytes_sent: int | None = None, fg_ratio: float | None = None) -> None:
        """One mask of ``camera`` went through the pipeline.

        ``t_capture``: Unix time of the capture; ``stages``: seconds per stage (names from
        :data:`STAGES`, others are ignored); ``e2e``: capture-to-publish seconds;
        ``bytes_sent``: what ``MaskPublisher.publish_mask`` returned -- 0 means ZeroMQ refused
        the mask (not counted as published), None means not known (counted as published). The
        XPUB socket never refuses: past ``publish.sndhwm`` it drops a slow subscriber's masks for
        that subscriber alone, which shows as gaps in its sequence numbers, not here.
        """
        if stages:
            for stage, seconds in stages.items():
                child = self._stage_children.get(stage)
                if child is not None and seconds >= 0:
                    child.observe(seconds)
        if bytes_sent != 0:
            self.masks_published.labels(camera).inc()
            if bytes_sent:
                self.publish_bytes.labels(camera).inc(bytes_sent)
            if e2e is not None and e2e >= 0:
                self.end_to_end_latency.labels(camera).observe(e2e)
        self.last_frame_timestamp.labels(camera).set(t_capture)
        if fg_ratio is not None:
            self.foreground_ratio.labels(camera).set(fg_ratio)

    def captured(self, camera: str, n: int = 1) -> None:
        self.frames_captured.labels(camera).inc(n)

    def dropped(self, camera: str, reason: str, n: int = 1) -> None:
        self.frames_dropped.labels(camera, reason).inc(n)

    def reconnected(self, camera: str, n: int = 1) -> None:
        self.camera_reconnects.labels(camera).inc(n)

    def camera_state(self, camera: str, up: bool, ended: bool = False) -> None:
        self.camera_up.labels(camera).set(1 if up else 0)
        self.camera_ended.labels(camera).set(1 if ended else 0)

    def set_queue_depth(self, camera: str, depth: int) -> None:
        self.queue_depth.labels(camera).set(depth)

    def sync_camera(self, cam: object) -> None:
        """Copy a ``CameraThread``'s cumulative counts into the counters (by difference).

        Reads ``camera_id``, ``captured``, ``dropped``, ``read_errors``, ``reopens`` and
        ``queue_depth``. A count that went down (a new thread object for the camera) is taken
        as a restart from zero. ``camera_up`` is the daemon's call (``camera_state``): it alone
        knows the camera's frame timeout.
        """
        camera = cam.camera_id  # type: ignore[attr-defined]
        counts = {k: int(getattr(cam, k, 0)) for k in ("captured", "dropped", "read_errors", "reopens")}
        with self._lock:
            seen = self._seen.setdefault(camera, {})
            delta = {}
            for k, v in counts.items():
                old = seen.get(k, 0)
                delta[k] = v - old if v >= old else v
                seen[k] = v
        if delta["captured"]:
            self.frames_captured.labels(camera).inc(delta["captured"])
        if delta["dropped"]:
            self.frames_dropped.labels(camera, "overrun").inc(delta["dropped"])
        if delta["read_errors"]:
            self.frames_dropped.labels(camera, "read_error").inc(delta["read_errors"])
        if delta["reopens"]:
            self.camera_reconnects.labels(camera).inc(delta["reopens"])
        self.set_queue_depth(camera, int(getattr(cam, "queue_depth", 0)))
