"""CurveZMQ on the mask bus: allowed subscribers get masks, others get nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stream.client import MaskSubscriber
from stream.errors import UserError
from stream.publisher import MaskPublisher
from stream.security import keygen

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def keys(tmp_path):
    server_pub, server_sec = keygen(tmp_path / "server", "server")
    allowed = tmp_path / "allowed"
    ok_pub, ok_sec = keygen(tmp_path / "clients", "alice")
    _, bad_sec = keygen(tmp_path / "clients", "mallory")
    allowed.mkdir()
    (allowed / ok_pub.name).write_bytes(ok_pub.read_bytes())
    return {"server_pub": server_pub, "server_sec": server_sec, "allowed": allowed, "ok": ok_sec, "bad": bad_sec}


def publish_for(pub: MaskPublisher, subs: list[MaskSubscriber], seconds: float = 2.0) -> list[int]:
    """Publish masks for a while; return how many each subscriber received."""
    got = [0] * len(subs)
    mask = np.zeros((24, 32), np.uint8)
    mask[4:10, 5:20] = 255
    t_end = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < t_end:
        pub.publish_mask("cam0", seq, mask, time.time(), time.time(), "v1")
        seq += 1
        for i, sub in enumerate(subs):
            while (msg := sub.recv(timeout=0.01)) is not None:
                assert np.array_equal(msg.mask, mask)
                got[i] += 1
    return got


def test_only_allowed_keys_receive(keys):
    with MaskPublisher(["tcp://127.0.0.1:*"], curve_secret_key=keys["server_sec"], curve_allowed_dir=keys["allowed"]) as pub:
        ep = pub.endpoints[0]
        allowed = MaskSubscriber([ep], max_age=None, curve_client_key=keys["ok"], curve_server_key=keys["server_pub"])
        wrong_key = MaskSubscriber([ep], max_age=None, curve_client_key=keys["bad"], curve_server_key=keys["server_pub"])
        plain = MaskSubscriber([ep], max_age=None)
        try:
            got = publish_for(pub, [allowed, wrong_key, plain], seconds=4.0)  # CURVE handshakes on a loaded runner
        finally:
            for s in (allowed, wrong_key, plain):
                s.close()
    assert got[0] > 10
    assert got[1] == 0 and got[2] == 0


def test_keygen_never_overwrites_and_secret_is_private(tmp_path):
    pub, sec = keygen(tmp_path, "cam-host")
    assert pub.is_file() and sec.stat().st_mode & 0o077 == 0
    with pytest.raises(UserError, match="already exists"):
        keygen(tmp_path, "cam-host")


@pytest.mark.parametrize("name, words", [("a/b", "no folders"), ("../evil", "no folders"), ("", "file name stem"),
                                         (".hidden", "file name stem")])
def test_keygen_name_is_a_file_stem(tmp_path, name, words):
    with pytest.raises(UserError, match=words):
        keygen(tmp_path / "keys", name)
    assert not any(tmp_path.rglob("*.key*"))


def test_keygen_folder_that_is_a_file_or_cannot_be_made(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep")
    with pytest.raises(UserError, match="is a file"):
        keygen(afile, "server")
    with pytest.raises(UserError, match="cannot create the key folder"):
        keygen(Path("/proc/sparsecam-keys"), "server")
    assert afile.read_text() == "keep"


def test_curve_misconfiguration_is_a_user_error(keys, tmp_path):
    with pytest.raises(UserError, match="no \\*.key"):
        MaskPublisher(["tcp://127.0.0.1:*"], curve_secret_key=keys["server_sec"], curve_allowed_dir=tmp_path / "empty")
    with pytest.raises(UserError, match="secret"):
        MaskPublisher(["tcp://127.0.0.1:*"], curve_secret_key=keys["server_pub"], curve_allowed_dir=keys["allowed"])
    with pytest.raises(UserError, match="both"):
        MaskSubscriber(["tcp://127.0.0.1:5999"], curve_client_key=keys["ok"])


def test_keygen_cli(tmp_path):
    res = subprocess.run([sys.executable, "-m", "stream.cli", "keygen", str(tmp_path / "k"), "--name", "sub1"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "k" / "sub1.key").is_file() and (tmp_path / "k" / "sub1.key_secret").is_file()
    again = subprocess.run([sys.executable, "-m", "stream.cli", "keygen", str(tmp_path / "k"), "--name", "sub1"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
