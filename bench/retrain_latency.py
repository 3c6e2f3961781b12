#!/usr/bin/env python3
"""Live latency while a camera's model retrains on the same CPU host, against idle.

Runs `sparsecam serve` (a real subprocess: synthetic camera at --fps, recording on, models
in a temporary models folder) with a subscriber measuring end-to-end latency; first --seconds
idle, then --seconds while `sparsecam retrain --camera cam0` runs beside it at low priority
(nice 19 + --threads 1, as the systemd unit and the daemon's first training run it). Prints
p50/p99 and fps for both phases, the retrain's wall time and whether it promoted a model; a
retrain that failed (exit 2: it never trained) makes the run fail (exit 1), since its "during
retrain" figures would measure nothing.

    python bench/retrain_latency.py [--seconds 30] [--fps 30] [--steps 150] [--json FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cli import run  # noqa: E402
from stream.files import write_json  # noqa: E402
from stream.argtypes import frame_rate, integer, json_target, seconds  # noqa: E402
from stream.errors import UserError  # noqa: E402
from stream.client import MaskSubscriber  # noqa: E402
from stream.recorder import CameraRecorder, RecordPolicy  # noqa: E402
from stream.synthetic import SceneConfig, SyntheticScene  # noqa: E402
from tests.daemon_helpers import start_daemon, stop  # noqa: E402


def measure(sub: MaskSubscriber, seconds: float, until: subprocess.Popen | None = None) -> dict:
    lat, stamps, t_end = [], [], time.monotonic() + seconds
    while time.monotonic() < t_end and (until is None or until.poll() is None or not lat):
        msg = sub.recv(timeout=0.5)
        if msg is not None:
            lat.append(msg.latency * 1000)
            stamps.append(msg.t_publish)
    if len(lat) < 2:
        raise UserError(f"the daemon delivered {len(lat)} masks in {seconds:g} s: nothing to measure")
    a = np.array(lat)
    return {"masks": len(lat), "fps": round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 1),
            "p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=seconds, default=30.0, help="length of the idle phase (the retrain phase lasts the retrain)")
    ap.add_argument("--fps", type=frame_rate, default=30.0, help="camera rate (default 30)")
    ap.add_argument("--steps", type=integer(1), default=150, help="retrain steps (default 150)")
    ap.add_argument("--json", type=json_target(), help="write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rec_dir, models = tmp / "rec", tmp / "models"
        rec = CameraRecorder(rec_dir, "cam0", RecordPolicy(every=0))  # footage the daemon would have recorded
        scene = SyntheticScene(SceneConfig())
        for t in range(300):
            rec.offer(scene.frame(t * 3)[0], 1000.0 + t)
            time.sleep(0.002)
        rec.close()
        cfg = {"cameras": [{"id": "cam0", "source": "synthetic", "fps": args.fps}]}
        proc, ep = start_daemon(tmp, cfg)
        try:
            with MaskSubscriber([ep], max_age=None, rcvhwm=100) as sub:
                measure(sub, 3)  # warm-up
                idle = measure(sub, args.seconds)
                print(f"idle:    {idle}", flush=True)
                print(f"retraining cam0 ({args.steps} steps) beside the daemon; latency measured until it ends...", flush=True)
                cmd = [sys.executable, "-m", "stream.cli", "retrain", "--camera", "cam0", "--models", str(models),
                       "--recordings", str(rec_dir), "--steps", str(args.steps), "--threads", "1"]
                t0 = time.monotonic()
                retrain = subprocess.Popen(["nice", "-n", "19", *cmd], cwd=REPO, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True)
                busy = measure(sub, 3600, until=retrain)
                out, _ = retrain.communicate()
                wall = time.monotonic() - t0
                print(f"retrain: {busy}", flush=True)
        finally:
            code, err = stop(proc)
    outcome = {0: "promoted", 1: "trained, not promoted"}.get(retrain.returncode, "FAILED")
    result = {"idle": idle, "during_retrain": busy, "retrain_seconds": round(wall, 1), "retrain_exit": retrain.returncode,
              "promoted": retrain.returncode == 0, "p99_ratio": round(busy["p99_ms"] / idle["p99_ms"], 2)}
    print("| phase | fps | p50 ms | p99 ms |\n|---|---|---|---|")
    print(f"| idle | {idle['fps']} | {idle['p50_ms']} | {idle['p99_ms']} |")
    print(f"| during retrain ({wall:.0f} s, {outcome}) | {busy['fps']} | {busy['p50_ms']} | {busy['p99_ms']} |")
    print(f"p99 during retrain / idle: {result['p99_ratio']}x")
    print("retrain output (tail):\n" + "\n".join(out.strip().splitlines()[-6:]))
    if args.json:
        write_json(args.json, result)
    if outcome == "FAILED":
        print(f"the retrain failed (exit {retrain.returncode}): the 'during retrain' row measured no retraining", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run(main)
