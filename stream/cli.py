"""The `sparsecam` command: one entry point, subcommands imported lazily.

Each subcommand lives in its own module exposing ``cli(argv: list[str]) -> int``; the
module is imported only when that subcommand runs, so `serve` and `subscribe` never load
torch, and a missing optional dependency gives a one-line hint instead of a traceback.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys

from stream.errors import UserError

# name -> (module, one-line help, extra needed)
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "serve": ("stream.daemon", "run the capture -> model -> ZeroMQ daemon", None),
    "check-config": ("stream.config", "validate a daemon configuration file", None),
    "subscribe": ("stream.client", "print or save masks published by a daemon", None),
    "train": ("training.train", "learn a model from unlabeled footage", "train"),
    "eval": ("training.evaluate", "score a model or a classic method on a CDnet-style set", None),
    "export": ("export.onnx_export", "export a checkpoint to ONNX (with parity check)", "train"),
    "record": ("stream.recorder", "record footage for retraining, without serving masks", None),
    "keygen": ("stream.security", "create a CurveZMQ key pair for the mask bus", None),
    "retrain": ("training.retrain", "retrain a camera's model from its recordings, validate it, swap it in", "train"),
    "rollback": ("training.rollback", "restore a camera's previous model", None),
    "synth": ("stream.synthetic", "write the built-in synthetic scene to an image folder", None),
}


def _usage() -> str:
    lines = ["usage: sparsecam COMMAND [options]   (sparsecam COMMAND --help for details)", "", "commands:"]
    lines += [f"  {name:<14}{help_}" for name, (_, help_, _) in COMMANDS.items()]
    return "\n".join(lines)


def _sigterm_interrupts() -> None:
    """SIGTERM (kill, systemd, a container stop) unwinds like Ctrl-C, so every command's clean-up
    runs (an export's temporary file is removed, say) instead of the process vanishing mid-write.
    Commands with their own handling (serve, record, train's checkpoint on stop) install theirs."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from stream import __version__

        print(f"sparsecam {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"sparsecam: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, _, extra = COMMANDS[name]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "a module"
        hint = f" (install the extra: pip install 'sparsecam[{extra}]')" if extra else ""
        print(f"sparsecam {name}: {missing} is not installed{hint}", file=sys.stderr)
        return 2
    _sigterm_interrupts()
    try:
        return int(module.cli(argv[1:]) or 0)
    except UserError as exc:
        print(f"sparsecam {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sparsecam {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
