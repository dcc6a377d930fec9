"""Files the device writes for itself: private modes whatever the umask, and writability.

Outside the systemd unit (umask 022) a plain ``open`` would leave the outbox, the history
and snapshots world-readable; they can hold what the camera saw. Modes are set with
``fchmod`` after creation because the umask only ever removes bits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from pathlib import Path

from edge.errors import ConfigError

PRIVATE = 0o600  # outbox, model override: only the daemon's user
GROUP_READ = 0o640  # history, snapshots: readable by the admin group too


def create_private(path: Path, mode: int = PRIVATE) -> None:
    """Create ``path`` empty with ``mode`` if it is missing; tighten a looser existing mode.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, so creating the
    database file first is enough for all three.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        with contextlib.suppress(OSError):  # not ours: the writability check says so
            st = os.stat(path)
            if stat.S_IMODE(st.st_mode) & ~mode:
                os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """Replace ``path`` atomically with ``data``, created with ``mode`` (fsync'd)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _write_errno(target: Path) -> int:
    """0 if ``target`` (a file, or a directory taking new files) can be written, else errno."""
    try:
        if target.is_dir():
            probe = target / f".edge-probe-{os.getpid()}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        else:
            os.close(os.open(target, os.O_RDWR))
    except OSError as exc:
        return exc.errno or errno.EACCES
    return 0


def require_writable(path: Path, what: str) -> None:
    """ConfigError in one line (the file, its owner, the fix) unless ``path`` can be written.

    The directory must take new files too (SQLite's ``-wal`` and ``-shm``). A read-only
    file in a writable directory (left root-owned by one ``sudo edge run``) is the usual case.
    """
    me = _user(os.geteuid())
    for target in ([path] if path.exists() else []) + [path.parent]:
        code = _write_errno(target)
        if code:
            break
    else:
        return
    try:
        st = target.stat()
        owner, mode = _user(st.st_uid), f"{stat.S_IMODE(st.st_mode):04o}"
    except OSError:
        owner, mode = "?", "?"
    kind = "directory" if target.is_dir() else "file"
    if code == errno.EROFS:
        fix = "the filesystem is mounted read-only: remount it read-write or set state_dir"
    elif code == errno.EPERM:
        fix = f"it is marked immutable: sudo chattr -i {target}"
    elif target.is_dir():
        fix = f"sudo chown {me} {target}"
    else:
        fix = f"sudo chown {me} {target}* (or move it away to start a new {what})"
    raise ConfigError(
        f"{what}: {kind} {target} is not writable by user {me} "
        f"({os.strerror(code).lower()}; owner {owner}, mode {mode}): {fix}"
    )


class Ballast:
    """A file holding ``size`` bytes of disk in reserve, given up when the disk is full.

    SQLite needs room to checkpoint its WAL and to delete rows; on a filesystem that some
    other program filled, that room is taken from this file, and it is claimed back once
    the filesystem has space again.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def free_bytes(self) -> int:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def claim(self) -> bool:
        """Take the reserve (if the filesystem has twice its size free); True when held."""
        if self.held:
            return True
        if self.free_bytes() < 2 * self.size:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, PRIVATE)
        except OSError:
            return False
        try:
            os.fchmod(fd, PRIVATE)
            os.posix_fallocate(fd, 0, self.size)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            return False
        os.close(fd)
        return True

    def release(self) -> bool:
        """Give the reserve back to the filesystem; True if there was one."""
        try:
            os.unlink(self.path)
        except OSError:
            return False
        return True
