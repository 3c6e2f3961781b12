"""Per-camera region images (`cameras[].roi`): ignored areas are cleared from every published mask."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.client import MaskSubscriber
from stream.errors import UserError
from stream.roi import WatchRegion
from tests.daemon_helpers import REPO, start_daemon, stop


def _region(path: Path, w: int, h: int, ignore_left: int) -> Path:
    img = np.full((h, w), 255, np.uint8)
    img[:, :ignore_left] = 0
    assert cv2.imwrite(str(path), img)
    return path


def test_ignored_pixels_are_cleared_at_any_mask_size(tmp_path):
    region = WatchRegion(_region(tmp_path / "roi.png", 16, 12, ignore_left=4), "cam")
    mask = np.full((12, 16), 255, np.uint8)
    out = region.apply(mask)
    assert out.dtype == np.uint8 and not out[:, :4].any() and (out[:, 4:] == 255).all()
    assert (mask == 255).all()  # the input is left as it was
    big = region.apply(np.full((24, 32), 255, np.uint8))  # twice the size: the region is scaled with it
    assert not big[:, :8].any() and (big[:, 8:] == 255).all()
    for k in range(1, 40):  # a folder of images of many sizes: the resized regions kept stay few, each still right
        out = region.apply(np.full((12 * k, 16 * k), 255, np.uint8))
        assert not out[:, :4 * k].any() and (out[:, 4 * k:] == 255).all()
    assert len(region._sized) <= 8


def test_another_aspect_is_stretched_with_a_warning(tmp_path, caplog):
    region = WatchRegion(_region(tmp_path / "roi.png", 16, 16, ignore_left=8), "cam")
    with caplog.at_level(logging.WARNING, logger="sparsecam.roi"):
        out = region.apply(np.full((12, 32), 255, np.uint8))
    assert not out[:, :16].any() and out[:, 16:].all()
    assert "stretched" in caplog.text and "16x16" in caplog.text


def test_unreadable_or_all_black_region_is_refused(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(UserError, match="camera door: roi .*junk.png is not a readable image"):
        WatchRegion(junk, "door")
    black = _region(tmp_path / "black.png", 8, 8, ignore_left=8)
    with pytest.raises(UserError, match="all black"):
        WatchRegion(black, "door")


def test_daemon_publishes_nothing_in_the_ignored_area(tmp_path):
    """The synthetic camera (320x240 masks) with a 160x120 region ignoring the left half."""
    roi = _region(tmp_path / "roi.png", 160, 120, ignore_left=80)
    proc, ep = start_daemon(tmp_path, {"cameras": [{"id": "cam0", "source": "synthetic", "fps": 30, "roi": str(roi)}]}, "--duration", "20")
    try:
        with MaskSubscriber([ep], cameras=["cam0"], max_age=None) as sub:
            msgs = [m for m in (sub.recv(timeout=5) for _ in range(40)) if m is not None]
        assert len(msgs) >= 30, stop(proc)[1][-2000:]
        assert all(m.mask.shape == (240, 320) and not m.mask[:, :160].any() for m in msgs)
        assert sum(np.count_nonzero(m.mask[:, 160:]) for m in msgs) > 0  # the watched half still moves
        for m in msgs:
            assert m.fg_ratio == pytest.approx(np.count_nonzero(m.mask) / m.mask.size, abs=1e-6)
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]


def test_missing_region_file_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cameras:\n  - id: door\n    source: synthetic\n    roi: {tmp_path / 'nope.png'}\n")
    res = subprocess.run([sys.executable, "-m", "stream.cli", "serve", "--config", str(cfg), "--duration", "1"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "nope.png" in res.stderr and "door" in res.stderr and "Traceback" not in res.stderr
