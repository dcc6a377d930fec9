"""Reading an image file safely: its size and declared pixel count are checked before decoding.

A 1 MB PNG can declare 20000×20000 pixels and make a decoder allocate gigabytes; a 400 MB
file named ``.jpg`` would be read whole into memory. Both are refused from the file's size
and header, before anything large is allocated. A big photo that is allowed is decoded at
a reduced size (OpenCV's ``IMREAD_REDUCED_*``, done inside the JPEG decoder) when the models
need far fewer pixels than it has.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import SourceError

MB = 1024 * 1024
# The file names taken for photos (folders, watched folders, teaching), compared lower-case.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = 50 * MB
    max_pixels: int = 50_000_000

    @classmethod
    def of(cls, max_mb: float, max_megapixels: float) -> ImageLimits:
        return cls(int(max_mb * MB), int(max_megapixels * 1_000_000))


DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True, slots=True)
class LoadedImage:
    data: bytes  # the file's bytes, for hashing
    bgr: np.ndarray  # decoded pixels, possibly reduced
    width: int  # the image's own size, before any reduction
    height: int


_SOS = 0xDA  # start of scan: the compressed image data follows


def _jpeg_markers(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset) of a JPEG's segments up to its first scan, stepping over each segment
    by its length, so nothing inside one (an EXIF thumbnail, say) is taken for a marker.
    Stops early where the data ends or is not a marker."""
    i = 2
    while i + 3 < len(data):
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        yield marker, i
        if marker == _SOS:
            return
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # no length field
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding; None if not found."""
    if data[:2] != b"\xff\xd8":
        return None
    for marker, i in _jpeg_markers(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= len(data):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
    return None


def jpeg_truncated(data: bytes) -> bool:
    """A JPEG cut off before its end-of-image marker. Only a marker after the first scan
    counts: an EXIF thumbnail ends with one of its own, early in the file, and some decoders
    (OpenCV 4.6) return a truncated photo as a half-grey picture instead of failing."""
    for marker, i in _jpeg_markers(data):
        if marker == _SOS:
            return data.find(b"\xff\xd9", i) == -1
    return True  # the headers end before any image data


def _tiff_size(head: bytes) -> tuple[int, int] | None:
    order = "<" if head[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", head[4:8])
    if ifd + 2 > len(head):
        return None
    (count,) = struct.unpack(order + "H", head[ifd : ifd + 2])
    found: dict[int, int] = {}
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(head):
            break
        tag, kind = struct.unpack(order + "HH", head[at : at + 4])
        if tag in (256, 257):
            fmt = "H" if kind == 3 else "I"
            (found[tag],) = struct.unpack(order + fmt, head[at + 8 : at + 8 + struct.calcsize(fmt)])
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) declared by a JPEG, PNG, BMP, WebP, GIF or TIFF header; None if unknown."""
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            return struct.unpack(">II", head[16:24])
        if head[:3] == b"\xff\xd8\xff":
            return jpeg_size(head)
        if head[:2] == b"BM":
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp_size(head)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", head[6:10])
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(head)
    except struct.error:
        return None
    return None


_REDUCED: tuple[tuple[int, int], ...] = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)


def jpeg_reduction(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(factor, imdecode flag): the largest reduction keeping the short side >= ``short_side``.

    The JPEG decoder scales inside its inverse DCT, so a reduced JPEG decode costs a fraction
    of a full one.
    """
    if short_side:
        for factor, flag in _REDUCED:
            if min(width, height) // factor >= short_side:
                return factor, flag
    return 1, cv2.IMREAD_COLOR


def load_image(
    path: str | Path, limits: ImageLimits = DEFAULT_LIMITS, *, min_side: int | None = None
) -> LoadedImage:
    """Check, read and decode an image file; SourceError in one line naming the file.

    ``min_side``: the smallest side the caller needs; a larger image is decoded at 1/2, 1/4
    or 1/8 of its size as long as it keeps at least that many pixels per side.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise SourceError(f"{path}: is a directory, not an image")
        if size > limits.max_bytes:
            raise SourceError(
                f"{path}: file is {size / MB:.1f} MB, over the {limits.max_bytes / MB:g} MB "
                "limit for an image (still.max_image_mb)"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path}: image file not found") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read image: {exc.strerror or exc}") from None
    if not data:
        raise SourceError(f"{path}: image file is empty (0 bytes)")
    declared = header_size(data)
    if declared is None:
        raise SourceError(
            f"{path}: cannot decode image: not a JPEG, PNG, BMP, WebP, GIF or TIFF "
            "(no image size in its header)"
        )
    width, height = (int(v) for v in declared)
    if width <= 0 or height <= 0:
        raise SourceError(f"{path}: the header declares an empty image ({width}×{height})")
    if width * height > limits.max_pixels:
        raise SourceError(
            f"{path}: image is {width}×{height} ({width * height / 1e6:.0f} megapixels), over the "
            f"{limits.max_pixels / 1e6:g} megapixel limit (still.max_image_megapixels)"
        )
    if data[:3] == b"\xff\xd8\xff" and jpeg_truncated(data):
        raise SourceError(f"{path}: JPEG is truncated (no end-of-image marker)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), jpeg_reduction(width, height, min_side)[1])
    if bgr is None or bgr.size == 0:
        raise SourceError(f"{path}: cannot decode image (corrupt or not an image)")
    if width != height and (bgr.shape[1] > bgr.shape[0]) != (width > height):
        width, height = height, width  # EXIF orientation turned it
    return LoadedImage(data, bgr, width, height)
