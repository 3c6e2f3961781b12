"""`sparsecam eval` and the classic baselines, on a synthetic CDnet folder and the real sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.errors import UserError
from stream.synthetic import SceneConfig, write_cdnet_folder
from training import evaluate as ev
from training.baselines import CLASSIC_METHODS, run_classic, run_classic_timed
from training.data import open_labeled_set
from training.metrics import Confusion, scores

REPO = Path(__file__).resolve().parent.parent
N_FRAMES = 80
KEYS = {"set", "method", "frames", "counts", "metrics", "ms_per_frame"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_cdnet_folder(tmp_path_factory.mktemp("eval") / "synth", N_FRAMES,
                              SceneConfig(width=160, height=120, seed=3), progress=False)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", "eval", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_evaluate_mog2_on_synthetic(synth, tmp_path):
    res = ev.evaluate(synth, "mog2", overlays=tmp_path / "ov")
    assert KEYS <= set(res) and res["frames"] == N_FRAMES and res["method"] == "mog2"
    c = Confusion(**res["counts"])
    assert c.total == N_FRAMES * 160 * 120  # synthetic GT has no ignored labels
    assert res["metrics"] == scores(c)
    assert res["metrics"]["f"] > 0.5, res["metrics"]
    assert res["ms_per_frame"] > 0
    pngs = sorted((tmp_path / "ov").glob("*.png"))
    assert len(pngs) == min(N_FRAMES, ev.MAX_OVERLAYS)
    img = cv2.imread(str(pngs[-1]))
    assert img.shape == (120, 320, 3)
    assert np.array_equal(img[:, :160], open_labeled_set(synth).read_frame(int(pngs[-1].stem)))
    (tmp_path / "ov" / "999999.png").write_bytes(pngs[0].read_bytes())  # an overlay of another set or method
    again = ev.evaluate(synth, "mog2", overlays=tmp_path / "ov")  # earlier overlays are replaced, all of them
    assert again["metrics"] == res["metrics"] and sorted((tmp_path / "ov").glob("*.png")) == pngs
    (tmp_path / "ov" / "holiday.jpg").write_bytes(b"someone else's file")
    with pytest.raises(UserError, match="holds other files \\(holiday.jpg\\)"):
        ev.evaluate(synth, "mog2", overlays=tmp_path / "ov")


def test_overlay_colours():
    frame = np.full((2, 3, 3), 100, np.uint8)
    gt = np.array([[255, 255, 0], [0, 170, 50]], np.uint8)
    pred = np.array([[1, 0, 1], [0, 1, 0]], bool)  # tp, fn, fp / tn, ignored, tn
    out = ev.overlay_image(frame, pred, gt, None)
    assert np.array_equal(out[:, :3], frame)
    over = out[:, 3:].astype(int)
    assert over[0, 0, 1] > 150 and over[0, 0, 0] < 100 and over[0, 0, 2] < 100  # TP green
    assert over[0, 1, 0] > 150 and over[0, 1, 1] < 100  # FN blue (BGR)
    assert over[0, 2, 2] > 150 and over[0, 2, 1] < 100  # FP red
    assert (over[1] == 100).all()  # tn and ignored untouched


def test_cli_writes_json_and_prints_f(synth, tmp_path):
    out = tmp_path / "res" / "mog2.json"
    proc = run_cli("--set", str(synth), "--method", "mog2-median", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert KEYS <= set(res) and res["method"] == "mog2-median"
    assert f"{res['metrics']['f']:.4f}" in proc.stdout and "F " in proc.stdout
    assert 0.0 < res["metrics"]["f"] <= 1.0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--set", "/nonexistent/set", "--method", "mog2"], "/nonexistent/set"),
        (["--set", __file__, "--method", "mog2"], "is a file; eval needs a labeled folder"),
        (["--method", "wavelets"], "wavelets"),
        (["--method", "missing_model.onnx"], "missing_model.onnx"),
        (["--method", "knn", "--threshold", "0.5"], "threshold"),
        (["--method", "mog2", "--threshold", "nan"], "a score threshold in (0, 1)"),
        (["--method", "mog2", "--threshold", "1"], "a score threshold in (0, 1)"),  # as train's: 1 masks nothing
        (["--method", "mog2", "--json", __file__], "is not an earlier `sparsecam eval` result"),
        (["--method", str(Path(__file__).parent)], "is a folder; pass the model file in it"),
    ],
    ids=["missing-set", "set-is-a-file", "unknown-method", "missing-model", "threshold-on-classic", "threshold-nan", "threshold-1",
         "json-over-another-file", "method-is-a-folder"],
)
def test_cli_user_errors_exit_2(synth, args, words):
    if "--set" not in args:
        args = ["--set", str(synth), *args]
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()  # argparse's usage errors too: one line (stream.argtypes.Parser)
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr


def test_json_replaces_an_earlier_result_but_no_other_json(synth, tmp_path):
    """--json replaced any file that parsed as JSON (someone's settings, say)."""
    settings = tmp_path / "settings.json"
    settings.write_text('{"database": "precious"}')
    proc = run_cli("--set", str(synth), "--method", "mog2", "--json", str(settings))
    assert proc.returncode == 2 and "is not an earlier `sparsecam eval` result" in proc.stderr
    assert json.loads(settings.read_text()) == {"database": "precious"}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"set": "x", "method": "knn", "metrics": {}}))
    proc = run_cli("--set", str(synth), "--method", "mog2", "--json", str(earlier))
    assert proc.returncode == 0 and json.loads(earlier.read_text())["method"] == "mog2"


