"""OpenCV capture: files (exact frame selection, loop, orientation), MJPEG over HTTP on
127.0.0.1 (delivery, stall then recovery, server restart), config errors."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import SourceConfig
from edge.errors import SourceError
from edge.sources import factory
from edge.sources.base import Capture, redact_url
from edge.sources.factory import detect_camera, make_capture
from edge.sources.orientation import Orientation
from tests.support.capture import wait_for, wait_stats
from tests.support.mjpeg_server import MjpegServer


@pytest.fixture
def carving(videos: Path) -> Path:  # 30 fps, 200 frames
    return videos / "carving_ice.mp4"


@pytest.fixture
def carving_small(videos: Path) -> Path:  # 29.6 fps, 131 frames
    return videos / "carving_ice_small.mp4"


@pytest.fixture
def arm(videos: Path) -> Path:
    return videos / "arm_wrestling.mp4"


def decode_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def stop_returns(capture: Capture, timeout: float = 10.0) -> bool:
    thread = threading.Thread(target=capture.stop, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


# ------------------------------------------------------------------ files


def test_file_hands_out_every_sixth_frame_at_5_fps_from_30_fps_and_ends(carving):
    reference = decode_all(carving)
    fps = cv2.VideoCapture(str(carving)).get(cv2.CAP_PROP_FPS)
    step = round(fps / 5.0)
    cfg = SourceConfig(kind="opencv", uri=str(carving), realtime=False)
    capture = make_capture(cfg, model_fps=5.0)
    assert capture.description == f"opencv {carving}"
    got = []
    with capture:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            frame = capture.get(0.5)
            if frame is not None:
                got.append(frame)
            elif capture.finished:
                if (last := capture.get(0.0)) is not None:  # handed out just before the end
                    got.append(last)
                break
        assert capture.get(0.3) is None  # waits, does not spin, after the end
        stats = capture.stats
    expected_idx = list(range(0, len(reference), step))
    assert [round(f.timestamp * fps) for f in got] == expected_idx
    for frame, i in zip(got, expected_idx, strict=True):
        assert np.array_equal(frame.image, reference[i])
    assert [f.seq for f in got] == sorted({f.seq for f in got})
    assert {f.epoch for f in got} == {0}
    assert stats.frames == len(reference)
    assert stats.skipped == len(reference) - len(got) and stats.dropped == 0
    assert stats.reconnects == 0 and stats.stalls == 0


def test_orientation_is_applied_to_handed_out_frames(arm):
    first = decode_all(arm)[0]
    cfg = SourceConfig(kind="opencv", uri=str(arm), realtime=False, rotate=90, hflip=True)
    with make_capture(cfg, model_fps=5.0) as capture:
        frame = capture.get(10.0)
    assert frame is not None
    expected = Orientation(rotate=90, hflip=True).apply(first)
    assert frame.image.shape == (first.shape[1], first.shape[0], 3)
    assert np.array_equal(frame.image, expected)


def test_looped_realtime_file_keeps_delivering_past_its_end(carving_small):
    n = len(decode_all(carving_small))
    cfg = SourceConfig(kind="opencv", uri=str(carving_small), loop=True, realtime=True)
    capture = make_capture(cfg, model_fps=10.0)
    times = []
    with capture:
        frame = wait_for(
            capture, lambda f: times.append(f.timestamp) or capture.stats.frames > n + 20, 30
        )
        assert frame is not None, capture.stats
        later = capture.get(5.0)
        assert later is not None
        assert not capture.finished
        stats = capture.stats
    assert later.epoch == 0 and stats.reconnects == 0
    assert later.timestamp > n / 30.0  # the file clock runs on across the loop
    assert all(b > a for a, b in itertools.pairwise(times))
    assert stats.connected


def test_slow_consumer_gets_the_newest_frame_and_replaced_frames_count_as_dropped(carving_small):
    cfg = SourceConfig(kind="opencv", uri=str(carving_small), loop=True, realtime=True)
    capture = make_capture(cfg, model_fps=30.0)  # every frame is converted and offered
    got = []
    with capture:
        first = capture.get(10.0)
        assert first is not None
        got.append(first)
        for _ in range(3):
            time.sleep(0.4)  # the consumer is busy; frames keep coming
            frame = capture.get(5.0)
            assert frame is not None
            got.append(frame)
    stats = capture.stats
    seqs = [f.seq for f in got]
    assert all(b - a > 3 for a, b in itertools.pairwise(seqs)), seqs
    assert stats.dropped > 0
    assert stats.frames == len(got) + stats.dropped + stats.skipped


# ------------------------------------------------------------------ MJPEG over HTTP


@pytest.fixture
def server(arm):
    with MjpegServer(arm, fps=15.0, width=320) as s:
        yield s


def test_mjpeg_stream_delivers_decoded_frames(server):
    served = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in server.jpegs]
    cfg = SourceConfig(uri=server.url)  # kind auto + an http URL: read as MJPEG
    capture = make_capture(cfg, model_fps=5.0)
    assert capture.description == f"http {server.url}"
    with capture:
        frames = [capture.get(15.0) for _ in range(3)]
        stats = capture.stats
    assert all(f is not None for f in frames)
    for frame in frames:
        assert frame.image.shape == served[0].shape
        diffs = [np.abs(frame.image.astype(int) - s.astype(int)).mean() for s in served]
        assert min(diffs) < 2.0  # it is one of the served pictures, not garbage
    assert stats.connected and stats.frames >= 3 and stats.camera_fps >= 0


def test_mjpeg_stall_is_detected_then_reconnects_with_a_new_epoch(server):
    cfg = SourceConfig(
        uri=server.url, frame_timeout_s=1.0, backoff_initial_s=0.2, backoff_max_s=1.0
    )
    capture = make_capture(cfg, model_fps=5.0)
    with capture:
        first = capture.get(15.0)
        assert first is not None and first.epoch == 0
        server.stall()
        assert wait_stats(capture, lambda s: s.stalls >= 1, 20), capture.stats
        server.resume()
        again = wait_for(capture, lambda f: f.epoch >= 1, 30)
        assert again is not None, capture.stats
        stats = capture.stats
        more = wait_for(capture, lambda f: f.seq > again.seq, 10)
    assert more is not None  # frames flow again
    assert stats.stalls >= 1 and stats.reconnects >= 1 and stats.connected
    assert server.connections >= 2


def test_mjpeg_server_restart_is_retried_until_it_is_back(server):
    cfg = SourceConfig(
        uri=server.url, frame_timeout_s=1.0, backoff_initial_s=0.2, backoff_max_s=0.5
    )
    capture = make_capture(cfg, model_fps=5.0)
    with capture:
        assert capture.get(15.0) is not None
        server.stop()
        assert wait_stats(capture, lambda s: not s.connected and s.error, 20), capture.stats
        assert "127.0.0.1" in capture.stats.error
        server.start()
        again = wait_for(capture, lambda f: f.epoch >= 1, 30)
        assert again is not None, capture.stats
        assert capture.stats.reconnects >= 1


def test_stop_returns_while_the_stream_is_stalled(server):
    cfg = SourceConfig(uri=server.url, frame_timeout_s=30.0)
    capture = make_capture(cfg, model_fps=5.0)
    capture.start()
    assert capture.get(15.0) is not None
    server.stall()
    capture.get(0.5)  # whatever was already on its way
    assert capture.get(1.5) is None  # the read is now blocked
    assert stop_returns(capture)
    assert capture.get(0.1) is None
    server.resume()


# ------------------------------------------------------------------ config errors


def test_a_missing_file_is_one_line_source_error():
    # Mistakes the config alone shows (a looped stream, opencv without a uri) are
    # ConfigErrors, refused by check-config: tests/test_config.py.
    with pytest.raises(SourceError) as err:
        make_capture(SourceConfig(kind="opencv", uri="/nonexistent/clip.mp4"), model_fps=5.0)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1
    assert "not found" in msg and "clip.mp4" in msg


def test_a_file_that_is_not_video_is_refused(tmp_path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video\n")
    with pytest.raises(SourceError, match=r"notes\.mp4"):
        make_capture(SourceConfig(kind="opencv", uri=str(bogus)), model_fps=5.0)


def test_auto_without_any_camera_says_how_to_name_a_source(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails: no Pi camera stack
    monkeypatch.setattr(factory, "_video_nodes", lambda: [])
    assert detect_camera() is None
    with pytest.raises(SourceError) as err:
        make_capture(SourceConfig(), model_fps=5.0)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1
    assert "no camera found" in msg and "--source" in msg and "source.uri" in msg


def test_auto_skips_video_nodes_that_deliver_nothing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    node = tmp_path / "video0"  # a path OpenCV's V4L2 backend cannot open
    node.write_bytes(b"")
    monkeypatch.setattr(factory, "_video_nodes", lambda: [str(node)])
    assert detect_camera() is None
    with pytest.raises(SourceError, match="no camera found"):
        make_capture(SourceConfig(), model_fps=5.0)


def test_stream_credentials_never_reach_the_description():
    url = "rtsp://admin:s3cret@192.0.2.7:554/stream1"
    capture = make_capture(SourceConfig(uri=url), model_fps=5.0)
    assert "s3cret" not in capture.description
    assert capture.description == "opencv rtsp://admin:***@192.0.2.7:554/stream1"
    assert redact_url("http://cam.local/video") == "http://cam.local/video"
