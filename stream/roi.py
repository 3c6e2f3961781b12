"""What a camera watches: a region image (white = watched, black = ignored) cleared from its masks.

A burned-in clock, a neighbour's window, a road outside the site, a flag: parts of the picture
that change but are nobody's business. The daemon clears them from every mask of the camera,
before the mask is published, previewed, counted or used to decide a recording.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from stream.errors import UserError

log = logging.getLogger("sparsecam.roi")

ASPECT_TOLERANCE = 0.02  # a region image of another aspect ratio is stretched, with a warning
SIZES_KEPT = 8  # resized regions kept, one per frame size seen (oldest dropped first)


def aspect_differs(width: int, height: int, other_width: int, other_height: int) -> bool:
    """Do two frame sizes differ in aspect ratio by more than ASPECT_TOLERANCE (not just in scale)?"""
    return abs((width / height) / (other_width / other_height) - 1) > ASPECT_TOLERANCE


class WatchRegion:
    """A camera's region image, resized (nearest) to the size of its masks on first use of each size."""

    def __init__(self, path: Path, camera: str) -> None:
        if not Path(path).is_file():  # checked first: OpenCV would also print its own warning
            raise UserError(f"camera {camera}: roi {path} does not exist; give a PNG the camera's size, "
                            "white where it watches, black where it ignores")
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise UserError(f"camera {camera}: roi {path} is not a readable image; give a PNG the camera's size, "
                            "white where it watches, black where it ignores")
        self.region = img > 127
        if not self.region.any():
            raise UserError(f"camera {camera}: roi {path} is all black, so the camera would watch nothing; "
                            "paint white where it should watch")
        self.path, self.camera = path, camera
        self._sized: dict[tuple[int, int], np.ndarray] = {}

    def at(self, height: int, width: int) -> np.ndarray:
        """The region at (height, width), bool."""
        key = (height, width)
        if key not in self._sized:
            rh, rw = self.region.shape
            if aspect_differs(rw, rh, width, height):
                log.warning("camera %s: roi %s is %dx%d but the masks are %dx%d; stretched to fit", self.camera, self.path,
                            rw, rh, width, height)
            sized = self.region if (rh, rw) == key else cv2.resize(self.region.astype(np.uint8), (width, height),
                                                                   interpolation=cv2.INTER_NEAREST) > 0
            if len(self._sized) >= SIZES_KEPT:  # a folder of images of many sizes must not grow memory without bound
                self._sized.pop(next(iter(self._sized)))
            self._sized[key] = sized
        return self._sized[key]

    def apply(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` (H, W) uint8 with the ignored pixels set to 0 (a new array)."""
        return np.where(self.at(*mask.shape[:2]), mask, 0).astype(mask.dtype, copy=False)
