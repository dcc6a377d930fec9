"""Catching what native libraries (FFmpeg, the TFLite runtime) print straight to fd 2.

Their lines bypass Python's logging; collecting them lets a failure become one
error line that carries the library's reason, and lets routine chatter such
as LiteRT's "Created TensorFlow Lite XNNPACK delegate" be dropped.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress


@contextmanager
def native_stderr(into: list[str]) -> Iterator[None]:
    """Collect the non-empty lines native code writes to fd 2 meanwhile into ``into``."""
    with suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            into.extend(line.strip() for line in text.splitlines() if line.strip())
