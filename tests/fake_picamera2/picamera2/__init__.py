"""A stand-in for the ``picamera2`` package, for machines without a Pi camera.

It follows the real library (raspberrypi/picamera2: picamera2.py, job.py, request.py)
where the edge backend touches it:

- ``Picamera2(camera_num)`` acquires the camera exclusively and raises
  ``RuntimeError("Camera __init__ sequence did not complete.")`` when it cannot;
  ``Picamera2.global_camera_info()`` lists cameras as dicts (Model, Location,
  Rotation, Id, Num).
- Signatures are picamera2 0.3.38's (``picamera2-0.3.38-signatures.txt`` beside this
  package, held by tests/test_fake_picamera2.py): ``allocator=`` is accepted, and
  ``transform`` defaults to an identity ``libcamera.Transform`` (the stand-in beside).
- ``create_video_configuration(main=..., lores=..., buffer_count=..., controls=...)``
  returns the same dict layout (use_case, transform, colour_space, buffer_count,
  queue, main, lores, raw, controls, sensor, display, encode) and rejects unknown
  stream keys with ValueError; ``configure`` checks it like ``check_camera_config``
  on a Pi 4 (VC4): even sizes, lores no larger than main and YUV only, and fills in
  ``stride`` and ``framesize`` the way libcamera does (rows padded to 64 bytes here).
- Controls must be advertised (``FrameRate`` is the virtual alias of
  ``FrameDurationLimits``, as in recent releases).
- ``capture_array``/``capture_request``/``wait``/``dispatch_functions`` with the
  ``wait`` (True, False, None or a number of seconds) and ``signal_function``
  semantics of the real Job/Future machinery; ``cancel_all_and_flush``.
- Arrays are what ``Helpers.make_array`` returns: ``RGB888`` is (h, w, 3) with bytes
  B, G, R in memory (padding cropped); ``YUV420`` is (h * 3 // 2, stride) with the
  padding left in (filled with junk here so a consumer that ignores it shows it).
- Requests are reference counted; a request the application never releases keeps
  its buffer, and with every buffer held the camera delivers nothing, as on a Pi.

Test controls live on ``SIM`` (not part of the real API): the scene, cameras, and
failure modes (``hang()``, ``hang(stop_blocks=True)``, ``fail_next_opens(n)``).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, Future
from functools import partial

import cv2
import numpy as np
from libcamera import Transform

__all__ = ["SIM", "CompletedRequest", "Job", "Picamera2"]

_ALIGN = 64  # row alignment of the fake ISP output, in bytes

DEFAULT_CAMERA = {
    "Model": "imx708",
    "Location": 2,
    "Rotation": 180,
    "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a",
    "Num": 0,
}


def _align(n: int, to: int = _ALIGN) -> int:
    return (n + to - 1) // to * to


class _Simulation:
    """The hardware behind the fake, and the knobs tests turn."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.cameras: list[dict] = [dict(DEFAULT_CAMERA)]
        self.scene = np.zeros((480, 640, 3), np.uint8)
        self.sensor_resolution = (4608, 2592)
        self.hung = threading.Event()
        self.stop_blocks = False
        self.unblock = threading.Event()
        self.open_failures = 0
        self.acquired: set[int] = set()
        self.opened: list[Picamera2] = []
        self.open_attempts = 0
        self.configured: list[dict] = []
        self.frames_delivered = 0
        self.leaked_requests = 0

    def set_scene(self, bgr: np.ndarray) -> None:
        """What the sensor sees: a BGR image, resized to each stream."""
        self.scene = np.ascontiguousarray(bgr)

    def hang(self, stop_blocks: bool = False) -> None:
        """The sensor stops delivering frames; optionally ``stop()`` blocks too."""
        self.stop_blocks = stop_blocks
        self.unblock.clear()
        self.hung.set()

    def recover(self) -> None:
        self.hung.clear()
        self.stop_blocks = False
        self.unblock.set()

    def fail_next_opens(self, n: int) -> None:
        self.open_failures = n

    @property
    def open_count(self) -> int:
        return len(self.opened)


SIM = _Simulation()


class Job:
    """As picamera2.job.Job: a list of functions run by the event loop, and a Future."""

    def __init__(self, functions, signal_function=None):
        self._functions = functions
        self._future = Future()
        self._future.set_running_or_notify_cancel()
        self._signal_function = signal_function
        self._result = None
        self.calls = 0

    def execute(self):
        try:
            while self._functions:
                done, result = self._functions[0]()
                self.calls += 1
                if not done:
                    break
                self._functions.pop(0)
            if not self._functions:
                self._result = result
        except Exception as e:
            self._future.set_exception(e)
            self._functions = []
        return not self._functions

    def signal(self):
        if not self._future.done():
            self._future.set_result(self._result)
        if self._signal_function:
            self._signal_function(self)

    def get_result(self, timeout=None):
        return self._future.result(timeout=timeout)

    def cancel(self):
        if not self._future.done():
            self._future.set_exception(CancelledError())


