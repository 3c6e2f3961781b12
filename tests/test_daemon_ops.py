"""The running daemon as an operator sees it: metrics the dashboards use, health, systemd notify."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from stream.client import MaskSubscriber
from tests.daemon_helpers import start_daemon, stop
from tests.test_deploy_files import deploy_metric_names

SYNTH = {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 30}]}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_masks(ep: str, n: int = 5) -> int:
    got = 0
    with MaskSubscriber([ep], max_age=None) as sub:
        t_end = time.monotonic() + 20
        while got < n and time.monotonic() < t_end:
            got += sub.recv(timeout=0.5) is not None
    return got


def test_scrape_has_every_metric_the_dashboards_and_alerts_use(tmp_path):
    proc, ep = start_daemon(tmp_path, SYNTH)
    try:
        assert wait_masks(ep) == 5, stop(proc)[1][-2000:]
        code, body = get(proc.metrics_url + "/metrics")
        assert code == 200
        names = {s.name for fam in text_string_to_metric_families(body) for s in fam.samples}
        base = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in names}
        missing = deploy_metric_names() - base - names
        assert not missing, f"used by deploy/ but not exposed: {sorted(missing)}"
        published = [s for fam in text_string_to_metric_families(body) for s in fam.samples if s.name == "sparsecam_masks_published_total"]
        assert published and published[0].labels["camera"] == "cam0" and published[0].value >= 5
        assert get(proc.metrics_url + "/healthz")[0] == 200
        code, ready = get(proc.metrics_url + "/readyz")
        assert code == 200, ready
        assert json.loads(ready)["ready"] is True
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]


def notify_lines(tmp_path, config: dict, seconds: float) -> list[str]:
    """Run the daemon under a stand-in systemd (NOTIFY_SOCKET, 1 s watchdog) for ``seconds`` after its
    READY (or 30 s without one), then SIGTERM; the sd_notify lines it sent, in order."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    proc, ep = start_daemon(tmp_path, config, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"})
    messages: list[str] = []

    def drain(seconds: float, until_ready: bool = False) -> None:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end and not (until_ready and any("READY=1" in m for m in messages)):
            try:
                messages.append(sock.recv(4096).decode())
            except socket.timeout:
                pass

    try:
        drain(30, until_ready=True)  # start-up takes longer on a loaded runner
        drain(seconds)
        proc.send_signal(signal.SIGTERM)
        drain(2)
    finally:
        code, err = stop(proc)
        sock.close()
    assert code == 0, err[-2000:]
    return [line for m in messages for line in m.splitlines()]


def test_sd_notify_ready_watchdog_stopping(tmp_path):
    lines = notify_lines(tmp_path, SYNTH, 8)
    assert "READY=1" in lines, lines
    assert lines.count("WATCHDOG=1") >= 3, lines  # every 0.5 s
    assert "STOPPING=1" in lines
    assert lines.index("READY=1") < lines.index("WATCHDOG=1") < lines.index("STOPPING=1")


def test_watchdog_fed_while_the_only_camera_is_down(tmp_path):
    """A camera that is unplugged is reopened by its capture thread; were the watchdog fed only
    while masks flow, systemd would kill the daemon every WatchdogSec and give up after 5 starts."""
    with socket.socket() as closed:  # a port nothing listens on: the stream camera stays down
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = {"cameras": [{"id": "cam0", "source": f"rtsp://127.0.0.1:{port}/live", "timeout": 1}]}
    lines = notify_lines(tmp_path, config, 6)
    assert "READY=1" in lines and "STOPPING=1" in lines, lines
    pings = lines[lines.index("READY=1"):lines.index("STOPPING=1")].count("WATCHDOG=1")
    assert pings >= 6, lines  # every 0.5 s of the 6 s, with no mask published
