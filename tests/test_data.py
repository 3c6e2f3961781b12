"""Footage readers on real files: videos, image folders, CDnet sets, recordings, `synthetic:`; labeled sets."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.errors import UserError
from stream.synthetic import SceneConfig, SyntheticScene, write_cdnet_folder
from training.data import (
    Footage,
    default_data_root,
    load_footage,
    open_labeled_set,
    spread_stride,
    window_batch,
)
from training.resize import resize_image

CFG = SceneConfig(width=64, height=48, seed=3)


def _frames(n: int, cfg: SceneConfig = CFG) -> np.ndarray:
    return SyntheticScene(cfg).frames(n)[0]


def _write_video(path: Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    h, w = frames.shape[1:3]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def _write_folder(folder: Path, frames: np.ndarray, fmt: str = "{:06d}.png", first: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(folder / fmt.format(i + first)), f)
    return folder


def _write_recording(folder: Path, frames: np.ndarray, t0: float = 1.7e9) -> Path:
    _write_folder(folder, frames)
    with (folder / "manifest.jsonl").open("w") as fh:
        for i in range(len(frames)):
            rec = {"file": f"{i + 1:06d}.png", "t": t0 + i / 30, "camera": "cam0",
                   "width": frames.shape[2], "height": frames.shape[1]}
            fh.write(json.dumps(rec) + "\n")
    return folder


@pytest.fixture(scope="module")
def frames8() -> np.ndarray:
    return _frames(8)


# ---------------------------------------------------------------- each kind of source
def test_video_file(tmp_path: Path, frames8: np.ndarray) -> None:
    video = _write_video(tmp_path / "clip.avi", frames8)
    fo = load_footage([video], progress=False)
    assert isinstance(fo, Footage)
    assert fo.frames.shape == (8, 48, 64, 3) and fo.frames.dtype == np.uint8
    assert fo.sources[0] == f"{video}#1" and fo.sources[-1] == f"{video}#8"
    assert fo.timestamps is None
    # MJPG is lossy: close to the originals, not equal
    err = np.abs(fo.frames.astype(np.float32) - frames8).mean()
    assert err < 12
    # and each decoded frame is nearest to its own original (order preserved)
    d = np.abs(fo.frames[:, None].astype(np.float32) - frames8[None]).mean(axis=(2, 3, 4))
    assert (d.argmin(1) == np.arange(8)).all()


def test_image_folder_exact(tmp_path: Path, frames8: np.ndarray) -> None:
    folder = _write_folder(tmp_path / "imgs", frames8)
    (folder / "notes.txt").write_text("ignored")
    fo = load_footage([folder], progress=False)
    assert np.array_equal(fo.frames, frames8)
    assert fo.sources == [str(folder / f"{i:06d}.png") for i in range(1, 9)]


def test_image_folder_natural_order(tmp_path: Path, frames8: np.ndarray) -> None:
    folder = _write_folder(tmp_path / "imgs", frames8[:3], fmt="frame{}.jpg", first=9)  # frame9, frame10, frame11
    fo = load_footage([folder], progress=False)
    assert [Path(s).name for s in fo.sources] == ["frame9.jpg", "frame10.jpg", "frame11.jpg"]
    assert np.abs(fo.frames.astype(np.float32) - frames8[:3]).mean() < 8  # jpeg


def test_image_folder_numbered_from_zero_keeps_frame_zero(tmp_path: Path, frames8: np.ndarray) -> None:
    """Frame numbers counted from 1 (CDnet's) dropped frame_0000 of a folder numbered from 0."""
    folder = _write_folder(tmp_path / "imgs", frames8[:5], fmt="frame_{:04d}.png", first=0)
    fo = load_footage([folder], progress=False)
    assert [Path(s).name for s in fo.sources] == [f"frame_{i:04d}.png" for i in range(5)]
    assert np.array_equal(fo.frames, frames8[:5])
    strided = load_footage([folder], stride=2, progress=False)
    assert [Path(s).name for s in strided.sources] == ["frame_0000.png", "frame_0002.png", "frame_0004.png"]


def test_cdnet_folder(tmp_path: Path) -> None:
    root = write_cdnet_folder(tmp_path / "set", 6, CFG, progress=False)
    fo = load_footage([root], progress=False)
    assert np.array_equal(fo.frames, _frames(6))
    assert all("/input/" in s for s in fo.sources)


def test_recording_folder_with_manifest(tmp_path: Path, frames8: np.ndarray, caplog) -> None:
    rec = _write_recording(tmp_path / "rec", frames8)
    (rec / "000004.png").unlink()  # a missing file is skipped with a warning
    with caplog.at_level(logging.WARNING):
        fo = load_footage([rec], progress=False)
    assert "000004.png" in caplog.text
    keep = [0, 1, 2, 4, 5, 6, 7]
    assert np.array_equal(fo.frames, frames8[keep])
    assert fo.timestamps is not None
    assert np.allclose(fo.timestamps, 1.7e9 + np.array(keep) / 30)
    # manifest order wins over file names
    lines = (rec / "manifest.jsonl").read_text().splitlines()
    (rec / "manifest.jsonl").write_text("\n".join(lines[::-1]) + "\n")
    fo2 = load_footage([rec], progress=False)
    assert np.array_equal(fo2.frames, frames8[keep[::-1]])
    assert (np.diff(fo2.timestamps) < 0).all()


def test_synthetic_source() -> None:
    fo = load_footage(["synthetic:frames=5,seed=3,size=64x48"], progress=False)
    assert np.array_equal(fo.frames, _frames(5))
    assert fo.sources[0] == "synthetic#1"
    fo = load_footage(["synthetic"], max_frames=2, progress=False)
    assert fo.frames.shape == (2, 240, 320, 3)
    jit = load_footage(["synthetic:frames=3,seed=3,size=64x48,jitter=2"], progress=False)
    assert not np.array_equal(jit.frames, _frames(3))


def test_several_paths_concatenate_and_keep_timestamps_only_if_all_have_them(tmp_path: Path, frames8) -> None:
    folder = _write_folder(tmp_path / "a", frames8[:3])
    rec = _write_recording(tmp_path / "rec", frames8[3:])
    fo = load_footage([folder, rec], progress=False)
    assert np.array_equal(fo.frames, frames8)
    assert fo.timestamps is None
    fo = load_footage([rec, rec], progress=False)
    assert len(fo.timestamps) == 10


# ---------------------------------------------------------------- options
def test_resize_and_gray(tmp_path: Path, frames8: np.ndarray) -> None:
    folder = _write_folder(tmp_path / "imgs", frames8)
    fo = load_footage([folder], size=(32, 24), progress=False)
    assert fo.frames.shape == (8, 24, 32, 3)
    assert np.array_equal(fo.frames[2], resize_image(frames8[2], (32, 24)))  # the graph's resize
    g = load_footage([folder], gray=True, progress=False)
    assert g.frames.shape == (8, 48, 64, 1)
    assert np.abs(g.frames[5, ..., 0].astype(int) - cv2.cvtColor(frames8[5], cv2.COLOR_BGR2GRAY)).max() <= 1
    gs = load_footage([_write_video(tmp_path / "v.avi", frames8)], gray=True, size=(16, 12), progress=False)
    assert gs.frames.shape == (8, 12, 16, 1)


def test_mixed_sizes_resized_with_size(tmp_path: Path, frames8: np.ndarray) -> None:
    a = _write_folder(tmp_path / "a", frames8[:2])
    b = _write_folder(tmp_path / "b", _frames(2, SceneConfig(width=96, height=72)))
    fo = load_footage([a, b], size=(64, 48), progress=False)
    assert fo.frames.shape == (4, 48, 64, 3)
    with pytest.raises(UserError, match=r"64x48.*96x72.*--size") as exc:
        load_footage([a, b], progress=False)
    assert "000001.png" in str(exc.value) and str(b) in str(exc.value)


@pytest.mark.parametrize("kind", ["folder", "video", "synthetic"])
def test_stride_max_frames_frame_range(tmp_path: Path, frames8: np.ndarray, kind: str) -> None:
    if kind == "folder":
        src = str(_write_folder(tmp_path / "imgs", frames8))
    elif kind == "video":
        src = str(_write_video(tmp_path / "v.avi", frames8))
    else:
        src = "synthetic:frames=8,seed=3,size=64x48"

    def numbers(fo: Footage) -> list[int]:
        return [int(s.rsplit("#", 1)[1]) if "#" in s else int(Path(s).stem) for s in fo.sources]

    assert numbers(load_footage([src], stride=3, progress=False)) == [1, 4, 7]
    assert numbers(load_footage([src], max_frames=3, progress=False)) == [1, 2, 3]
    assert numbers(load_footage([src], frame_range=(3, 6), progress=False)) == [3, 4, 5, 6]
    assert numbers(load_footage([src], frame_range=(2, 8), stride=2, max_frames=3, progress=False)) == [2, 4, 6]
    # max_frames caps the total over several paths
    assert len(load_footage([src, src], max_frames=10, progress=False)) == 10
    fo = load_footage([src], frame_range=(5, 5), progress=False)
    assert fo.frames.shape[0] == 1
    if kind != "video":
        assert np.array_equal(fo.frames[0], frames8[4])


# ---------------------------------------------------------------- errors
def test_error_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.avi.*no such file"):
        load_footage([tmp_path / "nope.avi"], progress=False)


def test_error_unreadable_video_and_image(tmp_path: Path, frames8: np.ndarray) -> None:
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(UserError, match="broken.avi"):
        load_footage([bad], progress=False)
    folder = _write_folder(tmp_path / "imgs", frames8[:3])
    (folder / "000002.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="000002.png"):
        load_footage([folder], progress=False)


def test_a_text_file_or_a_single_image_is_not_mistaken_for_footage(tmp_path: Path, frames8: np.ndarray) -> None:
    """FFmpeg read README.txt as a 7-frame video ('gave 7 frames ... lower the stride'); one image said 'gave 1 frames'."""
    notes = tmp_path / "README.txt"
    notes.write_text("A clip of a motorway.\n" * 200)
    with pytest.raises(UserError, match=r"README.txt is a \.txt file, not footage"):
        load_footage([notes], progress=False)
    image = _write_folder(tmp_path / "imgs", frames8[:1]) / "000001.png"
    assert image.is_file()
    with pytest.raises(UserError, match="a single image is one frame; pass the folder of images"):
        load_footage([image], progress=False, min_frames=4)


def test_error_empty_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="empty.*no images|no images.*empty"):
        load_footage([empty], progress=False)
    (empty / "a.avi").write_bytes(b"x")
    with pytest.raises(UserError, match="a.avi"):  # points at the video inside
        load_footage([empty], progress=False)


def test_error_too_few_frames_and_empty_range(tmp_path: Path, frames8: np.ndarray) -> None:
    folder = _write_folder(tmp_path / "imgs", frames8[:3])
    with pytest.raises(UserError, match=r"imgs.*3 frames.*at least 10"):
        load_footage([folder], min_frames=10, progress=False)
    with pytest.raises(UserError, match=r"imgs.*no frames in frame range 20\.\.30"):
        load_footage([folder], frame_range=(20, 30), progress=False)


def test_error_malformed_manifest(tmp_path: Path, frames8: np.ndarray) -> None:
    rec = _write_recording(tmp_path / "rec", frames8[:3])
    lines = (rec / "manifest.jsonl").read_text().splitlines()
    lines[1] = '{"file": "000002.png", "t": '
    (rec / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"manifest.jsonl line 2"):
        load_footage([rec], progress=False)
    lines[1] = '{"t": 5.0}'
    (rec / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"manifest.jsonl line 2"):
        load_footage([rec], progress=False)


def test_error_bad_synthetic_spec() -> None:
    with pytest.raises(UserError, match="colour"):
        load_footage(["synthetic:colour=red"], progress=False)
    with pytest.raises(UserError, match="size"):
        load_footage(["synthetic:size=big"], progress=False)


# ---------------------------------------------------------------- labeled sets
def test_labeled_set_on_synthetic_cdnet(tmp_path: Path) -> None:
    root = write_cdnet_folder(tmp_path / "syn", 7, CFG, progress=False)
    ls = open_labeled_set(root)
    assert ls.name == "syn" and ls.roi is None and ls.temporal_roi == (1, 7)
    assert ls.eval_indices == list(range(1, 8))
    img, gt = SyntheticScene(CFG).frame(3)
    assert np.array_equal(ls.read_frame(4), img)
    assert np.array_equal(ls.read_gt(4), gt)
    assert ls.read_frame(4, gray=True).shape == (48, 64, 1)
    # a 3-channel GT is read as channel 0; a temporal ROI narrows eval_indices; a right-size ROI is used
    cv2.imwrite(str(root / "groundtruth" / "000004.png"), np.dstack([gt, gt * 0, gt * 0]))
    (root / "temporalROI.txt").write_text("3 5\n")
    roi = np.zeros((48, 64), np.uint8)
    roi[:, :32] = 255
    cv2.imwrite(str(root / "ROI.png"), roi)
    ls = open_labeled_set(root)
    assert np.array_equal(ls.read_gt(4), gt)
    assert ls.eval_indices == [3, 4, 5]
    assert ls.roi is not None and ls.roi.dtype == bool and ls.roi.sum() == 48 * 32


def test_labeled_set_wrong_roi_and_missing_temporal_roi(tmp_path: Path, caplog) -> None:
    root = write_cdnet_folder(tmp_path / "syn", 5, CFG, progress=False)
    (root / "temporalROI.txt").unlink()
    for i in (1, 2, 5):
        (root / "groundtruth" / f"{i:06d}.png").unlink()
    cv2.imwrite(str(root / "ROI.png"), np.full((10, 10), 255, np.uint8))
    with caplog.at_level(logging.WARNING):
        ls = open_labeled_set(root)
    assert ls.roi is None and "ROI.png" in caplog.text
    assert ls.temporal_roi == (3, 4) and ls.eval_indices == [3, 4]


def test_labeled_set_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nothere"):
        open_labeled_set(tmp_path / "nothere")
    (tmp_path / "noinput").mkdir()
    with pytest.raises(UserError, match="noinput.*input/"):
        open_labeled_set(tmp_path / "noinput")


def test_labeled_set_16bit_ground_truth_and_an_input_frame_of_another_size(tmp_path: Path) -> None:
    """16-bit masks holding the plain labels were shifted down to all-static (F silently 0); an input frame
    of another size ended eval in a numpy traceback."""
    root = write_cdnet_folder(tmp_path / "syn", 5, CFG, progress=False)
    _, gt = SyntheticScene(CFG).frame(2)
    assert (gt == 255).any()
    cv2.imwrite(str(root / "groundtruth" / "000003.png"), gt.astype(np.uint16))  # 0..255 stored wide
    cv2.imwrite(str(root / "groundtruth" / "000004.png"), gt.astype(np.uint16) * 257)  # scaled to 65535
    ls = open_labeled_set(root)
    assert np.array_equal(ls.read_gt(3), gt) and np.array_equal(ls.read_gt(4), gt)
    cv2.imwrite(str(root / "input" / "000005.png"), np.zeros((48, 80, 3), np.uint8))
    with pytest.raises(UserError, match=r"000005.png is 80x48 but the set's frames are 64x48"):
        ls.read_frame(5)


@pytest.mark.data
def test_real_labeled_sets(data_root: Path) -> None:
    hw = open_labeled_set(data_root / "cdnet_baseline_highway")
    idx = hw.eval_indices
    assert len(idx) == 1231 and idx[0] == 470 and idx[-1] == 1700
    assert hw.roi is not None and hw.roi.shape == (240, 320)
    gt = hw.read_gt(470)
    assert gt.shape == (240, 320) and gt.dtype == np.uint8 and set(np.unique(gt)) <= {0, 50, 85, 170, 255}
    assert hw.read_frame(470).shape == (240, 320, 3)
    tr = open_labeled_set(data_root / "cdnet_jitter_traffic")
    assert tr.roi is None and len(tr.eval_indices) == 101
    wt = open_labeled_set(data_root / "wallflower_wavingtrees")
    assert wt.eval_indices == [248] and wt.read_gt(248).shape == (120, 160)
    fo = load_footage([data_root / "wallflower_wavingtrees"], frame_range=(240, 250), stride=5, progress=False)
    assert fo.frames.shape == (3, 120, 160, 3)


def test_max_frames_spreads_over_all_of_the_footage(tmp_path: Path) -> None:
    frames = _frames(60)
    folder = _write_folder(tmp_path / "f", frames)
    video = _write_video(tmp_path / "v.avi", frames[:40])
    assert spread_stride([folder], 20) == 3
    fo = load_footage([folder], stride=3, max_frames=20, progress=False)
    assert len(fo.frames) == 20 and fo.sources[-1].endswith("000058.png")  # not frames 1-20
    assert spread_stride([folder], 20, stride=2) == 4  # 30 frames at stride 2 -> every 4th
    assert spread_stride([folder], 20, frame_range=(1, 30)) == 2
    assert spread_stride([video], 10) == 4
    assert spread_stride([folder, video], 50) == 2  # 100 frames in all
    assert spread_stride([folder], 60) == 1 and spread_stride([folder], None) == 1  # fits / no cap
    assert spread_stride(["synthetic:frames=500"], 10) == 1  # length unknown: as asked
    # a folder numbered from 1000 with --frames over its numbers: it counted none of them (frames 1..60)
    # and kept the first 20 instead of spreading
    late = _write_folder(tmp_path / "late", frames, first=1000)
    assert spread_stride([late], 20, frame_range=(1000, 1059)) == 3
    fo = load_footage([late], max_frames=20, frame_range=(1000, 1059), stride=spread_stride([late], 20, frame_range=(1000, 1059)),
                      progress=False)
    assert len(fo.frames) == 20 and fo.sources[-1].endswith("001057.png")


# The real clips without ground truth (../shared/data/footage_no_gt/README.txt): frames, width, height.
REAL_CLIPS = {
    "opencv_vtest_pedestrians.avi": (795, 768, 576),
    "opencv_tree.avi": (68, 320, 240),
    "bgslibrary_video_road.avi": (374, 640, 360),
    "bgslibrary_video02_motorway.avi": (748, 320, 240),
    "bgslibrary_frames_wsdot": (51, 320, 240),
    "lrslibrary_i2r_escalator.avi": (198, 160, 130),
    "lrslibrary_i2r_shoppingmall.avi": (157, 192, 144),
}


@pytest.mark.data
@pytest.mark.parametrize("clip", sorted(REAL_CLIPS))
def test_reads_the_real_clips_without_ground_truth(data_root: Path, clip: str) -> None:
    """Real codecs and frame folders, decoded to the end: the count and size their README gives."""
    n, w, h = REAL_CLIPS[clip]
    path = data_root / "footage_no_gt" / clip
    assert load_footage([path], max_frames=1, progress=False).frames.shape == (1, h, w, 3)
    every10 = load_footage([path], stride=10, progress=False).frames
    assert len(every10) == -(-n // 10)
    assert every10.std() > 10  # pictures, not blank decodes


def test_default_data_root(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPARSECAM_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("SPARSECAM_DATA")
    assert default_data_root() == Path(__file__).resolve().parent.parent.parent / "shared" / "data"


# ---------------------------------------------------------------- batches
def test_window_batch_shares_one_window() -> None:
    n, h, w = 10, 40, 50
    # frame k holds the value k everywhere plus a position code, so crops reveal index and window
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.stack([np.dstack([np.full((h, w), k), yy, xx]) for k in range(n)]).astype(np.uint8)
    rng = np.random.default_rng(0)
    windows = set()
    for _ in range(20):
        idx, rows, cols = window_batch(n, (h, w), 4, 16, rng)
        b = frames[idx, rows, cols]
        assert b.shape == (4, 16, 16, 3)
        assert len(set(b[:, 0, 0, 0].tolist())) == 4  # distinct frames
        y0, x0 = b[:, 0, 0, 1], b[:, 0, 0, 2]
        assert (y0 == y0[0]).all() and (x0 == x0[0]).all()  # one window for all
        assert np.array_equal(b[0, :, :, 1], yy[y0[0]:y0[0] + 16, x0[0]:x0[0] + 16])
        windows.add((int(y0[0]), int(x0[0])))
    assert len(windows) > 5
    idx, rows, cols = window_batch(n, (h, w), 3, None, rng)
    assert frames[idx, rows, cols].shape == (3, h, w, 3)
    idx, rows, cols = window_batch(2, (h, w), 5, 8, rng)  # fewer frames than n: with replacement
    assert len(idx) == 5 and set(idx.tolist()) <= {0, 1}
    idx, rows, cols = window_batch(n, (h, w), 2, 64, rng)  # a crop larger than the frame: the whole side
    assert frames[idx, rows, cols].shape == (2, h, w, 3)
