#!/usr/bin/env python3
"""Inference throughput and single-stream latency of a model in onnxruntime (GPU or CPU).

Measures, at each batch: masks per second through ``Engine.run`` (the graph and the mask
clean-up, as the daemon runs a model; numpy in, numpy out) and through the bare session with IO
binding (the graph alone, output buffers reused), and the p50/p99 of one call. Frames are uint8
BGR as captured, at ``--size`` (the graph converts and resizes them itself).

    python bench/throughput.py [--model M ...] [--size 640x480] [--batches 1 8 32] [--providers CUDAExecutionProvider] [--json FILE]
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
from stream.argtypes import integer, json_target, seconds, size_wxh  # noqa: E402
from stream.modelinfo import BUNDLED_MODEL  # noqa: E402
from stream.engine import Engine  # noqa: E402
from stream.errors import UserError  # noqa: E402
from stream.modelinfo import INPUT_NAME, MASK_OUTPUT  # noqa: E402
from stream.synthetic import SceneConfig, SyntheticScene  # noqa: E402


def bench_run(engine: Engine, frames: np.ndarray, seconds: float) -> np.ndarray:
    for _ in range(10):
        engine.run(frames)
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        engine.run(frames)
        times.append(time.perf_counter() - t0)
    return np.array(times)


def bench_iobinding(engine: Engine, frames: np.ndarray, seconds: float) -> np.ndarray:
    sess = engine.session
    binding = sess.io_binding()
    binding.bind_cpu_input(INPUT_NAME, frames)
    binding.bind_output(MASK_OUTPUT, "cpu")
    for _ in range(10):
        sess.run_with_iobinding(binding)
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        binding.bind_cpu_input(INPUT_NAME, frames)
        sess.run_with_iobinding(binding)
        binding.copy_outputs_to_cpu()
        times.append(time.perf_counter() - t0)
    return np.array(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, nargs="+", default=[BUNDLED_MODEL], help="exported .onnx models (default: the bundled one)")
    ap.add_argument("--size", type=size_wxh, default=(640, 480), help="frame size WxH fed to the model (default 640x480)")
    ap.add_argument("--batches", type=integer(1), nargs="+", default=[1, 8, 32], help="batch sizes (default 1 8 32)")
    ap.add_argument("--providers", nargs="+", help="default: the best available")
    ap.add_argument("--seconds", type=seconds, default=3.0, help="measuring time per batch size (default 3)")
    ap.add_argument("--json", type=json_target(), help="write the rows here")
    args = ap.parse_args()
    w, h = args.size
    scene = SyntheticScene(SceneConfig(width=w, height=h))
    pool = np.stack([scene.frame(t)[0] for t in range(max(args.batches))])
    results = []
    for model in args.model:
        engine = Engine(model, providers=args.providers)
        if args.providers and engine.choice.fallback_reason:  # figures for another provider than asked: refuse, not mislead
            raise UserError(f"--providers {' '.join(args.providers)}: {engine.choice.fallback_reason}; onnxruntime runs "
                            f"{model.name} on {engine.provider} here (leave out --providers to measure that)")
        print(f"{model.name}: {engine.info.precision} (model {engine.info.width}x{engine.info.height}) on {engine.provider}, frames {w}x{h}", flush=True)
        for b in args.batches:
            frames = np.ascontiguousarray(pool[:b])
            plain = bench_run(engine, frames, args.seconds)
            bound = bench_iobinding(engine, frames, args.seconds)
            row = {"model": model.name, "precision": engine.info.precision, "provider": engine.provider, "size": f"{w}x{h}", "batch": b,
                   "masks_per_s": round(b / float(np.median(plain)), 1), "masks_per_s_iobinding": round(b / float(np.median(bound)), 1),
                   "p50_ms": round(float(np.median(plain)) * 1000, 3), "p99_ms": round(float(np.percentile(plain, 99)) * 1000, 3),
                   "p99_ms_iobinding": round(float(np.percentile(bound, 99)) * 1000, 3)}
            results.append(row)
            print(f"  batch {b:3d}: {row['masks_per_s']:9.1f} masks/s (graph alone, IO binding {row['masks_per_s_iobinding']:9.1f}); "
                  f"call p50 {row['p50_ms']:.3f} ms p99 {row['p99_ms']:.3f} ms", flush=True)
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    run(main)
