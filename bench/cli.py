"""What every bench script does on its command line: one-line errors, and targets that are safe to write.

* :func:`run` calls a script's ``main`` and turns a :class:`UserError` into one line on stderr and
  exit code 2, as the ``sparsecam`` commands do (never a traceback for a user's mistake).
* ``--json`` targets are checked by ``stream.argtypes.json_target`` (an argparse type), before
  minutes of measuring.
* :func:`train_run` trains one run; Ctrl-C or SIGTERM (the trainer saves a checkpoint and stops)
  ends the script as an interrupt, exit 130, not a traceback on the missing summary.
* :func:`replace_run` clears a run folder a benchmark trains into, but only an earlier sparsecam
  run (``run.json`` in it): anything else there, and any ``--out`` that holds or lies in the data
  folder, is refused (:func:`check_runs` says so before the first training).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

from stream.errors import UserError


def run(main: Callable[[], int]) -> NoReturn:
    try:
        code = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


def train_run(cfg: Any, out: Path) -> dict[str, Any]:
    """``training.train.train`` with a progress line every 30 s in a log; an interrupt stops the script."""
    from training.train import train

    summary = train(cfg, out, progress=True)
    if summary is None:  # interrupted at a step boundary, checkpoint saved
        raise KeyboardInterrupt
    return summary


def check_out(out: Path, data: Path) -> None:
    """``--out`` must neither be the data folder, nor lie in it, nor hold it."""
    o, d = out.resolve(), data.resolve()
    if o == d or d in o.parents or o in d.parents:
        raise UserError(f"--out {out} and --data {data} overlap; the benchmark replaces runs under --out: pick a folder outside the data")


def check_replaceable(run_dir: Path) -> None:
    """Refuse ``run_dir`` unless it is missing or an earlier sparsecam run (``run.json`` in it)."""
    if run_dir.exists() and (not run_dir.is_dir() or not (run_dir / "run.json").is_file()):
        raise UserError(f"{run_dir} exists and is not a sparsecam training run (no run.json); "
                        "the benchmark would replace it: move it or pick another --out")


def check_runs(out: Path, data: Path, run_dirs: Iterable[Path]) -> None:
    """Everything a benchmark will replace under ``out``, checked before its first training."""
    check_out(out, data)
    for run_dir in run_dirs:
        check_replaceable(run_dir)


def replace_run(run_dir: Path) -> None:
    """Remove an earlier sparsecam run at ``run_dir`` so a benchmark can train afresh; refuse anything else."""
    check_replaceable(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
