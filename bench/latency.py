#!/usr/bin/env python3
"""Latency benchmark: the daemon end to end against a bare ``Engine.run`` loop and OpenCV MOG2.

For each size (default 320x240 and 640x480), in one run on this machine:
- inference: a bare ``Engine.run`` loop on one frame (the model alone, onnxruntime, with the
  mask clean-up), and the clean-up alone (stream/maskclean.py) on the same frames' outputs;
- mog2: an OpenCV MOG2 ``apply`` loop on the same frames (the classic per-frame baseline);
- sustained fps: ``sparsecam serve`` (a real subprocess) on an unpaced synthetic camera,
  counted by a subscriber over tcp://127.0.0.1;
- end-to-end latency (capture -> subscriber, p50/p99): the same daemon with the camera
  paced at --fps, so frames do not queue.
Prints a table and the ratios; --json FILE writes {size: {fps, p50_ms, p99_ms, inference_ms, mog2_ms, ...}}.

    python bench/latency.py [--sizes 320x240 640x480] [--model M] [--seconds 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cli import run  # noqa: E402
from stream.files import write_json  # noqa: E402
from stream.argtypes import frame_rate, integer, json_target, seconds, size_wxh  # noqa: E402
from stream.client import MaskSubscriber  # noqa: E402
from stream.maskclean import clean_masks  # noqa: E402
from stream.modelinfo import BUNDLED_MODEL, INPUT_NAME, MASK_OUTPUT, SCORE_MODEL_OUTPUT  # noqa: E402
from stream.engine import Engine  # noqa: E402
from stream.synthetic import SceneConfig, SyntheticScene  # noqa: E402
from tests.daemon_helpers import start_daemon, stop  # noqa: E402


def timed_loop(fn, frames: list[np.ndarray], seconds: float) -> np.ndarray:
    """Per-call milliseconds of fn over frames (cycled) for about ``seconds``."""
    for f in frames[:5]:
        fn(f)
    out, t_end, i = [], time.perf_counter() + seconds, 0
    while time.perf_counter() < t_end:
        f = frames[i % len(frames)]
        t0 = time.perf_counter()
        fn(f)
        out.append((time.perf_counter() - t0) * 1000)
        i += 1
    return np.array(out)


def stage_means(metrics_url: str) -> dict[str, float]:
    """Mean duration (ms) of each pipeline stage, from the daemon's own /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(metrics_url + "/metrics", timeout=5).read().decode()
    sums, counts = {}, {}
    for fam in text_string_to_metric_families(body):
        for smp in fam.samples:
            if smp.name == "sparsecam_stage_duration_seconds_sum":
                sums[smp.labels["stage"]] = smp.value
            elif smp.name == "sparsecam_stage_duration_seconds_count":
                counts[smp.labels["stage"]] = smp.value
    return {k: 1000 * sums[k] / counts[k] for k in sums if counts.get(k)}


def daemon_run(tmp: Path, model: Path, size: str, fps: float | None, seconds: float, threads: int = 0) -> dict:
    cam = {"id": "bench", "source": f"synthetic:size={size}"}
    if fps is not None:
        cam["fps"] = fps
    proc, ep = start_daemon(tmp, {"cameras": [cam], "model": {"path": str(model), "intra_op_threads": threads}})
    lat, stamps = [], []
    try:
        with MaskSubscriber([ep], max_age=None, rcvhwm=100) as sub:
            t_end = time.monotonic() + seconds + 3
            warm = time.monotonic() + 3  # skip start-up
            while time.monotonic() < t_end:
                msg = sub.recv(timeout=0.5)
                if msg is None or time.monotonic() < warm:
                    continue
                lat.append(msg.latency * 1000)
                stamps.append(msg.t_publish)
            gaps = sub.stats.gaps
        stages = stage_means(proc.metrics_url)
    finally:
        code, err = stop(proc)
    if len(stamps) < 10:
        raise SystemExit(f"the daemon delivered only {len(stamps)} masks (exit {code}):\n{err[-2000:]}")
    lat_a = np.array(lat)
    return {"fps": (len(stamps) - 1) / (stamps[-1] - stamps[0]), "p50_ms": float(np.percentile(lat_a, 50)), "mean_ms": float(lat_a.mean()),
            "p99_ms": float(np.percentile(lat_a, 99)), "masks": len(stamps), "gaps": gaps, "stages_ms": stages}


