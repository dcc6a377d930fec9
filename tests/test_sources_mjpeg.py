"""HTTP MJPEG read directly: parts read without decoding, the model's frames decoded small."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import SourceConfig
from edge.errors import SourceError
from edge.imagefile import jpeg_reduction, jpeg_size
from edge.sources.factory import make_capture
from edge.sources.mjpeg import MjpegBackend
from tests.support.assets import require
from tests.support.mjpeg_server import MjpegServer


@pytest.fixture
def clip(videos: Path) -> Path:
    return videos / "arm_wrestling.mp4"


@pytest.fixture
def server(clip):
    require(clip)
    with MjpegServer(clip, fps=30.0, width=640, max_frames=20) as s:
        yield s


def test_reduction_keeps_the_short_side_at_or_above_the_model():
    assert jpeg_reduction(640, 480, 172) == (2, cv2.IMREAD_REDUCED_COLOR_2)
    assert jpeg_reduction(1280, 720, 172) == (4, cv2.IMREAD_REDUCED_COLOR_4)
    assert jpeg_reduction(1920, 1440, 172) == (8, cv2.IMREAD_REDUCED_COLOR_8)
    assert jpeg_reduction(320, 240, 172) == (1, cv2.IMREAD_COLOR)
    assert jpeg_reduction(640, 480, None) == (1, cv2.IMREAD_COLOR)


def test_jpeg_size_is_read_from_the_header(server):
    for jpeg in server.jpegs[:3]:
        h, w = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        assert jpeg_size(jpeg) == (w, h)
    assert jpeg_size(b"not a jpeg") is None


def test_grab_reads_parts_whole_and_decodes_nothing(server):
    backend = MjpegBackend(server.url, short_side=172)
    backend.open()
    try:
        for _ in range(10):
            assert backend.grab()
        assert backend.decoded == 0
        assert backend.part in server.jpegs  # exactly one served picture, byte for byte
        image = backend.retrieve()
    finally:
        backend.close()
    assert backend.decoded == 1
    full = cv2.imdecode(np.frombuffer(server.jpegs[0], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (full.shape[0] // 2, full.shape[1] // 2, 3)  # 640x480 -> 320x240


def test_capture_sized_for_the_model_hands_out_reduced_frames(server):
    cfg = SourceConfig(uri=server.url)
    capture = make_capture(cfg, model_fps=5.0, model_input=(172, 172))
    assert capture.description == f"http {server.url}"
    served = [
        cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_REDUCED_COLOR_2) for j in server.jpegs
    ]
    with capture:
        frames = [capture.get(15.0) for _ in range(3)]
        stats = capture.stats
    assert all(f is not None for f in frames)
    for frame in frames:
        assert frame.image.shape == served[0].shape
        assert min(np.abs(frame.image.astype(int) - s).mean() for s in served) < 1.0
    assert stats.frames >= 3


def _serve_once(body: bytes, content_type: str) -> tuple[socket.socket, str]:
    """A one-shot HTTP server on a free loopback port answering with ``body``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.0 200 OK\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + body
            )

    threading.Thread(target=answer, daemon=True).start()
    return listener, f"http://127.0.0.1:{port}/video"


def test_parts_without_a_length_run_to_the_next_boundary(server):
    jpegs = server.jpegs[:3]
    body = b"".join(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + j + b"\r\n" for j in jpegs)
    listener, url = _serve_once(body + b"--frame--\r\n", "multipart/x-mixed-replace;boundary=frame")
    backend = MjpegBackend(url)
    try:
        backend.open()
        got = []
        while backend.grab():
            got.append(backend.part)
    finally:
        backend.close()
        listener.close()
    assert got[:3] == jpegs


def test_a_page_that_is_not_a_stream_is_left_to_opencv():
    listener, url = _serve_once(b"<html>login</html>", "text/html")
    try:
        capture = make_capture(SourceConfig(uri=url, backoff_initial_s=5.0), model_fps=5.0)
        backend = capture._factory()
        with pytest.raises(SourceError, match="cannot open"):
            backend.open()  # the MJPEG reader declined; OpenCV could not read a web page
        assert backend._inner is backend._fallback
    finally:
        listener.close()
