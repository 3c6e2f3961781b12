"""Hot model reload: watch the model file (and SIGHUP), load and validate off the hot path.

A change of the file (mtime, size or inode; a new file moved in place with an atomic rename is
the recommended way to deploy) or ``request()`` (SIGHUP) loads a new Engine in this thread:
it must load, carry sparsecam metadata, have the expected input/outputs and pass a test frame.
Only then is it handed to ``on_swap`` (the daemon swaps it between frames); on failure the old
model keeps serving and ``on_result("failure", reason)`` is called.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable

from stream.engine import Engine
from stream.errors import UserError

log = logging.getLogger("sparsecam.reload")

Signature = tuple[int, int, int] | None


def file_signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ModelReloader:
    """A thread that reloads the model when its file changes or when asked."""

    def __init__(self, path: Path, load: Callable[[Path], Engine], on_swap: Callable[[Engine], None],
                 on_result: Callable[[str, str], None] | None = None, interval: float = 1.0) -> None:
        self.path = Path(path)
        self.load, self.on_swap = load, on_swap
        self.on_result = on_result or (lambda result, detail: None)
        self.interval = interval
        self._seen = file_signature(self.path)
        self._requested = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-reload", daemon=True)

    def start(self) -> ModelReloader:
        self._thread.start()
        return self

    def request(self) -> None:
        """Reload now (SIGHUP), even if the file looks unchanged."""
        self._requested.set()

    def stop(self, wait: float = 2.0) -> None:
        """Ask the thread to stop and wait up to ``wait`` s for it (0: only ask; call again to wait)."""
        self._stop.set()
        self._requested.set()
        if wait > 0 and self._thread.is_alive():  # the daemon may stop before it started the reloaders (a camera failed to open)
            self._thread.join(timeout=wait)

    def _changed(self) -> bool:
        sig = file_signature(self.path)
        if sig is None or sig == self._seen:
            return False
        # wait until a file being written in place has settled
        self._stop.wait(min(0.3, self.interval))
        if file_signature(self.path) != sig:
            return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = self._requested.wait(self.interval)
            if self._stop.is_set():
                return
            self._requested.clear()
            if asked or self._changed():
                self.reload_once()

    def reload_once(self) -> bool:
        """Load, validate and hand over the model at ``path``; True when swapped."""
        self._seen = file_signature(self.path)
        try:
            engine = self.load(self.path)
        except UserError as exc:
            log.error("model reload rejected, still serving the previous model: %s", exc)
            self.on_result("failure", str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old model serving
            log.exception("model reload failed, still serving the previous model")
            self.on_result("failure", f"{type(exc).__name__}: {exc}")
            return False
        self.on_swap(engine)
        log.info("model reloaded: %s version %s on %s", self.path.name, engine.model_version, engine.provider)
        self.on_result("success", engine.model_version)
        return True
