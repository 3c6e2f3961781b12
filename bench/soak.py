#!/usr/bin/env python3
"""Soak test (not in CI): does a long-running daemon leak memory or file descriptors?

Runs ``sparsecam serve`` (a real subprocess) on the synthetic camera for ``--minutes`` with a
subscriber reading every mask. After a warm-up (``--warmup`` s, at most a third of the run)
it samples the daemon's resident memory (``/proc/<pid>/status`` VmRSS), open file
descriptors (``/proc/<pid>/fd``) and threads every ``--interval`` s, then prints start / end /
max RSS, RSS growth, fd and thread counts, masks received, sequence gaps and the longest
silence between two masks. Exits 1 when RSS grew more than ``--max-growth`` % or the fd
count grew (or the daemon died, or no mask came).

``--camera mjpeg --flap 20`` serves the camera from the local MJPEG test server instead and
unplugs it for ``--down`` s every 20 s: the reconnect path soaked for leaks (each reopen
creates a new FFmpeg capture).

    python bench/soak.py [--minutes 10] [--fps 30] [--camera synthetic|mjpeg] [--flap S] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cli import run  # noqa: E402
from stream.files import write_json  # noqa: E402
from stream.argtypes import bounded, frame_rate, json_target, seconds  # noqa: E402
from stream.client import MaskSubscriber  # noqa: E402
from stream.protocol import StatusMessage  # noqa: E402
from tests.daemon_helpers import free_port  # noqa: E402


def proc_sample(pid: int) -> dict[str, int]:
    """RSS (kB), open fds and threads of a running process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return {"rss_kb": fields["VmRSS"], "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": fields["Threads"]}


def start(tmp: Path, source: str, fps: float | None, log_path: Path) -> tuple[subprocess.Popen, str]:
    """The daemon with its stderr in a file (a pipe nobody reads would block it in a long run)."""
    cam: dict = {"id": "soak", "source": source, "timeout": 2.0}
    if fps is not None:
        cam["fps"] = fps
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = {"cameras": [cam], "publish": {"endpoints": [endpoint]}, "metrics": {"bind": f"127.0.0.1:{free_port()}"},
           "status_line": False}
    path = tmp / "soak.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARSECAM_") or k == "SPARSECAM_DATA"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--config", str(path)],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, endpoint


