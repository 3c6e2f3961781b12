"""CurveZMQ end to end: keys from `sparsecam keygen`, a real daemon with ``security.curve``, and the real
`sparsecam subscribe` as a subprocess: an allowed key receives masks; another key, or none, receives nothing
and the subscriber exits 1 saying that no mask came."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_helpers import start_daemon, stop

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture()
def curve_daemon(tmp_path: Path):
    """Keys made by the CLI (server, alice allowed, mallory not) and a daemon serving with them."""
    for folder, name in (("server", "server"), ("alice", "alice"), ("mallory", "mallory")):
        r = cli("keygen", str(tmp_path / folder), "--name", name)
        assert r.returncode == 0, r.stderr
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "alice.key").write_bytes((tmp_path / "alice" / "alice.key").read_bytes())
    cfg = {"cameras": [{"id": "cam0", "source": "synthetic:size=160x120", "fps": 15}],
           "security": {"curve": True, "server_secret_key": str(tmp_path / "server" / "server.key_secret"),
                        "allowed_clients_dir": str(allowed)}}
    proc, ep = start_daemon(tmp_path, cfg)
    keys = {"server": tmp_path / "server" / "server.key", "alice": tmp_path / "alice" / "alice.key_secret",
            "mallory": tmp_path / "mallory" / "mallory.key_secret"}
    try:
        yield proc, ep, keys
    finally:
        code, err = stop(proc)
        assert code == 0, err[-3000:]


def subscribe(ep: str, *args: str) -> subprocess.Popen:
    """The real `sparsecam subscribe` as a running subprocess (every mask kept, whatever its age)."""
    return subprocess.Popen([sys.executable, "-m", "stream.cli", "subscribe", "--endpoint", ep, "--max-age", "0", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_an_allowed_key_receives_masks(curve_daemon) -> None:
    proc, ep, keys = curve_daemon
    code, out, err = finish(subscribe(ep, "--count", "2", "--timeout", "30", "--client-key", str(keys["alice"]),
                                      "--server-key", str(keys["server"])))
    assert code == 0, err[-2000:]
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("cam0 seq=") and "size=160x120" in line for line in lines), out
    assert "received 2 masks (rejected 0" in err
    assert proc.poll() is None


def test_a_key_the_daemon_does_not_allow_receives_nothing(curve_daemon) -> None:
    """mallory's key pair is valid but not in allowed_clients_dir; a plain subscriber has no key at all.
    Both complete no handshake: no mask, exit 1 with the no-mask message, while alice, subscribed at the
    same time, gets masks (so the daemon was publishing all along)."""
    proc, ep, keys = curve_daemon
    subs = {"alice": subscribe(ep, "--count", "3", "--timeout", "30", "--client-key", str(keys["alice"]),
                               "--server-key", str(keys["server"])),
            "mallory": subscribe(ep, "--count", "1", "--timeout", "6", "--client-key", str(keys["mallory"]),
                                 "--server-key", str(keys["server"])),
            "plain": subscribe(ep, "--count", "1", "--timeout", "6")}
    try:
        results = {name: finish(p) for name, p in subs.items()}
    finally:
        for p in subs.values():
            if p.poll() is None:
                p.kill()
                p.communicate()
    code, out, err = results.pop("alice")
    assert code == 0 and len(out.splitlines()) == 3, err[-2000:]
    for name, (code, out, err) in results.items():
        assert code == 1, (name, out, err)
        assert out == "", name
        assert f"sparsecam subscribe: no mask for 6 s from {ep} (received 0, rejected 0, stale 0)" in err, (name, err)
        assert "Traceback" not in err
    assert proc.poll() is None