def test_ground_truth_of_another_size_is_one_line(synth, tmp_path):
    import shutil

    bad = tmp_path / "set"
    shutil.copytree(synth, bad)
    gt = sorted((bad / "groundtruth").glob("*.png"))[-1]
    cv2.imwrite(str(gt), np.zeros((10, 20), np.uint8))
    proc = run_cli("--set", str(bad), "--method", "mog2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert gt.name in proc.stderr and "20x10 but the set's frames are 160x120" in proc.stderr


def test_baselines_warm_up_over_all_frames(synth):
    ls = open_labeled_set(synth)
    want = [N_FRAMES - 5, N_FRAMES]
    masks = run_classic("mog2", ls, want)
    assert sorted(masks) == want
    sub = cv2.createBackgroundSubtractorMOG2(detectShadows=True)
    for i in range(1, N_FRAMES + 1):
        raw = sub.apply(ls.read_frame(i))
        if i in want:
            assert np.array_equal(masks[i], raw == 255)
    # mog2-median is mog2 followed by a 5x5 median filter
    med = run_classic("mog2-median", ls, want)
    expect = cv2.medianBlur((masks[N_FRAMES]).astype(np.uint8), 5) > 0
    assert np.array_equal(med[N_FRAMES], expect)
    assert med[N_FRAMES].sum() <= masks[N_FRAMES].sum()


def test_knn_and_rpca_find_the_objects(synth):
    ls = open_labeled_set(synth)
    for method, want in (("knn", list(range(40, N_FRAMES + 1, 10))), ("rpca", [20, 30, 40])):
        run = run_classic_timed(method, ls, want)  # rpca: one PCP window over frames 1..40
        assert sorted(run.masks) == want and run.ms_per_frame > 0
        assert run.frames_processed == want[-1]
        c = sum(ev.confusion(run.masks[i], ls.read_gt(i)) for i in want)
        assert scores(c)["f"] > 0.5, (method, scores(c))


@pytest.mark.parametrize("method", ["subsense", "pawcs"])
def test_bgslibrary_methods_when_installed(synth, method):
    pytest.importorskip("pybgs", reason="pybgs (extra 'bgs') is not installed: SuBSENSE/PAWCS untested here")
    ls = open_labeled_set(synth)
    want = list(range(40, N_FRAMES + 1, 10))
    run = run_classic_timed(method, ls, want)
    assert sorted(run.masks) == want and run.masks[want[0]].dtype == bool
    c = sum(ev.confusion(run.masks[i], ls.read_gt(i)) for i in want)
    assert scores(c)["f"] > 0.5, (method, scores(c))


def test_classic_errors(synth):
    ls = open_labeled_set(synth)
    with pytest.raises(UserError, match="unknown classic method"):
        run_classic("mog3", ls, [1])
    with pytest.raises(UserError, match="no input frame"):
        run_classic("mog2", ls, [N_FRAMES + 1])
    assert set(CLASSIC_METHODS) >= {"mog2", "knn", "mog2-median", "rpca", "subsense", "pawcs"}
    try:
        import pybgs  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="pybgs"):
            run_classic("subsense", ls, [1])


