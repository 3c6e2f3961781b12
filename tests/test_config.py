"""The daemon's configuration: validation with field paths, env overrides, check-config, no secrets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import yaml

from stream.config import load_config
from stream.engine import GPU_PROVIDERS
from stream.errors import UserError
from stream.modelinfo import BUNDLED_MODEL

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SPARSECAM_")}
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=60, env={**e, **(env or {})})


def test_every_error_has_its_field_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: a b\n    size: huge\n  - id: ok\n    timeout: 0\nmodel:\n  intra_op_threads: -1\nsecurity:\n  curve: true\nbogus: 1\n")
    with pytest.raises(UserError) as info:
        load_config(bad, use_env=False)
    msg = str(info.value)
    for path in ("cameras.0.id", "cameras.0.size", "cameras.1.timeout", "model.intra_op_threads", "security", "bogus"):
        assert path in msg, (path, msg)


def test_env_overrides(tmp_path, monkeypatch):
    good = tmp_path / "c.yaml"
    good.write_text("publish:\n  encoding: png\n")
    monkeypatch.setenv("SPARSECAM_PUBLISH__ENCODING", "raw")
    monkeypatch.setenv("SPARSECAM_METRICS__BIND", "0.0.0.0:9999")
    monkeypatch.setenv("SPARSECAM_PUBLISH__ENDPOINTS", "[tcp://*:6000]")
    cfg = load_config(good)
    assert cfg.publish.encoding == "raw" and cfg.metrics.bind == "0.0.0.0:9999" and cfg.publish.endpoints == ["tcp://*:6000"]
    assert load_config(good, use_env=False).publish.encoding == "png"


def test_check_config_cli(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("cameras:\n  - id: door\n    source: rtsp://admin:hunter2@10.0.0.9/live\n")
    res = cli("check-config", str(good))
    assert res.returncode == 0 and "ok" in res.stdout and "door" in res.stdout
    assert "hunter2" not in res.stdout + res.stderr  # credentials never printed
    bad = tmp_path / "bad.yaml"
    bad.write_text("publish:\n  encoding: jpeg\n")
    res = cli("check-config", str(bad))
    assert res.returncode == 2 and "publish.encoding" in res.stderr and "Traceback" not in res.stderr
    res = cli("check-config", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "missing.yaml" in res.stderr
    res = cli("check-config", str(good), env={"SPARSECAM_PUBLISH__SNDHWM": "0"})
    assert res.returncode == 2 and "publish.sndhwm" in res.stderr and "SPARSECAM_PUBLISH__SNDHWM from the environment" in res.stderr
    # spelt as serve takes it, and the summary says where models, recordings and retraining go
    retrain = tmp_path / "retrain.yaml"
    retrain.write_text("model: {dir: models}\nrecording: {enabled: true, dir: rec}\nretrain: {auto_first: true, nightly_at: '03:00'}\n")
    res = cli("check-config", "--config", str(retrain))
    assert res.returncode == 0 and "models: models; recording: rec; retrain: auto_first, nightly at 03:00" in res.stdout, res.stdout + res.stderr
    assert "cam0 (synthetic:size=160x120, model models/cam0/current.onnx (MOG2 until it exists))" in res.stdout, res.stdout
    # each camera's own model is named: one with a model: path is not the one retrain writes
    retrain.write_text(f"cameras:\n  - {{id: door, source: synthetic, model: {BUNDLED_MODEL}}}\n  - {{id: gate, source: synthetic}}\n"
                       "model: {dir: models}\n")
    res = cli("check-config", str(retrain))
    assert f"door (synthetic, model {BUNDLED_MODEL})" in res.stdout and "gate (synthetic, model models/gate/current.onnx" in res.stdout, res.stdout
    res = cli("check-config", str(good), "--config", str(retrain))
    assert res.returncode == 2 and "give the configuration file once" in res.stderr
    assert "retrain: off" in cli("check-config", str(good)).stdout


@pytest.mark.parametrize("case", ["binary", "png", "env-yaml"])
def test_a_config_that_is_not_text_or_an_env_value_that_is_not_yaml_is_one_line(tmp_path, case):
    path, env = tmp_path / "c.yaml", {}
    if case == "binary":
        path.write_bytes(b"\xff\xfe\x00bin")
    elif case == "png":
        path = tmp_path / "mask.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    else:
        path.write_text("{}\n")
        env = {"SPARSECAM_PUBLISH__SNDHWM": "["}
    for command in ("check-config", "serve --duration 1 --config", "record --duration 1 --config"):
        res = cli(*command.split(), str(path), env=env)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert ("SPARSECAM_PUBLISH__SNDHWM" if case == "env-yaml" else "is not a text file") in res.stderr


def test_readme_example_config_validates():
    """The YAML in the README's Serving section is a valid configuration (docs match code)."""
    import yaml

    from stream.config import DaemonConfig

    text = (REPO / "README.md").read_text()
    block = text.split("```yaml\ncameras:", 1)[1].split("```", 1)[0]
    cfg = DaemonConfig.model_validate(yaml.safe_load("cameras:" + block))
    assert [c.id for c in cfg.cameras] == ["door", "lobby", "replay", "demo"]
    assert cfg.cameras[1].source == "0"  # a camera index