def main() -> int:
    import cv2
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=size_wxh, nargs="+", default=[(320, 240), (640, 480)], help="frame sizes WxH (default 320x240 640x480)")
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="an exported .onnx model (default: the bundled one)")
    ap.add_argument("--seconds", type=seconds, default=8.0, help="measuring time per loop (default 8)")
    ap.add_argument("--fps", type=frame_rate, default=30.0,
                    help="camera rate for the latency run (default 30)")
    ap.add_argument("--threads", type=integer(0), default=0, help="onnxruntime intra-op threads, in the bare loop and the daemon (0 = default)")
    ap.add_argument("--json", type=json_target(), help="write {size: {fps, p50_ms, ...}} here")
    args = ap.parse_args()
    engine = Engine(args.model, intra_op_threads=args.threads)
    print(f"model {args.model.name} [{engine.model_version}] {engine.info.width}x{engine.info.height} on {engine.provider}", file=sys.stderr)
    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for w, h in args.sizes:
            size = f"{w}x{h}"
            scene = SyntheticScene(SceneConfig(width=w, height=h))
            frames = [scene.frame(t)[0] for t in range(60)]
            infer = timed_loop(engine.run, frames, args.seconds)
            cleanup = np.array([0.0])
            if engine.cleanup.active:
                outs = [engine.session.run([MASK_OUTPUT, SCORE_MODEL_OUTPUT], {INPUT_NAME: f[None]}) for f in frames]
                cleanup = timed_loop(lambda o: clean_masks(o[0], o[1], engine.info.threshold, engine.cleanup), outs, args.seconds / 4)
            mog = cv2.createBackgroundSubtractorMOG2()
            mog2 = timed_loop(mog.apply, frames, args.seconds)
            print(f"{size}: inference {np.median(infer):.2f} ms (clean-up {np.median(cleanup):.2f} of it), MOG2 {np.median(mog2):.2f} ms; running the daemon...", file=sys.stderr, flush=True)
            sustained = daemon_run(tmp, args.model, size, None, args.seconds, args.threads)
            paced = daemon_run(tmp, args.model, size, args.fps, args.seconds, args.threads)
            results[size] = {
                "fps": round(sustained["fps"], 1),
                "p50_ms": round(paced["p50_ms"], 2),
                "p99_ms": round(paced["p99_ms"], 2),
                "inference_ms": round(float(np.median(infer)), 2),
                "inference_p99_ms": round(float(np.percentile(infer, 99)), 2),
                "cleanup_ms": round(float(np.median(cleanup)), 3),
                "mog2_ms": round(float(np.median(mog2)), 2),
                # pipeline overhead: end to end minus the inference the daemon itself measured (means: the
                # daemon's stage histogram gives a mean; a p50 against it can come out negative)
                "overhead_ms": round(paced["mean_ms"] - paced["stages_ms"].get("inference", 0.0), 2),
                "overhead_vs_bare_loop_ms": round(paced["p50_ms"] - float(np.median(infer)), 2),
                "daemon_stages_ms": {k: round(v, 3) for k, v in paced["stages_ms"].items()},
                "inference_over_mog2": round(float(np.median(infer) / np.median(mog2)), 2),
                "paced_fps": round(paced["fps"], 1),
                "gaps_paced": paced["gaps"],
                "provider": engine.provider,
            }
    print("| size | sustained fps | e2e p50 ms | e2e p99 ms | inference ms (bare loop) | MOG2 ms | inference/MOG2 | overhead ms (e2e mean - daemon's inference mean) | e2e p50 - bare inference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, r in results.items():
        print(f"| {size} | {r['fps']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['inference_ms']:.2f} | {r['mog2_ms']:.2f} | "
              f"{r['inference_over_mog2']:.2f}x | {r['overhead_ms']:.2f} | {r['overhead_vs_bare_loop_ms']:.2f} |")
    for size, r in results.items():
        print(f"{size} daemon stages (mean ms): " + ", ".join(f"{k} {v:.2f}" for k, v in r["daemon_stages_ms"].items())
              + f"; mask clean-up {r['cleanup_ms']:.3f} ms of the inference")
    print(f"(latency measured with the camera paced at {args.fps:g} fps; sustained fps with an unpaced camera; provider {engine.provider})")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    run(main)
