"""Turning ``source:`` config into a running-ready Capture, including ``kind: auto``."""

from __future__ import annotations

import glob
import logging
import re
import sys
import threading
from pathlib import Path

from edge.config import SourceConfig
from edge.errors import SourceError
from edge.sources.base import Capture, CaptureOptions, redact_url
from edge.sources.orientation import Orientation

log = logging.getLogger("edge.sources")

NO_CAMERA = (
    "no camera found (no Pi camera, no /dev/video*): set source.uri to a device, a video file "
    "or a stream URL, e.g. edge run --source rtsp://… or --source clip.mp4"
)

# V4L2 nodes of the Pi's codecs, ISP and raw CSI receivers: never a usable colour camera.
_NOT_CAMERAS = ("bcm2835-codec", "bcm2835-isp", "rpivid", "pispbe", "rp1-cfe", "unicam", "hevc")
_PROBE_TIMEOUT_S = 5.0


def _open_timeout(cfg: SourceConfig) -> float:
    return min(30.0, max(5.0, 2 * cfg.frame_timeout_s))


def _options(cfg: SourceConfig, model_fps: float) -> CaptureOptions:
    return CaptureOptions(
        model_fps=model_fps,
        frame_timeout_s=cfg.frame_timeout_s,
        backoff_initial_s=cfg.backoff_initial_s,
        backoff_max_s=cfg.backoff_max_s,
        open_timeout_s=_open_timeout(cfg),
        orientation=Orientation(cfg.rotate, cfg.hflip, cfg.vflip),
        loop=cfg.loop,
        realtime=cfg.realtime,
    )


# ------------------------------------------------------------------ detection


def _pi_camera() -> tuple[int, str] | None:
    """The first Pi camera libcamera sees, or None (also when picamera2 is not installed)."""
    try:
        from edge.sources.picamera2 import import_picamera2, pi_cameras

        cameras = pi_cameras(import_picamera2())
    except SourceError:
        return None
    except Exception as exc:  # libcamera present but broken: say so, then look elsewhere
        log.warning("picamera2 is installed but listing cameras failed: %s", exc)
        return None
    return cameras[0] if cameras else None


def _video_nodes() -> list[str]:
    def number(path: str) -> int:
        m = re.search(r"(\d+)$", path)
        return int(m.group(1)) if m else 1 << 30

    nodes = []
    for path in sorted(glob.glob("/dev/video*"), key=number):
        name_file = Path("/sys/class/video4linux") / Path(path).name / "name"
        try:
            name = name_file.read_text(encoding="utf-8").strip().lower()
        except OSError:
            name = ""
        if any(tag in name for tag in _NOT_CAMERAS):
            continue
        nodes.append(path)
    return nodes


def _probe(path: str) -> bool:
    """Open and read one frame, giving up after a few seconds on a driver that hangs."""
    from edge.sources.opencv import probe_device

    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(probe_device(path)), daemon=True)
    thread.start()
    thread.join(_PROBE_TIMEOUT_S)
    return bool(result and result[0])


def _first_v4l2_device() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    for path in _video_nodes():
        if _probe(path):
            return path
    return None


def detect_camera() -> str | None:
    """What ``kind: auto`` would pick, e.g. "picamera2 imx708" or "opencv /dev/video0"."""
    pi = _pi_camera()
    if pi is not None:
        return f"picamera2 {pi[1]}"
    device = _first_v4l2_device()
    if device is not None:
        return f"opencv {device}"
    return None


# ------------------------------------------------------------------ construction


