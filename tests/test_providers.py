"""Which onnxruntime execution provider runs the model (stream/engine.py ``choose_providers``,
``load_session``; the config's ``model.providers`` and ``model.require_gpu``).

A provider this onnxruntime build does not offer (CUDA on the CPU-only wheel) falls back to the CPU,
and the warning says which was asked for and what is available; with ``require_gpu`` the daemon refuses
to start instead (exit 2, one line). Real onnxruntime sessions and a real daemon subprocess.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from stream.client import MaskSubscriber
from stream.engine import GPU_PROVIDERS, Engine, choose_providers
from stream.modelinfo import BUNDLED_MODEL
from tests.daemon_helpers import free_port, scrape, start_daemon, stop

CPU = "CPUExecutionProvider"


def unavailable_provider() -> str:
    """A real provider name that this onnxruntime build does not offer."""
    available = ort.get_available_providers()
    for name in ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider"):
        if name not in available:
            return name
    pytest.skip(f"every candidate provider is available here ({', '.join(available)}): no fallback to provoke")


def no_gpu() -> None:
    gpus = sorted(GPU_PROVIDERS & set(ort.get_available_providers()))
    if gpus:
        pytest.skip(f"this onnxruntime offers {', '.join(gpus)}: require_gpu may be met here")


def fallback_reason(missing: str) -> str:
    return f"not available in this onnxruntime build: {missing} (available: {', '.join(ort.get_available_providers())})"


def test_choose_providers_drops_what_is_missing_and_says_so() -> None:
    missing = unavailable_provider()
    assert choose_providers([missing]) == ([CPU], fallback_reason(missing))
    assert choose_providers([missing, CPU]) == ([CPU], fallback_reason(missing))
    assert choose_providers([CPU]) == ([CPU], None)
    asked, reason = choose_providers(None)  # the default: the best of TensorRT, CUDA, CPU that is there, CPU last
    assert reason is None and asked[-1] == CPU and set(asked) <= set(ort.get_available_providers())
    assert missing not in asked


def test_an_unavailable_provider_falls_back_to_the_cpu_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    missing = unavailable_provider()
    caplog.set_level(logging.INFO, logger="sparsecam.engine")
    eng = Engine(BUNDLED_MODEL, providers=[missing])
    assert eng.provider == CPU and eng.session.get_providers()[0] == CPU
    assert eng.choice.asked == [CPU] and eng.choice.fallback_reason == fallback_reason(missing)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"model {BUNDLED_MODEL.name} runs on {CPU}: {fallback_reason(missing)}"]
    mask = eng.run(np.zeros((2, 48, 64, 3), np.uint8))  # and it serves
    assert mask.shape == (2, 48, 64) and mask.dtype == np.uint8
    caplog.clear()
    Engine(BUNDLED_MODEL, providers=[CPU], warmup=False)  # what it offers: no warning
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_daemon_serves_on_the_cpu_when_its_provider_is_missing(tmp_path: Path) -> None:
    missing = unavailable_provider()
    cfg = {"cameras": [{"id": "cam0", "source": "synthetic:size=160x120", "fps": 15}], "model": {"providers": [missing]}}
    proc, ep = start_daemon(tmp_path, cfg)
    try:
        with MaskSubscriber([ep], max_age=None) as sub:
            t_end, msg = time.monotonic() + 30, None
            while msg is None and time.monotonic() < t_end and proc.poll() is None:
                msg = sub.recv(timeout=0.2)
        assert msg is not None, stop(proc)[1][-3000:]
        info = {dict(labels)["provider"] for (name, labels), v in scrape(proc).items() if name == "sparsecam_model_info" and v == 1}
        assert info == {CPU}
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]
    assert f"WARNING sparsecam.engine: model default.onnx runs on {CPU}: {fallback_reason(missing)}" in err, err[-3000:]
    assert f"-> default.onnx [{msg.model_version}] on {CPU}" in err


def refused(tmp_path: Path, model: dict) -> tuple[str, str]:
    """Start a daemon that must refuse to start; returns (its error line, its publish endpoint)."""
    port = free_port()
    cfg = {"cameras": [{"id": "cam0", "source": "synthetic:size=160x120", "fps": 15}], "model": model,
           "publish": {"endpoints": [f"tcp://127.0.0.1:{port}"]}}
    proc, ep = start_daemon(tmp_path, cfg, "--duration", "15")  # one that does not refuse ends, exit 0
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # it did not refuse: do not leave it running
            stop(proc)
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1], err[-3000:]
    with socket.socket() as s:  # it never bound its endpoint (nor left it bound)
        s.bind(("127.0.0.1", port))
    return errors[0], ep


def test_require_gpu_refuses_to_start_on_a_cpu_fallback(tmp_path: Path) -> None:
    missing = unavailable_provider()
    no_gpu()
    line, _ = refused(tmp_path, {"providers": [missing], "require_gpu": True})
    assert line == (f"sparsecam serve: error: a GPU was required but onnxruntime offers no GPU provider here "
                    f"({fallback_reason(missing)}); install onnxruntime-gpu with CUDA, or unset require_gpu")


def test_require_gpu_with_the_default_providers_on_a_cpu_only_onnxruntime(tmp_path: Path) -> None:
    """No provider named: the best available is the CPU, which is no GPU either."""
    no_gpu()
    line, _ = refused(tmp_path, {"require_gpu": True})
    expected = (f"sparsecam serve: error: a GPU was required but onnxruntime offers no GPU provider here "
                f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu with CUDA, or unset require_gpu")
    assert line == expected
    # cameras that all wait for their first model (MOG2 meanwhile) started on the CPU, and could never serve one
    line, _ = refused(tmp_path, {"dir": str(tmp_path / "models"), "require_gpu": True})
    assert line == expected
