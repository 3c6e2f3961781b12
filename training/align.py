"""Global alignment of the background reference to each frame: camera jitter and exposure.

A shaking camera moves the whole scene by a few pixels from frame to frame; compared with a fixed
background every edge of the scene then lights up as foreground, and the threshold has to rise
above those edges, which loses the objects that barely differ from the road. The model therefore
shifts its background onto each frame before comparing them:

1. gray, half model resolution: score every integer shift within ``radius`` model pixels by the
   mean clipped absolute difference between the frame and the shifted background (clipping makes
   moving objects count the same for every shift, so they do not pull the estimate);
2. refine the best shift to sub-pixel from its neighbours' costs (equiangular line fit);
3. resample the background at that shift (bilinear, edges replicated).

Exposure: auto-exposure, auto white balance, a passing cloud or dusk scale the whole image; compared
with a background recorded at another exposure, every pixel then departs from it, and the network
sees frames darker or brighter than any it learned from. With ``exposure`` on, each frame is first
divided, per channel, by the gain that matches the background to it (``estimate_gain``: a coarse
then fine search over candidate gains by the same clipped difference as the shift), so the rest of
the model sees the frame at the exposure it was trained at. The gain is found against the
unaligned background (a global ratio barely feels a shift of a few pixels), before the shift, whose
clipped cost would otherwise saturate. On a camera whose exposure holds still the gain is ~1.

Everything is a handful of tensor operations (grid_sample, argmin, gather, sums) that export to
ONNX, so training, evaluation and the daemon run the same code. On a static camera the shift found
is ~0.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

CLIP = 0.1  # gray levels (of 1) beyond which a pixel's difference counts as "does not match"
GAIN_RANGE = (0.5, 2.0)  # exposure gains beyond these are not a camera's exposure step but a different scene
GAIN_POOL = 4  # the gain is scored on frames averaged over 4x4 pixels (40x30 at 160x120: a global ratio needs no more)
GAIN_STEPS = 29  # candidate gains over GAIN_RANGE (ratio steps of about 5 %), then as many within a step of the best


def _gray(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=1, keepdim=True) if x.shape[1] > 1 else x


def _grid(n: int, h: int, w: int, shift: torch.Tensor) -> torch.Tensor:
    """Sampling grid (n, h, w, 2) that reads an (h, w) image at (x + dx, y + dy); shift (n, 2) = (dx, dy) pixels."""
    ys = (torch.arange(h, dtype=torch.float32, device=shift.device) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=torch.float32, device=shift.device) * 2 + 1) / w - 1
    gx = xs.reshape(1, 1, w) + (shift[:, 0] * (2.0 / w)).reshape(n, 1, 1)
    gy = ys.reshape(1, h, 1) + (shift[:, 1] * (2.0 / h)).reshape(n, 1, 1)
    return torch.stack([gx.expand(n, h, w), gy.expand(n, h, w)], dim=-1)


def shift_images(img: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """out[y, x] = img[y + dy, x + dx] (bilinear, edges replicated); img (N or 1, C, H, W), shift (N, 2)."""
    n = shift.shape[0]
    h, w = img.shape[-2], img.shape[-1]
    return F.grid_sample(img.expand(n, -1, -1, -1), _grid(n, h, w, shift), mode="bilinear", padding_mode="border", align_corners=False)


def _candidate_shifts(r: int) -> torch.Tensor:
    d = torch.arange(-r, r + 1, dtype=torch.float32)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=1)  # (K, 2), row-major over (dy, dx)


def _subpixel(c_minus: torch.Tensor, c0: torch.Tensor, c_plus: torch.Tensor) -> torch.Tensor:
    """Minimum of the symmetric V through (-1, c_minus), (0, c0), (1, c_plus) (equiangular fit: an
    absolute-difference cost is V-shaped around its minimum, where a parabola biases towards whole pixels)."""
    rise = (torch.maximum(c_minus, c_plus) - c0).clamp(min=1e-6)
    return ((c_minus - c_plus) / (2 * rise)).clamp(-0.5, 0.5)


def max_radius(width: int, height: int) -> int:
    """The largest ``radius`` :func:`estimate_shift` can search on a width x height image: its
    half-resolution comparison window, ``r`` pixels in from every side, must keep some area
    (beyond it the cost is the mean of nothing, NaN, and the background comes out flat)."""
    half = min(width, height) // 2
    return next((radius for radius in range(64, 0, -1) if half > 2 * ((radius + 1) // 2 + 1)), 0)


def estimate_shift(x: torch.Tensor, bg: torch.Tensor, radius: int) -> torch.Tensor:
    """Shift (N, 2) = (dx, dy) in pixels of x's grid such that shift_images(bg, shift) matches x."""
    r = (radius + 1) // 2 + 1  # half resolution, one ring beyond the radius so its edge still gets a fit
    xg = F.avg_pool2d(_gray(x), 2)
    bgg = F.avg_pool2d(_gray(bg), 2)
    n, _, h, w = xg.shape
    cand = _candidate_shifts(r).to(x.device)
    shifted = shift_images(bgg[:1], cand)  # (K, 1, h, w): the background at every integer shift
    inner = (slice(None), slice(None), slice(r, h - r), slice(r, w - r))
    diff = (xg[inner].unsqueeze(1) - shifted[inner].unsqueeze(0)).abs().clamp(max=CLIP)  # (N, K, 1, h', w')
    cost = diff.mean(dim=(2, 3, 4))  # (N, K)
    best = cost.argmin(dim=1)  # (N,)
    side = 2 * r + 1
    iy, ix = best // side, best % side

    def at(dy: int, dx: int) -> torch.Tensor:
        j = (iy + dy).clamp(0, side - 1) * side + (ix + dx).clamp(0, side - 1)
        return cost.gather(1, j.unsqueeze(1)).squeeze(1)

    c0 = at(0, 0)
    fx = _subpixel(at(0, -1), c0, at(0, 1))
    fy = _subpixel(at(-1, 0), c0, at(1, 0))
    coarse = cand[best]  # (N, 2)
    shift = (coarse + torch.stack([fx, fy], dim=1)) * 2.0  # half-resolution pixels -> model pixels
    return shift.clamp(-float(radius), float(radius))


