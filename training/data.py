"""Footage readers (videos, image folders, CDnet sets, daemon recordings, the synthetic scene).

numpy + cv2 (torch only to resize, see load_footage). ``load_footage`` turns paths into one
(N, H, W, C) uint8 array; ``open_labeled_set`` indexes a CDnet-style labeled set for evaluation; ``window_batch``
picks a training batch's frames and the one crop window they share (keeping the low-rank prior valid).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from stream.sources import IMAGE_EXTS, list_images
from stream.errors import UserError
from stream.recorder import MANIFEST, read_manifest
from stream.synthetic import is_synthetic_spec

log = logging.getLogger(__name__)

# Files people pass by mistake; FFmpeg would read a text file as a video (its tty demuxer).
NOT_FOOTAGE = frozenset({".txt", ".md", ".rst", ".json", ".jsonl", ".yaml", ".yml", ".csv", ".log", ".py", ".sh",
                         ".pt", ".pth", ".onnx", ".zip", ".tar", ".gz", ".pdf", ".html"})
VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".ts", ".3gp")


def default_data_root() -> Path:
    """The evaluation data: $SPARSECAM_DATA, else ``<repo>/../shared/data``."""
    env = os.environ.get("SPARSECAM_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    return repo.parent / "shared" / "data"


@dataclass
class Footage:
    """Frames of one or more sources, concatenated: (N, H, W, C) uint8, BGR (C=3) or gray (C=1)."""

    frames: np.ndarray
    sources: list[str]  # one per frame: a file path or "video.avi#123" (1-based frame number)
    timestamps: np.ndarray | None = None  # unix seconds per frame (daemon recordings only)

    def __len__(self) -> int:
        return len(self.frames)


# --------------------------------------------------------------------------- helpers
def _trailing_number(path: Path) -> int | None:
    m = re.search(r"(\d+)$", path.stem)
    return int(m.group(1)) if m else None


def _imread(path: Path, gray: bool) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot read image {path} (missing, corrupt or not an image); remove or replace it")
    return img


class _Selector:
    """Which frames of a source to keep: frame_range (by frame number, CDnet's 1-based), then
    stride, then the total cap. Without a range every frame counts, whatever its numbering (a
    folder numbered from 0 keeps its frame 0), and the stride counts frames in order."""

    def __init__(self, frame_range: tuple[int, int] | None, stride: int, remaining: int | None) -> None:
        self.first, self.last = frame_range if frame_range else (1, None)
        self.ranged = frame_range is not None
        self.stride, self.remaining = stride, remaining
        self._seen, self._last = 0, None  # frames offered so far (no range: the stride counts these), the last one

    def keep(self, number: int) -> bool:
        """Keep frame ``number``? (Asking twice about the same frame gives the same answer.)"""
        if not self.ranged:
            if number != self._last:
                self._seen, self._last = self._seen + 1, number
            return (self._seen - 1) % self.stride == 0
        if number < self.first or (self.last is not None and number > self.last):
            return False
        return (number - self.first) % self.stride == 0

    def done(self, number: int, kept: int) -> bool:
        """True once nothing at or after ``number`` can be kept."""
        return (self.last is not None and number > self.last) or (self.remaining is not None and kept >= self.remaining)


# A source yields (frame number, label, loader) lazily; loaders are called only for kept frames.
_Item = tuple[int, str, Callable[[], np.ndarray]]


def _folder_items(folder: Path, gray: bool) -> Iterator[_Item]:
    files = list_images(folder)
    if not files:
        videos = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTS)
        hint = f" (it holds videos: pass them as paths, e.g. {folder / videos[0]})" if videos else ""
        raise UserError(f"no images (png/jpg/jpeg/bmp) in folder {folder}{hint}; point at a folder of frames or a video")
    for number, path in zip(_folder_numbers(files), files):
        yield number, str(path), (lambda p=path: _imread(p, gray))


def _folder_numbers(files: list[Path]) -> list[int]:
    """Frame numbers of a folder's images: CDnet numbering (NNNNNN in the name) when every file has a
    distinct number, else the sorted order from 1."""
    numbers = [_trailing_number(p) for p in files]
    if None not in numbers and len(set(numbers)) == len(numbers):
        return numbers  # type: ignore[return-value]
    return list(range(1, len(files) + 1))


def _manifest_items(folder: Path, gray: bool, stamps: list[float]) -> Iterator[_Item]:
    manifest = folder / MANIFEST
    entries = [(folder / rec["file"], rec["t"]) for rec in read_manifest(manifest, strict=True)]
    if not entries:
        raise UserError(f"{manifest} lists no frames; record some footage first or point at another folder")
    for number, (path, t) in enumerate(entries, 1):
        if not path.is_file():
            log.warning("%s: frame file %s is missing; skipped", manifest, path.name)
            continue

        def load(p: Path = path, t: float = t) -> np.ndarray:
            stamps.append(t)
            return _imread(p, gray)

        yield number, str(path), load


def _video_items(path: Path, gray: bool, sel: _Selector) -> Iterator[_Item]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise UserError(f"cannot open video {path} (unsupported codec or not a video); convert it, e.g. "
                        f"ffmpeg -i {path.name} -c:v mjpeg out.avi")
    try:
        number, kept = 0, 0
        while True:
            number += 1
            if sel.done(number, kept):
                return
            if sel.keep(number):
                ok, img = cap.read()
                if not ok or img is None:
                    break
                if gray:
                    img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                kept += 1
                yield number, f"{path}#{number}", (lambda im=img: im)
            elif not cap.grab():
                break
        if number == 1:
            raise UserError(f"cannot read any frame from video {path} (empty or corrupt); check the file")
    finally:
        cap.release()


def _synthetic_items(spec: str, gray: bool) -> Iterator[_Item]:
    from stream.synthetic import DEFAULT_SPEC_FRAMES, SyntheticScene, parse_synthetic_spec

    parsed = parse_synthetic_spec(spec)
    n = parsed.frames or DEFAULT_SPEC_FRAMES
    scene = SyntheticScene(parsed.scene)

    def load(t: int) -> np.ndarray:
        img = scene.frame(t)[0]
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if gray else img

    for number in range(1, n + 1):
        yield number, f"synthetic#{number}", (lambda t=parsed.start + number - 1: load(t))


def _estimate_total(path: str, sel: _Selector) -> int | None:
    """Rough frame count for the progress bar and the stride spreading (None when unknown)."""
    p = Path(path).expanduser()
    try:
        if p.is_file() and p.suffix.lower() not in IMAGE_EXTS:
            cap = cv2.VideoCapture(str(p))
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
            cap.release()
        elif p.is_dir():
            folder = p / "input" if (p / "input").is_dir() else p
            numbers = _folder_numbers(list_images(folder))
            n = len(numbers)
            if sel.ranged:  # by the files' own numbers (a folder numbered 1000.. held none of 1..n)
                n = sum(1 for k in numbers if sel.keep(k))
                return min(n, sel.remaining) if sel.remaining is not None else n
        else:
            return None
    except OSError:
        return None
    if n <= 0:
        return None
    last = min(n, sel.last) if sel.last is not None else n
    total = max(0, math.ceil((last - sel.first + 1) / sel.stride))
    return min(total, sel.remaining) if sel.remaining is not None else total


def check_selection(stride: int, max_frames: int | None, frame_range: tuple[int, int] | None) -> None:
    if stride < 1:
        raise UserError(f"--stride {stride} must be >= 1")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames {max_frames} must be >= 1")
    if frame_range is not None and not (1 <= frame_range[0] <= frame_range[1]):
        raise UserError(f"frame range {frame_range[0]}-{frame_range[1]} is invalid: "
                        "use FIRST-LAST with 1 <= FIRST <= LAST (e.g. --frames 1-469)")


def footage_here(source: str) -> bool:
    """True when ``source`` (a checkpoint's footage entry) can be read on this machine: the synthetic scene or an existing path."""
    return is_synthetic_spec(source) or Path(source).expanduser().exists()


def spread_stride(paths: Sequence[str | Path], max_frames: int | None, stride: int = 1,
                  frame_range: tuple[int, int] | None = None) -> int:
    """The stride that spreads at most ``max_frames`` frames over all of the footage.

    Capping alone keeps the first ``max_frames`` (the first minute of a ten-minute recording);
    this widens ``stride`` so the frames kept span the whole footage: every light and every
    stretch of traffic the recording holds. Unchanged when the footage fits or its length is unknown.
    """
    check_selection(stride, max_frames, frame_range)
    if max_frames is None:
        return stride
    totals = [_estimate_total(str(p), _Selector(frame_range, stride, None)) for p in paths]
    if not totals or None in totals:
        return stride
    total = sum(t for t in totals if t is not None)
    return stride * max(1, math.ceil(total / max_frames))


# --------------------------------------------------------------------------- load_footage
def load_footage(
    paths: Sequence[str | Path],
    size: tuple[int, int] | None = None,
    gray: bool = False,
    max_frames: int | None = None,
    stride: int = 1,
    frame_range: tuple[int, int] | None = None,
    min_frames: int = 1,
    progress: bool = True,
) -> Footage:
    """Read frames from videos, image folders, CDnet sets, recordings or ``synthetic[:k=v,...]``.

    ``size`` = (width, height) resizes as the exported graph does (training.resize, which needs
    torch). ``frame_range`` (1-based, inclusive; the NNNNNN in file names for numbered frames,
    else frame order) and ``stride`` apply to each path; ``max_frames`` caps the total. Frames
    are selected before decoding and stacking.
    """
    from tqdm import tqdm

    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise UserError("no footage given; pass a video, an image folder, a CDnet folder or 'synthetic'")
    check_selection(stride, max_frames, frame_range)
    if size is not None and (size[0] <= 0 or size[1] <= 0):
        raise UserError(f"size {size[0]}x{size[1]} must be positive")

    frames: list[np.ndarray] = []
    sources: list[str] = []
    stamps: list[float] = []
    all_stamped = True
    fit = _SameSize(size)
    for raw in paths:
        text = str(raw)
        remaining = None if max_frames is None else max_frames - len(frames)
        if remaining == 0:
            break
        sel = _Selector(frame_range, stride, remaining)
        src_stamps: list[float] = []
        items, label, stamped = _items_of(text, gray, sel, src_stamps)
        all_stamped = all_stamped and stamped
        bar = tqdm(total=_estimate_total(text, sel), desc=Path(label).name or label, unit="frame",
                   disable=None if progress else True, leave=False)
        kept = 0
        try:
            for number, source, load in items:
                if sel.done(number, kept):
                    break
                if not sel.keep(number):
                    continue
                frames.append(fit(load(), source))
                sources.append(source)
                kept += 1
                bar.update(1)
        finally:
            bar.close()
        stamps.extend(src_stamps)
        if kept == 0:
            what = f" in frame range {frame_range[0]}..{frame_range[1]}" if frame_range else ""
            raise UserError(f"{label}: no frames{what}; check the path and the frame range")

    if len(frames) < min_frames:
        single = [str(p) for p in paths if Path(str(p)).suffix.lower() in IMAGE_EXTS and Path(str(p)).is_file()]
        hint = f" ({', '.join(single)}: a single image is one frame; pass the folder of images, or a video)" if single else ""
        raise UserError(f"{', '.join(map(str, paths))} gave {len(frames)} frames but at least {min_frames} are needed{hint}; "
                        f"add footage or lower the stride")
    out = _stack(frames)
    timestamps = np.asarray(stamps, np.float64) if all_stamped and len(stamps) == len(out) else None
    return Footage(frames=out, sources=sources, timestamps=timestamps)


def _items_of(text: str, gray: bool, sel: _Selector, stamps: list[float]) -> tuple[Iterator[_Item], str, bool]:
    """(items, label, stamped) for one footage argument; a recording's capture times go into ``stamps``."""
    if is_synthetic_spec(text):
        return _synthetic_items(text, gray), text, False
    p = Path(text).expanduser()
    if not p.exists():
        raise UserError(f"{p}: no such file or folder; check the path")
    if p.is_dir() and (p / "run.json").is_file():
        raise UserError(f"{p} is a sparsecam training run (run.json, model.pt, plots), not footage; "
                        "pass the videos or image folders to train on")
    if p.is_dir():
        if (p / MANIFEST).is_file():
            return _manifest_items(p, gray, stamps), str(p), True
        return _folder_items(p / "input" if (p / "input").is_dir() else p, gray), str(p), False
    if p.suffix.lower() in IMAGE_EXTS:
        return iter([(1, str(p), lambda p=p: _imread(p, gray))]), str(p), False
    if p.suffix.lower() in NOT_FOOTAGE:  # FFmpeg plays a text file as a video of its characters
        raise UserError(f"{p} is a {p.suffix} file, not footage; pass video files, image folders, CDnet folders or recordings")
    return _video_items(p, gray, sel), str(p), False


class _SameSize:
    """Brings frames to ``size`` (resized as the exported graph does: training.resize, torch), or without
    one checks that every frame has the first one's size."""

    def __init__(self, size: tuple[int, int] | None) -> None:
        self.size = size
        self.first: tuple[str, tuple[int, int]] | None = None  # (source, (w, h)) of the first frame

    def __call__(self, img: np.ndarray, source: str) -> np.ndarray:
        if img.ndim == 2:
            img = img[..., None]
        h, w = img.shape[:2]
        if self.size is not None:
            if (w, h) != tuple(self.size):
                from training.resize import resize_image  # torch: only when resizing

                img = resize_image(img, tuple(self.size))
                if img.ndim == 2:
                    img = img[..., None]
            return img
        if self.first is None:
            self.first = (source, (w, h))
        elif self.first[1] != (w, h):
            raise UserError(f"frame size differs: {self.first[0]} is {self.first[1][0]}x{self.first[1][1]} but {source} is "
                            f"{w}x{h}; pass --size WIDTHxHEIGHT to resize all frames")
        return img


def _stack(frames: list[np.ndarray]) -> np.ndarray:
    """One (N, H, W, C) array, without holding two full copies: frames are moved in one by one."""
    out = np.empty((len(frames),) + frames[0].shape, np.uint8)
    for i in range(len(frames)):
        out[i] = frames[i]
        frames[i] = None  # type: ignore[call-overload]
    return out


# --------------------------------------------------------------------------- labeled sets
@dataclass
class LabeledSet:
    """A CDnet-style labeled set: input/NNNNNN.*, groundtruth/NNNNNN.png, optional ROI and temporal ROI."""

    name: str
    root: Path
    input_paths: dict[int, Path]
    gt_paths: dict[int, Path]
    roi: np.ndarray | None  # bool (H, W), True = scored; None = the whole frame
    temporal_roi: tuple[int, int]  # first, last frame index to score (inclusive)
    frame_size: tuple[int, int] = field(default=(0, 0))  # (width, height) of the input frames

    @property
    def eval_indices(self) -> list[int]:
        """Sorted frame indices inside the temporal ROI that have ground truth."""
        a, b = self.temporal_roi
        return sorted(i for i in self.gt_paths if a <= i <= b)

    def read_frame(self, i: int, gray: bool = False) -> np.ndarray:
        """Input frame ``i``: BGR uint8 (H, W, 3), or (H, W, 1) when ``gray``."""
        if i not in self.input_paths:
            raise UserError(f"{self.root}: no input frame {i}; "
                            f"valid indices are {min(self.input_paths)}..{max(self.input_paths)}")
        img = _imread(self.input_paths[i], gray)
        w, h = self.frame_size
        if img.shape[:2] != (h, w):
            raise UserError(f"input frame {self.input_paths[i]} is {img.shape[1]}x{img.shape[0]} but the set's frames are "
                            f"{w}x{h}; fix or remove it")
        return img[..., None] if img.ndim == 2 else img

    def read_gt(self, i: int) -> np.ndarray:
        """Ground truth of frame ``i``: uint8 (H, W) with CDnet labels (0, 50, 85, 170, 255)."""
        if i not in self.gt_paths:
            raise UserError(f"{self.root}: frame {i} has no ground truth in groundtruth/")
        gt = cv2.imread(str(self.gt_paths[i]), cv2.IMREAD_UNCHANGED)
        if gt is None:
            raise UserError(f"cannot read ground truth {self.gt_paths[i]}; remove or replace it")
        if gt.ndim == 3:
            gt = gt[..., 0]
        if gt.dtype != np.uint8:  # 16-bit: labels scaled to 65535 (x257), or the plain 0..255 labels stored wide
            gt = (gt >> 8 if gt.max() > 255 else gt).astype(np.uint8)
        w, h = self.frame_size
        if gt.shape != (h, w):
            raise UserError(f"ground truth {self.gt_paths[i]} is {gt.shape[1]}x{gt.shape[0]} but the set's frames are {w}x{h}; "
                            "fix or remove it")
        return gt


def _index_files(folder: Path, exts: tuple[str, ...]) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in exts:
            continue
        n = _trailing_number(p)
        if n is None:
            log.warning("%s: no frame number in the file name; ignored", p)
            continue
        if n in out:
            raise UserError(f"{out[n]} and {p} have the same frame number {n}; remove one of them")
        out[n] = p
    return out


def open_labeled_set(root: Path) -> LabeledSet:
    """Index a CDnet-style set (input/, groundtruth/, optional ROI.png and temporalROI.txt)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: no such folder; pass a CDnet-style set (a folder with input/ and groundtruth/)")
    if not (root / "input").is_dir():
        raise UserError(f"{root} has no input/ folder; pass a CDnet-style set (input/NNNNNN.jpg, groundtruth/NNNNNN.png)")
    inputs = _index_files(root / "input", IMAGE_EXTS)
    if not inputs:
        raise UserError(f"{root / 'input'} holds no numbered images (NNNNNN.png/jpg); check the set")
    gts = _index_files(root / "groundtruth", IMAGE_EXTS) if (root / "groundtruth").is_dir() else {}
    if not gts:
        raise UserError(f"{root} has no ground truth (groundtruth/NNNNNN.png); a labeled set is needed for scoring")
    first = _imread(inputs[min(inputs)], gray=True)
    h, w = first.shape[:2]

    roi = None
    for name in ("ROI.png", "ROI.bmp"):
        roi_path = root / name
        if roi_path.is_file():
            img = cv2.imread(str(roi_path), cv2.IMREAD_GRAYSCALE)
            if img is None:
                log.warning("%s: unreadable; scoring the full frame", roi_path)
            elif img.shape != (h, w):
                log.warning("%s is %dx%d but the frames are %dx%d; ignoring it and scoring the full frame",
                            roi_path, img.shape[1], img.shape[0], w, h)
            else:
                roi = img > 0
            break

    troi_path = root / "temporalROI.txt"
    if troi_path.is_file():
        try:
            a, b = (int(v) for v in troi_path.read_text().split()[:2])
        except ValueError:
            raise UserError(f"{troi_path} must hold two frame numbers 'FIRST LAST'; fix or delete it") from None
        temporal_roi = (a, b)
    else:
        temporal_roi = (min(gts), max(gts))
    return LabeledSet(name=root.name, root=root, input_paths=inputs, gt_paths=gts, roi=roi,
                      temporal_roi=temporal_roi, frame_size=(w, h))


# --------------------------------------------------------------------------- batches
def window_batch(n_frames: int, size: tuple[int, int], n: int, crop: int | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, slice, slice]:
    """Indices of ``n`` frames (with replacement only if fewer than ``n`` exist) and ONE window
    (rows, cols) to cut all of them with: ``crop`` x ``crop`` pixels (the frame's side where that is
    smaller; None or 0: whole frames). Sharing the window keeps the stacked batch a low-rank
    background plus a sparse foreground. ``size`` = (height, width) of the frames."""
    h, w = size
    idx = rng.choice(n_frames, size=n, replace=n_frames < n)
    ch, cw = min(crop or h, h), min(crop or w, w)
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return idx, slice(y, y + ch), slice(x, x + cw)
