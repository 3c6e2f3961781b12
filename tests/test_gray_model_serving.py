"""Models other than the default recipe, from `sparsecam train` through `sparsecam export` to the run time's
``stream.engine.Engine``: a gray model (``--gray``) and a frame-only model (``--input-mode frame``).

Each is trained for a few steps of a tiny net by the real CLI, exported by the real CLI (with its parity
check), loaded by Engine as the daemon loads it and run on a batch of uint8 BGR frames of another size
than the model's. Its score must match the PyTorch checkpoint's graph on those frames; the gray model must
also see only the frame's luma (a frame and its gray copy in three channels score the same). Four steps do
not make a useful segmenter (these masks come out all 0 or all 255): what is checked is the serving path,
not the quality.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import needs

torch = needs.module("torch", "install the train extra")

from stream.engine import Engine  # noqa: E402
from stream.synthetic import SceneConfig, SyntheticScene  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY = ["synthetic:frames=40,size=64x48", "--size", "64x48", "--steps", "4", "--batch", "8", "--width", "4", "--depth", "2"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def train_and_export(root: Path, *flags: str) -> tuple[Path, Path]:
    """(model.pt, model.onnx) of a tiny run with ``flags``, both made by the CLI."""
    run = root / "run"
    r = cli("train", *TINY, *flags, "--out", str(run))
    assert r.returncode == 0, r.stderr[-3000:]
    onnx = root / "model.onnx"
    r = cli("export", str(run / "model.pt"), "--out", str(onnx))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"exported {onnx}: fp32" in r.stdout, r.stdout
    return run / "model.pt", onnx


@pytest.fixture(scope="module")
def gray(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_and_export(tmp_path_factory.mktemp("gray"), "--gray")


@pytest.fixture(scope="module")
def frame_mode(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_and_export(tmp_path_factory.mktemp("frame-mode"), "--input-mode", "frame")


def frames(width: int = 96, height: int = 72) -> np.ndarray:
    """Three colour frames of the synthetic scene, uint8 BGR (3, H, W, 3), at another size than the model's."""
    scene = SyntheticScene(SceneConfig(width=width, height=height, seed=3))
    return np.stack([scene.frame(t)[0] for t in (5, 40, 75)])


def torch_score(checkpoint: Path, batch: np.ndarray) -> np.ndarray:
    """The score of the checkpoint's own frames -> mask graph in PyTorch (what export traces)."""
    from training.checkpoint import load_checkpoint, model_from_checkpoint
    from training.wrapper import FramesToMask

    state = load_checkpoint(checkpoint)
    ref = FramesToMask(model_from_checkpoint(state), state["threshold"]).eval()
    with torch.inference_mode():
        return ref(torch.from_numpy(batch))[1].numpy()


def check_served(eng: Engine, checkpoint: Path) -> np.ndarray:
    """Masks of the right shape and values for a batch and a single frame; score as in PyTorch. Returns the score."""
    batch = frames()
    mask, score = eng.run(batch, with_score=True)
    assert mask.shape == (3, 72, 96) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    assert score.shape == (3, 72, 96) and score.dtype == np.float32
    one = eng.run(batch[1])
    assert one.shape == (72, 96) and one.dtype == np.uint8
    ref = torch_score(checkpoint, batch)
    assert np.abs(score - ref).max() < 1e-3, np.abs(score - ref).max()
    return score


def test_a_gray_model_is_exported_and_served(gray: tuple[Path, Path]) -> None:
    checkpoint, onnx = gray
    eng = Engine(onnx)  # loads, validates and warms up as the daemon does
    assert eng.info.channels == 1 and (eng.info.width, eng.info.height) == (64, 48)
    assert eng.info.input_mode == "background"
    batch = frames()
    score = check_served(eng, checkpoint)
    # gray inside the graph: the colour frame and its luma copied into B, G and R score alike
    gray3 = np.stack([np.repeat(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2) for f in batch])
    _, score_gray = eng.run(gray3, with_score=True)
    # (up to the luma's rounding to uint8: 2e-4 here; a graph reading one channel differed by 0.07)
    assert np.abs(score - score_gray).max() < 0.005, np.abs(score - score_gray).max()


def test_a_frame_mode_model_is_exported_and_served(frame_mode: tuple[Path, Path]) -> None:
    checkpoint, onnx = frame_mode
    eng = Engine(onnx)
    assert eng.info.input_mode == "frame" and eng.info.channels == 3 and (eng.info.width, eng.info.height) == (64, 48)
    check_served(eng, checkpoint)
