"""OpenCV backend: a V4L2 device, an RTSP or HTTP(S) MJPEG stream, or a video file.

Streams go through FFmpeg with open and read timeouts passed at open time (setting
them afterwards has no effect), so a dead server or a frozen phone makes ``grab``
return instead of blocking; the capture watchdog covers the backends that ignore
timeouts. ``grab`` only demuxes/decodes; the BGR conversion happens in ``retrieve``,
which the capture calls only for frames the model will see.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.config import UriTarget, uri_target
from edge.errors import SourceError
from edge.sources.base import redact_url

Target = UriTarget


def classify_uri(uri: str) -> tuple[Target, int | str]:
    """What an ``opencv`` source URI names: a device index or path, a stream URL, or a file."""
    return uri_target(uri)


def describe(target: Target, value: int | str) -> str:
    if target == "stream":
        return f"opencv {redact_url(str(value))}"
    if target == "device" and isinstance(value, int):
        return (
            f"opencv /dev/video{value}" if sys.platform.startswith("linux") else f"opencv {value}"
        )
    return f"opencv {value}"


class OpenCVBackend:
    """One ``cv2.VideoCapture``; a new object per (re)open, used by one thread only."""

    def __init__(
        self,
        target: Target,
        value: int | str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 6.0,
    ) -> None:
        self.target = target
        self.value = value
        self.is_file = target == "file"
        self.description = describe(target, value)
        self._size = (width, height)
        self._fps = fps
        self._open_ms = int(open_timeout_s * 1000)
        self._read_ms = int(read_timeout_s * 1000)
        self._cap: cv2.VideoCapture | None = None

    def _new_capture(self) -> cv2.VideoCapture:
        if self.target == "stream":
            url = str(self.value)
            if url.lower().startswith(("rtsp://", "rtsps://")):
                # UDP (FFmpeg's first choice) loses packets on Wi-Fi and smears frames.
                os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self._open_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self._read_ms,
            ]
            return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        if self.target == "device":
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            cap = cv2.VideoCapture(self.value, api)
            if cap.isOpened():
                width, height = self._size
                if width and height:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                if self._fps:
                    cap.set(cv2.CAP_PROP_FPS, self._fps)
            return cap
        return cv2.VideoCapture(str(self.value))

    def open(self) -> float | None:
        cap = self._new_capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.description}: cannot open")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        return float(fps) if 0 < fps < 1000 else None

    def grab(self) -> bool:
        return self._cap is not None and bool(self._cap.grab())

    def retrieve(self, out: np.ndarray | None = None) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, image = self._cap.retrieve(out)
        if not ok or image is None:
            return None
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        return image

    def rewind(self) -> bool:
        """Reopen rather than seek: seeking is unreliable in some containers and codecs."""
        if not self.is_file:
            return False
        self.close()
        cap = self._new_capture()
        if not cap.isOpened():
            cap.release()
            return False
        self._cap = cap
        return True

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def check_file(path: str) -> float | None:
    """Fail early, with one line, on a video file that is missing or cannot be decoded."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"source.uri: video file not found: {path}")
    if not p.is_file():
        raise SourceError(f"source.uri: not a file: {path}")
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise SourceError(f"source.uri: OpenCV cannot open video file {path}")
        ok, _ = cap.read()
        if not ok:
            raise SourceError(f"source.uri: no frame could be decoded from {path}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        return float(fps) if 0 < fps < 1000 else None
    finally:
        cap.release()


def probe_device(value: int | str) -> bool:
    """True when the V4L2 device opens and delivers a frame."""
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    cap = cv2.VideoCapture(value, api)
    try:
        if not cap.isOpened():
            return False
        ok, image = cap.read()
        return bool(ok) and image is not None and image.size > 0
    finally:
        cap.release()
