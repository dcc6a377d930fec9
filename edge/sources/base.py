"""Live capture: a reader thread per connection, a watchdog around it, and a latest-frame slot.

A camera or stream can fail in three ways: it refuses to open, it errors out, or it
hangs inside a blocking read that never returns. Only the last one needs care: the
blocking read runs in a reader thread, and a supervisor thread that never blocks on
the device notices when no frame has arrived for ``frame_timeout_s``, gives up on
that reader (which closes its own device whenever its read returns, since releasing
a device from another thread while it is being read is unsafe) and opens a fresh
one. Every successful (re)open starts a new ``epoch`` so the classifier drops state
built from the old stream.

The reader grabs every frame the device produces, which keeps driver and network
queues drained so frames are fresh, but converts (``retrieve``) only the frames the
model will see, at about ``model_fps``. A converted frame waits in a one-frame slot;
a newer one replaces it, so the consumer never works on a stale queued frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge.errors import SourceError
from edge.frame import Frame
from edge.pacing import Pacer
from edge.sources.orientation import Orientation

log = logging.getLogger("edge.sources")

# Readers given up on while stuck in a read keep their thread until the read returns;
# past this many, wait for them instead of piling up more stuck threads and devices.
MAX_ABANDONED_READERS = 3


class Backend(Protocol):
    """One connection to a device, stream or file. Used by one reader thread only."""

    description: str
    is_file: bool  # files: paced by their own frame rate, may loop, end for good otherwise

    def open(self) -> float | None:
        """Open the device; return its nominal frame rate if known. Raises SourceError."""
        ...

    def grab(self) -> bool:
        """Fetch the next frame without converting it. False: no frame (end or error).

        May raise TimeoutError when the backend has its own bounded wait and it expired.
        """
        ...

    def retrieve(self, out: np.ndarray | None = None) -> np.ndarray | None:
        """The last grabbed frame as BGR uint8 (H, W, 3), written into ``out`` when it fits."""
        ...

    def rewind(self) -> bool:
        """Files: start again at the first frame. False when that is impossible."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CaptureStats:
    camera_fps: float  # frames grabbed per second (what the device delivers)
    frames: int  # frames grabbed since start
    dropped: int  # converted for the model but replaced by a newer one before it was read
    skipped: int  # grabbed and not converted: the model takes only model_fps of them
    reconnects: int  # successful re-opens after the first open
    stalls: int  # times no frame arrived for frame_timeout_s
    last_frame_age_s: float | None
    connected: bool
    error: str | None = None  # the last open/read failure, while not connected


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    model_fps: float
    frame_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    open_timeout_s: float = 10.0  # an open taking longer than this counts as a hang
    orientation: Orientation = field(default_factory=Orientation)
    loop: bool = False  # files only
    realtime: bool = True  # files only: pace to the file's frame rate (else: lossless handoff)


class _Reader:
    """State shared between one reader thread and the supervisor."""

    __slots__ = (
        "abandoned",
        "done",
        "error",
        "frames",
        "last_frame",
        "opened",
        "outcome",
        "started",
    )

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.opened = False
        self.last_frame = self.started
        self.frames = 0
        self.abandoned = False
        self.outcome = ""  # "open_failed", "lost", "stall", "eof", "stopped"
        self.error: str | None = None
        self.done = threading.Event()