@pytest.mark.parametrize("config, words", [
    ({"publish": {"endpoints": ["tcp://nohost:x"]}}, "port 'x' must be an integer 1-65535"),
    ({"metrics": {"bind": "nonsense"}}, "must look like 127.0.0.1:9108"),
    ({"cameras": [{"id": "a", "source": "nosuch://x"}]}, "unsupported URL scheme"),
    ({"cameras": [{"id": "a", "source": "/nonexistent/video.mp4"}]}, "not found"),
    ({"cameras": [{"id": "a", "source": "synthetic:frames=abc"}]}, "is not a number"),
    ({"cameras": [{"id": "a", "model": "/nonexistent.onnx"}]}, "camera a: model /nonexistent.onnx does not exist"),
    ({"cameras": [{"id": "a", "roi": "/nonexistent.png"}]}, "camera a: roi /nonexistent.png does not exist"),
    ({"security": {"curve": True, "server_secret_key": "/nonexistent", "allowed_clients_dir": "/nonexistent"}},
     "CurveZMQ key file /nonexistent does not exist"),
    pytest.param({"model": {"require_gpu": True}}, "a GPU was required but onnxruntime offers no GPU provider",
                 marks=pytest.mark.skipif(bool(set(ort.get_available_providers()) & set(GPU_PROVIDERS)),
                                          reason="this onnxruntime has a GPU provider")),
])
def test_check_config_reports_what_serve_would_refuse(tmp_path, config, words):
    """The schema accepted these, so check-config said 'ok' and serve then refused them."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    res = cli("check-config", str(path))
    assert res.returncode == 2 and "would refuse it" in res.stderr and words in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "WARN" not in res.stderr
    served = cli("serve", "--duration", "1", "--config", str(path))
    assert served.returncode == 2 and "Traceback" not in served.stderr, served.stderr[-2000:]  # serve agrees


def test_model_dir_that_is_a_file_is_refused_by_check_config_and_serve(tmp_path):
    """serve used to start and wait forever on MOG2 masks for a model that could never appear."""
    afile = tmp_path / "models"
    afile.write_text("not a folder")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"dir": str(afile)}}))
    for command in ("check-config", "serve --duration 5 --config"):
        res = cli(*command.split(), str(path))
        assert res.returncode == 2 and f"model.dir {afile} is a file" in res.stderr, res.stderr[-2000:]


def test_min_frames_below_what_retrain_needs_is_refused(tmp_path):
    """retrain.min_frames 16-23 used to pass: the daemon then started a first training that retrain
    refused (it needs 16 to train + 8 held out) and never tried again."""
    from stream.recorder import RETRAIN_MIN_FRAMES
    from training.retrain import split_footage

    path = tmp_path / "c.yaml"
    path.write_text(f"retrain: {{min_frames: {RETRAIN_MIN_FRAMES - 1}}}\n")
    with pytest.raises(UserError, match="retrain.min_frames"):
        load_config(path, use_env=False)
    path.write_text(f"retrain: {{min_frames: {RETRAIN_MIN_FRAMES}}}\n")
    cfg = load_config(path, use_env=False)
    entries = [{"t": float(i), "file": f"{i}.jpg"} for i in range(cfg.retrain.min_frames)]
    train, held = split_footage(entries, 600)  # what the daemon would start with is enough for retrain
    assert len(train) + len(held) == RETRAIN_MIN_FRAMES


def test_recording_defaults_are_the_recorders():
    from stream.config import RecordingSection
    from stream.recorder import RecordPolicy

    assert RecordingSection().policy() == RecordPolicy()


def test_env_overrides_reach_list_items_and_empty_sections(tmp_path, monkeypatch):
    """SPARSECAM_CAMERAS__0__SOURCE was silently ignored (the cameras are a list), and so was any
    override under a section left empty in the file."""
    path = tmp_path / "c.yaml"
    path.write_text("cameras:\n  - {id: a, source: synthetic}\n  - {id: b, source: synthetic}\nmodel:\n")
    monkeypatch.setenv("SPARSECAM_CAMERAS__1__SOURCE", "synthetic:seed=3")
    monkeypatch.setenv("SPARSECAM_MODEL__CLEANUP", "false")
    cfg = load_config(path)
    assert [c.source for c in cfg.cameras] == ["synthetic", "synthetic:seed=3"] and cfg.model.cleanup is False


@pytest.mark.parametrize("var, words", [
    ("SPARSECAM_CAMERAS__2__SOURCE", "cameras is a list of 2; use an index 0-1 after CAMERAS__"),
    ("SPARSECAM_CAMERAS__SOURCE", "cameras is a list of 2"),
    ("SPARSECAM_STATUS_LINE__X", "status_line is a single value, not a section"),
])
def test_env_overrides_that_cannot_apply_are_one_line(tmp_path, monkeypatch, var, words):
    path = tmp_path / "c.yaml"
    path.write_text("cameras:\n  - {id: a, source: synthetic}\n  - {id: b, source: synthetic}\nstatus_line: true\n")
    monkeypatch.setenv(var, "x")
    with pytest.raises(UserError, match=re.escape(words)) as info:
        load_config(path)
    assert var in str(info.value)


def test_kubernetes_service_links_are_not_configuration(tmp_path, monkeypatch):
    """Kubernetes puts <SERVICE>_SERVICE_HOST/_PORT... into every pod for each Service of the namespace:
    a Service named sparsecam-grafana (or sparsecam, not headless) stopped the daemon with exit 2."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  cleanup: true\n")
    for var, value in [("SPARSECAM_GRAFANA_SERVICE_HOST", "10.0.0.7"), ("SPARSECAM_GRAFANA_SERVICE_PORT", "3000"),
                       ("SPARSECAM_GRAFANA_SERVICE_PORT_HTTP", "3000"), ("SPARSECAM_GRAFANA_PORT", "tcp://10.0.0.7:3000"),
                       ("SPARSECAM_GRAFANA_PORT_3000_TCP", "tcp://10.0.0.7:3000"), ("SPARSECAM_GRAFANA_PORT_3000_TCP_ADDR", "10.0.0.7"),
                       ("SPARSECAM_SERVICE_HOST", "10.0.0.8"), ("SPARSECAM_PORT_9108_TCP_PORT", "9108"),
                       ("SPARSECAM_MODEL__CLEANUP", "false")]:
        monkeypatch.setenv(var, value)
    assert load_config(path).model.cleanup is False  # the real override still applies
    monkeypatch.setenv("SPARSECAM_MODEL_CLEANUP", "false")  # a typo (one underscore) is still an error
    with pytest.raises(UserError, match="model_cleanup"):
        load_config(path)


