"""Local history of still-image results: one SQLite file in the state directory.

The device keeps its own record of what it saw, independent of MQTT, so results can be
listed (``edge history``) and audited after days offline. Image files can be pruned by a
retention setting; their rows stay, marked as deleted.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, SourceError
from edge.files import GROUP_READ, create_private, require_writable

HISTORY_FILENAME = "history.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    image_path TEXT,
    image_sha256 TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    source TEXT NOT NULL,
    mode TEXT NOT NULL,
    owned INTEGER NOT NULL DEFAULT 0,
    image_deleted_ts REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS stills_ts ON stills(ts);
CREATE TABLE IF NOT EXISTS still_results (
    still_id INTEGER NOT NULL REFERENCES stills(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    model_name TEXT NOT NULL,
    model_sha256 TEXT,
    label TEXT,
    top_json TEXT NOT NULL,
    PRIMARY KEY (still_id, position)
);
"""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class ModelResult:
    model_name: str
    model_sha256: str | None
    label: str | None
    top: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: int
    ts: float
    image_path: str | None
    image_sha256: str
    width: int | None
    height: int | None
    source: str
    mode: str
    owned: bool
    image_deleted_ts: float | None
    results: tuple[ModelResult, ...]
    error: str | None = None  # the image was refused or could not be classified

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "time": iso_utc(self.ts),
            "image": {
                "path": self.image_path,
                "sha256": self.image_sha256,
                "width": self.width,
                "height": self.height,
                "source": self.source,
                "kept": self.image_path is not None and self.image_deleted_ts is None,
            },
            "mode": self.mode,
            "error": self.error,
            "results": [
                {
                    "model": {"name": r.model_name, "sha256": r.model_sha256},
                    "label": r.label,
                    "top": r.top,
                }
                for r in self.results
            ],
        }


def iso_utc(ts: float) -> str:
    return (
        _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_since(text: str, now: float | None = None) -> float:
    """``1h``/``2d``/``30m``/``45s``/``1w`` ago, or an ISO 8601 time (naive means local time)."""
    now = time.time() if now is None else now
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2).lower()]
    try:
        when = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since: {text!r} is neither a duration (30m, 1h, 2d, 1w) nor an ISO time"
        ) from None
    return when.timestamp()


class History:
    """Thread-safe store; each write is one transaction, in WAL mode so readers never block."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if readonly:
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                require_writable(self.path, "history")
                create_private(self.path, GROUP_READ)
                self._db = sqlite3.connect(str(self.path), check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(stills)")}
                if "error" not in columns:  # a history written by an older version
                    self._db.execute("ALTER TABLE stills ADD COLUMN error TEXT")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            # Fail now, with the path, if the file is not a database.
            self._db.execute("SELECT count(*) FROM stills").fetchone()
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(stills)")}
            self._error_column = "error" if "error" in columns else "NULL"
        except (sqlite3.Error, OSError) as exc:
            raise SourceError(f"{self.path}: cannot open history database: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def record(
        self,
        *,
        ts: float,
        image_path: str | Path | None,
        image_sha256: str,
        width: int | None,
        height: int | None,
        source: str,
        mode: str,
        owned: bool,
        results: Iterable[ModelResult],
        error: str | None = None,
    ) -> int:
        """Store one classified image with every model's result (or the ``error`` that
        stopped it); returns its id."""
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO stills (ts, image_path, image_sha256, width, height, source, mode,"
                " owned, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ts,
                    None if image_path is None else str(image_path),
                    image_sha256,
                    width,
                    height,
                    source,
                    mode,
                    int(owned),
                    error,
                ),
            )
            still_id = int(cur.lastrowid or 0)
            self._db.executemany(
                "INSERT INTO still_results (still_id, position, model_name, model_sha256, label,"
                " top_json) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (still_id, i, r.model_name, r.model_sha256, r.label, json.dumps(r.top))
                    for i, r in enumerate(results)
                ],
            )
        return still_id

    def prune_images(self, keep: str, keep_days: float = 30.0, now: float | None = None) -> int:
        """Delete image files this device saved, per the retention setting; rows are kept.

        ``keep`` is "all", "none" or "days". Only images marked ``owned`` (photos the
        device took) are ever deleted, never files from a watched folder.
        """
        if keep == "all":
            return 0
        now = time.time() if now is None else now
        cutoff = now if keep == "none" else now - keep_days * 86400.0
        with self._lock:
            rows = self._db.execute(
                "SELECT id, image_path FROM stills WHERE owned = 1 AND image_deleted_ts IS NULL"
                " AND image_path IS NOT NULL AND ts <= ?",
                (cutoff,),
            ).fetchall()
        deleted = []
        for row_id, image_path in rows:
            try:
                Path(image_path).unlink(missing_ok=True)
            except OSError:
                continue  # try again next time
            deleted.append(row_id)
        if deleted:
            with self._lock, self._db:
                self._db.executemany(
                    "UPDATE stills SET image_deleted_ts = ? WHERE id = ?",
                    [(now, i) for i in deleted],
                )
        return len(deleted)

    # ------------------------------------------------------------------ reading
    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        entry_id: int | None = None,
    ) -> list[HistoryEntry]:
        """Entries oldest first; with ``limit``, the newest ``limit`` of them."""
        where: list[str] = []
        args: list[float] = []
        if entry_id is not None:
            where.append("id = ?")
            args.append(entry_id)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts <= ?")
            args.append(until)
        sql = (
            "SELECT id, ts, image_path, image_sha256, width, height, source, mode, owned,"
            f" image_deleted_ts, {self._error_column} FROM stills"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            try:
                rows = self._db.execute(sql, args).fetchall()
                ids = [r[0] for r in rows]
                results: dict[int, list[ModelResult]] = {i: [] for i in ids}
                for chunk in _chunks(ids, 500):
                    marks = ",".join("?" * len(chunk))
                    for still_id, name, sha, label, top_json in self._db.execute(
                        "SELECT still_id, model_name, model_sha256, label, top_json FROM"
                        f" still_results WHERE still_id IN ({marks}) ORDER BY still_id, position",
                        chunk,
                    ):
                        results[still_id].append(
                            ModelResult(name, sha, label, json.loads(top_json))
                        )
            except sqlite3.Error as exc:
                raise SourceError(f"{self.path}: cannot read history: {exc}") from None
        entries = [
            HistoryEntry(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                bool(r[8]),
                r[9],
                tuple(results[r[0]]),
                r[10],
            )
            for r in rows
        ]
        entries.reverse()
        return entries

    def get(self, entry_id: int) -> HistoryEntry | None:
        """One entry by its id (a result's ``history_id``)."""
        found = self.query(entry_id=entry_id)
        return found[0] if found else None

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM stills").fetchone()[0])


def _chunks(items: list[int], n: int) -> Iterable[list[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