class CompletedRequest:
    """As picamera2.request.CompletedRequest: holds one buffer per stream until released."""

    def __init__(self, picam2, buffers, metadata):
        self.picam2 = picam2
        self.ref_count = 1
        self.lock = picam2.request_lock
        self.config = {
            k: (dict(v) if isinstance(v, dict) else v) for k, v in picam2.camera_config.items()
        }
        self.stream_map = dict(picam2.stream_map)
        self._buffers = buffers
        self._metadata = metadata

    def acquire(self):
        with self.lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self):
        with self.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            if self.ref_count == 0:
                self.picam2._recycle(self)
                self._buffers = None

    def make_buffer(self, name):
        if self.stream_map.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        if self._buffers is None:
            raise RuntimeError("request already released")
        return np.array(self._buffers[name], dtype=np.uint8)

    def get_metadata(self):
        return dict(self._metadata)

    def make_array(self, name):
        return _make_array(self.make_buffer(name), self.config[name])


def _make_array(array, config):
    """As picamera2.request.Helpers.make_array for the formats this fake produces."""
    fmt = config["format"]
    w, h = config["size"]
    stride = config["stride"]
    if fmt in ("BGR888", "RGB888"):
        if stride != w * 3:
            array = array.reshape((h, stride))
            array = np.asarray(array[:, : w * 3], order="C")
        return array.reshape((h, w, 3))
    if fmt in ("XBGR8888", "XRGB8888"):
        if stride != w * 4:
            array = array.reshape((h, stride))
            array = np.asarray(array[:, : w * 4], order="C")
        return array.reshape((h, w, 4))
    if fmt in ("YUV420", "YVU420"):
        return array.reshape((h * 3 // 2, stride))
    raise RuntimeError("Format " + fmt + " not supported")


def _render(scene, config):
    """The 1-d buffer the ISP would write for ``config`` (format, size) from a BGR scene."""
    fmt = config["format"]
    w, h = config["size"]
    stride = config["stride"]
    img = cv2.resize(scene, (w, h), interpolation=cv2.INTER_AREA)
    if fmt in ("RGB888", "BGR888", "XRGB8888", "XBGR8888"):
        # DRM fourcc naming: "RGB888" is B, G, R in memory; "BGR888" is R, G, B.
        if fmt.startswith("BGR") or fmt.startswith("XBGR"):
            img = img[:, :, ::-1]
        if fmt.startswith("X"):
            img = np.concatenate([img, np.full((h, w, 1), 255, np.uint8)], axis=2)
        bpp = img.shape[2]
        buf = np.full((h, stride), 0xAB, np.uint8)
        buf[:, : w * bpp] = img.reshape(h, w * bpp)
        return buf.reshape(-1)
    if fmt in ("YUV420", "YVU420"):
        i420 = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420).reshape(-1)
        y, u, v = i420[: w * h], i420[w * h : w * h * 5 // 4], i420[w * h * 5 // 4 :]
        if fmt == "YVU420":
            u, v = v, u
        cs = stride // 2
        yp = np.full((h, stride), 255, np.uint8)  # junk in the padding
        yp[:, :w] = y.reshape(h, w)
        up = np.zeros((h // 2, cs), np.uint8)
        up[:, : w // 2] = u.reshape(h // 2, w // 2)
        vp = np.zeros((h // 2, cs), np.uint8)
        vp[:, : w // 2] = v.reshape(h // 2, w // 2)
        return np.concatenate([yp.reshape(-1), up.reshape(-1), vp.reshape(-1)])
    raise RuntimeError("Format " + fmt + " not supported")


_RGB = ("RGB888", "BGR888", "XRGB8888", "XBGR8888")
_YUV = ("YUV420", "YVU420", "NV12", "NV21", "YUYV", "UYVY")


class Picamera2:
    """The subset of picamera2.Picamera2 a capture loop uses, with the same behaviour."""

    @staticmethod
    def global_camera_info() -> list:
        return [dict(c) for c in SIM.cameras]

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        self.camera_idx = camera_num
        self.allocator = allocator  # the real one picks a DmaAllocator when None
        self.is_open = False
        self.started = False
        self.camera_config = None
        self.stream_map = None
        self.completed_requests = []
        self._job_list = []
        self.lock = threading.Lock()
        self.request_lock = threading.Lock()
        self._held = 0
        self._max_queue_len = 1
        self._loop_thread = None
        self._stop_loop = threading.Event()
        self._wake = threading.Event()
        self._controls = {}
        self.stop_count = 0
        with SIM.lock:
            SIM.open_attempts += 1
            ok = 0 <= camera_num < len(SIM.cameras) and camera_num not in SIM.acquired
            if SIM.open_failures > 0:
                SIM.open_failures -= 1
                ok = False
            if not ok:
                raise RuntimeError("Camera __init__ sequence did not complete.")
            SIM.acquired.add(camera_num)
            SIM.opened.append(self)
        self.is_open = True
        self.camera_properties = {
            "Model": SIM.cameras[camera_num]["Model"],
            "PixelArraySize": SIM.sensor_resolution,
            "ColorFilterArrangement": 0,
        }
        self.sensor_resolution = SIM.sensor_resolution
        self.camera_controls = {
            "FrameDurationLimits": (33333, 120000, 33333),
            "NoiseReductionMode": (0, 4, 0),
            "ExposureTime": (26, 1000000, 20000),
            "AnalogueGain": (1.0, 16.0, 1.0),
            "ScalerCrop": ((0, 0, 0, 0), (0, 0, 4608, 2592), (0, 0, 4608, 2592)),
        }

    # ------------------------------------------------------------ configuration

    @staticmethod
    def _make_initial_stream_config(stream_config, updates):
        if updates is None:
            return None
        valid = ("format", "size", "stride", "preserve_ar")
        for key, value in updates.items():
            if key in valid:
                stream_config[key] = value
            else:
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {valid}")
        return stream_config

    @staticmethod
    def align_stream(stream_config, optimal=True):
        align = 64 if optimal else 2
        if optimal and stream_config["format"] in ("YUV420", "YVU420"):
            align *= 2
        size = stream_config["size"]
        stream_config["size"] = (size[0] - size[0] % align, size[1] - size[1] % 2)

    def create_video_configuration(
        self,
        main={},  # noqa: B006 - the real signature
        lores=None,
        raw={},  # noqa: B006
        transform=Transform(),  # noqa: B008 - the real signature
        colour_space=None,
        buffer_count=6,
        controls={},  # noqa: B006
        display="main",
        encode="main",
        queue=True,
        sensor={},  # noqa: B006
        use_case="video",
    ) -> dict:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main = self._make_initial_stream_config(
            {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main
        )
        self.align_stream(main, optimal=False)
        lores = self._make_initial_stream_config(
            {"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores
        )
        if lores is not None:
            self.align_stream(lores, optimal=False)
        raw = self._make_initial_stream_config(
            {"format": "SBGGR10_CSI2P", "size": main["size"]}, raw
        )
        controls = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)} | controls
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space or "Smpte170m",
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": lores,
            "raw": raw,
            "controls": controls,
            "sensor": sensor,
            "display": display,
            "encode": encode,
        }

    def _check_stream(self, cfg, name):
        if type(cfg) is not dict or "format" not in cfg or "size" not in cfg:
            raise RuntimeError(f"{name} stream should be a dictionary with format and size")
        fmt = cfg["format"]
        if name != "raw" and fmt not in _RGB + _YUV:
            raise RuntimeError("Bad format " + fmt + " in stream " + name)
        size = cfg["size"]
        if type(size) is not tuple or len(size) != 2:
            raise RuntimeError("size in " + name + " stream should be (width, height)")
        if size[0] % 2 or size[1] % 2:
            raise RuntimeError("width and height should be even")

    def _set_controls(self, controls):
        for name, value in controls.items():
            if name == "FrameRate":  # virtual control, as in picamera2.controls
                rates = value if isinstance(value, (tuple, list)) else (value, value)
                name, value = "FrameDurationLimits", (int(1e6 / rates[1]), int(1e6 / rates[0]))
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            self._controls[name] = value

    def set_controls(self, controls):
        self._set_controls(controls)

    def configure(self, camera_config=None):
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if not isinstance(camera_config, dict):
            raise RuntimeError("this fake only takes configuration dicts")
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in camera_config.items()}
        for key in ("colour_space", "transform", "main", "lores", "raw"):
            if key not in config:
                raise RuntimeError(f"{key!r} key expected in camera configuration")
        self._check_stream(config["main"], "main")
        if config["lores"] is not None:
            self._check_stream(config["lores"], "lores")
            (mw, mh), (lw, lh) = config["main"]["size"], config["lores"]["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if config["lores"]["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")  # Pi 4 (VC4)
        for name in ("main", "lores"):
            cfg = config[name]
            if cfg is None:
                continue
            w, h = cfg["size"]
            fmt = cfg["format"]
            bpp = 4 if fmt.startswith("X") else 3 if fmt in _RGB else 1
            cfg["stride"] = _align(w * bpp) if fmt in _RGB else _align(w, 2 * _ALIGN)
            cfg["framesize"] = cfg["stride"] * h * 3 // 2 if fmt in _YUV else cfg["stride"] * h
        self._controls = {}
        self._set_controls(config["controls"])
        self.camera_config = config
        self.stream_map = {"main": "main", "lores": "lores" if config["lores"] else None}
        self.stream_map["raw"] = None
        self._max_queue_len = 1 if config["queue"] and config["buffer_count"] > 1 else 0
        self._rendered = {
            name: _render(SIM.scene, config[name])
            for name in ("main", "lores")
            if config[name] is not None
        }
        SIM.configured.append(config)

    def camera_configuration(self):
        return self.camera_config

    def stream_configuration(self, name="main"):
        return self.camera_config[name]

    # ------------------------------------------------------------ running

    def start(self, config=None, show_preview=False):
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        self.started = True
        self._stop_loop.clear()
        self._loop_thread = threading.Thread(target=self._event_loop, daemon=True)
        self._loop_thread.start()

    def stop(self):
        if not self.started:
            return
        if SIM.hung.is_set() and SIM.stop_blocks:
            SIM.unblock.wait()  # a wedged camera: libcamera's stop does not return
        self.stop_count += 1
        self._stop_loop.set()
        self._wake.set()
        if self._loop_thread is not None:
            self._loop_thread.join()
        self.started = False
        with self.lock:
            while self.completed_requests:
                self.completed_requests.pop(0).release()

    def close(self):
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        with SIM.lock:
            SIM.acquired.discard(self.camera_idx)
            SIM.leaked_requests += self._held
        self.camera_config = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _recycle(self, request):
        # Called by CompletedRequest.release with request_lock held.
        self._held -= 1

    def _event_loop(self):
        d = self._controls.get("FrameDurationLimits", (33333, 33333))[0]
        period = max(d, 1000) / 1e6
        buffers = self.camera_config["buffer_count"]
        next_t = time.monotonic()
        while not self._stop_loop.is_set():
            self._wake.wait(max(0.0, next_t - time.monotonic()))
            self._wake.clear()
            if self._stop_loop.is_set():
                break
            now = time.monotonic()
            new = None
            if now >= next_t:
                next_t += period
                if next_t < now:
                    next_t = now + period
                with self.request_lock:
                    free = self._held < buffers
                    if free and not SIM.hung.is_set():
                        self._held += 1
                        new = True
                if new:
                    new = CompletedRequest(
                        self,
                        self._rendered,
                        {"SensorTimestamp": time.monotonic_ns(), "FrameDuration": d},
                    )
                    SIM.frames_delivered += 1
            self._process(new)

    def _process(self, new):
        """As Picamera2.process_requests: queue the new request, run jobs, trim the queue."""
        finished = []
        with self.lock:
            if new is not None:
                self.completed_requests.append(new)
            while self._job_list:
                if self._job_list[0].execute():
                    finished.append(self._job_list.pop(0))
                else:
                    break
            while len(self.completed_requests) > self._max_queue_len:
                self.completed_requests.pop(0).release()
        for job in finished:
            job.signal()

    # ------------------------------------------------------------ jobs

    def wait(self, job, timeout=None):
        return job.get_result(timeout=timeout)

    def dispatch_functions(self, functions, wait, signal_function=None, immediate=False):
        if wait is None:
            wait = signal_function is None
        timeout = wait
        if timeout is True:
            timeout = None
        with self.lock:
            only_job = not self._job_list
            job = Job(functions, signal_function)
            self._job_list.append(job)
            if only_job and (self.completed_requests or immediate):
                self._wake.set()
        return job.get_result(timeout=timeout) if wait else job

    def cancel_all_and_flush(self):
        with self.lock:
            for job in self._job_list:
                job.cancel()
            self._job_list = []

    def capture_request_(self):
        if not self.completed_requests:
            return (False, None)
        return (True, self.completed_requests.pop(0))

    def capture_request(self, wait=None, signal_function=None, flush=None):
        return self.dispatch_functions([self.capture_request_], wait, signal_function)

    def capture_array_(self, name):
        if not self.completed_requests:
            return (False, None)
        request = self.completed_requests.pop(0)
        result = request.make_array(name)
        request.release()
        return (True, result)

    def capture_array(self, name="main", wait=None, signal_function=None):
        return self.dispatch_functions([partial(self.capture_array_, name)], wait, signal_function)

    def capture_metadata_(self):
        if not self.completed_requests:
            return (False, None)
        request = self.completed_requests.pop(0)
        result = request.get_metadata()
        request.release()
        return (True, result)

    def capture_metadata(self, wait=None, signal_function=None):
        return self.dispatch_functions([self.capture_metadata_], wait, signal_function)
