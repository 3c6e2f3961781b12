"""The /preview page in a real headless Chromium: the frame with its red mask overlay renders and refreshes."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.needs import missing

from stream.httpserver import HttpServer, PreviewStore, render_preview

CHROMIUM = Path(os.environ.get("SPARSECAM_CHROMIUM", "/usr/bin/chromium"))
H, W = 240, 320


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        missing(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install -y chromium) to test the preview page")
    return CHROMIUM


def scene() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:H, 0:W]
    frame = np.stack([xx * 255 // W, yy * 255 // H, np.full((H, W), 90)], axis=-1).astype(np.uint8)
    frame[(yy // 10 + xx // 10) % 2 == 0] //= 2
    mask = np.zeros((H, W), np.uint8)
    mask[80:200, 100:260] = 255
    return frame, mask


def screenshot(browser: Path, url: str, tmp: Path) -> np.ndarray:
    shot = tmp / "shot.png"
    cmd = [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'profile'}", "--window-size=800,600", "--virtual-time-budget=3000",
           f"--screenshot={shot}", url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=60)  # chromium alone can take 15 s to start on 2 busy cores
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # chromium and the helpers it started, nothing else
        out, _ = proc.communicate()
        pytest.fail(f"chromium took over 60 s: {out[-1500:]}")
    img = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert img is not None, f"chromium wrote no screenshot (exit {proc.returncode}): {out[-1500:]}"
    return img


def serve_and_shoot(browser: Path, tmp: Path, have_frame: bool) -> tuple[np.ndarray, int]:
    frame, mask = scene()
    store = PreviewStore()
    if have_frame:
        store.update("cam0", frame, mask, latency_s=0.015)
    calls = 0
    lock = threading.Lock()

    def source(camera: str):
        nonlocal calls
        with lock:
            calls += 1
        return store(camera)

    with HttpServer("127.0.0.1:0", preview_source=source, cameras=["cam0"]) as server:
        shot = screenshot(browser, server.url + "/preview", tmp)
    return shot, calls


def locate(shot: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Best match of the rendered preview (below its text band) in the screenshot."""
    frame, mask = scene()
    template = render_preview(frame, mask, 0.0, 0.0, "cam0")[30:]
    res = cv2.matchTemplate(shot, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(res)
    return best, (x, y - 30)


def test_preview_renders_frame_with_overlay_and_refreshes(chromium, tmp_path):
    shot, calls = serve_and_shoot(chromium, tmp_path, have_frame=True)
    assert shot.shape == (600, 800, 3)
    best, (x, y) = locate(shot)
    assert best > 0.9, f"the preview image is not on the page (best match {best:.2f})"
    frame, mask = scene()
    shown = shot[y:y + H, x:x + W].astype(np.int32)
    fg, bg = mask == 255, mask == 0
    bg[:30] = False  # text band
    # red tint where the mask is 255, the plain frame elsewhere
    tint = (shown[..., 2] - shown[..., 1])[fg].mean() - (frame[..., 2].astype(np.int32) - frame[..., 1])[fg].mean()
    assert tint > 60, f"no visible red overlay on the mask (red-green gain {tint:.0f})"
    assert np.abs(shown[bg] - frame[bg]).mean() < 12
    assert calls >= 3, f"the page did not refresh its image ({calls} JPEG requests in 3 s)"


def test_preview_without_frames_shows_no_image(chromium, tmp_path):
    shot, calls = serve_and_shoot(chromium, tmp_path, have_frame=False)
    best, _ = locate(shot)
    assert calls >= 1 and best < 0.5, f"an image was found although no frame was served (match {best:.2f})"
    stale_caption = (np.abs(shot.astype(int) - (136, 136, 255)).max(axis=-1) < 40).sum()  # "cam0: no frame" in #f88
    assert stale_caption > 20, "the page does not mark the camera as having no frame"
