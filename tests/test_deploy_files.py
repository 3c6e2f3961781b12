"""Static checks of deploy/: YAML/JSON parse, PromQL uses only the daemon's metric names,
promtool and systemd-analyze where installed, Dockerfile and unit file invariants.

``deploy_metric_names()`` is reused by the daemon test to compare against a live scrape.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "sparsecam.json"
ALERTS = COMPOSE / "alerts.yml"
UNIT = DEPLOY / "systemd" / "sparsecam.service"
EXAMPLE_CONFIG = DEPLOY / "systemd" / "sparsecam.yaml"
DOCKER = DEPLOY / "docker"

# What stream/metrics.py exposes (base names: histograms without _bucket/_sum/_count).
DAEMON_METRICS = {
    "sparsecam_frames_captured_total",
    "sparsecam_masks_published_total",
    "sparsecam_frames_dropped_total",
    "sparsecam_camera_reconnects_total",
    "sparsecam_model_reloads_total",
    "sparsecam_publish_bytes_total",
    "sparsecam_end_to_end_latency_seconds",
    "sparsecam_stage_duration_seconds",
    "sparsecam_camera_up",
    "sparsecam_camera_ended",
    "sparsecam_last_frame_timestamp_seconds",
    "sparsecam_queue_depth",
    "sparsecam_foreground_ratio",
    "sparsecam_model_info",
}
METRIC_RE = re.compile(r"sparsecam_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMTOOL_MISSING = "promtool not installed (Debian package 'prometheus'); skipped, also when CI is set"


# ----------------------------------------------------------------------------- PromQL helpers
def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def dashboard_exprs() -> list[str]:
    """Every PromQL query in the dashboard: panel targets and template variable queries."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [v for k, v in _walk(dash) if k == "expr" and isinstance(v, str)]
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def metric_base_name(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def deploy_metric_names() -> set[str]:
    """sparsecam_* metric names that the dashboard and the alert rules query (histogram base names)."""
    return {metric_base_name(m) for expr in dashboard_exprs() + alert_exprs() for m in METRIC_RE.findall(expr)}


def test_metric_name_extraction():
    names = {metric_base_name(m) for m in METRIC_RE.findall(
        'histogram_quantile(0.9, sum by (le) (rate(sparsecam_stage_duration_seconds_bucket{stage="infer"}[1m])))'
        " / sparsecam_end_to_end_latency_seconds_count + sparsecam_camera_up")}
    assert names == {"sparsecam_stage_duration_seconds", "sparsecam_end_to_end_latency_seconds", "sparsecam_camera_up"}


def test_dashboard_and_alerts_use_only_daemon_metrics():
    used = deploy_metric_names()
    assert used <= DAEMON_METRICS, f"unknown metric names: {sorted(used - DAEMON_METRICS)}"
    assert used == DAEMON_METRICS, f"metrics nowhere on the dashboard or in alerts: {sorted(DAEMON_METRICS - used)}"


# ----------------------------------------------------------------------------- YAML / JSON
@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.y*ml")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path):
    docs = list(yaml.safe_load_all(path.read_text()))  # k8s files may hold several documents
    assert docs and all(isinstance(d, dict) and d for d in docs)


def test_dashboard_panels():
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    ds = yaml.safe_load((COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    for p in panels:
        assert p["datasource"]["uid"] == ds["uid"], p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
    exprs = " ".join(dashboard_exprs())
    for needle in ["rate(sparsecam_masks_published_total", "time() - sparsecam_last_frame_timestamp_seconds",
                   "sparsecam_model_info", "rate(sparsecam_publish_bytes_total", "sparsecam_frames_dropped_total",
                   "rate(sparsecam_stage_duration_seconds_bucket", "sparsecam_foreground_ratio", "sparsecam_camera_up"]:
        assert needle in exprs, needle
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le, camera) (rate(sparsecam_end_to_end_latency_seconds_bucket" in exprs
    provider = yaml.safe_load((COMPOSE / "grafana/provisioning/dashboards/dashboards.yml").read_text())["providers"][0]
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_alert_rules():
    rules = {r["alert"]: r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert rules["SparsecamCameraDown"]["expr"].startswith("sparsecam_camera_up == 0 unless sparsecam_camera_ended == 1") and rules["SparsecamCameraDown"]["for"] == "1m"
    stale = rules["SparsecamStaleFrames"]["expr"]  # only for a camera up and with a frame seen (promtool cases cam2, clip0)
    assert "time() - sparsecam_last_frame_timestamp_seconds > 30" in stale
    assert "and sparsecam_last_frame_timestamp_seconds > 0" in stale and "and sparsecam_camera_up == 1" in stale
    assert rules["SparsecamLatencyP99High"]["for"] == "5m"
    assert "histogram_quantile(0.99" in rules["SparsecamLatencyP99High"]["expr"]
    assert 'result="failure"' in rules["SparsecamModelReloadFailed"]["expr"]
    assert all(r["labels"]["severity"] in ("warning", "critical") for r in rules.values())


def test_compose_wiring():
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    svc = compose["services"]
    build = svc["sparsecam"]["build"]
    context = (COMPOSE / build["context"]).resolve()
    assert context == REPO and (context / build["dockerfile"]).is_file()
    assert {"5556:5556", "9108:9108"} <= set(svc["sparsecam"]["ports"])
    assert svc["prometheus"]["image"].startswith("prom/prometheus") and svc["grafana"]["image"].startswith("grafana/grafana")
    for name in ("prometheus", "grafana"):
        for volume in svc[name]["volumes"]:
            src = volume.split(":", 1)[0]
            if src.startswith("."):
                assert (COMPOSE / src).exists(), f"{name} mounts missing {src}"
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "sparsecam")
    assert job["scrape_interval"] == "5s"
    assert job["static_configs"][0]["targets"] == ["sparsecam:9108"]
    assert prom["rule_files"] == ["alerts.yml"]


# ----------------------------------------------------------------------------- promtool
def _promtool(*args: str, cwd: Path = COMPOSE) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip(PROMTOOL_MISSING)
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml"),
                                  ("test", "rules", "alerts_test.yml")], ids=" ".join)
def test_promtool(args):
    res = _promtool(*args)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dashboard_promql_syntax(tmp_path: Path):
    """Each dashboard query (Grafana variables filled in) parses as a recording rule."""
    fill = {"$camera": ".*", "$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        if expr.startswith("label_values("):  # a Grafana function, not PromQL
            expr = METRIC_RE.search(expr).group(0)
        for var, value in fill.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unfilled Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = _promtool("check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


# ----------------------------------------------------------------------------- Dockerfiles
def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        buf += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def _pip_installs(instrs: list[tuple[str, str]]) -> list[str]:
    cmds = []
    for word, args in instrs:
        if word == "RUN":
            cmds += [c.strip() for c in re.split(r"&&|;", args) if re.search(r"\bpip3? install\b", c)]
    return cmds


def _extras(pip_cmds: list[str]) -> set[str]:
    return {e.strip() for cmd in pip_cmds for group in re.findall(r"\.\[([^\]]*)\]", cmd) for e in group.split(",")}


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfile_common(name: str):
    instrs = dockerfile_instructions(DOCKER / name)
    users = [a for w, a in instrs if w == "USER"]
    assert users, "no USER"
    assert users[-1].split(":")[0] not in ("root", "0"), f"runs as {users[-1]}"
    health = [a for w, a in instrs if w == "HEALTHCHECK"]
    assert len(health) == 1 and "http://127.0.0.1:9108/readyz" in health[0]
    cmd = json.loads(health[0][health[0].index("CMD") + 3:].strip())
    assert cmd[:2] == ["python", "-c"]
    compile(cmd[2], "HEALTHCHECK", "exec")
    expose = {p for w, a in instrs if w == "EXPOSE" for p in a.split()}
    assert {"5556", "9108"} <= expose
    assert [json.loads(a) for w, a in instrs if w == "ENTRYPOINT"][-1] == ["sparsecam", "serve"]
    env = " ".join(a for w, a in instrs if w == "ENV")
    assert "SPARSECAM_PUBLISH__ENDPOINTS='[tcp://*:5556]'" in env and "SPARSECAM_METRICS__BIND='0.0.0.0:9108'" in env
    for w, a in instrs:  # the build context is the repository root
        if w == "COPY" and not a.startswith("--from"):
            for src in a.split()[:-1]:
                assert (REPO / src).exists(), f"{name}: COPY {src} not in the repository"
    pips = _pip_installs(instrs)
    assert pips and not any(re.search(r"\btorch\b", c) for c in pips), pips


def test_dockerfile_cpu_installs_cpu_extra_only():
    instrs = dockerfile_instructions(DOCKER / "Dockerfile.cpu")
    assert all(a.startswith("${PYTHON_IMAGE}") or a.startswith("python:3.12-slim") for w, a in instrs if w == "FROM")
    assert ("ARG", "PYTHON_IMAGE=python:3.12-slim") in instrs
    pips = _pip_installs(instrs)
    assert _extras(pips) == {"cpu"}
    joined = " ".join(pips)
    assert not re.search(r"\btorch\b|onnxruntime-gpu|\btrain\b", joined), joined


def test_dockerfile_gpu_installs_gpu_extra_only():
    instrs = dockerfile_instructions(DOCKER / "Dockerfile.gpu")
    base = dict(a.split("=", 1) for w, a in instrs if w == "ARG" and "=" in a)["CUDA_IMAGE"]
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+\.\d+-cudnn-runtime-ubuntu[\d.]+", base)
    assert m and m.group(1) in ("12", "13"), base
    pips = _pip_installs(instrs)
    assert _extras(pips) == {"gpu"}
    joined = " ".join(pips)
    assert not re.search(r"\bonnxruntime\b(?!-gpu)|\btorch\b", joined), joined


def test_dockerfile_train_has_cuda_torch_train_and_gpu_extras():
    """The image deploy/k8s/retrain-cronjob.yaml runs: torch from PyTorch's CUDA index first, then
    '.[train,gpu]' (never 'cpu' beside it), the code retrain needs, a non-root user."""
    instrs = dockerfile_instructions(DOCKER / "Dockerfile.train")
    args = dict(a.split("=", 1) for w, a in instrs if w == "ARG" and "=" in a)
    cuda = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+\.\d+-cudnn-runtime-ubuntu[\d.]+", args["CUDA_IMAGE"])
    assert cuda and args["TORCH_INDEX"].endswith(f"/cu{cuda.group(1)}0"), (args["CUDA_IMAGE"], args["TORCH_INDEX"])
    pips = _pip_installs(instrs)
    assert re.search(r'"torch==\$\{TORCH_VERSION\}" --index-url "\$\{TORCH_INDEX\}"', pips[0]), pips
    assert _extras(pips) == {"train", "gpu"}
    copied = {src for w, a in instrs if w == "COPY" and not a.startswith("--from") for src in a.split()[:-1]}
    assert {"stream", "training", "export", "pyproject.toml"} <= copied and all((REPO / c).exists() for c in copied)
    assert [a for w, a in instrs if w == "USER"][-1].split(":")[0] not in ("root", "0")
    assert json.loads([a for w, a in instrs if w == "ENTRYPOINT"][-1]) == ["sparsecam"]


def test_every_image_the_manifests_use_has_a_dockerfile():
    images = set(re.findall(r"image:\s*(sparsecam:[\w.-]+)", " ".join(p.read_text() for p in (REPO / "deploy").rglob("*.y*ml"))))
    built = {f"sparsecam:{p.suffix[1:]}" for p in DOCKER.glob("Dockerfile.*")}
    assert images and images <= built, (images, built)


# ----------------------------------------------------------------------------- config
def _dockerfile_env(name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for w, a in dockerfile_instructions(DOCKER / name):
        if w == "ENV":
            for key, value in re.findall(r"(\w+)=('[^']*'|\"[^\"]*\"|\S+)", a):
                env[key] = value.strip("'\"")
    return env


@pytest.mark.parametrize("dockerfile", [None, "Dockerfile.cpu", "Dockerfile.gpu"])
def test_example_config_validates(dockerfile: str | None, monkeypatch):
    """The example config is valid as shipped and under each image's SPARSECAM_* overrides."""
    from stream.config import load_config

    for key in [k for k in os.environ if k.startswith("SPARSECAM_") and k != "SPARSECAM_DATA"]:
        monkeypatch.delenv(key)
    env = _dockerfile_env(dockerfile) if dockerfile else {}
    for key, value in env.items():
        if key.startswith("SPARSECAM_"):
            monkeypatch.setenv(key, value)
    cfg = load_config(EXAMPLE_CONFIG)
    if dockerfile:
        assert cfg.publish.endpoints == ["tcp://*:5556"]
        assert "0.0.0.0" in str(cfg.metrics.bind) and "9108" in str(cfg.metrics.bind)
    else:
        assert cfg.publish.endpoints == ["tcp://127.0.0.1:5556"]
        assert "127.0.0.1" in str(cfg.metrics.bind) and "9108" in str(cfg.metrics.bind)


# ----------------------------------------------------------------------------- systemd
def unit_entries(path: Path = UNIT) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def test_unit_file_settings():
    svc = dict(unit_entries()["Service"])
    expected = {"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "10", "Restart": "on-failure", "RestartSec": "2",
                "User": "sparsecam", "Group": "sparsecam", "TimeoutStopSec": "5", "NoNewPrivileges": "yes", "SuccessExitStatus": "130",
                "ProtectSystem": "strict", "PrivateTmp": "yes", "ReadWritePaths": "/var/lib/sparsecam",
                "ExecReload": "/bin/kill -HUP $MAINPID",
                "ExecStart": "/opt/sparsecam/.venv/bin/sparsecam serve --config /etc/sparsecam/sparsecam.yaml"}
    assert {k: svc.get(k) for k in expected} == expected
    assert "video" in svc["SupplementaryGroups"].split()
    assert "PrivateDevices" not in svc  # would hide /dev/video* and the GPU
    # before systemd 252 ProtectClock= implied DeviceAllow=char-rtc, closing /dev/video* and /dev/nvidia* (systemd#18142)
    for unit in (UNIT, UNIT.parent / "sparsecam-retrain@.service"):
        entries = dict(unit_entries(unit)["Service"])
        assert "ProtectClock" not in entries and "DeviceAllow" not in entries, unit.name
        assert entries["SystemCallFilter"] == "~@clock"
    assert svc["RuntimeDirectory"] == "sparsecam"  # ipc:///run/sparsecam/...: the one writable place for a socket
    assert "useradd --system" in UNIT.read_text() and "useradd --system" in (DEPLOY / "README.md").read_text()


FATAL_VERIFY = re.compile(r"Unknown key|Unknown section|Invalid|Failed to parse|failed to load|Bad message|Missing '='|\.service:\d+:")


def _verify(path: Path) -> list[str]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (Debian package 'systemd'); unit syntax not verified")
    res = subprocess.run([exe, "verify", str(path)], capture_output=True, text=True, timeout=60)
    # Tolerated: complaints about this machine (no /opt/sparsecam, no sparsecam user, no systemd running).
    return [ln for ln in (res.stdout + res.stderr).splitlines() if FATAL_VERIFY.search(ln)]


def test_systemd_analyze_verify(tmp_path: Path):
    unit = tmp_path / "sparsecam.service"
    shutil.copy(UNIT, unit)
    assert _verify(unit) == []
    for name in ("sparsecam-retrain@.service", "sparsecam-retrain@.timer"):  # the nightly retrain
        shutil.copy(UNIT.parent / name, tmp_path / name)
    shutil.copy(tmp_path / "sparsecam-retrain@.service", tmp_path / "sparsecam-retrain@cam0.service")
    shutil.copy(tmp_path / "sparsecam-retrain@.timer", tmp_path / "sparsecam-retrain@cam0.timer")
    assert _verify(tmp_path / "sparsecam-retrain@cam0.service") == []
    assert _verify(tmp_path / "sparsecam-retrain@cam0.timer") == []
    # the check can fail: a typo and a bad value in a copy are caught
    broken = tmp_path / "broken" / "sparsecam.service"
    broken.parent.mkdir()
    broken.write_text(UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes\nWatchdogSek=10"))
    bad = _verify(broken)
    assert any("WatchdogSek" in ln for ln in bad) and any("sometimes" in ln for ln in bad), bad
