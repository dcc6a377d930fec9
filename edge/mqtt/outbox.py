"""Durable outbox: messages wait in SQLite until the broker acknowledged them.

Durability choice: WAL journal with ``synchronous=FULL``. In WAL mode ``NORMAL`` only
syncs at checkpoints, so a power cut can roll back the last commits: an event that
``publish_event`` already returned for would silently vanish, which is exactly what this
outbox exists to prevent. ``FULL`` syncs the WAL on every commit; the messages that take
this path (state, events, results, replies, stats) are a few per minute, so the cost is a
few fsyncs a minute, and acknowledgements are deleted in batches. A delete lost to a power
cut only means the message is sent again (at-least-once), which subscribers tolerate.

Bounding: at ``max_messages`` rows the outbox makes room by dropping, in this order, the
oldest QoS 0 rows (stats), then the oldest command replies; a new QoS 0 message that still
finds no room is dropped itself. ``state`` is retained, so only its newest row is kept
(older unsent ones are superseded). Events and results are never dropped: if the outbox is
full of them it grows past the bound and says so in the log, because losing them is worse
than a larger file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError

log = logging.getLogger(__name__)

STATE = "state"  # retained; newest row supersedes older ones
EVENT = "event"  # never dropped
RESULT = "result"  # never dropped
REPLY = "reply"  # dropped after QoS 0 when full
STATS = "stats"  # QoS 0, dropped first
KINDS = (STATE, EVENT, RESULT, REPLY, STATS)
_DROP_ORDER = (STATS, REPLY)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class _Refused(Exception):
    """Internal: the bound refused a message; the transaction rolls back."""


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    kind: str
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """A bounded FIFO of MQTT messages in one SQLite file, safe to use from several threads."""

    def __init__(self, path: Path, max_messages: int = 100_000, *, clock=time.time) -> None:
        self.path = Path(path)
        self.max_messages = max_messages
        self._clock = clock
        self._lock = threading.RLock()
        self.dropped = 0  # messages discarded to respect the bound, since this process started
        self._over_bound_warned = False
        self._db = self._open()
        self.depth = self._count(self._db)

    # ------------------------------------------------------------------ opening
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        db.execute("PRAGMA quick_check").fetchone()
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"outbox: cannot create {self.path.parent}: {exc.strerror}") from None
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
                raise ConfigError(f"outbox: cannot open {self.path}: {exc}") from None
            # A corrupt file must not keep the sensor from publishing new data: keep it for
            # inspection and start a fresh outbox.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(self._clock())}")
            log.error("outbox %s is unreadable (%s); moved aside to %s", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    src.replace(Path(str(aside) + suffix))
            return self._connect()

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    # ------------------------------------------------------------------ writing
    def put(
        self,
        kind: str,
        topic: str,
        body: dict[str, Any],
        *,
        qos: int,
        retain: bool = False,
        seq: str | None = None,
    ) -> int | None:
        """Store one message durably; return its row id, or None if the bound dropped it.

        With ``seq`` the body gets ``"seq"`` from the persisted counter of that name, in the
        same transaction as the insert, so numbers never repeat or skip across crashes.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown outbox kind {kind!r}")
        try:
            with self._transaction() as db:
                if kind == STATE:
                    db.execute("DELETE FROM outbox WHERE kind = ?", (STATE,))
                depth = self._count(db)
                if depth >= self.max_messages and not self._make_room(db, kind, depth):
                    raise _Refused  # rolls back, so a coalesced old state stays
                if seq is not None:
                    body = {**body, "seq": self._next(db, seq)}
                payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
                cur = db.execute(
                    "INSERT INTO outbox (kind, topic, payload, qos, retain, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (kind, topic, payload, qos, int(retain), self._clock()),
                )
                depth = self._count(db)
        except _Refused:
            with self._lock:
                self.dropped += 1
            return None
        self.depth = depth
        return int(cur.lastrowid or 0)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: committed on success, else rolled back."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _count(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def _make_room(self, db: sqlite3.Connection, kind: str, depth: int) -> bool:
        for victim in _DROP_ORDER:
            if victim == kind == REPLY:
                break  # a reply does not push out an older reply
            row = db.execute(
                "SELECT id FROM outbox WHERE kind = ? ORDER BY id LIMIT 1", (victim,)
            ).fetchone()
            if row is not None:
                db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
                self.dropped += 1
                return True
            if victim == kind:
                return False  # nothing of lower priority to drop: drop the newcomer
        if kind in _DROP_ORDER:
            return False
        if not self._over_bound_warned:
            log.warning(
                "outbox holds %d messages (bound %d) and none can be dropped; "
                "keeping %s messages anyway",
                depth,
                self.max_messages,
                kind,
            )
            self._over_bound_warned = True
        return True

    @staticmethod
    def _next(db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        value = (row[0] if row else 0) + 1
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        return value

    def counter(self, name: str) -> int:
        """The last number handed out by ``put(seq=name)`` (0 if none yet)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
            return int(row[0]) if row else 0

    # ------------------------------------------------------------------ sending
    def fetch(self, after: int = 0, limit: int = 100) -> list[Row]:
        """The oldest waiting messages with row id above ``after``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, payload, qos, retain FROM outbox"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Row(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5])) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Forget acknowledged messages (ids already gone are ignored); one transaction."""
        ids = list(ids)
        if not ids:
            return 0
        with self._transaction() as db:
            n = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                n += db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
            depth = self._count(db)
        self.depth = depth
        if self.depth < self.max_messages:
            self._over_bound_warned = False
        return n
