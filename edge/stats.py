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
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size of a process from /proc, or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def _status_kib(pid: int | str, keys: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                name, _, rest = line.partition(b":")
                key = name.decode()
                if key in keys:
                    found[key] = int(rest.split()[0])
    except (OSError, IndexError, ValueError):
        pass
    return found


def _pss_kib(pid: int | str) -> int | None:
    """Proportional set size: shared library pages divided among the processes using them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return None


def cgroup_memory_bytes(pid: int | str = "self") -> int | None:
    """The memory cgroup's usage when the process has that cgroup to itself (a systemd unit).

    cgroup v2 ``memory.current`` or v1 ``memory.usage_in_bytes``; None when the cgroup is
    shared with other processes (a login session, a container), where it would not be the
    process's own cost.
    """
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                candidates.append((f"{root}{path}", "memory.current"))
        elif "memory" in controllers.split(","):
            candidates.append((f"/sys/fs/cgroup/memory{path}", "memory.usage_in_bytes"))
    own = {str(os.getpid() if pid == "self" else pid)}
    for folder, name in candidates:
        try:
            with open(f"{folder}/cgroup.procs") as fh:
                if set(fh.read().split()) != own:
                    continue
            with open(f"{folder}/{name}") as fh:
                return int(fh.read())
        except (OSError, ValueError):
            continue
    return None


def memory_mb(pid: int | str = "self") -> dict[str, float | None]:
    """What a process costs in memory, MB, each figure None where it cannot be read.

    ``rss_anon_mb`` (heap, arenas, tensors: the process's own pages) is the figure to judge;
    ``rss_mb`` (VmRSS) adds file-backed pages of shared libraries that the kernel can drop
    and share; ``pss_mb`` splits shared pages among their users; ``cgroup_mb`` is the
    unit's own cgroup, where there is one (it counts page cache too).
    """
    status = _status_kib(pid, ("VmRSS", "RssAnon"))

    def mb(kib: int | None) -> float | None:
        return None if kib is None else round(kib / 1024, 1)

    cgroup = cgroup_memory_bytes(pid)
    rss = status.get("VmRSS")
    if rss is None and pid == "self":
        rss = peak_rss_bytes() // 1024  # no /proc (macOS): the peak is what there is
    return {
        "rss_mb": mb(rss),
        "rss_anon_mb": mb(status.get("RssAnon")),
        "pss_mb": mb(_pss_kib(pid)),
        "cgroup_mb": None if cgroup is None else round(cgroup / 2**20, 1),
    }


def process_cpu_seconds(pid: int | str = "self") -> float | None:
    """User + system CPU time a process has used so far: os.times() for this one (which also
    holds under qemu-user, whose /proc/self/stat reads 0), /proc/PID/stat for another."""
    if pid in ("self", os.getpid()):
        t = os.times()
        return t.user + t.system
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            # The command name may hold spaces; the fields after it are fixed.
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
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