@pytest.mark.parametrize("camera_id", ["..", ".", "a/b"])
def test_camera_id_is_the_protocols_rule(tmp_path, camera_id):
    """'..' passed the config's own pattern and became recordings/.. and <model.dir>/../current.onnx."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"cameras": [{"id": camera_id}]}))
    with pytest.raises(UserError, match=r"cameras\.0\.id.*invalid camera id"):
        load_config(path, use_env=False)


def test_pace_without_a_rate_on_a_synthetic_camera_is_refused(tmp_path):
    """`pace: true` on a synthetic source without fps passed check-config and ran unpaced."""
    path = tmp_path / "c.yaml"
    path.write_text("cameras:\n  - {id: a, source: 'synthetic:size=80x60', pace: true}\n")
    with pytest.raises(UserError, match="pace: true needs fps for a synthetic source"):
        load_config(path, use_env=False)
    for camera in ("{id: a, source: synthetic, pace: true, fps: 25}", "{id: a, source: 'synthetic:fps=25', pace: true}",
                   "{id: a, source: frames/, pace: true}"):  # a folder has a rate of its own (DEFAULT_FILE_FPS)
        path.write_text(f"cameras:\n  - {camera}\n")
        assert load_config(path, use_env=False).cameras[0].pace


@pytest.mark.parametrize("retrain, rest, words", [
    ("{auto_first: true}", "recording: {enabled: true}", "retrain.auto_first needs model.dir"),
    ("{auto_first: true}", "model: {dir: models}", "retrain.auto_first needs recording.enabled"),
    ("{nightly_at: '03:00'}", "recording: {enabled: true}", "retrain.nightly_at needs model.dir"),
    ("{nightly_at: '03:00'}", "model: {dir: models}", "retrain.nightly_at needs recording.enabled"),
])
def test_a_retrain_the_daemon_could_never_run_is_refused(tmp_path, retrain, rest, words):
    """auto_first without recording never started (it counts recorded frames) and either without model.dir
    ran the command with '--models None': silently, until someone wondered where the models were."""
    path = tmp_path / "c.yaml"
    path.write_text(f"retrain: {retrain}\n{rest}\n")
    with pytest.raises(UserError, match=words):
        load_config(path, use_env=False)
    path.write_text(f"retrain: {retrain}\nmodel: {{dir: models}}\nrecording: {{enabled: true}}\n")
    load_config(path, use_env=False)
    # a command of one's own that does not read the recordings needs none
    path.write_text("retrain: {nightly_at: '03:00', command: 'mytrain {camera} {models}'}\nmodel: {dir: models}\n")
    assert load_config(path, use_env=False).retrain.nightly_at == "03:00"


def test_check_config_no_env_ignores_the_overrides(tmp_path):
    """A bad SPARSECAM_* value fails check-config (as it would fail serve); --no-env checks the file alone."""
    path = tmp_path / "c.yaml"
    path.write_text("publish: {encoding: png}\n")
    env = {"SPARSECAM_PUBLISH__ENCODING": "jpeg"}
    with_env, no_env = cli("check-config", str(path), env=env), cli("check-config", "--no-env", str(path), env=env)
    assert with_env.returncode == 2 and "publish.encoding" in with_env.stderr and "SPARSECAM_PUBLISH__ENCODING" in with_env.stderr, with_env.stderr
    assert no_env.returncode == 0 and "ok" in no_env.stdout, no_env.stderr
