"""Writing a file so that a reader never sees half of it, and a full disk is one clear line.

``write_atomic`` writes next to the target and renames over it (``os.replace``): a crash, a kill or
a full disk leaves the previous file whole (or none), never a truncated one that a later run would
trip over. An ``OSError`` becomes a :class:`UserError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from stream.errors import UserError


def write_atomic(path: Path, data: str | bytes, durable: bool = False) -> None:
    """``durable``: fsync the file before the rename and the folder after it, so that a power cut
    leaves the old file or the new one, not an empty one (ext4 may commit the rename before the data)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any, indent: int = 1) -> None:
    """``data`` as JSON (anything else as its str), written atomically: a run stopped mid-write keeps the previous file."""
    write_atomic(path, json.dumps(data, indent=indent, default=str))


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the file system lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