def main() -> int:
    ap = argparse.ArgumentParser(prog="python bench/soak.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=bounded(0.0, low_open=True, what="minutes > 0"), default=10.0, help="length of the run (default 10)")
    ap.add_argument("--warmup", type=bounded(0.0, what="seconds >= 0"), default=60.0, help="seconds before the first sample (at most a third of the run)")
    ap.add_argument("--interval", type=seconds, default=5.0, help="seconds between samples")
    ap.add_argument("--fps", type=frame_rate, default=30.0, help="camera frame rate")
    ap.add_argument("--camera", choices=("synthetic", "mjpeg"), default="synthetic")
    ap.add_argument("--flap", type=bounded(0.0, what="seconds >= 0"), default=0.0, help="mjpeg: unplug the camera every FLAP s (0 = never)")
    ap.add_argument("--down", type=seconds, default=4.0, help="mjpeg: seconds the camera stays unplugged")
    ap.add_argument("--max-growth", type=bounded(0.0, what="a percentage >= 0"), default=5.0, help="allowed RSS growth in %% (default 5)")
    ap.add_argument("--json", type=json_target(), help="write the figures and samples to this file")
    args = ap.parse_args()
    duration = args.minutes * 60
    warmup = min(args.warmup, duration / 3)

    server = None
    if args.camera == "mjpeg":
        from tests.mjpeg_server import MJPEGServer

        server = MJPEGServer(fps=args.fps).start()
        source, fps = server.url, None
    else:
        source, fps = "synthetic", args.fps
    tmp = Path(tempfile.mkdtemp(prefix="sparsecam-soak-"))
    log_path = tmp / "daemon.log"
    proc, endpoint = start(tmp, source, fps, log_path)
    print(f"soak: pid {proc.pid}, {args.camera} camera at {args.fps:g} fps, {args.minutes:g} min "
          f"(warm-up {warmup:.0f} s, sample every {args.interval:g} s); daemon log {log_path}", file=sys.stderr)

    samples: list[dict] = []
    masks = offline = 0
    longest_silence, last_mask = 0.0, None
    t0 = time.monotonic()
    next_sample, next_flap, up_again = t0 + warmup, t0 + args.flap if args.flap else None, None
    died = None
    try:
        with MaskSubscriber([endpoint], cameras=["soak"], max_age=None, include_status=True, rcvhwm=100) as sub, \
                tqdm(total=int(duration), unit="s", disable=None, desc="soak") as bar:
            while (now := time.monotonic()) - t0 < duration:
                bar.update(int(now - t0) - bar.n)
                if proc.poll() is not None:
                    died = proc.returncode
                    break
                msg = sub.recv(timeout=0.2)
                now = time.monotonic()
                if isinstance(msg, StatusMessage):
                    offline += msg.state == "offline"
                elif msg is not None:
                    masks += 1
                    if last_mask is not None and up_again is None:
                        longest_silence = max(longest_silence, now - last_mask)
                    last_mask = now
                if server is not None and next_flap is not None and now >= next_flap:
                    server.stop()
                    up_again, next_flap = now + args.down, now + args.flap
                if server is not None and up_again is not None and now >= up_again:
                    server.start()
                    up_again, last_mask = None, None  # the silence of a planned outage does not count
                if now >= next_sample:
                    next_sample += args.interval
                    s = proc_sample(proc.pid)
                    s["t"] = round(now - t0, 1)
                    samples.append(s)
                    bar.set_postfix(rss_mb=f"{s['rss_kb'] / 1024:.1f}", fds=s["fds"], masks=masks)
            gaps = sub.stats.gaps
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if server is not None:
            server.stop()

    problems = []
    if died is not None:
        problems.append(f"the daemon died with exit code {died} (log: {log_path})")
    if masks == 0:
        problems.append("no mask received")
    if len(samples) < 2:
        problems.append(f"only {len(samples)} sample(s): run longer or sample more often")
    report: dict = {"masks": masks, "gaps": gaps, "offline_status": offline, "longest_silence_s": round(longest_silence, 2),
                    "exit_code": proc.returncode, "samples": samples}
    if len(samples) >= 2:
        rss = [s["rss_kb"] for s in samples]
        fds = [s["fds"] for s in samples]
        growth = 100.0 * (rss[-1] - rss[0]) / rss[0]
        report.update(rss_start_mb=rss[0] / 1024, rss_end_mb=rss[-1] / 1024, rss_max_mb=max(rss) / 1024, rss_growth_pct=growth,
                      fds_start=fds[0], fds_end=fds[-1], fds_max=max(fds),
                      threads_start=samples[0]["threads"], threads_end=samples[-1]["threads"])
        print(f"RSS     start {rss[0] / 1024:7.1f} MB  end {rss[-1] / 1024:7.1f} MB  max {max(rss) / 1024:7.1f} MB  "
              f"growth {growth:+.2f} % (limit {args.max_growth:g} %)")
        print(f"fds     start {fds[0]:4d}  end {fds[-1]:4d}  max {max(fds):4d}   "
              f"threads start {samples[0]['threads']} end {samples[-1]['threads']}")
        if growth > args.max_growth:
            problems.append(f"RSS grew {growth:.2f} % > {args.max_growth:g} %")
        if fds[-1] > fds[0]:
            problems.append(f"open file descriptors grew from {fds[0]} to {fds[-1]}")
    elapsed = time.monotonic() - t0
    print(f"masks   {masks} in {elapsed:.0f} s ({masks / max(elapsed, 1e-9):.1f}/s), sequence gaps {gaps}, "
          f"longest silence {longest_silence:.2f} s, offline status {offline}, daemon exit {proc.returncode}")
    if args.json:
        write_json(args.json, report, indent=2)
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    if not problems:
        print("OK: no leak found")
    return 1 if problems else 0


if __name__ == "__main__":
    run(main)
