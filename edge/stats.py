"""Run-time figures for the stats topic: rates, latency percentiles, CPU and memory.

Read from /proc and os.times() so the core needs no extra package on a Pi Zero.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections import deque

import numpy as np

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size of a process from /proc, or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def rss_bytes() -> int:
    """This process's resident set size (falls back to the peak where /proc is missing)."""
    current = process_rss_bytes()
    return current if current is not None else peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size (ru_maxrss is in bytes on macOS, KiB elsewhere)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class CpuMeter:
    """Process CPU % since the previous call (100 = one core busy)."""

    def __init__(self) -> None:
        self._last = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float]:
        t = os.times()
        return t.user + t.system, time.monotonic()

    def percent(self) -> float:
        cpu, now = self._sample()
        d_cpu, d_wall = cpu - self._last[0], now - self._last[1]
        self._last = (cpu, now)
        return 100.0 * d_cpu / d_wall if d_wall > 0 else 0.0


class Window:
    """The last N samples of a quantity, for percentiles without unbounded growth."""

    def __init__(self, size: int = 512) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def percentile(self, q: float) -> float | None:
        if not self._values:
            return None
        return float(np.percentile(np.fromiter(self._values, float), q))

    def __len__(self) -> int:
        return len(self._values)


class RateMeter:
    """Events per second over a sliding time window."""

    def __init__(self, window_s: float = 10.0) -> None:
        self._window = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0
