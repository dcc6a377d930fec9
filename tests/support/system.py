"""Real faults from the operating system: a small filesystem, read-only files, a memory limit.

Each helper skips (with the reason) where the machine does not allow it, e.g. a container
without CAP_SYS_ADMIN; where it is allowed the test runs, in CI as everywhere.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "400k") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    proc = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where))
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield where
    finally:
        _run("umount", "-l", str(where))


@contextlib.contextmanager
def read_only_bind(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted read-only onto itself (writes fail with EROFS, even for root)."""
    proc = _run("mount", "--bind", str(folder), str(folder))
    if proc.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {proc.stderr.strip() or proc.returncode}")
    try:
        proc = _run("mount", "-o", "remount,bind,ro", str(folder))
        if proc.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {proc.stderr.strip()}")
        yield folder
    finally:
        _run("umount", "-l", str(folder))


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``chattr +i``: the file cannot be opened for writing, even by root."""
    proc = _run("chattr", "+i", str(path))
    if proc.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield path
    finally:
        _run("chattr", "-i", str(path))


def fill(folder: Path, leave: int) -> Path:
    """Write a filler file so that about ``leave`` bytes stay free in ``folder``'s filesystem."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


class MemoryLimit:
    """A memory cgroup (v2 or v1) with a hard limit; ``preexec`` moves a child into it."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        name = f"edge-test-{uuid.uuid4().hex[:8]}"
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        v1 = Path("/sys/fs/cgroup/memory")
        try:
            if v2.exists():
                self.path = Path("/sys/fs/cgroup") / name
                self.path.mkdir()
                (self.path / "memory.max").write_text(str(limit_bytes))
                with contextlib.suppress(OSError):
                    (self.path / "memory.swap.max").write_text("0")
            elif v1.is_dir():
                self.path = v1 / name
                self.path.mkdir()
                (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
                with contextlib.suppress(OSError):
                    (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
            else:
                pytest.skip("no memory cgroup controller here")
        except OSError as exc:
            pytest.skip(f"cannot create a memory cgroup here: {exc}")
        self.procs = self.path / "cgroup.procs"

    def preexec(self) -> None:
        self.procs.write_text(str(os.getpid()))

    def oom_killed(self) -> bool:
        """True if the kernel killed a process for exceeding this limit."""
        for name in ("memory.events", "memory.oom_control"):
            with contextlib.suppress(OSError):
                text = (self.path / name).read_text()
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()
