"""stream.metrics + stream.httpserver over real HTTP on 127.0.0.1: scrape, health, readiness, preview."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.errors import UserError
from stream.httpserver import OVERLAY_BGR, Health, HttpServer, PreviewStore, parse_bind
from stream.metrics import LATENCY_BUCKETS, METRIC_NAMES, STAGES, DaemonMetrics

CAMS = ["cam0", "cam1"]
SPEC_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5]


def get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def samples(text: str) -> dict[str, list]:
    """sample name -> [Sample] from a scrape."""
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(smp: dict[str, list], name: str, **labels: str) -> float:
    hits = [s.value for s in smp[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples"
    return hits[0]


def textured_frame(h: int = 120, w: int = 160) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.stack([(xx * 255 // w), (yy * 255 // h), np.full((h, w), 90)], axis=-1).astype(np.uint8)
    frame[(yy // 8 + xx // 8) % 2 == 0] //= 2  # checkerboard texture
    return frame


@pytest.fixture()
def served():
    metrics = DaemonMetrics(cameras=CAMS)
    health = Health(stale_after=1.0)  # the requests after one beat must fit in it on a loaded runner
    store = PreviewStore()
    server = HttpServer("127.0.0.1:0", metrics.registry, health, store, CAMS).start()
    try:
        yield SimpleNamespace(metrics=metrics, health=health, store=store, server=server, url=server.url)
    finally:
        server.stop()


# ----------------------------------------------------------------------------- /metrics


def test_scrape_has_every_series_with_observed_values(served):
    m = served.metrics
    rng = np.random.default_rng(0)
    e2es = rng.uniform(0.0005, 3.0, 7).tolist()
    sizes = rng.integers(100, 5000, 7).tolist()
    t_caps = [time.time() - 1 + i * 0.01 for i in range(7)]
    for e2e, n, t in zip(e2es, sizes, t_caps):
        m.observe_frame("cam0", t_capture=t, stages={"inference": e2e / 2, "publish": 0.0004, "bogus": 1.0}, e2e=e2e, bytes_sent=n, fg_ratio=n / 10000)
    m.observe_frame("cam0", t_capture=t_caps[-1] + 1, e2e=0.01, bytes_sent=0, fg_ratio=0.5)  # refused by ZeroMQ
    cam = SimpleNamespace(camera_id="cam1", captured=10, dropped=2, read_errors=1, reopens=1, running=True, finished=False, error=None, queue_depth=1)
    m.sync_camera(cam)
    cam.captured, cam.dropped, cam.reopens, cam.queue_depth = 15, 3, 1, 0
    m.sync_camera(cam)
    m.camera_state("cam1", True)  # the daemon's call
    m.set_model("cam1", "v7", "CPUExecutionProvider")
    m.set_model("cam0", "bootstrap-mog2", "opencv-mog2")
    m.model_reloaded(True)
    m.model_reloaded(False)
    m.model_reloaded(False)

    status, headers, body = get(served.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    smp = samples(body.decode())

    # every documented name exists, with a camera label for both cameras where it has one
    for name in METRIC_NAMES:
        assert name in smp, f"{name} not exposed"
        if "camera" in smp[name][0].labels:
            assert {s.labels["camera"] for s in smp[name]} == set(CAMS), name
    exposed = {n for n in smp if n.startswith("sparsecam_") and not n.endswith("_created")}
    assert exposed == set(METRIC_NAMES)

    # histogram buckets: 1 ms .. 2.5 s, cumulative counts match the observations
    les = sorted({float(s.labels["le"]) for s in smp["sparsecam_end_to_end_latency_seconds_bucket"] if s.labels["le"] != "+Inf"})
    assert les == SPEC_BUCKETS == list(LATENCY_BUCKETS)
    for le in SPEC_BUCKETS + [float("inf")]:
        expected = sum(e <= le for e in e2es)
        le_text = "+Inf" if le == float("inf") else str(le)
        assert value(smp, "sparsecam_end_to_end_latency_seconds_bucket", camera="cam0", le=le_text) == expected
    assert value(smp, "sparsecam_end_to_end_latency_seconds_count", camera="cam0") == len(e2es)
    assert value(smp, "sparsecam_end_to_end_latency_seconds_sum", camera="cam0") == pytest.approx(sum(e2es))
    assert value(smp, "sparsecam_end_to_end_latency_seconds_count", camera="cam1") == 0
    assert {s.labels["stage"] for s in smp["sparsecam_stage_duration_seconds_count"]} == set(STAGES)
    assert value(smp, "sparsecam_stage_duration_seconds_count", stage="inference") == len(e2es)
    assert value(smp, "sparsecam_stage_duration_seconds_sum", stage="inference") == pytest.approx(sum(e2es) / 2)
    assert value(smp, "sparsecam_stage_duration_seconds_bucket", stage="publish", le="0.001") == len(e2es)
    assert value(smp, "sparsecam_stage_duration_seconds_count", stage="capture") == 0

    # counters and gauges
    assert value(smp, "sparsecam_masks_published_total", camera="cam0") == len(e2es)
    assert value(smp, "sparsecam_publish_bytes_total", camera="cam0") == sum(sizes)
    assert value(smp, "sparsecam_frames_dropped_total", camera="cam0", reason="inference") == 0  # refused: not published, nor dropped before
    assert {s.labels["reason"] for s in smp["sparsecam_frames_dropped_total"]} == {"overrun", "read_error", "inference"}
    assert value(smp, "sparsecam_frames_captured_total", camera="cam1") == 15
    assert value(smp, "sparsecam_frames_dropped_total", camera="cam1", reason="overrun") == 3
    assert value(smp, "sparsecam_frames_dropped_total", camera="cam1", reason="read_error") == 1
    assert value(smp, "sparsecam_camera_reconnects_total", camera="cam1") == 1
    assert value(smp, "sparsecam_camera_up", camera="cam1") == 1
    assert value(smp, "sparsecam_camera_up", camera="cam0") == 0
    assert value(smp, "sparsecam_queue_depth", camera="cam1") == 0
    assert value(smp, "sparsecam_foreground_ratio", camera="cam0") == 0.5
    assert value(smp, "sparsecam_last_frame_timestamp_seconds", camera="cam0") == pytest.approx(t_caps[-1] + 1)
    assert value(smp, "sparsecam_model_reloads_total", result="success") == 1
    assert value(smp, "sparsecam_model_reloads_total", result="failure") == 2
    info = smp["sparsecam_model_info"]
    assert sorted((i.labels["camera"], i.labels["version"], i.labels["provider"]) for i in info) == [
        ("cam0", "bootstrap-mog2", "opencv-mog2"), ("cam1", "v7", "CPUExecutionProvider")]


def test_registries_are_independent():
    a, b = DaemonMetrics(cameras=["x"]), DaemonMetrics(cameras=["x"])
    a.captured("x", 4)
    assert a.frames_captured.labels("x")._value.get() == 4
    assert b.frames_captured.labels("x")._value.get() == 0


def test_sync_camera_after_restart_counts_from_zero():
    m = DaemonMetrics(cameras=["c"])
    m.sync_camera(SimpleNamespace(camera_id="c", captured=10, finished=True, running=False))
    m.sync_camera(SimpleNamespace(camera_id="c", captured=3, finished=False, running=True))  # a new capture thread
    assert m.frames_captured.labels("c")._value.get() == 13


# ----------------------------------------------------------------------------- /healthz /readyz


def test_healthz_follows_the_main_loop(served):
    assert get(served.url + "/healthz")[0] == 503  # no beat yet
    served.health.beat()
    status, _, body = get(served.url + "/healthz")
    assert (status, body) == (200, b"ok\n")
    time.sleep(1.3)  # > stale_after = 1.0
    status, _, body = get(served.url + "/healthz")
    assert status == 503 and b"stalled" in body
    served.health.beat()
    assert get(served.url + "/healthz")[0] == 200


def test_readyz_lists_what_is_missing(served):
    h = served.health
    for cam in CAMS:
        h.add_camera(cam, timeout_s=5.0)
    h.beat()
    status, headers, body = get(served.url + "/readyz")
    doc = json.loads(body)
    assert status == 503 and headers["Content-Type"] == "application/json" and doc["ready"] is False
    assert any("model" in p for p in doc["not_ready"]) and any("socket" in p for p in doc["not_ready"])
    h.set_model_loaded(True)
    h.set_sockets_bound(True)
    h.camera_frame("cam0", time.time())
    status, _, body = get(served.url + "/readyz")
    problems = json.loads(body)["not_ready"]
    assert status == 503 and problems == ["camera cam1: no frame yet"]
    h.camera_frame("cam1")
    status, _, body = get(served.url + "/readyz")
    assert status == 200 and json.loads(body) == {"ready": True, "not_ready": [], "ended": []}


def test_readyz_stale_camera_and_stalled_loop():
    h = Health(stale_after=1.0)
    h.add_camera("c", timeout_s=1.0)
    h.set_model_loaded(True)
    h.set_sockets_bound(True)
    h.beat()
    assert h.frame_age("c") is None
    t_old = time.time() - 3.0
    h.camera_frame("c", t_old)
    h.camera_frame("c", t_old - 1.0)  # an older frame arriving late does not move it back
    assert h.frame_age("c") == pytest.approx(3.0, abs=0.2)
    ok, problems = h.ready()
    assert not ok and len(problems) == 1 and problems[0].startswith("camera c: no frame for 3.")
    h.add_camera("clip", timeout_s=1.0)
    h.camera_frame("clip", t_old)
    h.camera_ended("clip")  # a file played to its end: no longer waited for
    assert h.ready()[1] == problems and h.ended() == ["clip"]
    h.camera_frame("c")
    assert h.ready() == (True, [])
    time.sleep(1.2)
    ok, problems = h.ready()
    assert not ok and "stalled" in problems[0] and not h.alive()


def test_readyz_camera_freshness_ignores_wall_clock_steps(monkeypatch):
    h = Health(stale_after=5.0)
    h.add_camera("c", timeout_s=1.0)
    h.set_model_loaded(True)
    h.set_sockets_bound(True)
    h.beat()
    h.camera_frame("c", time.time())
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # NTP stepped the clock back an hour
    time.sleep(1.2)
    ok, problems = h.ready()
    seconds = re.match(r"camera c: no frame for (\d+\.\d) s", problems[0])
    assert not ok and seconds and 1.2 <= float(seconds[1]) < 60, problems  # not -3598.8 s
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # and forward: a fresh frame is fresh
    h.camera_frame("c", time.time() - 0.2)
    assert h.ready() == (True, []) and h.frame_age("c") == pytest.approx(0.2, abs=0.1)


# ----------------------------------------------------------------------------- /preview


def test_preview_page_lists_cameras_escaped():
    cams = ["cam0", 'a<b>&"c']
    with HttpServer("127.0.0.1:0", cameras=cams) as server:
        status, headers, body = get(server.url + "/preview")
        page = body.decode()
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert 'data-camera="cam0"' in page and 'src="/preview/cam0.jpg"' in page
        assert "a&lt;b&gt;&amp;&quot;c" in page and 'a<b>' not in page
        status, _, body = get(server.url + "/preview/cameras.json")
        assert status == 200 and json.loads(body) == {"cameras": cams}
        assert get(server.url + "/nope")[0] == 404


def test_preview_jpeg_overlays_the_mask(served):
    frame = textured_frame()
    mask = np.zeros(frame.shape[:2], np.uint8)
    mask[50:100, 60:140] = 255
    assert get(served.url + "/preview/cam0.jpg")[0] == 503  # known camera, no frame yet
    for _ in range(4):
        served.store.update("cam0", frame, mask, latency_s=0.012)
    status, headers, body = get(served.url + "/preview/cam0.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == frame.shape

    inner = (slice(54, 96), slice(64, 136))  # inside the mask, away from edges (JPEG ringing)
    expected = frame[inner].astype(np.float32) * 0.5 + np.array(OVERLAY_BGR, np.float32) * 0.5
    assert np.abs(img[inner].astype(np.float32) - expected).mean() < 8
    red_minus_green = img[inner][..., 2].astype(int).mean() - img[inner][..., 1].astype(int).mean()
    frame_red_minus_green = frame[inner][..., 2].astype(int).mean() - frame[inner][..., 1].astype(int).mean()
    assert red_minus_green > frame_red_minus_green + 60  # the tint is visible
    outside = (slice(30, 46), slice(0, 160))  # below the text band, above the mask: untouched frame
    assert np.abs(img[outside].astype(np.float32) - frame[outside]).mean() < 8


def test_preview_unknown_camera_is_404(served):
    served.store.update("ghost", textured_frame(), None)
    assert get(served.url + "/preview/ghost.jpg")[0] == 404
    assert get(served.url + "/preview/..%2Fmetrics.jpg")[0] == 404


def test_preview_store_reports_fps_and_latency():
    store = PreviewStore(fps_window=2.0)
    assert store("c") is None
    frame = textured_frame()
    for _ in range(5):
        store.update("c", frame, None, latency_s=0.02)
    got_frame, got_mask, fps, latency = store("c")
    assert got_frame is frame and got_mask is None and fps == pytest.approx(2.5) and latency == 0.02


# ----------------------------------------------------------------------------- binding


def test_bind_conflict_is_a_user_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(UserError, match=f"127.0.0.1:{port}"):
            HttpServer(f"127.0.0.1:{port}").start()


def test_bad_bind_strings():
    assert parse_bind("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_bind(":9108") == ("0.0.0.0", 9108)
    assert parse_bind("[::1]:80") == ("::1", 80)
    for bad in ("localhost", "host:port", "1.2.3.4:70000"):
        with pytest.raises(UserError, match="host:port"):
            parse_bind(bad)


def test_address_reports_the_ephemeral_port():
    server = HttpServer("127.0.0.1:0").start()
    try:
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 503
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