class Capture:
    """A live source running in its own threads. See the module docstring for the design."""

    def __init__(
        self, factory: Callable[[], Backend], description: str, options: CaptureOptions
    ) -> None:
        if not options.model_fps > 0:
            raise SourceError(f"{description}: model frame rate must be positive")
        self.description = description
        # The short side frames are scaled to for a model (None: the source's own size);
        # a model wanting more needs a new capture.
        self.scaled_to: int | None = None
        self._factory = factory
        self._opt = options
        self._period = 1.0 / options.model_fps
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()  # the watchdog's: a reader ended, or stop
        self._pending: Frame | None = None
        self._supervisor: threading.Thread | None = None
        self._reader_thread: threading.Thread | None = None
        self._abandoned: list[threading.Thread] = []
        self._finished = False
        # counters (written by the reader/supervisor under self._cond)
        self._frames = 0
        self._dropped = 0
        self._skipped = 0
        self._opens = 0
        self._epoch = -1
        self._stalls = 0
        self._connected = False
        self._error: str | None = None
        self._last_frame_t: float | None = None
        self._fps = 0.0
        self._win_start = 0.0
        self._win_n = 0

    # ----------------------------------------------------------------- public API

    def start(self) -> None:
        if self._supervisor is not None:
            raise RuntimeError("capture already started")
        self._supervisor = threading.Thread(
            target=self._supervise, name="edge-capture-watchdog", daemon=True
        )
        self._supervisor.start()

    def get(self, timeout: float) -> Frame | None:
        """The newest frame not returned before, waiting up to ``timeout`` seconds.

        After the last frame of a file without ``loop`` it still waits out the timeout (so a
        polling loop does not spin) and returns None; ``finished`` tells that case apart.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is None:
                if self._stop.is_set():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._pending = self._pending, None
            self._cond.notify_all()
            return frame

    def stop(self, timeout: float = 1.0) -> None:
        """Stop within about ``timeout``; a reader stuck in a device read is left to exit alone."""
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in (self._supervisor, self._reader_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._connected = False
            if self._pending is not None:
                self._pending = None
                self._dropped += 1

    @property
    def finished(self) -> bool:
        """True once a file source without ``loop`` has delivered its last frame."""
        return self._finished

    @property
    def epoch(self) -> int:
        return max(self._epoch, 0)

    @property
    def stats(self) -> CaptureStats:
        now = time.monotonic()
        with self._cond:
            age = None if self._last_frame_t is None else now - self._last_frame_t
            fps = self._fps if age is not None and age < max(2.0, 2 * self._period) else 0.0
            return CaptureStats(
                camera_fps=fps,
                frames=self._frames,
                dropped=self._dropped,
                skipped=self._skipped,
                reconnects=max(0, self._opens - 1),
                stalls=self._stalls,
                last_frame_age_s=age,
                connected=self._connected,
                error=None if self._connected else self._error,
            )

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Capture({self.description!r})"

    # ----------------------------------------------------------------- supervisor

    def _supervise(self) -> None:
        opt = self._opt
        backoff = opt.backoff_initial_s
        failures = 0
        while not self._stop.is_set():
            self._abandoned = [t for t in self._abandoned if t.is_alive()]
            if len(self._abandoned) >= MAX_ABANDONED_READERS:
                log.warning(
                    "%s: %d reads still hung; waiting", self.description, len(self._abandoned)
                )
                self._stop.wait(backoff)
                continue
            reader = _Reader()
            thread = threading.Thread(
                target=self._read, args=(reader,), name="edge-capture", daemon=True
            )
            self._reader_thread = thread
            thread.start()
            outcome = self._watch(reader)
            reason = _describe(outcome, reader, opt.frame_timeout_s)
            if not reason.startswith(self.description):
                reason = f"{self.description}: {reason}"
            with self._cond:
                self._connected = False
                if outcome == "stall":
                    self._stalls += 1
                if outcome not in ("stopped", "eof"):
                    self._error = reason
            if thread.is_alive() and outcome != "stopped":
                self._abandoned.append(thread)
            if self._stop.is_set() or outcome == "stopped":
                break
            if outcome == "eof":
                log.info("%s: end of file", self.description)
                with self._cond:
                    self._finished = True
                    self._cond.notify_all()
                break
            if reader.frames > 0:
                backoff, failures = opt.backoff_initial_s, 0
            failures += 1
            level = logging.WARNING if failures == 1 else logging.DEBUG
            log.log(level, "%s (retrying in %.1f s)", reason, backoff)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, opt.backoff_max_s)

    def _watch(self, reader: _Reader) -> str:
        """Wait for the reader to end, or decide it is hung. Returns the outcome.

        It sleeps until a stall could first be declared (``frame_timeout_s`` after the last
        frame), not on a short poll: while frames flow it wakes once per timeout, not ten
        times a second. The reader's end and ``stop`` wake it at once (``_wake``).
        """
        opt = self._opt
        while not reader.done.is_set():
            if self._stop.is_set():
                return "stopped"
            now = time.monotonic()
            with self._cond:
                if reader.opened:
                    due = reader.last_frame + opt.frame_timeout_s
                else:
                    due = reader.started + opt.open_timeout_s + opt.frame_timeout_s
                if now > due:
                    reader.abandoned = True
                    if not reader.opened:
                        reader.error = f"open did not finish within {opt.open_timeout_s:g} s"
                    return "stall"
            self._wake.wait(due - now + 0.01)
            self._wake.clear()  # whatever set it is seen by the checks above
        return reader.outcome

    def _reader_done(self, reader: _Reader) -> None:
        reader.done.set()
        self._wake.set()

    # ----------------------------------------------------------------- reader

    def _read(self, reader: _Reader) -> None:
        backend: Backend | None = None
        try:
            backend = self._factory()
            nominal_fps = backend.open()
        except SourceError as exc:
            reader.error, reader.outcome = str(exc), "open_failed"
            self._reader_done(reader)
            self._close(backend)
            return
        except Exception as exc:  # a driver error is not a bug of ours: retry it
            log.debug("%s: open failed", self.description, exc_info=True)
            reader.error, reader.outcome = f"{self.description}: {exc}", "open_failed"
            self._reader_done(reader)
            self._close(backend)
            return
        try:
            reader.outcome = self._loop(reader, backend, nominal_fps)
        except TimeoutError as exc:
            reader.error, reader.outcome = f"{self.description}: {exc}", "stall"
        except Exception as exc:
            log.debug("%s: read failed", self.description, exc_info=True)
            reader.error, reader.outcome = f"{self.description}: {exc}", "lost"
        finally:
            self._reader_done(reader)
            self._close(backend)

    def _close(self, backend: Backend | None) -> None:
        if backend is None:
            return
        try:
            backend.close()
        except Exception:
            log.debug("%s: close failed", self.description, exc_info=True)

    def _loop(self, reader: _Reader, backend: Backend, nominal_fps: float | None) -> str:
        opt = self._opt
        orient = opt.orientation
        is_file = backend.is_file
        file_fps = nominal_fps if nominal_fps and 0 < nominal_fps < 1000 else 25.0
        file_dt = 1.0 / file_fps
        lossless = is_file and not opt.realtime
        with self._cond:
            if reader.abandoned or self._stop.is_set():
                return "stopped"
            reader.opened = True
            reader.last_frame = time.monotonic()
            self._opens += 1
            self._epoch += 1
            epoch = self._epoch
            self._connected = True
            self._error = None
            self._win_start, self._win_n = 0.0, 0  # no rate across the gap
        if self._opens > 1:
            log.info("%s: reconnected (epoch %d)", self.description, epoch)
        else:
            log.info("%s: opened", self.description)
        scratch: np.ndarray | None = None
        pacer = Pacer(opt.model_fps)  # the same rule edge classify picks frames by
        file_index = 0  # frames read since open, across loops: the file clock
        pace_start = time.monotonic()
        while not self._stop.is_set() and not reader.abandoned:
            ok = backend.grab()
            now = time.monotonic()
            if reader.abandoned:
                break
            if not ok:
                if is_file and opt.loop and file_index > 0:
                    if backend.rewind():
                        continue
                    # The file vanished or broke while playing: a stall to retry, not an end.
                    reader.error = f"{self.description}: cannot open the file again to loop it"
                    return "lost"
                return "eof" if is_file else "lost"
            wall = time.time()
            if is_file:
                clock = file_index * file_dt
                file_index += 1
            else:
                clock = now
            due = pacer.take(clock)
            with self._cond:
                index = self._frames  # the source frame's index since the capture started
                reader.last_frame = now
                reader.frames += 1
                self._frames += 1
                self._last_frame_t = now
                if now - self._win_start >= 1.0:
                    if self._win_start > 0:
                        self._fps = self._win_n / (now - self._win_start)
                    self._win_start, self._win_n = now, 0
                self._win_n += 1
                if not due:
                    self._skipped += 1
            if due:
                if orient.identity:
                    image = backend.retrieve(None)
                else:
                    scratch = backend.retrieve(scratch)
                    image = None if scratch is None else orient.apply(scratch)
                if image is None:
                    return "eof" if is_file else "lost"
                frame = Frame(image, clock, index, epoch, wall)
                if not self._hand_out(reader, frame, lossless):
                    break
            if is_file and opt.realtime:
                delay = pace_start + file_index * file_dt - time.monotonic()
                if delay > 0:
                    if self._stop.wait(delay):
                        break
                elif delay < -1.0:  # fell behind (slow decode): do not race to catch up
                    pace_start = time.monotonic() - file_index * file_dt
        return "stopped"

    def _hand_out(self, reader: _Reader, frame: Frame, lossless: bool) -> bool:
        with self._cond:
            if lossless:
                while self._pending is not None and not self._stop.is_set():
                    if reader.abandoned:
                        return False
                    self._cond.wait(0.1)
                    reader.last_frame = time.monotonic()  # waiting on the consumer is no stall
            if reader.abandoned or self._stop.is_set():
                self._dropped += 1
                return False
            if self._pending is not None:
                self._dropped += 1
            self._pending = frame
            self._cond.notify_all()
            return True


def _describe(outcome: str, reader: _Reader, frame_timeout_s: float) -> str:
    if outcome == "stall":
        if reader.opened:
            return f"no frame for {frame_timeout_s:g} s"
        return reader.error or "open hung"
    if outcome == "open_failed":
        return reader.error or "cannot open"
    if outcome == "lost":
        return reader.error or "stream ended or read failed"
    return outcome


def redact_url(url: str) -> str:
    """A URL with any password replaced, for logs and stats."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user = userinfo.split(":", 1)[0]
        authority = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    return f"{scheme}://{authority}{slash}{path}"
