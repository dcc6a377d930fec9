"""Waiting on a running Capture from a test: for a frame, or for its stats."""

from __future__ import annotations

import time

from edge.sources.base import Capture


def wait_for(capture: Capture, predicate, timeout: float):
    """Consume frames until ``predicate(frame)`` holds; the frame, or None at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = capture.get(0.2)
        if frame is not None and predicate(frame):
            return frame
    return None


def wait_stats(capture: Capture, predicate, timeout: float) -> bool:
    """Keep the capture consumed until ``predicate(stats)`` holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(capture.stats):
            return True
        capture.get(0.05)
    return predicate(capture.stats)
