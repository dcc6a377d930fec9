"""Catching what native libraries (FFmpeg, OpenCV, the TFLite runtime) print straight to fd 2.

Their lines bypass Python's logging; collecting them lets a failure become one
error line that carries the library's reason, and lets routine chatter such
as LiteRT's "Created TensorFlow Lite XNNPACK delegate" be dropped. A long-running
process that retries a missing camera cannot collect around every attempt (fd 2 is
shared by all threads), so ``quiet_video_libraries`` silences OpenCV's warnings and
FFmpeg's messages instead; the capture then says in its own words what changed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress

FFMPEG_LOGLEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"  # read by OpenCV when it first opens FFmpeg
AV_LOG_QUIET = -8


def quiet_video_libraries() -> None:
    """No ``[ WARN:0@…] global cap.cpp…`` or ``[tcp @ 0x…]`` lines from here on.

    An ``OPENCV_FFMPEG_LOGLEVEL`` already in the environment (for debugging) is kept.
    """
    os.environ.setdefault(FFMPEG_LOGLEVEL_ENV, str(AV_LOG_QUIET))
    import cv2

    with suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@contextmanager
def native_stderr(into: list[str]) -> Iterator[None]:
    """Collect the non-empty lines native code writes to fd 2 meanwhile into ``into``."""
    with suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            into.extend(line.strip() for line in text.splitlines() if line.strip())


class NativeCatcher:
    """Collects fd 2 only while a call runs (``with catcher: cap.grab()``), cheaply.

    One temporary file for the whole life of the catcher and two ``dup2`` per use, so it
    can wrap every frame read of a video file; ``lines()`` reads what was caught.
    """

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._saved: int | None = None

    def __enter__(self) -> NativeCatcher:
        try:
            self._saved = os.dup(2)
            os.dup2(self._tmp.fileno(), 2)
        except OSError:
            self._saved = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None

    def lines(self) -> list[str]:
        self._tmp.seek(0)
        text = self._tmp.read().decode("utf-8", "replace")
        return [line.strip() for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        self._tmp.close()
