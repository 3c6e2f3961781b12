"""What each benchmark does with ``--json FILE``: write its figures there, creating the folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stream.files import write_atomic


def write_json(path: Path, data: Any, indent: int = 1) -> None:
    write_atomic(path, json.dumps(data, indent=indent))  # a run stopped mid-write keeps the previous figures
