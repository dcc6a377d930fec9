"""HTTP MJPEG streams (phone IP-camera apps, many IP cameras), read without FFmpeg.

``grab`` reads one part of the ``multipart/x-mixed-replace`` response off the socket and
nothing more; ``retrieve`` decodes only the frames the model takes, with libjpeg's
reduced-size decode (1/2, 1/4 or 1/8 of the size, scaled inside the inverse DCT, far
cheaper than a full decode and a resize) chosen so the short side stays at or above the
model's input side. A phone at 30 fps feeding a model at 5 steps/s costs five small
decodes a second instead of thirty full ones.

A response that is not multipart is handed to OpenCV (FFmpeg), which reads every other
kind of HTTP video. Reads are bounded by the socket timeout, so a frozen phone makes
``grab`` raise TimeoutError instead of blocking.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from edge.errors import SourceError
from edge.imagefile import jpeg_reduction, jpeg_size
from edge.sources.base import Backend, redact_url

MAX_PART_BYTES = 16 * 2**20  # one JPEG; more is a broken or hostile stream


class NotMultipart(Exception):
    """The server answered with something other than an MJPEG stream."""


class MjpegBackend:
    """One HTTP connection to an MJPEG stream; used by one reader thread only."""

    is_file = False

    def __init__(
        self,
        url: str,
        *,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 6.0,
        short_side: int | None = None,
    ) -> None:
        self.url = url
        self.description = f"mjpeg {redact_url(url)}"
        self._open_timeout = open_timeout_s
        self._read_timeout = read_timeout_s
        self._short_side = short_side
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._boundary = b""
        self._at_headers = False  # the boundary line of the next part was already read
        self._jpeg: bytes | None = None
        self.decoded = 0  # frames decoded (the rest were only read)

    def open(self) -> float | None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"{self.description}: not an http(s) URL")
        headers = {"User-Agent": "edge", "Accept": "multipart/x-mixed-replace, */*"}
        if parts.username is not None:
            user = unquote(parts.username)
            password = unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname,
                parts.port,
                timeout=self._open_timeout,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=self._open_timeout
            )
        self._conn = conn
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", path, headers=headers)
            sock = conn.sock  # the response takes it over when the server closes after it
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise SourceError(f"{self.description}: cannot open: {exc}") from None
        self._resp = resp
        if resp.status != 200:
            self.close()
            raise SourceError(f"{self.description}: HTTP {resp.status} {resp.reason}")
        kind, _, params = (resp.getheader("Content-Type") or "").partition(";")
        if kind.strip().lower() != "multipart/x-mixed-replace":
            self.close()
            raise NotMultipart(kind.strip())
        boundary = ""
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary":
                boundary = value.strip().strip('"')
        if not boundary:
            self.close()
            raise SourceError(f"{self.description}: multipart stream without a boundary")
        self._boundary = b"--" + boundary.removeprefix("--").encode("latin-1")
        if sock is not None:
            sock.settimeout(self._read_timeout)
        return None

    def _line(self) -> bytes:
        assert self._resp is not None
        line = self._resp.readline(65537)
        if len(line) > 65536:
            raise SourceError(f"{self.description}: header line too long")
        return line

    def grab(self) -> bool:
        """Read the next part; no decoding. False at the end of the stream."""
        if self._resp is None:
            return False
        self._jpeg = None
        if not self._at_headers:
            for _ in range(64):  # blank lines and preamble before the boundary
                line = self._line()
                if not line:
                    return False
                if line.startswith(self._boundary):
                    break
            else:
                raise SourceError(f"{self.description}: no part boundary in the stream")
        self._at_headers = False
        length = None
        while True:
            line = self._line()
            if not line:
                return False
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = None
        if length is not None:
            if not 0 < length <= MAX_PART_BYTES:
                raise SourceError(f"{self.description}: part of {length} bytes")
            data = self._resp.read(length)
            if len(data) < length:
                return False
        else:  # no length: the part runs to the next boundary line
            chunks: list[bytes] = []
            size = 0
            while True:
                line = self._line()
                if not line:
                    return False
                if line.startswith(self._boundary):
                    self._at_headers = True
                    break
                chunks.append(line)
                size += len(line)
                if size > MAX_PART_BYTES:
                    raise SourceError(f"{self.description}: part over {MAX_PART_BYTES} bytes")
            data = b"".join(chunks).removesuffix(b"\n").removesuffix(b"\r")
        self._jpeg = data
        return True

    @property
    def part(self) -> bytes | None:
        """The bytes of the part last grabbed and not yet retrieved."""
        return self._jpeg

    def retrieve(self, out: np.ndarray | None = None) -> np.ndarray | None:
        """The last part decoded, at the reduced size that still covers the model's input."""
        data, self._jpeg = self._jpeg, None
        if data is None:
            return None
        size = jpeg_size(data)
        flag = cv2.IMREAD_COLOR
        if size is not None and min(size) > 0:
            _, flag = jpeg_reduction(*size, self._short_side)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if image is None:
            raise SourceError(f"{self.description}: a part is not a decodable JPEG")
        self.decoded += 1
        return image

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        resp, self._resp = self._resp, None
        conn, self._conn = self._conn, None
        if resp is not None:
            resp.close()
        if conn is not None:
            conn.close()


class HttpBackend:
    """An http(s) source: MJPEG read directly, anything else through OpenCV."""

    is_file = False

    def __init__(self, mjpeg: MjpegBackend, fallback: Backend) -> None:
        self._mjpeg = mjpeg
        self._fallback = fallback
        self._inner: Backend = mjpeg
        self.description = mjpeg.description

    def open(self) -> float | None:
        try:
            return self._mjpeg.open()
        except NotMultipart:
            self._inner = self._fallback
            return self._fallback.open()

    def grab(self) -> bool:
        return self._inner.grab()

    def retrieve(self, out: np.ndarray | None = None) -> np.ndarray | None:
        return self._inner.retrieve(out)

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        self._inner.close()
