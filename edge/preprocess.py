"""Turning a BGR camera image into a model's input tensor: crop, resize, colour order, scaling.

A ``Preprocessor`` owns its scratch buffers, so the per-frame path allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


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


class Preprocessor:
    """Writes one image into a caller-owned tensor view, reusing its own scratch buffers."""

    def __init__(self, spec: InputSpec) -> None:
        if spec.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel order must be RGB or BGR, not {spec.channel_order!r}")
        self.spec = spec
        self._resized = np.empty((spec.height, spec.width, 3), np.uint8)
        self._ordered = np.empty_like(self._resized)
        lo, hi = spec.value_range
        dtype = np.dtype(spec.dtype)
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

    def __call__(self, bgr: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` (shape H x W x 3, the input's dtype, may be a view of the tensor)."""
        spec = self.spec
        src = center_square(bgr) if spec.crop == "center" else bgr
        interp = cv2.INTER_AREA if src.shape[0] > spec.height else cv2.INTER_LINEAR
        cv2.resize(src, (spec.width, spec.height), dst=self._resized, interpolation=interp)
        if spec.channel_order == "RGB":
            cv2.cvtColor(self._resized, cv2.COLOR_BGR2RGB, dst=self._ordered)
            pixels = self._ordered
        else:
            pixels = self._resized
        if self._float_out:
            # Convert into the float scratch first: a mixed-type multiply would allocate.
            np.copyto(self._scratch, pixels, casting="unsafe")
            if self._add == 0.0:
                np.multiply(self._scratch, np.float32(self._mul), out=out, casting="unsafe")
            else:
                self._scratch *= np.float32(self._mul)
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
