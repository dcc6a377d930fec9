"""An MJPEG-over-HTTP server on 127.0.0.1, the way IP-camera apps on phones serve video.

Frames come from a real clip (decoded once, JPEG-encoded once) and are sent as
``multipart/x-mixed-replace`` at a fixed rate. Tests drive the failure modes a
live stream has in the field:

- ``stall()`` / ``resume()``: every connection, old and new, stops receiving
  bytes while the TCP connection stays up (a phone that froze, Wi-Fi that died
  without a reset). This is the case only a watchdog can detect.
- ``stop()`` / ``start()``: the server goes away (connection refused) and comes
  back on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

BOUNDARY = "edgeframe"


def load_jpegs(path: Path, max_frames: int = 60, width: int | None = None) -> list[bytes]:
    """The first ``max_frames`` frames of a clip as JPEG bytes (optionally resized to ``width``)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"cannot open {path}")
    jpegs: list[bytes] = []
    try:
        while len(jpegs) < max_frames:
            ok, image = cap.read()
            if not ok:
                break
            if width is not None and image.shape[1] != width:
                height = round(image.shape[0] * width / image.shape[1] / 2) * 2
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            jpegs.append(buf.tobytes())
    finally:
        cap.release()
    if not jpegs:
        raise RuntimeError(f"no frames decoded from {path}")
    return jpegs


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path.split("?")[0] != owner.path:
            self.send_error(404)
            return
        owner._connected(self)
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            i = 0
            period = 1.0 / owner.fps
            next_t = time.monotonic()
            while not owner._closing.is_set():
                if owner._stalled.is_set():
                    owner._closing.wait(0.05)
                    next_t = time.monotonic()
                    continue
                jpeg = owner.jpegs[i % len(owner.jpegs)]
                self.wfile.write(
                    (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n"
                    ).encode("ascii")
                    + jpeg
                    + b"\r\n"
                )
                self.wfile.flush()
                owner._sent()
                i += 1
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    owner._closing.wait(delay)
                else:
                    next_t = time.monotonic()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            owner._disconnected(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: MjpegServer


class MjpegServer:
    """``with MjpegServer(clip) as server: url = server.url``."""

    def __init__(
        self,
        clip: Path,
        fps: float = 15.0,
        max_frames: int = 60,
        width: int | None = 320,
        path: str = "/video",
    ) -> None:
        self.jpegs = load_jpegs(clip, max_frames=max_frames, width=width)
        self.fps = fps
        self.path = path
        self.port = 0
        self._stalled = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._handlers: set[_Handler] = set()
        self.connections = 0  # streaming connections accepted so far
        self.frames_sent = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        """Listen (again, on the same port once it has been chosen)."""
        self._closing.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and every open connection."""
        self._closing.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def wait_for_connections(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connections >= n:
                return True
            time.sleep(0.02)
        return self.connections >= n

    def _connected(self, handler: _Handler) -> None:
        with self._lock:
            self._handlers.add(handler)
            self.connections += 1

    def _disconnected(self, handler: _Handler) -> None:
        with self._lock:
            self._handlers.discard(handler)

    def _sent(self) -> None:
        with self._lock:
            self.frames_sent += 1

    def __enter__(self) -> MjpegServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