def _best_gain(xs: torch.Tensor, bs: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """The candidate gain (N, C) with the least mean clipped |xs - gain * bs|; cand (N or 1, K, C or 1).

    A tiny preference for gains near 1 settles ties (a frame nothing matches keeps its exposure)."""
    c = cand.unsqueeze(-1).unsqueeze(-1)  # (., K, ., 1, 1)
    cost = (xs.unsqueeze(1) - c * bs.unsqueeze(1)).abs().clamp(max=CLIP).mean(dim=(3, 4))  # (N, K, C)
    cost = cost + 1e-4 * cand.log().abs()
    best = cost.argmin(dim=1, keepdim=True)  # (N, 1, C)
    return cand.expand_as(cost).gather(1, best).squeeze(1)


def estimate_gain(x: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """Per-frame, per-channel gain (N, C, 1, 1) such that gain * bg matches x where the scene shows.

    As for the shift, candidates are scored at quarter resolution by the mean clipped absolute
    difference (clipping makes moving objects, even a person filling a third of the frame, weigh the
    same for every candidate): GAIN_STEPS gains over GAIN_RANGE (about 5 % apart), then as many
    again within one step of the best (about 0.5 % apart)."""
    xs, bs = F.avg_pool2d(x, GAIN_POOL), F.avg_pool2d(bg, GAIN_POOL)
    lo, hi = float(np.log(GAIN_RANGE[0])), float(np.log(GAIN_RANGE[1]))
    step = (hi - lo) / (GAIN_STEPS - 1)
    coarse = torch.exp(torch.linspace(lo, hi, GAIN_STEPS, device=x.device)).reshape(1, -1, 1)
    gain = _best_gain(xs, bs, coarse)  # (N, C)
    fine = gain.unsqueeze(1) * torch.exp(torch.linspace(-step, step, GAIN_STEPS, device=x.device)).reshape(1, -1, 1)
    gain = _best_gain(xs, bs, fine)
    return gain.clamp(*GAIN_RANGE).reshape(x.shape[0], x.shape[1], 1, 1)


def normalise_exposure(x: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """The frames x (N, C, H, W) brought to the background's exposure: x / gain, in [0, 1].

    Computed in float32 whatever x's type."""
    x32 = x.float()
    return (x32 / estimate_gain(x32, bg.float())).clamp(0.0, 1.0).to(x.dtype)


def align_background(x: torch.Tensor, bg: torch.Tensor, radius: int) -> torch.Tensor:
    """The background (1 or N, C, H, W) moved onto each frame of x (N, C, H, W); radius in pixels.

    Computed in float32 whatever x's type (the fp16 export runs the net in half precision)."""
    bg32 = bg.float()
    return shift_images(bg32, estimate_shift(x.float(), bg32, radius)).to(x.dtype)


def _to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] -> uint8 (N, H, W, C), rounded."""
    return (x.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


@torch.no_grad()
def _per_batch(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], frames: np.ndarray, background: np.ndarray,
               batch: int) -> np.ndarray:
    """uint8 (N, H, W, C) out of fn(frames, background) on floats, ``batch`` frames at a time."""
    bg = _to_float(background[None])
    return np.concatenate([_to_uint8(fn(_to_float(frames[i : i + batch]), bg)) for i in range(0, len(frames), batch)])


def aligned_backgrounds(frames: np.ndarray, background: np.ndarray, radius: int, batch: int = 64) -> np.ndarray:
    """uint8 background (H, W, C) moved onto each of the uint8 frames (N, H, W, C): (N, H, W, C)."""
    return _per_batch(lambda x, bg: align_background(x, bg, radius), frames, background, batch)


def normalised_frames(frames: np.ndarray, background: np.ndarray, batch: int = 64) -> np.ndarray:
    """uint8 frames (N, H, W, C) each brought to the uint8 background's exposure (normalise_exposure)."""
    return _per_batch(normalise_exposure, frames, background, batch)


@torch.no_grad()
def aligned_median(frames: np.ndarray, radius: int, max_frames: int = 200, batch: int = 64) -> np.ndarray:
    """Temporal median background of uint8 frames (N, H, W, C), each first moved onto the plain median.

    Exposure needs no matching here: the per-pixel median of frames that differ by a gain is the
    image at the median gain, as consistent as any single frame."""
    idx = np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int)
    sel = frames[idx]
    plain = np.median(sel, axis=0).astype(np.uint8)
    if radius <= 0:
        return plain
    b = _to_float(plain[None])
    moved = []
    for i in range(0, len(sel), batch):
        xi = _to_float(sel[i : i + batch])
        moved.append(shift_images(xi, -estimate_shift(xi, b, radius)))  # frame -> background's grid
    return _to_uint8(torch.cat(moved).median(dim=0, keepdim=True).values)[0]
