"""Pi camera backend against the fake ``picamera2`` in tests/fake_picamera2 (same API as
raspberrypi/picamera2; the real camera is verified on hardware). The scene the fake
sensor sees is a frame of a real clip."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.classifiers.stream import RESIZE
from edge.config import SourceConfig
from edge.errors import SourceError
from edge.preprocess import InputSpec, Preprocessor, center_square
from edge.sources import factory
from edge.sources.factory import detect_camera, make_capture
from edge.sources.orientation import Orientation
from edge.sources.picamera2 import INFERENCE_SHORT_SIDE
from tests.support.capture import wait_for, wait_stats

FAKE = Path(__file__).parent / "fake_picamera2"


@pytest.fixture
def clip(videos: Path) -> Path:
    return videos / "shooting_basketball.mp4"


@pytest.fixture
def sim(clip, monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    module = importlib.import_module("picamera2")
    assert Path(module.__file__).is_relative_to(FAKE)
    cap = cv2.VideoCapture(str(clip))
    ok, scene = cap.read()
    cap.release()
    assert ok
    module.SIM.reset()
    module.SIM.set_scene(scene)
    yield module.SIM
    module.SIM.recover()
    sys.modules.pop("picamera2", None)


def resized(scene: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(scene, size, interpolation=cv2.INTER_AREA)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def in_thread(fn, timeout: float = 10.0) -> bool:
    """Run ``fn``; True when it returned within ``timeout`` (a liveness check)."""
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def test_video_configuration_with_a_yuv420_lores_stream_sized_for_inference(sim):
    cfg = SourceConfig(kind="picamera2", width=640, height=480, fps=15.0)
    capture = make_capture(cfg, model_fps=5.0)
    assert capture.description == "picamera2 imx708"
    with capture:
        frame = capture.get(10.0)
    assert frame is not None
    config = sim.configured[-1]
    assert config["use_case"] == "video"
    assert config["main"]["format"] == "RGB888" and config["main"]["size"] == (640, 480)
    lores = config["lores"]
    assert lores["format"] == "YUV420"
    w, h = lores["size"]
    assert h == INFERENCE_SHORT_SIDE and abs(w / h - 640 / 480) < 0.01 and w % 2 == 0
    assert lores["stride"] > w  # the padded case is the one exercised
    period_us = round(1e6 / 15.0)
    assert config["controls"]["FrameDurationLimits"] == (period_us, period_us)
    assert frame.image.shape == (h, w, 3) and frame.image.dtype == np.uint8
    assert frame.image.flags.c_contiguous


def test_lores_yuv420_is_unpadded_and_converted_to_bgr(sim):
    cfg = SourceConfig(kind="picamera2", width=640, height=480)
    with make_capture(cfg, model_fps=5.0) as capture:
        frame = capture.get(10.0)
    assert frame is not None
    h, w = frame.image.shape[:2]
    expected = resized(sim.scene, (w, h))
    err = mean_abs(frame.image, expected)
    assert err < 4.0  # only chroma subsampling and rounding
    assert mean_abs(frame.image[:, :, ::-1], expected) > 5 * err  # channel order matters
    # The right edge is where stride padding would show up.
    assert mean_abs(frame.image[:, -8:], expected[:, -8:]) < 6.0


def test_lores_stream_at_the_models_size_needs_no_resize(sim):
    cfg = SourceConfig(kind="picamera2", width=640, height=480)
    capture = make_capture(cfg, model_fps=5.0, model_input=(172, 172))
    assert capture.scaled_to == 172
    with capture:
        frame = capture.get(10.0)
    assert frame is not None
    w, h = sim.configured[-1]["lores"]["size"]
    assert h == 172 and abs(w / h - 640 / 480) < 0.02
    assert frame.image.shape == (172, w, 3)
    # The centre crop of a lores frame is exactly the model's input size: nothing to resize.
    pre = Preprocessor(InputSpec(172, 172, resize=RESIZE))
    assert pre.resize(center_square(frame.image)).shape == (172, 172, 3)
    assert np.array_equal(pre.resize(center_square(frame.image)), center_square(frame.image))
    # Without a model size the lores stream keeps room for any model in use.
    assert make_capture(cfg, model_fps=5.0).scaled_to == INFERENCE_SHORT_SIDE


def test_small_size_uses_main_rgb888_which_is_bgr_in_memory(sim):
    # 300 x 200: no lores needed, and 900-byte rows padded to 960 in the buffer.
    cfg = SourceConfig(kind="picamera2", width=300, height=200, rotate=180, hflip=True)
    with make_capture(cfg, model_fps=5.0) as capture:
        frame = capture.get(10.0)
    assert frame is not None
    config = sim.configured[-1]
    assert config["lores"] is None and config["main"]["stride"] > 300 * 3
    expected = Orientation(rotate=180, hflip=True).apply(resized(sim.scene, (300, 200)))
    assert np.array_equal(frame.image, expected)


def test_open_failures_are_retried_with_backoff(sim, caplog):
    sim.fail_next_opens(2)
    cfg = SourceConfig(kind="picamera2", backoff_initial_s=0.1, backoff_max_s=0.2)
    caplog.set_level(logging.DEBUG, logger="edge.sources")
    capture = make_capture(cfg, model_fps=5.0)
    with capture:
        frame = capture.get(15.0)
        stats = capture.stats
    assert frame is not None and frame.epoch == 0
    assert stats.reconnects == 0 and stats.connected
    assert sim.open_attempts == 3 and sim.open_count == 1
    assert any("cannot open camera 0" in r.getMessage() for r in caplog.records)


def test_hung_camera_blocks_neither_get_nor_stop(sim):
    cfg = SourceConfig(kind="picamera2", frame_timeout_s=1.0, backoff_initial_s=0.2)
    capture = make_capture(cfg, model_fps=5.0)
    capture.start()
    assert capture.get(10.0) is not None
    sim.hang(stop_blocks=True)  # no frames, and libcamera's stop() never returns
    assert wait_stats(capture, lambda s: s.stalls >= 1, 15), capture.stats
    assert capture.get(0.5) is None
    assert not capture.stats.connected
    assert in_thread(capture.stop)
    assert capture.get(0.1) is None


def test_recovers_after_a_hang_with_a_new_epoch_and_no_leaked_buffers(sim):
    cfg = SourceConfig(
        kind="picamera2", frame_timeout_s=1.0, backoff_initial_s=0.2, backoff_max_s=0.5
    )
    capture = make_capture(cfg, model_fps=5.0)
    with capture:
        first = capture.get(10.0)
        assert first is not None and first.epoch == 0
        sim.hang(stop_blocks=True)
        assert wait_stats(capture, lambda s: s.stalls >= 1, 15), capture.stats
        # While the old camera cannot even stop, it cannot be opened again: keep retrying.
        assert wait_stats(capture, lambda s: "cannot open" in (s.error or ""), 15)
        sim.recover()
        again = wait_for(capture, lambda f: f.epoch >= 1, 20)
        assert again is not None, capture.stats
        stats = capture.stats
    assert stats.reconnects >= 1 and stats.stalls >= 1
    assert again.image.shape == first.image.shape
    assert sim.acquired == set()  # every instance was closed
    assert sim.leaked_requests == 0  # skipped frames were released, not kept


def test_auto_picks_the_pi_camera(sim):
    assert detect_camera() == "picamera2 imx708"
    capture = make_capture(SourceConfig(), model_fps=5.0)
    assert capture.description == "picamera2 imx708"
    with capture:
        assert capture.get(10.0) is not None


def test_auto_leaves_usb_cameras_seen_by_libcamera_to_v4l2(sim, monkeypatch):
    sim.cameras = [{"Model": "HD Webcam", "Id": "/base/axi/usb@7e980000-1.2:1.0-046d:0825"}]
    monkeypatch.setattr(factory, "_video_nodes", lambda: [])
    assert detect_camera() is None
    with pytest.raises(SourceError, match="no camera found"):
        make_capture(SourceConfig(), model_fps=5.0)


def test_a_pi_camera_number_not_there_is_a_source_error(sim):
    # A uri that is no number at all is a config error (tests/test_config.py).
    with pytest.raises(SourceError, match="Pi camera 3 not found"):
        make_capture(SourceConfig(kind="picamera2", uri="3"), model_fps=5.0)


def test_picamera2_not_installed_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError) as err:
        make_capture(SourceConfig(kind="picamera2"), model_fps=5.0)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1
    assert "python3-picamera2" in msg and "source.kind" in msg
