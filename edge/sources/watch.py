"""A folder that other programs drop photos into; each complete image file is reported once.

Polling rather than inotify: it works the same on network mounts, SD cards and Android
storage, and a still station needs no sub-second reaction. A file is complete when its size
and modification time did not change between two polls, or at once when its modification
time is already older than ``settle_s`` (a file moved in keeps its old mtime, one being
written does not). What was reported is remembered in a small JSON file so a restart does
not classify the whole folder again; a file later replaced under the same name is new.

Poison inputs: ``begin`` records durably which file is being handled before the caller
starts on it, ``done`` clears it. A file that was being handled when the process died is
counted (``attempts``), so the caller can refuse one that already stopped it twice instead of
crashing on it forever. Refused files are moved to ``rejected/`` inside the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from edge.imagefile import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

STATE_PREFIX = "watch-"
REJECTED_DIRNAME = "rejected"

Signature = tuple[int, int]  # (size, mtime_ns)


class FolderWatcher:
    def __init__(
        self,
        folder: str | Path,
        *,
        state_path: str | Path | None = None,
        settle_s: float = 2.0,
        poll_s: float = 1.0,
        suffixes: Collection[str] = IMAGE_SUFFIXES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.settle_s = float(settle_s)
        # Calls closer together than this return nothing: "unchanged between two polls"
        # must span real time, however often the caller's loop runs.
        self.poll_s = float(poll_s)
        self._last_scan = -float("inf")
        self.suffixes = frozenset(s.lower() for s in suffixes)
        self.clock = clock
        self.state_file = self._state_file(state_path)
        self._inflight: dict[str, Any] | None = None  # the file being handled, persisted
        self._seen: dict[str, Signature] = self._load()
        self._pending: dict[str, Signature] = {}
        self._ready: dict[str, Signature] = {}
        self._missing_logged = False

    def _state_file(self, state_path: str | Path | None) -> Path | None:
        if state_path is None:
            return None
        path = Path(state_path)
        if path.is_dir() or not path.suffix:
            key = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:12]
            return path / f"{STATE_PREFIX}{key}.json"
        return path

    def _load(self) -> dict[str, Signature]:
        if self.state_file is None:
            return {}
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            seen = data.get("seen", {}) if isinstance(data, dict) else {}
            inflight = data.get("inflight") if isinstance(data, dict) else None
            if isinstance(inflight, dict) and {"name", "sig", "tries"} <= set(inflight):
                self._inflight = inflight
            return {str(k): (int(v[0]), int(v[1])) for k, v in seen.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
            log.warning("%s: unreadable watch state, starting afresh: %s", self.state_file, exc)
            return {}

    def _save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "folder": str(self.folder),
                "seen": {k: list(v) for k, v in self._seen.items()},
                "inflight": self._inflight,
            }
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(json.dumps(payload))
                fh.flush()
                os.fsync(fh.fileno())  # must be on disk before a crash it is meant to survive
            os.replace(tmp, self.state_file)
        except OSError as exc:
            log.warning("%s: cannot save watch state: %s", self.state_file, exc)

    def _listing(self) -> dict[str, tuple[Signature, float]]:
        files: dict[str, tuple[Signature, float]] = {}
        with os.scandir(self.folder) as it:
            for entry in it:
                name = entry.name
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in self.suffixes:
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except OSError:
                    continue  # vanished between listing and stat
                files[name] = ((st.st_size, st.st_mtime_ns), st.st_mtime)
        return files

    def poll(self) -> list[Path]:
        """New complete image files since the last poll, oldest first. Never raises."""
        tick = time.monotonic()
        if tick - self._last_scan < self.poll_s:
            return []
        self._last_scan = tick
        try:
            files = self._listing()
        except OSError as exc:
            if not self._missing_logged:
                log.warning("watched folder %s: %s", self.folder, exc.strerror or exc)
                self._missing_logged = True
            return []
        self._missing_logged = False
        now = self.clock()
        ready: list[tuple[float, str]] = []
        pending: dict[str, Signature] = {}
        for name, (sig, mtime) in files.items():
            if self._seen.get(name) == sig:
                continue
            stable = sig in (self._pending.get(name), self._ready.get(name))
            settled = now - mtime >= self.settle_s
            if (sig[0] > 0 and (stable or settled)) or (sig[0] == 0 and stable and settled):
                ready.append((mtime, name))
            else:
                pending[name] = sig
        self._pending = pending
        gone = [name for name in self._seen if name not in files]
        for name in gone:
            del self._seen[name]
        ready.sort()
        # Marked seen only by done(), once the caller has recorded the file: a crash in
        # between means the file is offered again, not lost.
        self._ready = {name: files[name][0] for _, name in ready}
        if gone:
            self._save()
        return [self.folder / name for _, name in ready]

    def attempts(self, path: str | Path) -> int:
        """How many times handling ``path`` began and never finished (the process died)."""
        name = Path(path).name
        entry = self._inflight
        if entry is None or entry.get("name") != name:
            return 0
        if list(entry.get("sig", ())) != list(self._ready.get(name, ())):
            return 0  # replaced by a new file under the same name
        return int(entry.get("tries", 0))

    def begin(self, path: str | Path) -> None:
        """The caller starts on ``path``: recorded on disk first, in case it never returns."""
        name = Path(path).name
        sig = self._ready.get(name)
        if sig is None:
            return
        self._inflight = {"name": name, "sig": list(sig), "tries": self.attempts(path) + 1}
        self._save()

    def done(self, path: str | Path) -> None:
        """The caller has dealt with ``path`` (classified and recorded, or refused)."""
        name = Path(path).name
        sig = self._ready.pop(name, None)
        if self._inflight is not None and self._inflight.get("name") == name:
            self._inflight = None
        if sig is not None:
            self._seen[name] = sig
        self._save()

    def reject(self, path: str | Path) -> Path | None:
        """Move a refused file into ``rejected/`` so it is never offered again; its new path,
        or None when it cannot be moved (then it stays, remembered as done)."""
        src = Path(path)
        dest_dir = self.folder / REJECTED_DIRNAME
        try:
            dest_dir.mkdir(exist_ok=True)
            dest = dest_dir / src.name
            n = 1
            while dest.exists():
                dest = dest_dir / f"{src.stem}.{n}{src.suffix}"
                n += 1
            os.replace(src, dest)
        except OSError as exc:
            log.warning("%s: cannot move it to %s: %s", src, dest_dir, exc.strerror or exc)
            return None
        return dest
