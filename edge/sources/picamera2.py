"""Raspberry Pi camera backend (picamera2 / libcamera), imported lazily.

Configuration: a video configuration whose ``main`` stream is the configured size in
``RGB888`` and, when that is larger than inference needs, a ``lores`` stream sized for
inference. The lores stream must be ``YUV420`` on a Pi 4 (VC4 ISP), so it is used on
every model. Two layout facts matter:

- picamera2's ``RGB888`` is named after libcamera/DRM fourcc order, so the array is
  **B, G, R** in memory: exactly OpenCV's BGR, no conversion.
- a ``YUV420`` array comes back as ``(h * 3 // 2, stride)`` with the row padding the
  ISP needs still in place (stride >= width). Converting the padded array as I420 of
  width ``stride`` lines Y, U and V up correctly; the padding columns are then cut off.

Capture never blocks forever: ``capture_request`` is dispatched with a
``signal_function`` (supported by every picamera2 release) and the wait for it is
bounded by ``frame_timeout_s``; on expiry ``grab`` raises TimeoutError and ``close``
cancels the pending job with ``cancel_all_and_flush`` before stopping the camera.
Frames the model skips are released without being copied.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

from edge.errors import SourceError

# Short side of the lores stream when the model's input size is not known: above the
# largest square model input in use (MoViNet A0/A1 172, A2 224, still models 224/227).
# Sized for a known model, the lores stream's short side is the model's side, so the
# centre crop is the model's input with no resize at all.
INFERENCE_SHORT_SIDE = 256


def import_picamera2() -> Any:
    """The Picamera2 class, or SourceError saying how to install it."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise SourceError(
            "source.kind picamera2: the picamera2 module cannot be imported "
            f"({exc}); install python3-picamera2 with apt and create the virtualenv "
            "with --system-site-packages"
        ) from None
    return Picamera2


def pi_cameras(picamera2_cls: Any) -> list[tuple[int, str]]:
    """(camera number, model) of each attached Pi camera; USB cameras are left to V4L2."""
    found = []
    for num, info in enumerate(picamera2_cls.global_camera_info()):
        if "usb" in str(info.get("Id", "")).lower():
            continue
        found.append((int(info.get("Num", num)), str(info.get("Model", "camera"))))
    return found


def lores_size(width: int, height: int, short_side: int = INFERENCE_SHORT_SIDE) -> tuple[int, int]:
    """Size of the inference stream: same aspect ratio, even dimensions, short side fixed."""
    scale = short_side / min(width, height)
    return (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))


def yuv420_to_bgr(yuv: np.ndarray, width: int, height: int, scratch: np.ndarray) -> np.ndarray:
    """Convert a picamera2 YUV420 array ``(h*3//2, stride)`` to BGR ``(h, w, 3)``.

    ``scratch`` must be ``(h, stride, 3)`` uint8; the result is a view into it.
    """
    rows, stride = yuv.shape
    if rows != height * 3 // 2 or stride < width or scratch.shape != (height, stride, 3):
        raise ValueError(f"YUV420 array {yuv.shape} does not fit a {width}x{height} image")
    cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420, dst=scratch)
    return scratch if stride == width else scratch[:, :width]


class Picamera2Backend:
    """One Picamera2 instance; a new object per (re)open, used by one thread only."""

    is_file = False

    def __init__(
        self,
        camera_num: int,
        model: str,
        *,
        width: int,
        height: int,
        fps: float,
        frame_timeout_s: float,
        buffer_count: int = 4,
        short_side: int = INFERENCE_SHORT_SIDE,
    ) -> None:
        self.camera_num = camera_num
        self.description = f"picamera2 {model}"
        self._main_size = (width - width % 2, height - height % 2)
        self._fps = fps
        self._timeout = frame_timeout_s
        self._buffer_count = buffer_count
        self._short_side = max(2, short_side + short_side % 2)
        self._cam: Any = None
        self._request: Any = None
        self._stream = "main"
        self._size = self._main_size
        self._yuv_scratch: np.ndarray | None = None
        self._done = threading.Event()
        self._job: Any = None

    # --------------------------------------------------------------- lifecycle

    def open(self) -> float | None:
        picamera2_cls = import_picamera2()
        try:
            cam = picamera2_cls(self.camera_num)
        except Exception as exc:  # RuntimeError (busy, not found) or IndexError
            raise SourceError(
                f"{self.description}: cannot open camera {self.camera_num}: {exc}"
            ) from None
        self._cam = cam
        w, h = self._main_size
        lores = None
        if min(w, h) > self._short_side:
            lores = {"size": lores_size(w, h, self._short_side), "format": "YUV420"}
        duration = round(1_000_000 / self._fps)
        try:
            config = cam.create_video_configuration(
                main={"size": (w, h), "format": "RGB888"},
                lores=lores,
                buffer_count=self._buffer_count,
                controls={"FrameDurationLimits": (duration, duration)},
            )
            cam.configure(config)
            # Sizes and strides as libcamera settled them, not as requested.
            self._stream = "lores" if lores is not None else "main"
            applied = cam.camera_config[self._stream]
            self._size = tuple(applied["size"])
            cam.start()
        except Exception as exc:
            raise SourceError(f"{self.description}: cannot start camera: {exc}") from None
        return self._fps

    def close(self) -> None:
        cam, self._cam = self._cam, None
        self._release_request()
        if cam is None:
            return
        job, self._job = self._job, None
        if job is not None and self._done.is_set():
            # A capture that completed after grab gave up on it holds a request.
            try:
                late = cam.wait(job)
                if late is not None:
                    late.release()
            except Exception:
                pass
        cancel = getattr(cam, "cancel_all_and_flush", None)  # missing in early releases
        if cancel is not None:
            cancel()
        try:
            cam.stop()
        finally:
            cam.close()

    # --------------------------------------------------------------- frames

    def _signal(self, job: Any) -> None:
        self._job = job
        self._done.set()

    def _release_request(self) -> None:
        request, self._request = self._request, None
        if request is not None:
            request.release()

    def grab(self) -> bool:
        if self._cam is None:
            return False
        self._release_request()  # the previous frame was not retrieved: recycle it uncopied
        self._done.clear()
        job = self._cam.capture_request(signal_function=self._signal)
        if not self._done.wait(self._timeout):
            raise TimeoutError(f"no frame from the camera within {self._timeout:g} s")
        self._job = None
        self._request = self._cam.wait(job)
        return self._request is not None

    def retrieve(self, out: np.ndarray | None = None) -> np.ndarray | None:
        request = self._request
        if request is None:
            return None
        try:
            array = request.make_array(self._stream)
        finally:
            self._release_request()
        w, h = self._size
        if self._stream == "main":
            # RGB888 is B, G, R in memory: already OpenCV's order.
            if out is not None and out.shape == array.shape:
                np.copyto(out, array)
                return out
            return array
        stride = array.shape[1]
        if self._yuv_scratch is None or self._yuv_scratch.shape != (h, stride, 3):
            self._yuv_scratch = np.empty((h, stride, 3), np.uint8)
        bgr = yuv420_to_bgr(array, w, h, self._yuv_scratch)
        if out is None or out.shape != (h, w, 3):
            out = np.empty((h, w, 3), np.uint8)
        np.copyto(out, bgr)
        return out

    def rewind(self) -> bool:
        return False
