"""Turning a camera or file image upright: rotation by quarter turns, then optional mirroring.

Shared by every source, so the same config keys (``rotate``, ``hflip``, ``vflip``) mean the
same thing whether frames come from a Pi camera, a USB webcam or a file.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_ROTATIONS = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


@dataclass(frozen=True, slots=True)
class Orientation:
    """Clockwise rotation in degrees (0, 90, 180, 270), then horizontal/vertical flips.

    ``apply`` returns the input itself when nothing is to be done, so the common case costs
    nothing per frame.
    """

    rotate: int = 0
    hflip: bool = False
    vflip: bool = False

    def __post_init__(self) -> None:
        if self.rotate not in (0, 90, 180, 270):
            raise ValueError(f"rotate must be 0, 90, 180 or 270, not {self.rotate!r}")

    @property
    def identity(self) -> bool:
        return self.rotate == 0 and not self.hflip and not self.vflip

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an image of the given size after ``apply``."""
        return (height, width) if self.rotate in (90, 270) else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        if self.rotate == 0 and not self.hflip and not self.vflip:
            return image
        out = image if self.rotate == 0 else cv2.rotate(image, _ROTATIONS[self.rotate])
        if self.hflip and self.vflip:
            return cv2.flip(out, -1)
        if self.hflip:
            return cv2.flip(out, 1)
        if self.vflip:
            return cv2.flip(out, 0)
        return out
