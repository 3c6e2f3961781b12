"""Start `sparsecam serve` as a real subprocess with a YAML config, for the daemon tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent


_handed_out: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 that this test process has not handed out before.

    The socket is closed before the daemon binds, so the OS may offer the same port twice in a
    row: the publish endpoint and the metrics address of one daemon once got the same one."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def start_daemon(tmp_path: Path, config: dict, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Write ``config`` (free ports filled in) and start the daemon; returns (proc, endpoint).

    ``proc.metrics_url`` is the daemon's HTTP server (metrics, health, preview).
    """
    config = dict(config)
    publish = dict(config.get("publish", {}))
    if "endpoints" not in publish:
        publish["endpoints"] = [f"tcp://127.0.0.1:{free_port()}"]
    config["publish"] = publish
    config.setdefault("status_line", False)
    config.setdefault("metrics", {"bind": f"127.0.0.1:{free_port()}"})
    path = tmp_path / f"sparsecam-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPARSECAM_") or k == "SPARSECAM_DATA"}
    env = {**base, **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "serve", "--config", str(path), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    proc.metrics_url = f"http://{config['metrics']['bind']}" if config["metrics"].get("bind") else None  # type: ignore[attr-defined]
    return proc, publish["endpoints"][0]


def stop(proc: subprocess.Popen, timeout: float = 10) -> tuple[int, str]:
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def scrape(proc) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: {(name, sorted label items): value}."""
    text = urllib.request.urlopen(proc.metrics_url + "/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def metric(proc, name: str, **labels: str) -> float:
    return scrape(proc)[(name, tuple(sorted(labels.items())))]


def http_status(proc, path: str) -> int:
    try:
        return urllib.request.urlopen(proc.metrics_url + path, timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def http_json(proc, path: str) -> tuple[int, dict]:
    """(HTTP status, decoded JSON body) of a GET on the daemon's HTTP server, error statuses included."""
    try:
        with urllib.request.urlopen(proc.metrics_url + path, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
