"""Hot model reload in the running daemon: a new model swaps in, a corrupt one is rejected."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import onnx

from stream.client import MaskSubscriber
from stream.modelinfo import BUNDLED_MODEL, PREFIX
from stream.synthetic import SceneConfig, write_cdnet_folder
from tests.daemon_helpers import scrape, start_daemon, stop


def with_version(src: Path, dst: Path, version: str) -> Path:
    """A copy of a model whose metadata says another model_version (same graph)."""
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == PREFIX + "model_version":
            prop.value = version
    onnx.save(model, str(dst))
    return dst


def move_in(src: Path, dst: Path) -> None:
    """Deploy like an operator should: write beside, then rename over (atomic)."""
    os.replace(src, dst)


def versions_seen(sub: MaskSubscriber, seconds: float) -> list[str]:
    seen, t_end = [], time.monotonic() + seconds
    while time.monotonic() < t_end:
        msg = sub.recv(timeout=0.2)
        if msg is not None:
            seen.append(msg.model_version)
    return seen


def wait_for_version(sub: MaskSubscriber, version: str, timeout: float = 15) -> bool:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        msg = sub.recv(timeout=0.2)
        if msg is not None and msg.model_version == version:
            return True
    return False


def reloads(proc) -> float:
    """The daemon's count of successful model reloads, scraped from /metrics."""
    return scrape(proc).get(("sparsecam_model_reloads_total", (("result", "success"),)), 0.0)


def test_reload_on_change_rejects_corrupt_and_sighup(tmp_path):
    live = tmp_path / "live.onnx"
    shutil.copy(BUNDLED_MODEL, live)
    original = onnx.load(str(live))
    v1 = {p.key: p.value for p in original.metadata_props}[PREFIX + "model_version"]
    frames = write_cdnet_folder(tmp_path / "scene", 20, SceneConfig(), start=4000, progress=False) / "input"
    # a looping folder is not live: every frame is published, so any gap would be a lost frame
    cam = {"id": "cam0", "source": str(frames), "loop": True}
    proc, ep = start_daemon(tmp_path, {"cameras": [cam], "model": {"path": str(live)}, "publish": {"wait_for_subscriber": 10, "sndhwm": 1000}})
    try:
        with MaskSubscriber([ep], max_age=None, rcvhwm=1000) as sub:
            assert wait_for_version(sub, v1), stop(proc)[1][-2000:]
            # 1. a new valid model moved in place -> headers follow, no gap in the stream
            move_in(with_version(live, tmp_path / "next.onnx", "test-v2"), live)
            assert wait_for_version(sub, "test-v2"), "the new model was not picked up"
            # 2. a corrupt model moved in -> rejected, test-v2 keeps serving
            (tmp_path / "bad.onnx").write_bytes(b"\x08\x07 definitely not onnx" * 100)
            move_in(tmp_path / "bad.onnx", live)
            seen = versions_seen(sub, 4)
            assert seen and set(seen) == {"test-v2"}, set(seen)
            # 3. SIGHUP reloads even when the file did not change: put the original back first
            onnx.save(original, str(tmp_path / "orig.onnx"))
            move_in(tmp_path / "orig.onnx", live)
            assert wait_for_version(sub, v1)
            before = reloads(proc)
            proc.send_signal(signal.SIGHUP)
            assert versions_seen(sub, 2)  # still serving after a reload of the same model
            t_end = time.monotonic() + 15
            while reloads(proc) == before and time.monotonic() < t_end:
                time.sleep(0.2)
            assert reloads(proc) == before + 1, "SIGHUP did not reload the unchanged model"
            assert sub.stats.gaps == 0, "frames were lost around the reloads"
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]
    assert "reload rejected" in err and "live.onnx" in err


def test_sighup_with_the_model_file_gone_says_so_and_keeps_serving(tmp_path: Path) -> None:
    """SIGHUP skipped a missing model file without a word."""
    live = tmp_path / "live.onnx"
    shutil.copy(BUNDLED_MODEL, live)
    proc, ep = start_daemon(tmp_path, {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 10}], "model": {"path": str(live)}})
    try:
        with MaskSubscriber([ep], max_age=None) as sub:
            assert sub.recv(timeout=20) is not None, stop(proc)[1][-2000:]
            live.unlink()
            proc.send_signal(signal.SIGHUP)
            assert versions_seen(sub, 2)  # still serving
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]
    assert f"SIGHUP: no model file at {live}; cam0 keeps serving" in err, err[-3000:]


def test_heartbeats_and_model_info_carry_each_cameras_own_model_version(tmp_path: Path) -> None:
    """Every camera's periodic 'online' said the first camera's model version, whatever it ran."""
    other = with_version(BUNDLED_MODEL, tmp_path / "b.onnx", "camera-b-model")
    cfg = {"cameras": [{"id": "a", "source": "synthetic", "fps": 10}, {"id": "b", "source": "synthetic", "fps": 10, "model": str(other)}],
           "publish": {"status_interval": 0.3}}
    proc, ep = start_daemon(tmp_path, cfg, "--duration", "15")
    beats: dict[str, set[str]] = {"a": set(), "b": set()}
    try:
        with MaskSubscriber([ep], max_age=None, include_status=True) as sub:
            t_end = time.monotonic() + 20
            while time.monotonic() < t_end:
                msg = sub.recv(timeout=0.5)
                if msg is not None and getattr(msg, "state", None) == "online" and msg.fields.get("model_version"):
                    beats[msg.camera].add(msg.fields["model_version"])
                    if min(len(v) for v in beats.values()) and t_end - time.monotonic() < 17:  # 3 s of heartbeats
                        break
        info = {dict(labels)["camera"]: dict(labels)["version"] for (name, labels) in scrape(proc) if name == "sparsecam_model_info"}
    finally:
        code, err = stop(proc)
    v1 = {p.key: p.value for p in onnx.load(str(BUNDLED_MODEL)).metadata_props}[PREFIX + "model_version"]
    assert beats == {"a": {v1}, "b": {"camera-b-model"}}, (beats, err[-2000:])
    assert info == {"a": v1, "b": "camera-b-model"}  # the metric showed one model for the whole daemon
