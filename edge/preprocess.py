"""Turning a BGR camera image into a model's input tensor: crop, resize, colour order, scaling.

A ``Preprocessor`` owns its scratch buffers, so the per-frame path allocates nothing.

Resizing is the costly part. Three ways are offered (``InputSpec.resize``):

- ``"linear"``: one bilinear resize (OpenCV's ``INTER_LINEAR`` uses half-pixel centres,
  like TensorFlow's ``tf.image.resize`` bilinear, which MoViNet was trained with).
- ``"area"``: ``INTER_AREA`` when shrinking (a box filter over every source pixel; slow
  at non-integer ratios), bilinear when enlarging.
- ``"area2"``: an integer-factor area reduction (OpenCV's fast path: a plain average of
  k x k blocks) to the smallest size not below the target, then bilinear the rest of the
  way; nearly the anti-aliasing of ``"area"`` at about the cost of ``"linear"``.

``edge bench --resize`` measures all three on real clips; the stream model's choice
follows from it (README, "How fast, measured").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

RESIZE_METHODS = ("linear", "area", "area2")


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of ``image``, as a view (no copy)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top = (h - side) // 2
    left = (w - side) // 2
    return image[top : top + side, left : left + side]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What a model's image input wants.

    ``value_range`` is the float range pixel 0..255 maps to before any
    quantisation: (0, 1) for MoViNet, (0, 255) for Custom Vision, (-1, 1) for
    many ImageNet models. For a quantised input the float value is then
    quantised with ``scale``/``zero_point``; ``raw_pixels`` skips that and feeds
    the 8-bit pixel as it is (what uint8 image models are trained to take).
    """

    height: int
    width: int
    dtype: type = np.float32
    channel_order: str = "RGB"  # "RGB" or "BGR"
    value_range: tuple[float, float] = (0.0, 1.0)
    scale: float = 0.0
    zero_point: int = 0
    raw_pixels: bool = False
    crop: str = "center"  # "center" or "none"
    resize: str = "area"  # one of RESIZE_METHODS


class Preprocessor:
    """Writes one image into a caller-owned tensor view, reusing its own scratch buffers."""

    def __init__(self, spec: InputSpec) -> None:
        if spec.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel order must be RGB or BGR, not {spec.channel_order!r}")
        if spec.resize not in RESIZE_METHODS:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_METHODS)}")
        self.spec = spec
        self._resized = np.empty((spec.height, spec.width, 3), np.uint8)
        self._ordered = np.empty_like(self._resized)
        self._reduced: np.ndarray | None = None  # "area2": the integer-factor step
        lo, hi = spec.value_range
        dtype: np.dtype[Any] = np.dtype(spec.dtype)
        self._float_out = dtype.kind == "f"
        if self._float_out:
            self._mul = (hi - lo) / 255.0
            self._add = lo
        elif spec.raw_pixels:
            self._mul, self._add = 1.0, 0.0
        else:
            if spec.scale <= 0:
                raise ValueError("a quantised input needs a positive scale")
            # q = (lo + p * (hi - lo) / 255) / scale + zp
            self._mul = (hi - lo) / 255.0 / spec.scale
            self._add = lo / spec.scale + spec.zero_point
        self._scratch = np.empty((spec.height, spec.width, 3), np.float32)
        info = None if self._float_out else np.iinfo(dtype.name)
        # Quantised inputs are clipped to their integer range; float inputs are not clipped.
        self._clip: tuple[int, int] = (0, 0) if info is None else (int(info.min), int(info.max))

    def resize(self, src: np.ndarray) -> np.ndarray:
        """``src`` (already cropped) at the input's size, in a reused uint8 buffer."""
        spec = self.spec
        size = (spec.width, spec.height)
        h, w = src.shape[:2]
        if spec.resize == "linear" or (h <= spec.height and w <= spec.width):
            interp = cv2.INTER_LINEAR
        elif spec.resize == "area":
            interp = cv2.INTER_AREA
        else:
            src = self._reduce(src)
            interp = cv2.INTER_LINEAR
        if src.shape[:2] == (spec.height, spec.width):
            np.copyto(self._resized, src)
        else:
            cv2.resize(src, size, dst=self._resized, interpolation=interp)
        return self._resized

    def _reduce(self, src: np.ndarray) -> np.ndarray:
        """Average k x k blocks, k the largest whole factor that stays at or above the target."""
        h, w = src.shape[:2]
        ky, kx = max(1, h // self.spec.height), max(1, w // self.spec.width)
        if ky == 1 and kx == 1:
            return src
        rh, rw = h // ky, w // kx
        top, left = (h - rh * ky) // 2, (w - rw * kx) // 2
        src = src[top : top + rh * ky, left : left + rw * kx]
        if self._reduced is None or self._reduced.shape[:2] != (rh, rw):
            self._reduced = np.empty((rh, rw, 3), np.uint8)
        cv2.resize(src, (rw, rh), dst=self._reduced, interpolation=cv2.INTER_AREA)
        return self._reduced

    def __call__(self, bgr: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` (shape H x W x 3, the input's dtype, may be a view of the tensor)."""
        spec = self.spec
        resized = self.resize(center_square(bgr) if spec.crop == "center" else bgr)
        if spec.channel_order == "RGB":
            cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=self._ordered)
            pixels = self._ordered
        else:
            pixels = resized
        if self._float_out:
            # One pass: uint8 pixels scaled straight into the float tensor (numpy casts
            # block by block, no full-size temporary).
            if self._add == 0.0:
                np.multiply(pixels, np.float32(self._mul), out=out, casting="unsafe")
            else:
                np.multiply(pixels, np.float32(self._mul), out=self._scratch)
                np.add(self._scratch, np.float32(self._add), out=out, casting="unsafe")
        elif self._mul == 1.0 and self._add == 0.0 and out.dtype == np.uint8:
            np.copyto(out, pixels)
        else:
            np.multiply(pixels, self._mul, out=self._scratch, casting="unsafe")
            self._scratch += self._add
            np.rint(self._scratch, out=self._scratch)
            np.clip(self._scratch, self._clip[0], self._clip[1], out=self._scratch)
            np.copyto(out, self._scratch, casting="unsafe")
        return out
