"""A synthetic fixed-camera scene with exact ground truth (numpy + cv2 only).

A textured road-and-grass background (gradients, bushes, a building, asphalt and grass
texture, lane marks) with moving cars, ellipses and rotated polygons that wrap around the
frame, slow illumination drift, sensor noise and optional camera jitter. ``frame(t)`` is a
pure function of ``(cfg, t)``: every random choice is seeded from ``cfg.seed`` (the scene) or
``(cfg.seed, t)`` (per-frame noise and jitter), so frames can be rendered in any order.

Used by the daemon (``--source synthetic``), the tests, the README demo and
``sparsecam synth --out DIR`` which writes a CDnet-layout folder that ``sparsecam eval`` scores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from stream.argtypes import Parser, bounded
from stream.errors import UserError

_NOISE_BANK = 4  # pre-drawn Gaussian fields; each frame sums two random windows of them
_NOISE_MARGIN = 48  # extra rows/cols per field so windows can start at random offsets


@dataclass(frozen=True)
class SceneConfig:
    """Everything that defines a synthetic scene; equal configs render identical frames."""

    width: int = 320
    height: int = 240
    seed: int = 0
    n_objects: int = 6
    noise_std: float = 3.0  # sensor noise, grey levels
    drift: float = 0.08  # relative amplitude of the slow illumination drift
    drift_period: int = 300  # frames
    jitter: int = 0  # max pixels of random global shift per frame
    fg_target: float = 0.05  # object sizes are tuned so foreground covers about this fraction

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise UserError(f"synthetic scene size {self.width}x{self.height} is too small: use at least 32x32")
        if self.n_objects < 0 or self.noise_std < 0 or self.drift < 0 or self.jitter < 0:
            raise UserError("synthetic scene: n_objects, noise_std, drift and jitter must be >= 0")
        if self.drift_period < 1:
            raise UserError("synthetic scene: drift_period must be >= 1 frame")
        if self.jitter * 4 > min(self.width, self.height):
            raise UserError(f"synthetic scene: jitter {self.jitter} is too large for {self.width}x{self.height}")
        if not 0 < self.fg_target < 0.5:
            raise UserError("synthetic scene: fg_target must be in (0, 0.5)")


@dataclass
class _Object:
    kind: str  # "car", "ellipse" or "polygon"
    mask: np.ndarray  # (h, w) bool
    colour: np.ndarray  # (h, w, 3) float32 BGR
    x0: float  # canvas position of the top-left corner at t=0
    y0: float
    vx: float  # px / frame
    vy: float
    gap_x: float  # off-screen stretch of the wrap-around path, so objects leave before re-entering
    gap_y: float


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth random field in about [-1, 1] with features of about `cell` pixels."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _max_channel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


class SyntheticScene:
    """Renders frame ``t`` of the scene described by ``cfg`` with its exact ground truth."""

    def __init__(self, cfg: SceneConfig = SceneConfig()) -> None:
        self.cfg = cfg
        self._scale = math.sqrt(cfg.width * cfg.height / (320.0 * 240.0))
        j = cfg.jitter
        self._ch, self._cw = cfg.height + 2 * j, cfg.width + 2 * j  # canvas = frame + jitter margin
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed % 2**63, 0x5CA9]))
        self._bg, self._road = self._make_background(rng)
        self._light = _smooth_noise(rng, self._ch, self._cw, 160 * self._scale)  # spatial drift pattern
        self._objects = self._make_objects(rng)
        noise_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed % 2**63, 0x0015E]))
        shape = (_NOISE_BANK, cfg.height + _NOISE_MARGIN, cfg.width + _NOISE_MARGIN, 3)
        # two independent windows are summed per frame: each carries half the variance
        self._noise = (noise_rng.standard_normal(shape, dtype=np.float32) * (cfg.noise_std / math.sqrt(2.0))
                       if cfg.noise_std > 0 else None)

    # ------------------------------------------------------------------ scene construction
    def _make_background(self, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
        h, w, s = self._ch, self._cw, self._scale
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        # grass: green with large patches and fine texture
        grass = np.empty((h, w, 3), np.float32)
        patches = _smooth_noise(rng, h, w, 50 * s)
        fine = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.8)
        base = np.array([45, 125, 70], np.float32)  # BGR
        for c in range(3):
            grass[..., c] = base[c] * (1 + 0.22 * patches) + 9 * fine * (1.0 if c == 1 else 0.6)
        # dirt patches on the grass
        dirt = np.clip(_smooth_noise(rng, h, w, 35 * s) - 0.45, 0, None) * 2.0
        grass += dirt[..., None] * (np.array([60, 110, 140], np.float32) - grass)
        # road: horizontal band of asphalt with texture, kerbs and dashed lane marks
        top = int(h * rng.uniform(0.42, 0.50))
        bottom = min(h - 4, top + int(h * rng.uniform(0.26, 0.32)))
        asphalt = np.empty((h, w, 3), np.float32)
        grain = rng.standard_normal((h, w)).astype(np.float32)
        stains = _smooth_noise(rng, h, w, 25 * s)
        for c, v in enumerate((92.0, 90.0, 88.0)):
            asphalt[..., c] = v + 7 * grain + 10 * stains
        img = grass.copy()
        img[top:bottom] = asphalt[top:bottom]
        kerb = max(2, int(round(3 * s)))
        img[top:top + kerb] = (175, 178, 180)
        img[bottom - kerb:bottom] = (175, 178, 180)
        mid = (top + bottom) // 2
        dash, gap, th = int(18 * s), int(14 * s), max(1, int(round(2 * s)))
        for x in range(int(rng.integers(0, dash + gap)) - dash - gap, w, dash + gap):
            cv2.rectangle(img, (x, mid - th // 2), (x + dash, mid - th // 2 + th - 1), (190, 225, 230), -1)
        # bushes / trees: dark green blobs with their own texture
        for _ in range(int(rng.integers(5, 9))):
            above = rng.random() < 0.6 or bottom >= h - 8
            cy = int(rng.uniform(0, top - 4)) if above else int(rng.uniform(bottom + 4, h))
            cx = int(rng.uniform(0, w))
            ax, ay = int(rng.uniform(10, 30) * s), int(rng.uniform(7, 20) * s)
            blob = np.zeros((h, w), np.float32)
            cv2.ellipse(blob, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
            blob = cv2.GaussianBlur(blob, (0, 0), 2.0 * s)[..., None]
            leaf = np.array([30, 80, 40], np.float32) + 14 * fine[..., None] + 12 * patches[..., None]
            img = img * (1 - blob) + leaf * blob
        # a building with a roof in one upper corner
        bw, bh = int(rng.uniform(50, 80) * s), int(rng.uniform(30, 45) * s)
        bx = int(rng.uniform(0, 0.15) * w) if rng.random() < 0.5 else int(w - bw - rng.uniform(0, 0.15) * w)
        by = max(0, min(top - bh - 2, int(rng.uniform(0.02, 0.12) * h)))
        cv2.rectangle(img, (bx, by), (bx + bw, by + bh), (150, 165, 190), -1)
        cv2.rectangle(img, (bx, by), (bx + bw, by + max(3, bh // 4)), (60, 60, 140), -1)
        for k in range(3):
            wx = bx + int((0.15 + 0.3 * k) * bw)
            cv2.rectangle(img, (wx, by + bh // 2), (wx + max(2, bw // 8), by + bh // 2 + max(2, bh // 4)),
                          (110, 90, 70), -1)
        # smooth lighting gradient (brighter at the top-left, vignetting at the corners)
        r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
        light = (1.08 - 0.12 * yy / h - 0.06 * xx / w) * (1 - 0.35 * r2)
        img *= light[..., None]
        return np.clip(img, 0, 255).astype(np.float32), (top, bottom)

    def _pick_colour(self, rng: np.random.Generator, refs: list[np.ndarray], strong: bool) -> np.ndarray:
        """A colour whose max-channel difference to every reference is large (strong) or moderate."""
        lo, hi = (80.0, 255.0) if strong else (35.0, 60.0)
        best, best_err = None, float("inf")
        for _ in range(400):
            c = rng.uniform(10, 245, 3).astype(np.float32)
            d = min(_max_channel_diff(c, r) for r in refs)
            if lo <= d <= hi:
                return c
            err = lo - d if d < lo else d - hi
            if err < best_err:
                best, best_err = c, err
        return best

    def _make_objects(self, rng: np.random.Generator) -> list[_Object]:
        """Build the objects, then rebuild them (same random draws) scaled to hit cfg.fg_target."""
        state = rng.bit_generator.state
        objects = self._build_objects(rng, 1.0)
        if not objects:
            return objects
        expected = 0.0  # mean visible object area over the wrap period
        for ob in objects:
            oh, ow = ob.mask.shape
            vis = ((self._cw / (self._cw + ow + ob.gap_x) if ob.vx else 1.0)
                   * (self._ch / (self._ch + oh + ob.gap_y) if ob.vy else 1.0))
            expected += float(ob.mask.sum()) * vis
        k = float(np.clip(math.sqrt(self.cfg.fg_target * self._cw * self._ch / max(expected, 1.0)), 0.5, 2.5))
        rng.bit_generator.state = state
        return self._build_objects(rng, k)

    def _build_objects(self, rng: np.random.Generator, k: float) -> list[_Object]:
        cfg, s = self.cfg, self._scale
        top, bottom = self._road
        road_ref = self._bg[top + 4:bottom - 4].reshape(-1, 3).mean(0)
        grass_ref = np.concatenate([self._bg[:top].reshape(-1, 3), self._bg[bottom:].reshape(-1, 3)]).mean(0)
        lanes = [top + 0.3 * (bottom - top), top + 0.72 * (bottom - top)]

        def size(v: float) -> float:  # 320x240 pixels, tuned by k, kept in 8..60, scaled to the resolution
            return float(np.clip(v * k, 8, 60)) * s

        objects = []
        for i in range(cfg.n_objects):
            kind = ("car", "ellipse", "polygon")[i % 3]
            strong = i % 4 != 3  # about a quarter of the objects are only moderately different
            speed = rng.uniform(0.5, 4.0) * s
            if kind == "car":
                length = rng.uniform(24, 56)
                breadth = length * rng.uniform(0.42, 0.55)
                fit = min(1.0, 0.4 * (bottom - top) / size(breadth))  # a car fits in its lane
                mask, colour = self._car_sprite(rng, size(length) * fit, size(breadth) * fit,
                                                self._pick_colour(rng, [road_ref], strong))
                lane = int(rng.integers(0, 2))
                x0 = rng.uniform(0, self._cw)
                y0 = lanes[lane] - mask.shape[0] / 2 + rng.uniform(-2, 2) * s
                vx, vy = (1.0 if lane == 1 else -1.0) * speed, 0.0
            else:
                col = self._pick_colour(rng, [road_ref, grass_ref], strong)
                if kind == "ellipse":
                    mask, colour = self._ellipse_sprite(rng, size(rng.uniform(10, 34)), size(rng.uniform(8, 22)), col)
                else:
                    mask, colour = self._polygon_sprite(rng, size(rng.uniform(16, 40)) / 2, col)
                ang = rng.uniform(0, 2 * math.pi)
                x0, y0 = rng.uniform(0, self._cw), rng.uniform(0, self._ch)
                vx, vy = speed * math.cos(ang), speed * math.sin(ang)
            gap_x, gap_y = rng.uniform(0.05, 0.6) * self._cw, rng.uniform(0.05, 0.6) * self._ch
            objects.append(_Object(kind, mask, colour, x0, y0, vx, vy, gap_x, gap_y))
        return objects

    @staticmethod
    def _shade(rng: np.random.Generator, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
        h, w = mask.shape
        yy = np.linspace(1.1, 0.88, h, dtype=np.float32)[:, None]
        tex = rng.normal(0, 4, (h, w)).astype(np.float32)
        img = colour[None, None, :] * yy[..., None] + tex[..., None]
        return np.clip(img, 0, 255).astype(np.float32)

    def _car_sprite(self, rng, length: float, breadth: float, colour: np.ndarray):
        w, h = max(8, int(round(length))), max(6, int(round(breadth)))
        mask = np.zeros((h, w), np.uint8)
        r = max(1, min(h, w) // 5)
        cv2.rectangle(mask, (r, 0), (w - 1 - r, h - 1), 1, -1)
        cv2.rectangle(mask, (0, r), (w - 1, h - 1 - r), 1, -1)
        for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
            cv2.circle(mask, (cx, cy), r, 1, -1)
        img = self._shade(rng, mask.astype(bool), colour)
        # windscreens and roof: darker / lighter versions of the body colour
        x1, x2 = int(0.25 * w), int(0.38 * w)
        img[1:h - 1, x1:x2] *= 0.72
        img[1:h - 1, int(0.62 * w):int(0.72 * w)] *= 0.78
        roof = img[int(0.2 * h):int(0.8 * h), x2:int(0.62 * w)]
        np.clip(roof * 1.12, 0, 255, out=roof)
        return mask.astype(bool), img

    def _ellipse_sprite(self, rng, a: float, b: float, colour: np.ndarray):
        w, h = max(8, int(round(a))), max(8, int(round(b)))
        mask = np.zeros((h, w), np.uint8)
        cv2.ellipse(mask, (w // 2, h // 2), (max(1, w // 2 - 1), max(1, h // 2 - 1)), 0, 0, 360, 1, -1)
        return mask.astype(bool), self._shade(rng, mask.astype(bool), colour)

    def _polygon_sprite(self, rng, radius: float, colour: np.ndarray):
        n = int(rng.integers(3, 8))
        step = 2 * math.pi / n  # evenly spread vertices (no slivers), randomly perturbed and rotated
        angles = np.arange(n) * step + rng.uniform(-0.3, 0.3, n) * step + rng.uniform(0, 2 * math.pi)
        radii = radius * rng.uniform(0.65, 1.0, n)
        pts = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
        pts -= pts.min(0)
        w, h = max(8, int(math.ceil(pts[:, 0].max())) + 1), max(8, int(math.ceil(pts[:, 1].max())) + 1)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        return mask.astype(bool), self._shade(rng, mask.astype(bool), colour)

    # ------------------------------------------------------------------ rendering
    def _frame_rng(self, t: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.cfg.seed % 2**63, t % 2**63, 0xF4A3E]))

    def _shift(self, rng: np.random.Generator) -> tuple[int, int]:
        j = self.cfg.jitter
        if j == 0:
            return 0, 0
        dy, dx = rng.integers(-j, j + 1, 2)
        return int(dy), int(dx)

    def _gain(self, t: int, oy: int, ox: int) -> np.ndarray | float:
        cfg = self.cfg
        if cfg.drift == 0:
            return 1.0
        ph = 2 * math.pi * t / cfg.drift_period
        a = 1.0 + cfg.drift * 0.75 * math.sin(ph)
        b = cfg.drift * 0.5 * math.sin(ph / 1.618 + 1.0)
        light = self._light[oy:oy + cfg.height, ox:ox + cfg.width]
        return (a + b * light)[..., None]

    def _finish(self, img: np.ndarray, t: int, rng: np.random.Generator, oy: int, ox: int,
                noise: bool) -> np.ndarray:
        img = np.multiply(img, self._gain(t, oy, ox), dtype=np.float32)  # new contiguous array: img may be a view
        if noise and self._noise is not None:
            cfg = self.cfg
            k = rng.integers(0, _NOISE_BANK, 2)
            off = rng.integers(0, _NOISE_MARGIN + 1, 4)
            img += self._noise[k[0], off[0]:off[0] + cfg.height, off[1]:off[1] + cfg.width]
            img += self._noise[k[1], off[2]:off[2] + cfg.height, off[3]:off[3] + cfg.width]
        img += 0.5  # round to nearest on the uint8 cast
        np.clip(img, 0, 255, out=img)
        return img.astype(np.uint8)

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``t``: BGR uint8 (H, W, 3) and ground truth uint8 (H, W), 255 = moving object."""
        cfg = self.cfg
        t = int(t)
        rng = self._frame_rng(t)
        dy, dx = self._shift(rng)
        canvas = self._bg.copy()
        mask = np.zeros((self._ch, self._cw), bool)
        for ob in self._objects:
            oh, ow = ob.mask.shape
            # wrap over [-ow, cw + gap): objects leave the frame fully and stay away a while
            x = int(math.floor((ob.x0 + ow + ob.vx * t) % (self._cw + ow + ob.gap_x))) - ow
            y = int(math.floor((ob.y0 + oh + ob.vy * t) % (self._ch + oh + ob.gap_y))) - oh
            x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + ow, self._cw), min(y + oh, self._ch)
            if x1 >= x2 or y1 >= y2:
                continue
            m = ob.mask[y1 - y:y2 - y, x1 - x:x2 - x]
            np.copyto(canvas[y1:y2, x1:x2], ob.colour[y1 - y:y2 - y, x1 - x:x2 - x], where=m[..., None])
            mask[y1:y2, x1:x2] |= m
        oy, ox = cfg.jitter + dy, cfg.jitter + dx
        img = canvas[oy:oy + cfg.height, ox:ox + cfg.width]
        gt = mask[oy:oy + cfg.height, ox:ox + cfg.width].astype(np.uint8) * np.uint8(255)
        return self._finish(img, t, rng, oy, ox, noise=True), gt

    def background(self, t: int = 0) -> np.ndarray:
        """What frame ``t`` would show without objects and noise (same drift and jitter): BGR uint8."""
        cfg = self.cfg
        dy, dx = self._shift(self._frame_rng(int(t)))
        oy, ox = cfg.jitter + dy, cfg.jitter + dx
        img = self._bg[oy:oy + cfg.height, ox:ox + cfg.width]
        return self._finish(img, int(t), self._frame_rng(int(t)), oy, ox, noise=False)

    def frames(self, n: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``start .. start+n-1`` stacked: (N, H, W, 3) uint8 and (N, H, W) uint8."""
        cfg = self.cfg
        imgs = np.empty((n, cfg.height, cfg.width, 3), np.uint8)
        gts = np.empty((n, cfg.height, cfg.width), np.uint8)
        for i in range(n):
            imgs[i], gts[i] = self.frame(start + i)
        return imgs, gts


def write_cdnet_folder(out: Path, n: int, cfg: SceneConfig, start: int = 0, progress: bool = True) -> Path:
    """Write ``n`` frames as a CDnet-layout folder (input/, groundtruth/, temporalROI.txt, README.txt).

    ``input/000001.png`` is ``frame(start)``. Returns ``out``.
    """
    from tqdm import tqdm

    if n < 1:
        raise UserError(f"cannot write {n} frames: use --frames >= 1")
    out = Path(out)
    try:
        (out / "input").mkdir(parents=True, exist_ok=True)
        (out / "groundtruth").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror}; choose a writable --out folder") from exc
    scene = SyntheticScene(cfg)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for i in tqdm(range(n), desc=f"synth {out.name}", unit="frame", disable=None if progress else True):
        img, gt = scene.frame(start + i)
        name = f"{i + 1:06d}.png"
        if not (cv2.imwrite(str(out / "input" / name), img, params)
                and cv2.imwrite(str(out / "groundtruth" / name), gt, params)):
            raise UserError(f"cannot write {out / 'input' / name}; check free space and permissions")
    (out / "temporalROI.txt").write_text(f"1 {n}\n")
    fields = ", ".join(f"{k}={v}" for k, v in asdict(cfg).items())
    (out / "README.txt").write_text(
        "sparsecam synthetic scene (stream/synthetic.py)\n"
        f"Config      : {fields}\n"
        f"Content     : {n} frames {cfg.width}x{cfg.height} BGR PNG, frames {start}..{start + n - 1} of the scene;\n"
        "              input/NNNNNN.png is frame(start + NNNNNN - 1).\n"
        "Layout      : input/NNNNNN.png, groundtruth/NNNNNN.png (same index), temporalROI.txt (score all frames)\n"
        "GT encoding : single-channel PNG, 0 background, 255 moving object (exact, no unknown/shadow labels).\n"
        "Licence     : generated data, no restrictions.\n"
    )
    return out


def parse_size(text: str, what: str = "--size") -> tuple[int, int]:
    """Parse 'WIDTHxHEIGHT' into (width, height) or raise UserError."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"{what} {text!r} is not WIDTHxHEIGHT, e.g. 320x240") from None
    if w <= 0 or h <= 0:
        raise UserError(f"{what} {text!r} must be positive, e.g. 320x240")
    return w, h


@dataclass(frozen=True)
class SyntheticSpec:
    """A ``synthetic[:key=value,...]`` source string, as train, eval and serve all accept it."""

    scene: SceneConfig
    frames: int | None = None  # None: endless (serve); train reads DEFAULT_SPEC_FRAMES
    start: int = 0
    fps: float | None = None  # serve: pace in real time (then the source is live)


DEFAULT_SPEC_FRAMES = 300
# key -> (SceneConfig field or spec field, parser)
_SPEC_KEYS = {
    "seed": ("seed", int), "jitter": ("jitter", int), "objects": ("n_objects", int),
    "noise": ("noise_std", float), "drift": ("drift", float),
    "frames": ("frames", int), "start": ("start", int), "fps": ("fps", float),
}
SPEC_HELP = "synthetic[:frames=N,seed=S,size=WxH,jitter=J,objects=K,noise=SD,drift=D,start=T,fps=F]"


def is_synthetic_spec(text: str) -> bool:
    """``synthetic`` or ``synthetic:...``: the built-in scene rather than a path or URL."""
    return text == "synthetic" or text.startswith("synthetic:")


def parse_synthetic_spec(spec: str, size: tuple[int, int] | None = None) -> SyntheticSpec:
    """Parse ``synthetic`` / ``synthetic:seed=1,size=320x240,...``; a bad one is a UserError."""
    head, _, body = spec.strip().partition(":")
    if head != "synthetic":
        raise UserError(f"{spec!r} is not a synthetic source; use {SPEC_HELP}")
    scene: dict[str, object] = {}
    extra: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = (t.strip() for t in part.partition("="))
        if key == "size" and sep:
            size = parse_size(value, what=f"size in {spec!r}")
            continue
        if not sep or key not in _SPEC_KEYS:
            raise UserError(f"bad option {part!r} in {spec!r}: use key=value pairs, {SPEC_HELP}")
        name, conv = _SPEC_KEYS[key]
        try:
            (extra if name in ("frames", "start", "fps") else scene)[name] = conv(value)
        except ValueError:
            raise UserError(f"{key}={value!r} in {spec!r} is not a number") from None
    if size is not None:
        scene["width"], scene["height"] = size
    frames = extra.get("frames")
    if frames is not None and int(frames) < 1:  # type: ignore[arg-type]
        raise UserError(f"{spec!r}: frames must be >= 1")
    fps = extra.get("fps")
    if fps is not None and float(fps) <= 0:  # type: ignore[arg-type]
        raise UserError(f"{spec!r}: fps must be positive")
    return SyntheticSpec(SceneConfig(**scene), frames, int(extra.get("start", 0)), fps)  # type: ignore[arg-type]


def cli(argv: list[str]) -> int:
    """`sparsecam synth`: write the synthetic scene to a CDnet-layout folder."""
    p = Parser(prog="sparsecam synth", description=cli.__doc__)
    p.add_argument("--out", required=True, type=Path, help="folder to create (must be absent or empty)")
    p.add_argument("--frames", type=int, default=300, help="number of frames (default 300)")
    p.add_argument("--size", default="320x240", help="WIDTHxHEIGHT (default 320x240)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("--jitter", type=int, default=0, help="max camera shake in pixels (default 0)")
    p.add_argument("--objects", type=int, default=6, help="number of moving objects (default 6)")
    p.add_argument("--noise", type=bounded(0.0, 255.0, what="a noise level in grey levels, 0 to 255"), default=3.0, help="sensor noise std in grey levels (default 3)")
    p.add_argument("--start", type=int, default=0, help="first frame index of the scene (default 0)")
    args = p.parse_args(argv)
    w, h = parse_size(args.size)
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder; choose a new --out")
    cfg = SceneConfig(width=w, height=h, seed=args.seed, jitter=args.jitter, n_objects=args.objects,
                      noise_std=args.noise)
    write_cdnet_folder(out, args.frames, cfg, start=args.start)
    print(f"wrote {args.frames} frames to {out} (score a method on it: sparsecam eval --set {out} --method MODEL.onnx|mog2)")
    return 0
