"""What `sparsecam check-config` checks beyond the schema: what `serve` would refuse at start.

The schema (stream/config.py) knows types and ranges; this knows the world: sources that are not
there, an unknown URL scheme, a model or region image that is missing, key files, endpoint and
bind address syntax, a GPU required of an onnxruntime without a GPU provider. Nothing is opened, bound or started (a running daemon may hold the ports),
so a camera that is merely unplugged now is not reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from stream.config import DaemonConfig
from stream.errors import UserError
from stream.protocol import validate_endpoint

def problems(cfg: DaemonConfig) -> list[str]:
    """One sentence per thing `serve` would refuse; empty when it would start."""
    found: list[str] = []

    def attempt(check: Callable[[], object]) -> None:
        try:
            check()
        except UserError as exc:
            found.append(str(exc))

    from stream.sources import make_source
    from stream.engine import model_file_problem
    from stream.roi import WatchRegion

    for cam in cfg.cameras:
        attempt(lambda cam=cam: make_source(cam.source, size=cam.size, fps=cam.fps, loop=cam.loop))
        path, bootstraps = cfg.camera_model(cam)
        problem = None if bootstraps else model_file_problem(path)  # bootstrap: MOG2 until one exists
        if problem:
            found.append(f"camera {cam.id}: {problem}")
        if cam.roi is not None:
            attempt(lambda cam=cam: WatchRegion(cam.roi, cam.id))
    problem = cfg.model.dir_problem()
    if problem:
        found.append(problem)
    if cfg.model.require_gpu:
        from stream.engine import require_gpu_provider

        attempt(lambda: require_gpu_provider(cfg.model.providers))
    for ep in cfg.publish.endpoints:
        attempt(lambda ep=ep: validate_endpoint(ep, bind=True))
    if cfg.metrics.enabled:
        from stream.httpserver import parse_bind

        attempt(lambda: parse_bind(cfg.metrics.bind))
    if cfg.security.curve:
        from stream.security import check_allowed_clients, load_key

        attempt(lambda: load_key(Path(cfg.security.server_secret_key or ""), secret=True))
        attempt(lambda: check_allowed_clients(Path(cfg.security.allowed_clients_dir or "")))
    return found