BUNDLED = REPO / "stream" / "models" / "default.onnx"
CAMERA_FRAMES = 40  # batches of 16, 16 and 8


@pytest.fixture(scope="module")
def bundled_camera(tmp_path_factory) -> Path:
    """Unseen frames (600-639) of the synthetic camera the bundled model was trained on."""
    return write_cdnet_folder(tmp_path_factory.mktemp("eval") / "camera", CAMERA_FRAMES, SceneConfig(width=160, height=120),
                              start=600, progress=False)


class Spy:
    """The real predictor (onnxruntime session of the bundled model), recording the batches it is given."""

    def __init__(self, real) -> None:
        self.real, self.threshold, self.name, self.size = real, real.threshold, real.name, real.size
        self.batches: list[int] = []

    def predict(self, frames: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        self.batches.append(len(frames))
        return self.real.predict(frames, threshold)


def spying(monkeypatch) -> list[Spy]:
    """Wrap every predictor evaluate() loads in a Spy; returns the list they are appended to."""
    import training.predict

    made: list[Spy] = []
    real_load = training.predict.load_predictor

    def load(path):
        made.append(Spy(real_load(path)))
        return made[-1]

    monkeypatch.setattr(training.predict, "load_predictor", load)
    return made


def test_model_method_batches_threshold_and_oracle(bundled_camera, monkeypatch):
    made = spying(monkeypatch)
    model, synth = str(BUNDLED), bundled_camera
    own = ev.evaluate(synth, model)
    assert made[-1].batches == [16, 16, 8]
    assert own["threshold"] == pytest.approx(made[-1].real.threshold) and own["metrics"]["f"] > 0.5
    oracle = own["oracle"]
    assert "upper bound" in oracle["label"] and "ground truth" in oracle["label"]
    assert oracle["f"] >= own["metrics"]["f"] - 1e-9
    # scoring at the oracle threshold reproduces the oracle F
    at_best = ev.evaluate(synth, str(model), threshold=oracle["threshold"])
    assert at_best["threshold"] == pytest.approx(oracle["threshold"])
    assert at_best["metrics"]["f"] == pytest.approx(oracle["f"])
    assert ev.ORACLE_LABEL in ev.format_table(at_best)


@pytest.mark.data
def test_mog2_median_on_jitter_traffic(data_root):
    res = ev.evaluate(data_root / "cdnet_jitter_traffic", "mog2-median")
    assert res["frames"] == 101
    assert 0.3 < res["metrics"]["f"] < 0.8, res["metrics"]


def test_frame_transform_reaches_the_model_only(bundled_camera, monkeypatch):
    made = spying(monkeypatch)
    model, synth = str(BUNDLED), bundled_camera
    plain = ev.evaluate(synth, model)["metrics"]["f"]
    same = ev.evaluate(synth, model, frame_transform=lambda f: f)["metrics"]["f"]
    blank = ev.evaluate(synth, model, frame_transform=lambda f: np.zeros_like(f))["metrics"]["f"]
    assert len(made) == 3 and same == plain > 0.5 and blank < 0.1, (plain, blank)  # the model saw the blank frames
    with pytest.raises(ValueError):
        ev.evaluate(synth, "mog2", frame_transform=lambda f: f)


def test_cli_plot_draws_recall_against_precision(synth, tmp_path):
    """A real exported model through `sparsecam eval --plot`: the picture exists and the JSON holds its curve."""
    plot, out = tmp_path / "plots" / "eval.png", tmp_path / "eval.json"
    proc = run_cli("--set", str(synth), "--method", str(REPO / "stream" / "models" / "default.onnx"),
                   "--plot", str(plot), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    img = cv2.imread(str(plot))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 300
    res = json.loads(out.read_text())
    curve = res["pr_curve"]
    assert len(curve["threshold"]) == len(curve["recall"]) == len(curve["precision"]) > 10
    assert curve["recall"] == sorted(curve["recall"], reverse=True)  # a higher threshold masks less
    # the oracle F is the best point of the same curve (up to the curve's coarser threshold steps)
    best = max(2 * r * p / (r + p) for r, p in zip(curve["recall"], curve["precision"]) if r + p > 0)
    assert best == pytest.approx(res["oracle"]["f"], abs=0.01)
    assert f"plot: {plot}" in proc.stdout


@pytest.mark.parametrize("name, words", [("eval.txt", ".png, .svg, .pdf"), ("folder", "is a folder")])
def test_cli_plot_target_refused_before_evaluating(synth, tmp_path, name, words):
    target = tmp_path / name
    if name == "folder":
        target.mkdir()
    proc = run_cli("--set", str(synth), "--method", "mog2", "--plot", str(target))
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
    assert "F " not in proc.stdout  # refused before minutes of evaluation


def test_plot_panel_marks_the_method_and_the_others():
    curve = {"recall": [1.0], "precision": [0.5]}
    panel = ev.plot_panel("s", {"model.onnx": {"f": 0.9, "recall": 0.95, "precision": 0.85},
                                "mog2": {"f": 0.5, "recall": 0.4, "precision": 0.7}}, curve)
    assert panel["points"] == [("model.onnx: F 0.900", 0.95, 0.85), ("mog2: F 0.500", 0.4, 0.7)]
    assert panel["curve"] is curve and panel["title"] == "s"


def test_an_uppercase_onnx_suffix_is_still_an_onnx_model(synth, tmp_path):
    """load_predictor compared the suffix case-sensitively and read MODEL.ONNX as a torch checkpoint."""
    import shutil

    from training.predict import OnnxPredictor, load_predictor

    upper = tmp_path / "MODEL.ONNX"
    shutil.copy(REPO / "stream" / "models" / "default.onnx", upper)
    assert isinstance(load_predictor(upper), OnnxPredictor)


def test_a_damaged_checkpoint_is_one_line_in_eval_as_in_export(synth, tmp_path):
    """eval of a checkpoint whose config or weights do not fit raised a TypeError/RuntimeError traceback
    (export said it in one line): one loader, training.checkpoint.load_finished, for both."""
    from training.checkpoint import save_checkpoint
    from training.model import ModelConfig, UNet

    net = UNet(ModelConfig(width=2, depth=1, height=32, width_px=32))
    state = {"model": net.state_dict(), "config": {**net.cfg.to_dict(), "from_the_future": 1}, "threshold": 0.1}
    bad = tmp_path / "future.pt"
    save_checkpoint(bad, state)
    proc = run_cli("--set", str(synth), "--method", str(bad))
    assert proc.returncode == 2 and "cannot rebuild the model" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_threshold_override_keeps_the_clean_up(synth):
    """--threshold replaced the cleaned mask with a raw score > t: passing the model's own threshold gave another F."""
    bundled = str(REPO / "stream" / "models" / "default.onnx")
    own = ev.evaluate(synth, bundled)
    same = ev.evaluate(synth, bundled, threshold=own["threshold"])
    assert same["counts"] == own["counts"]


def test_a_model_of_another_frame_shape_is_warned_about(tmp_path, caplog):
    """A road model (160x88) scored F 0.0000 on waving trees (160x120) without a word (a helper's researcher journey)."""
    wide = write_cdnet_folder(tmp_path / "wide", 4, SceneConfig(width=160, height=88), progress=False)
    caplog.set_level("WARNING")
    ev.evaluate(wide, str(BUNDLED))  # the bundled model: 160x120
    assert "the model was trained on 160x120 frames (aspect 1.33) and wide's are 160x88 (1.82)" in caplog.text
    caplog.clear()
    same = write_cdnet_folder(tmp_path / "same", 4, SceneConfig(width=320, height=240), progress=False)
    ev.evaluate(same, str(BUNDLED))  # twice the size, the same shape: no warning
    assert "another camera" not in caplog.text
