"""Models that fail: one that takes only its own frame size is refused when it loads and when it is
reloaded; a model that fails on frames while serving (out of GPU memory, say) costs those frames,
not the daemon."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from stream.client import MaskSubscriber
from stream.config import DaemonConfig
from stream.daemon import Daemon
from stream.engine import Engine
from stream.errors import UserError
from stream.modelinfo import BUNDLED_MODEL, PREFIX
from tests.daemon_helpers import scrape, start_daemon, stop
from tests.test_reload import versions_seen, wait_for_version


def own_size_only_model(dst: Path, version: str, fixed_dims: bool) -> Path:
    """A model with the bundled model's metadata whose graph only takes 1x120x160 frames: declared so
    (``fixed_dims``) or hidden behind symbolic dimensions and a fixed Reshape inside."""
    meta = {p.key: p.value for p in onnx.load(str(BUNDLED_MODEL)).metadata_props}
    meta[PREFIX + "model_version"] = version
    dims = [1, 120, 160, 3] if fixed_dims else ["N", "H", "W", 3]
    nodes = [helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMax", ["f", "axis"], ["channel_max"], keepdims=0),
             helper.make_node("Reshape", ["channel_max", "own_size"], ["score"]),
             helper.make_node("Greater", ["score", "threshold"], ["above"]),
             helper.make_node("Cast", ["above"], ["above8"], to=TensorProto.UINT8),
             helper.make_node("Mul", ["above8", "c255"], ["mask"])]
    inits = [helper.make_tensor("axis", TensorProto.INT64, [1], [3]),
             helper.make_tensor("own_size", TensorProto.INT64, [3], [1, 120, 160]),
             helper.make_tensor("threshold", TensorProto.FLOAT, [], [200.0]),
             helper.make_tensor("c255", TensorProto.UINT8, [], [255])]
    graph = helper.make_graph(nodes, "own_size_only", [helper.make_tensor_value_info("frames", TensorProto.UINT8, dims)],
                              [helper.make_tensor_value_info("mask", TensorProto.UINT8, None),
                               helper.make_tensor_value_info("score", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, meta)
    onnx.save(model, str(dst))
    return dst


def test_a_model_that_only_takes_its_own_size_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"fixed batch and height and width .*sparsecam export"):
        Engine(own_size_only_model(tmp_path / "fixed.onnx", "fixed", fixed_dims=True))
    with pytest.raises(UserError, match=r"fails on a test batch of 2 8\dx6\d frame"):
        Engine(own_size_only_model(tmp_path / "hidden.onnx", "hidden", fixed_dims=False))


def test_reloading_a_model_that_only_takes_its_own_size_keeps_the_old_one(tmp_path):
    """It passed the reload's test frame (at its own size), was swapped in, and the daemon died on the
    next 320x240 frame — and again after every restart."""
    live = tmp_path / "live.onnx"
    shutil.copy(BUNDLED_MODEL, live)
    v1 = {p.key: p.value for p in onnx.load(str(live)).metadata_props}[PREFIX + "model_version"]
    cam = {"id": "cam0", "source": "synthetic:size=320x240", "fps": 15}
    proc, ep = start_daemon(tmp_path, {"cameras": [cam], "model": {"path": str(live)}})
    try:
        with MaskSubscriber([ep], max_age=None) as sub:
            assert wait_for_version(sub, v1), stop(proc)[1][-2000:]
            os.replace(own_size_only_model(tmp_path / "next.onnx", "own-size", fixed_dims=False), live)
            time.sleep(3)
            seen = versions_seen(sub, 2)
            assert proc.poll() is None and seen and set(seen) == {v1}, set(seen)
            assert scrape(proc)[("sparsecam_model_reloads_total", (("result", "failure"),))] >= 1
    finally:
        code, err = stop(proc)
    assert code == 0 and "reload rejected" in err and "fails on a test batch of 2" in err, err[-3000:]


def test_a_model_failing_while_serving_costs_frames_not_the_daemon(caplog):
    engine = Engine(BUNDLED_MODEL)
    real_run, failing = engine.run, threading.Event()

    def run(frames, *args, **kwargs):
        if failing.is_set():
            raise RuntimeError("CUDA failure 2: out of memory")
        return real_run(frames, *args, **kwargs)

    engine.run = run  # type: ignore[method-assign]
    cfg = DaemonConfig.model_validate({"cameras": [{"id": "cam0", "source": "synthetic:size=160x120", "fps": 20, "timeout": 1}],
                                       "status_line": False, "metrics": {"enabled": False},
                                       "publish": {"endpoints": ["tcp://127.0.0.1:*"]}})
    daemon = Daemon(cfg, engine=engine)
    result: dict[str, int] = {}
    runner = threading.Thread(target=lambda: result.update(code=daemon.run(duration=12)))
    caplog.set_level(logging.INFO)
    runner.start()
    try:
        with MaskSubscriber(daemon.publisher.endpoints, include_status=True, max_age=None) as sub:
            def states(seconds: float) -> tuple[int, list[tuple[str, str]]]:
                masks, seen, t_end = 0, [], time.monotonic() + seconds
                while time.monotonic() < t_end:
                    msg = sub.recv(timeout=0.2)
                    if msg is not None and hasattr(msg, "mask"):
                        masks += 1
                    elif msg is not None:
                        seen.append((msg.state, msg.fields.get("reason", "")))
                return masks, seen

            assert states(1.5)[0] > 5
            failing.set()
            states(0.3)
            masks, seen = states(2.5)
            down = [reason for state, reason in seen if state == "offline"]
            assert masks == 0 and len(down) == 1 and down[0].startswith("no frame for "), seen
            assert down[0].endswith(" s: the model fails on its frames: CUDA failure 2: out of memory"), seen
            failing.clear()
            masks, seen = states(2.0)
            assert masks > 5 and ("online", "frames again") in seen
    finally:
        runner.join(20)
    assert result == {"code": 0}
    dropped = daemon.metrics.frames_dropped.labels("cam0", "inference")._value.get()
    assert dropped >= 20
    said = [r.getMessage() for r in caplog.records if "the model failed on its frame" in r.getMessage()]
    assert len(said) == 1 and "out of memory" in said[0]  # once, not per frame
