#!/usr/bin/env python3
"""Quality benchmark: sparsecam against classic methods on the real labeled sets.

For each set with ground truth it trains a model on that set's own frames with no labels
(frames outside the scored ones where the set allows), evaluates it under the CDnet
protocol with the threshold the model chose itself, and evaluates mog2, knn, mog2-median,
rpca (and subsense, pawcs when pybgs is importable) in the same run. Prints a markdown
table, draws OUT/quality.png (recall against precision per set: sparsecam's score over
thresholds, its own point and each classic method's) and, with --json, writes
{set: {method: {f, recall, precision, pwc, ...}}}.

    python bench/quality.py [--data DIR] [--set NAME ...] [--json FILE] [--steps N] [--seeds K]

--seeds K trains K models per set (seeds 0..K-1) to show how much F moves between training
runs; the table keeps seed 0 and adds the mean and range.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cli import check_runs, replace_run, run, train_run  # noqa: E402
from stream.files import write_json  # noqa: E402
from stream.argtypes import integer, json_target  # noqa: E402
from stream.errors import UserError  # noqa: E402
from training.data import default_data_root  # noqa: E402
from training.evaluate import evaluate, plot_panel  # noqa: E402

# Which frames each set trains on (1-based, inclusive; None = all), and why.
TRAIN_FRAMES: dict[str, tuple[tuple[int, int] | None, str]] = {
    "cdnet_baseline_highway": ((1, 469), "frames 1-469, all before the temporal ROI (none scored)"),
    "cdnet_jitter_traffic": (None, "all 101 frames (the slice has no unscored frames); labels unused"),
    "wallflower_wavingtrees": ((1, 247), "frames 1-247, the scored frame 248 excluded"),
}
CLASSIC = ["mog2", "knn", "mog2-median", "rpca"]


def pybgs_available() -> bool:
    try:
        import pybgs  # noqa: F401
    except ImportError:
        return False
    return True


def run_dir(out: Path, name: str, seed: int = 0) -> Path:
    """Where the run of ``name`` with ``seed`` goes under --out."""
    return out / (name if seed == 0 else f"{name}-seed{seed}")


def train_model(name: str, root: Path, out: Path, steps: int | None, input_mode: str | None = None, seed: int = 0) -> tuple[Path, dict]:
    from training.train import TrainConfig

    frames, _ = TRAIN_FRAMES.get(name, (None, ""))
    overrides = {"steps": steps} if steps is not None else {}
    if input_mode:
        overrides["input_mode"] = input_mode
    cfg = TrainConfig(footage=[str(root)], frame_range=frames, seed=seed, **overrides)  # checked as `sparsecam train` checks them
    run = run_dir(out, name, seed)
    replace_run(run)
    t0 = time.time()
    summary = train_run(cfg, run)
    summary["wall_seconds"] = round(time.time() - t0, 1)
    return run / "model.pt", summary


def row(result: dict) -> dict:
    m = result["metrics"]
    out = {k: round(float(m[k]), 4) for k in ("f", "recall", "precision", "specificity", "fpr", "fnr", "pwc", "shadow_fp_share")}
    out["ms_per_frame"] = round(float(result.get("ms_per_frame") or 0.0), 2)
    if "oracle" in result:
        out["oracle_f"] = round(float(result["oracle"]["f"]), 4)
        out["oracle_threshold"] = round(float(result["oracle"]["threshold"]), 4)
        out["threshold"] = round(float(result["threshold"]), 4)
    if "pr_curve" in result:
        out["pr_curve"] = result["pr_curve"]
    return out


def plot_results(results: dict, path: Path) -> Path:
    """Recall against precision per set: sparsecam's score over thresholds, its own point, each classic method."""
    from training.plots import save_pr_plot

    panels = []
    for name, res in results.items():
        own = res["sparsecam"]
        methods = {f"sparsecam (threshold {own['threshold']:.3f})": own} | {m: r for m, r in res.items() if m != "sparsecam"}
        panels.append(plot_panel(name, methods, own.get("pr_curve")))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_pr_plot(panels, path)
    return path


def add_set_args(ap: argparse.ArgumentParser) -> None:
    """--data and --set, as every benchmark on the labeled sets takes them."""
    ap.add_argument("--data", type=Path, default=default_data_root(), help="folder of labeled sets (default ../shared/data)")
    ap.add_argument("--set", action="append", dest="sets", help="set name (repeatable; default: every set with ground truth)")


