"""What an example is made of on disk: a checked label, a unit vector in 16 bits, and its
augmented views in 8 bits (only the linear head trains on them, and at full precision
they would be most of the store's size)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

from edge.errors import EdgeError

MAX_LABEL_CHARS = 64


class LabelError(EdgeError):
    """A label that cannot name a taught class."""


def check_label(label: object) -> str:
    """The label stripped of surrounding blanks, or a LabelError saying what is wrong."""
    if not isinstance(label, str):
        raise LabelError("label must be a string")
    text = label.strip()
    if not text:
        raise LabelError("label is empty")
    if len(text) > MAX_LABEL_CHARS:
        raise LabelError(f"label is longer than {MAX_LABEL_CHARS} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise LabelError(f"label {text.encode('unicode_escape').decode()!r} has control characters")
    return text


class EmbeddingError(EdgeError):
    """An embedding that cannot be kept (all zeros, or not finite)."""


def unit16(x: np.ndarray) -> bytes:
    x = np.asarray(x, np.float32).reshape(-1)
    norm = float(np.linalg.norm(x))
    if not np.isfinite(norm) or norm == 0.0:
        raise EmbeddingError("embedding is all zeros or not finite")
    return (x / norm).astype("<f2").tobytes()


def views_blob(views: Sequence[np.ndarray]) -> bytes | None:
    """Views in 8 bits each: a float32 scale, then int8 values."""
    if not len(views):
        return None
    parts = []
    for v in views:
        unit = np.frombuffer(unit16(v), "<f2").astype(np.float32)
        scale = float(np.abs(unit).max()) / 127.0 or 1.0
        parts.append(np.float32(scale).astype("<f4").tobytes())
        parts.append(np.round(unit / scale).astype(np.int8).tobytes())
    return b"".join(parts)


def views_of(blob: bytes, dim: int) -> np.ndarray:
    step = 4 + dim
    if len(blob) % step:
        raise ValueError("views of the wrong size")
    out = []
    for at in range(0, len(blob), step):
        scale = np.frombuffer(blob, "<f4", 1, at)[0]
        out.append(np.frombuffer(blob, np.int8, dim, at + 4).astype(np.float32) * scale)
    return np.vstack(out)
