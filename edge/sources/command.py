"""A still camera that is a program: ``rpicam-still -n -o {path}``, ``termux-camera-photo {path}``.

The template is split like a shell would (``shlex``) but run without one, and ``{path}`` is
substituted inside the split words, so a path with spaces or quotes stays one argument and
nothing in it is ever interpreted. The program gets its own process group so a camera tool
that hangs is killed with all its children when the timeout expires.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge.errors import SourceError
from edge.frame import Frame

PLACEHOLDER = "{path}"
STDERR_TAIL_CHARS = 300


def _tail(text: bytes | str | None) -> str:
    """The last meaningful line(s) of a program's stderr, as one line."""
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tail = " | ".join(lines[-3:])
    return tail[-STDERR_TAIL_CHARS:]


class CommandCamera:
    """Takes one photo per call by running a command; one capture at a time."""

    def __init__(
        self,
        command: str,
        *,
        timeout_s: float = 20.0,
        suffix: str = ".jpg",
        cancel: threading.Event | None = None,
    ) -> None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise SourceError(f"source.command: cannot parse {command!r}: {exc}") from None
        if not argv:
            raise SourceError("source.command: empty command")
        if not any(PLACEHOLDER in arg for arg in argv):
            raise SourceError(f"source.command: {command!r} has no {PLACEHOLDER} placeholder")
        if PLACEHOLDER in argv[0]:
            raise SourceError(f"source.command: the program itself cannot be {PLACEHOLDER}")
        if shutil.which(argv[0]) is None:
            raise SourceError(f"source.command: program not found: {argv[0]}")
        self.command = command
        self.argv = argv
        self.timeout_s = float(timeout_s)
        self.suffix = suffix
        self.description = f"command {argv[0]}"
        self._lock = threading.Lock()
        self._seq = 0
        # Set when the daemon stops: a photo in progress is abandoned at once.
        self._cancel = cancel or threading.Event()

    def _target(self, dest: str | Path) -> Path:
        dest = Path(dest)
        if dest.is_dir() or not dest.suffix:
            dest.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            for n in range(1000):
                candidate = dest / f"{stamp}Z-{n:03d}{self.suffix}"
                if not candidate.exists():
                    return candidate
            raise SourceError(f"{dest}: cannot find a free file name")
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def capture(self, dest: str | Path) -> Path:
        """Take a photo into ``dest`` (a file path, or a folder to name it in); return its path."""
        with self._lock:
            try:
                path = self._target(dest)
            except OSError as exc:
                raise SourceError(f"{dest}: cannot write photos here: {exc.strerror}") from None
            argv = [arg.replace(PLACEHOLDER, str(path)) for arg in self.argv]
            existed = path.exists()
            try:
                self._run(argv, path)
            except BaseException:
                if not existed:
                    path.unlink(missing_ok=True)  # no half-written photo left behind
                raise
            return path

    def _run(self, argv: list[str], path: Path) -> None:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise SourceError(f"{self.description}: cannot run: {exc.strerror or exc}") from None
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:  # in slices, so a stop request need not wait for the camera
                try:
                    _, err = proc.communicate(timeout=min(0.2, self.timeout_s))
                    break
                except subprocess.TimeoutExpired:
                    if self._cancel.is_set():
                        _kill_group(proc)
                        proc.communicate()
                        raise SourceError(f"{self.description}: cancelled") from None
                    if time.monotonic() >= deadline:
                        raise
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _, err = proc.communicate()
            tail = _tail(err)
            raise SourceError(
                f"{self.description}: no photo within {self.timeout_s:g} s"
                + (f": {tail}" if tail else "")
            ) from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        if proc.returncode != 0:
            tail = _tail(err) or "no error output"
            raise SourceError(f"{self.description} failed (exit {proc.returncode}): {tail}")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            tail = _tail(err)
            raise SourceError(
                f"{self.description} exited 0 but wrote no photo to {path}"
                + (f": {tail}" if tail else "")
            ) from None
        if size == 0:
            raise SourceError(f"{self.description} wrote an empty photo to {path}")

    def read(self, dest: str | Path | None = None) -> Frame:
        """Take a photo and decode it; without ``dest`` the file is deleted afterwards."""
        tmp = None
        if dest is None:
            import tempfile

            tmp = tempfile.TemporaryDirectory(prefix="edge-photo-")
            dest = tmp.name
        try:
            path = self.capture(dest)
            data = np.fromfile(path, np.uint8)
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"{path}: the photo command wrote a file that is not an image")
        finally:
            if tmp is not None:
                tmp.cleanup()
        self._seq += 1
        return Frame(image, time.monotonic(), self._seq, 0, time.time())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
