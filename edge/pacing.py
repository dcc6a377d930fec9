"""Choosing which frames the model sees, from their timestamps, so it steps at its own rate.

A stream model is trained at a fixed frame rate (5 fps for MoViNet); feeding it faster or
slower changes what its temporal state means. Sources run at whatever rate they run (28, 30,
29.97 fps files, cameras that drop frames), so the choice is made on timestamps, not on
"every n-th frame": the schedule advances by exactly one period per step, and a frame
counts as due when it is within a small tolerance of its slot, so a 28 fps source still
yields 5 steps per second on average instead of 28/6.
"""

from __future__ import annotations

import math


class Pacer:
    """Says yes to one frame per model period.

    ``take(t)`` is called for every frame in order; ``t`` is seconds on any monotonic
    clock. A frame whose timestamp goes backwards restarts the schedule (a source
    restart or a looped file), as does a gap longer than one period (so a stall does not
    cause a burst of catch-up steps).
    """

    __slots__ = ("_due", "_last", "fps", "period", "tolerance")

    def __init__(self, fps: float, tolerance: float = 0.1) -> None:
        if not fps > 0 or math.isinf(fps):
            raise ValueError(f"model rate must be a positive number of frames per second: {fps}")
        if not 0 <= tolerance < 1:
            raise ValueError("tolerance is a fraction of the period, in [0, 1)")
        self.fps = float(fps)
        self.period = 1.0 / self.fps
        self.tolerance = tolerance * self.period
        self._due: float | None = None
        self._last: float | None = None

    def reset(self) -> None:
        self._due = None
        self._last = None

    def take(self, t: float) -> bool:
        last = self._last
        self._last = t
        due = self._due
        if due is None or last is None or t < last:
            self._due = t + self.period
            return True
        if t + self.tolerance < due:
            return False
        # On schedule: advance by one period so the average rate is exact. Late by more
        # than a period (a stall, or a source slower than the model): restart from here.
        self._due = due + self.period if t - due < self.period else t + self.period
        return True


def takes_every_frame(model_fps: float, source_fps: float | None) -> bool:
    """True when the model rate is at or above the source rate (every frame is a step)."""
    if not source_fps:
        return False
    return model_fps >= source_fps * 0.999
