"""A stand-in for the ``libcamera`` Python bindings, only as far as picamera2's signatures need.

The real ``libcamera.Transform`` is a pybind11 class whose repr names the transform
(``<libcamera.Transform 'identity'>``); picamera2 uses an identity one as the default
``transform`` of every ``create_*_configuration``.
"""

from __future__ import annotations

__all__ = ["Transform"]


class Transform:
    """As libcamera.Transform: horizontal and vertical flip, transpose."""

    def __init__(self, hflip: bool = False, vflip: bool = False, transpose: bool = False) -> None:
        self.hflip = bool(hflip)
        self.vflip = bool(vflip)
        self.transpose = bool(transpose)

    def __str__(self) -> str:
        parts = [n for n in ("hflip", "vflip", "transpose") if getattr(self, n)]
        return "/".join(parts) if parts else "identity"

    def __repr__(self) -> str:
        return f"<libcamera.Transform '{self}'>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transform):
            return NotImplemented
        return (self.hflip, self.vflip, self.transpose) == (
            other.hflip,
            other.vflip,
            other.transpose,
        )

    def __hash__(self) -> int:
        return hash((self.hflip, self.vflip, self.transpose))