def chosen_sets(args: argparse.Namespace) -> list[str]:
    """The sets named by --set, else every set with ground truth under --data (UserError when there is none)."""
    if not args.data.is_dir():
        raise UserError(f"data folder {args.data} not found; pass --data")
    labeled = [p.name for p in sorted(args.data.iterdir()) if (p / "groundtruth").is_dir()]
    for name in args.sets or []:
        if name not in labeled:
            raise UserError(f"{args.data / name} is not a labeled set (no groundtruth/ folder); labeled sets there: {', '.join(labeled) or 'none'}")
    if not labeled:
        raise UserError(f"no labeled set (a folder with groundtruth/) in {args.data}")
    return args.sets or labeled


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_set_args(ap)
    ap.add_argument("--json", type=json_target(), help="write the results here")
    ap.add_argument("--steps", type=integer(1), help="training steps (default: the trainer's default)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "quality", help="where the trained runs go")
    ap.add_argument("--no-classic", action="store_true", help="evaluate only the trained model")
    ap.add_argument("--seeds", type=integer(1), default=1, help="train this many models per set (seeds 0..K-1) and report the spread of F")
    ap.add_argument("--input-mode", choices=["frame", "background"], help="train this input mode instead of the default (to compare them)")
    args = ap.parse_args()
    sets = chosen_sets(args)
    # before the first training, not after an hour of it
    check_runs(args.out, args.data, [run_dir(args.out, name, seed) for name in sets for seed in range(args.seeds)])
    classic = [] if args.no_classic else CLASSIC + (["subsense", "pawcs"] if pybgs_available() else [])
    if not args.no_classic and not pybgs_available():
        print("note: pybgs is not importable, so subsense and pawcs are skipped (pip install '.[bgs]'; building it needs libopencv-dev and cmake)", file=sys.stderr)
    results: dict[str, dict] = {}
    for name in sets:
        root = args.data / name
        print(f"== {name}", file=sys.stderr, flush=True)
        res = {"sparsecam": train_and_score(name, root, args)}
        res["sparsecam"]["train_frames"] = TRAIN_FRAMES.get(name, (None, "all frames"))[1]
        if args.seeds > 1:
            res["sparsecam"].update(seed_spread(name, root, args, res["sparsecam"]))
        for method in classic:
            print(f"   {method}", file=sys.stderr, flush=True)
            res[method] = row(evaluate(root, method))
        results[name] = res
        if args.json:  # write as we go: a long run that dies keeps what it measured
            write_json(args.json, results)
    print(markdown(results, classic))
    print(f"plot: {plot_results(results, args.out / 'quality.png')}", file=sys.stderr)
    return 0


def train_and_score(name: str, root: Path, args: argparse.Namespace, seed: int = 0) -> dict:
    """Train one model on the set with ``seed`` and evaluate it: its row plus the training time."""
    model, summary = train_model(name, root, args.out, args.steps, args.input_mode, seed=seed)
    return row(evaluate(root, str(model))) | {"train_seconds": summary["train_seconds"]}


def seed_spread(name: str, root: Path, args: argparse.Namespace, first: dict) -> dict:
    """Train and score seeds 1..K-1 as well: F of every seed, its mean and range."""
    fs, times = [first["f"]], [first["train_seconds"]]
    for seed in range(1, args.seeds):
        print(f"   sparsecam seed {seed}", file=sys.stderr, flush=True)
        scored = train_and_score(name, root, args, seed)
        fs.append(scored["f"])
        times.append(scored["train_seconds"])
    return {"seed_f": fs, "seed_train_seconds": times, "f_mean": round(sum(fs) / len(fs), 4), "f_min": min(fs), "f_max": max(fs)}


def markdown(results: dict, classic: list[str]) -> str:
    methods = ["sparsecam"] + classic
    lines = ["| set | " + " | ".join(methods) + " | sparsecam train s |", "|---|" + "---|" * (len(methods) + 1)]
    for name, res in results.items():
        cells = [f"{res[m]['f']:.3f} (R {res[m]['recall']:.2f} P {res[m]['precision']:.2f})" for m in methods]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {res['sparsecam']['train_seconds']:.0f} |")
    lines.append("")
    lines.append("F (recall, precision) with each method's own threshold, chosen without ground truth.")
    lines.append("Oracle best-threshold F of sparsecam (uses ground truth: an upper bound only, never a setting):")
    for name, res in results.items():
        s = res["sparsecam"]
        lines.append(f"- {name}: oracle F {s['oracle_f']:.3f} at {s['oracle_threshold']:.3f} (own threshold {s['threshold']:.3f}); trained on {s['train_frames']}")
    spread = [(name, res["sparsecam"]) for name, res in results.items() if "seed_f" in res["sparsecam"]]
    if spread:
        lines.append("")
        lines.append(f"sparsecam over {len(spread[0][1]['seed_f'])} training seeds (the table shows seed 0):")
        for name, s in spread:
            seeds = ", ".join(f"{f:.3f}" for f in s["seed_f"])
            lines.append(f"- {name}: F mean {s['f_mean']:.3f}, range {s['f_min']:.3f}-{s['f_max']:.3f} ({seeds}); train {min(s['seed_train_seconds']):.0f}-{max(s['seed_train_seconds']):.0f} s")
    lines.append("")
    lines.append("ms per frame (method only): " + ", ".join(f"{m} {sum(r[m]['ms_per_frame'] for r in results.values()) / len(results):.1f}" for m in methods))
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