def _picamera2_capture(
    cfg: SourceConfig,
    model_fps: float,
    camera: tuple[int, str] | None,
    model_input: tuple[int, int] | None = None,
) -> Capture:
    from edge.sources.picamera2 import (
        INFERENCE_SHORT_SIDE,
        Picamera2Backend,
        import_picamera2,
        pi_cameras,
    )

    if camera is None:
        if cfg.uri not in (None, ""):
            if not str(cfg.uri).isdigit():
                raise SourceError(
                    f"source.uri: for kind picamera2 give a camera number (0, 1), not {cfg.uri!r}"
                )
            wanted = int(str(cfg.uri))
        else:
            wanted = None
        picamera2_cls = import_picamera2()
        try:
            cameras = pi_cameras(picamera2_cls)
        except Exception as exc:
            raise SourceError(f"source.kind picamera2: cannot list cameras: {exc}") from None
        if not cameras:
            raise SourceError(
                "source.kind picamera2: libcamera sees no Pi camera (check the ribbon cable "
                "and `rpicam-hello --list-cameras`)"
            )
        if wanted is None:
            camera = cameras[0]
        else:
            camera = next((c for c in cameras if c[0] == wanted), None)
            if camera is None:
                raise SourceError(
                    f"source.uri: Pi camera {wanted} not found (cameras: "
                    + ", ".join(f"{n} {m}" for n, m in cameras)
                    + ")"
                )
    num, model = camera
    width, height, fps, timeout = cfg.width, cfg.height, cfg.fps, cfg.frame_timeout_s

    short = max(model_input) if model_input else INFERENCE_SHORT_SIDE

    def factory() -> Picamera2Backend:
        return Picamera2Backend(
            num,
            model,
            width=width,
            height=height,
            fps=fps,
            frame_timeout_s=timeout,
            short_side=short,
        )

    capture = Capture(factory, f"picamera2 {model}", _options(cfg, model_fps))
    capture.scaled_to = short if min(width, height) > short else None
    return capture


def _opencv_capture(
    cfg: SourceConfig, model_fps: float, uri: str, model_input: tuple[int, int] | None = None
) -> Capture:
    from edge.sources.opencv import OpenCVBackend, check_file, classify_uri, describe

    if not uri.strip():
        raise SourceError("source.uri: empty")
    target, value = classify_uri(uri)
    if target == "file":
        check_file(str(value))
    elif target == "device" and sys.platform.startswith("linux"):
        node = value if isinstance(value, str) else f"/dev/video{value}"
        if not Path(node).exists():
            found = ", ".join(_video_nodes()) or "none"
            raise SourceError(f"source.uri: camera {node} does not exist (video devices: {found})")
    open_timeout = _open_timeout(cfg)
    # Slightly longer than the watchdog, which should notice first and count the stall.
    read_timeout = cfg.frame_timeout_s + 1.0
    width, height, fps = cfg.width, cfg.height, cfg.fps

    def factory() -> OpenCVBackend:
        return OpenCVBackend(
            target,
            value,
            width=width,
            height=height,
            fps=fps,
            open_timeout_s=open_timeout,
            read_timeout_s=read_timeout,
        )

    if target == "stream" and str(value).lower().startswith(("http://", "https://")):
        from edge.sources.mjpeg import HttpBackend, MjpegBackend

        url = str(value)
        short = max(model_input) if model_input else None

        def http_factory() -> HttpBackend:
            mjpeg = MjpegBackend(
                url, open_timeout_s=open_timeout, read_timeout_s=read_timeout, short_side=short
            )
            return HttpBackend(mjpeg, factory())

        return Capture(http_factory, f"http {redact_url(url)}", _options(cfg, model_fps))
    return Capture(factory, describe(target, value), _options(cfg, model_fps))


def make_capture(
    cfg: SourceConfig, model_fps: float, model_input: tuple[int, int] | None = None
) -> Capture:
    """A Capture for ``cfg`` (not started). Raises SourceError for config that cannot work.

    ``model_input`` (height, width) lets a source that can scale in hardware deliver frames
    at the model's size (the Pi camera's lores stream); ``Capture.scaled_to`` says so.
    """
    if not model_fps > 0:
        raise SourceError(f"model.fps must be positive, not {model_fps}")
    if cfg.kind == "command":
        raise SourceError(
            "source.kind 'command' takes still photos (mode: still), it cannot feed video mode"
        )
    if cfg.kind == "picamera2":
        return _picamera2_capture(cfg, model_fps, None, model_input)
    if cfg.kind == "opencv":
        if not cfg.uri:
            raise SourceError(
                "source.uri: kind 'opencv' needs a device (0, /dev/video0), "
                "a stream URL (rtsp://, http://) or a video file"
            )
        return _opencv_capture(cfg, model_fps, cfg.uri, model_input)
    # auto
    if cfg.uri:
        return _opencv_capture(cfg, model_fps, cfg.uri, model_input)
    pi = _pi_camera()
    if pi is not None:
        return _picamera2_capture(cfg, model_fps, pi, model_input)
    device = _first_v4l2_device()
    if device is not None:
        return _opencv_capture(cfg, model_fps, device, model_input)
    raise SourceError(NO_CAMERA)
