"""Reading a video file once, in order, as fast as it decodes: the offline source.

Timestamps come from the file (``CAP_PROP_POS_MSEC``), cleaned so they start at 0 and
always increase (some AVI demuxers report one frame late and 0 for the last frame).
Frames the caller does not want are only ``grab()``-ed — decoded but not converted to BGR
or copied — and ``retrieve()`` is called only for frames the caller takes.

``prepared()`` moves decoding and the caller's preparation (e.g. a model's preprocessing)
onto a background thread with a small bounded queue, so a 2-core machine decodes the next
frame while the model runs on the current one.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import SourceError
from edge.frame import Frame
from edge.nativeio import NativeCatcher, native_stderr
from edge.sources.orientation import Orientation

log = logging.getLogger("edge.sources")

# OpenCV 4.7 and later; with an older one (Debian bookworm's 4.6, a Raspberry Pi's) FFmpeg keeps
# its own thread count.
_N_THREADS: int | None = getattr(cv2, "CAP_PROP_N_THREADS", None)

Select = Callable[[float], bool]
Prepare = Callable[[np.ndarray, np.ndarray], object]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A frame that has been through the caller's ``prepare``; ``data`` is a reused buffer."""

    data: np.ndarray
    timestamp: float
    seq: int
    epoch: int = 0


def _reason(lines: list[str]) -> str:
    """FFmpeg's last message without its "[demuxer @ 0x...]" prefix."""
    if not lines:
        return ""
    return ": " + re.sub(r"^\[[^\]]*\]\s*", "", lines[-1])


class _Stop:
    """Queue sentinel: the producer finished (``error`` set if it failed)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class VideoFile:
    """A video file opened for one sequential pass (or several, with ``loops``).

    Raises SourceError if the file is missing, cannot be opened by OpenCV's decoder, or
    holds no frame.
    """

    def __init__(
        self,
        path: str | Path,
        orientation: Orientation | None = None,
        *,
        decode_threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.orientation = orientation or Orientation()
        self.decode_threads = decode_threads
        if not self.path.exists():
            raise SourceError(f"{self.path}: video file not found")
        if not self.path.is_file():
            raise SourceError(f"{self.path}: not a file")
        native: list[str] = []
        try:
            with native_stderr(native):
                cap = self._open()
                try:
                    ok = cap.grab()
                    fps = cap.get(cv2.CAP_PROP_FPS)
                    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
                    w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
                    h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
                finally:
                    cap.release()
        except SourceError as exc:
            raise SourceError(f"{exc}{_reason(native)}") from None
        if not ok:
            raise SourceError(f"{self.path}: video has no readable frames{_reason(native)}")
        if native:  # warnings about a file that still opened: pass them on
            sys.stderr.write("\n".join(native) + "\n")
        self.fps: float | None = float(fps) if fps and math.isfinite(fps) and fps > 0 else None
        self.frame_count: int | None = int(count) if count and count > 0 else None
        self.width, self.height = self.orientation.output_size(w, h)

    @property
    def duration_s(self) -> float | None:
        if self.fps and self.frame_count:
            return self.frame_count / self.fps
        return None

    def _open(self) -> cv2.VideoCapture:
        params: list[int] = []
        if self.decode_threads and _N_THREADS is not None:
            params = [_N_THREADS, int(self.decode_threads)]
        try:
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_ANY, params)
        except cv2.error as exc:
            raise SourceError(f"{self.path}: cannot open video: {exc}") from None
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.path}: cannot open video (unknown format or corrupt)")
        return cap

    def _walk(
        self, select: Select | None, loops: int
    ) -> Generator[tuple[cv2.VideoCapture, float, int, int], None, None]:
        """Grab every frame in order; yields (capture, timestamp, seq, epoch) for selected ones.

        The capture's ``retrieve()`` is left to the consumer, and is only valid until the
        next iteration. Each loop is a new epoch with timestamps starting at 0 again.
        """
        frame_period = 1.0 / self.fps if self.fps else 1.0 / 30.0
        seq = 0
        catcher = NativeCatcher()  # FFmpeg's lines about a damaged file become one warning
        for epoch in range(loops):
            cap = self._open()
            read = 0
            try:
                first_ms: float | None = None
                last_t = -math.inf
                any_frame = False
                while True:
                    with catcher:
                        ok = cap.grab()
                    if not ok:
                        break
                    read += 1
                    any_frame = True
                    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                    if first_ms is None:
                        first_ms = ms
                    t = (ms - first_ms) / 1000.0
                    if not math.isfinite(t) or t <= last_t:
                        t = last_t + frame_period if last_t > -math.inf else 0.0
                    last_t = t
                    if select is None or select(t):
                        yield cap, t, seq, epoch
                    seq += 1
                if not any_frame:
                    raise SourceError(f"{self.path}: video has no readable frames")
                if epoch == 0:
                    self._report_damage(read, max(last_t, 0.0), catcher.lines())
            finally:
                cap.release()
        catcher.close()

    def _report_damage(self, read: int, t: float, native: list[str]) -> None:
        """One warning for a file that breaks before its declared end (e.g. truncated)."""
        short = self.frame_count is not None and read < self.frame_count - 1
        if not native and not short:
            return
        of = f" of {self.frame_count}" if self.frame_count else ""
        log.warning(
            "%s: damaged: decoding stops at frame %d%s (%.1f s)%s; classified the frames before it",
            self.path,
            read,
            of,
            t,
            _reason(native),
        )

    def frames(self, select: Select | None = None, *, loops: int = 1) -> Iterator[Frame]:
        """Decoded, oriented frames on the caller's thread; ``select(t)`` picks which."""
        orient = self.orientation
        for cap, t, seq, epoch in self._walk(select, loops):
            ok, image = cap.retrieve()
            if not ok or image is None:
                raise SourceError(f"{self.path}: cannot decode frame {seq}")
            yield Frame(image=orient.apply(image), timestamp=t, seq=seq, epoch=epoch)

    def prepared(
        self,
        prepare: Prepare,
        shape: tuple[int, ...],
        dtype: np.dtype | type,
        select: Select | None = None,
        *,
        depth: int = 3,
        loops: int = 1,
    ) -> Generator[Prepared, None, None]:
        """Decode and ``prepare(bgr, out)`` on a background thread, ``depth`` frames ahead.

        ``out`` is one of ``depth + 2`` buffers of ``shape``/``dtype`` allocated here once;
        a yielded ``Prepared.data`` stays valid until the next item is requested. Errors on
        the worker are raised here, in the consumer. Closing the iterator stops the worker.
        """
        if depth < 1:
            raise ValueError("depth must be at least 1")
        slots = [np.empty(shape, dtype) for _ in range(depth + 2)]
        q: queue.Queue[Prepared | _Stop] = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def put(item: Prepared | _Stop) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            orient = self.orientation
            k = 0
            walker = self._walk(select, loops)
            try:
                for cap, t, seq, epoch in walker:
                    ok, image = cap.retrieve()
                    if not ok or image is None:
                        raise SourceError(f"{self.path}: cannot decode frame {seq}")
                    buf = slots[k]
                    k = (k + 1) % len(slots)
                    prepare(orient.apply(image), buf)
                    if not put(Prepared(buf, t, seq, epoch)):
                        return
            except BaseException as exc:
                put(_Stop(exc))
                return
            finally:
                walker.close()
            put(_Stop())

        worker = threading.Thread(target=work, name="video-decode", daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if isinstance(item, _Stop):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            stop.set()
            worker.join()
