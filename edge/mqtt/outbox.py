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

Faults: a write that fails (disk full, I/O error) never raises to the caller and never
wedges the outbox. A full disk is met by checkpointing the WAL and trying once more; a
numbered message that still cannot be stored keeps its number, so the loss is a gap in
``seq``, and the first write that succeeds again stores a ``{"type": "lost", "count",
"seq_from", "seq_to"}`` message on the same topic ahead of it. Acknowledged rows whose
delete failed are remembered and deleted later, so delivery goes on and frees space. A
damaged file is moved aside, its readable rows are copied into the new one, and numbering
continues above the mark kept in ``<outbox>.seq`` (see ``edge.mqtt.recovery``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge.files import Ballast
from edge.mqtt.recovery import WAL_PAGES, SeqMark, open_outbox, transaction

log = logging.getLogger(__name__)

STATE = "state"  # retained; newest row supersedes older ones
EVENT = "event"  # never dropped
RESULT = "result"  # never dropped
REPLY = "reply"  # dropped after QoS 0 when full
STATS = "stats"  # QoS 0, dropped first
KINDS = (STATE, EVENT, RESULT, REPLY, STATS)
_DROP_ORDER = (STATS, REPLY)
_NOTICE_KINDS = {"events": EVENT, "results": RESULT}  # numbered streams whose losses are told
SQLITE_FULL = 13
RESERVE_BYTES = WAL_PAGES * 4096  # disk kept in reserve for checkpoints and deletes
T = TypeVar("T")

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


@dataclass(slots=True)
class _Loss:
    """Numbered messages that could not be stored, told by one ``lost`` message later."""

    topic: str
    seq_from: int
    seq_to: int
    count: int = 0
    reason: str = ""


class Outbox:
    """A bounded FIFO of MQTT messages in one SQLite file, safe to use from several threads.

    ``depth``, ``dropped`` (bound), ``failed`` (writes that could not be stored) and
    ``error`` (the last write failure while it lasts, else None) are for stats and health;
    ``notices`` lists what opening found (a salvaged or empty file) for an ``events`` message.
    """

    def __init__(self, path: Path, max_messages: int = 100_000, *, clock=time.time) -> None:
        self.path = Path(path)
        self.max_messages = max_messages
        self._clock = clock
        self._lock = threading.RLock()
        self.dropped = 0  # messages discarded to respect the bound, since this process started
        self.failed = 0  # messages that could not be written (disk full, I/O error)
        self.error: str | None = None
        self.notices: list[dict[str, Any]] = []
        self._over_bound_warned = False
        self._lost: dict[str, _Loss] = {}
        self._undeleted: set[int] = set()  # acknowledged, but the delete failed: retried later
        self._mark = SeqMark(self.path.with_name(self.path.name + ".seq"))
        self._ballast = Ballast(self.path.with_name(self.path.name + ".reserve"), RESERVE_BYTES)
        self._full = False  # the reserve was given up: store only into space freed inside
        self._db = open_outbox(self.path, _SCHEMA, self._mark, self.notices, clock)
        self.depth = self._count(self._db)
        self._ballast.claim()

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
        """Store one message durably; return its row id, or None if it was not stored.

        With ``seq`` the body gets ``"seq"`` from the persisted counter of that name, in the
        same transaction as the insert, so numbers never repeat; a message that cannot be
        written keeps its number (a gap) and is told later by a ``lost`` message.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown outbox kind {kind!r}")
        _encode(body)  # a body that is not JSON raises here, before anything is written
        if self._full and not self._room():
            self._failed(kind, topic, seq, "database or disk is full")
            return None
        try:
            cur, depth = self._write(
                lambda db: self._insert(db, kind, topic, body, qos, retain, seq), tell=True
            )
        except _Refused:
            with self._lock:
                self.dropped += 1
            return None
        except sqlite3.Error as exc:
            self._failed(kind, topic, seq, exc)
            return None
        self.depth = depth
        return int(cur.lastrowid or 0)

    def _insert(
        self,
        db: sqlite3.Connection,
        kind: str,
        topic: str,
        body: dict[str, Any],
        qos: int,
        retain: bool,
        seq: str | None,
    ) -> tuple[sqlite3.Cursor, int]:
        if kind == STATE:
            db.execute("DELETE FROM outbox WHERE kind = ?", (STATE,))
        depth = self._count(db)
        if depth >= self.max_messages and not self._make_room(db, kind, depth):
            raise _Refused  # rolls back, so a coalesced old state stays
        if seq is not None:
            body = {**body, "seq": self._next(db, seq)}
        cur = self._insert_row(db, kind, topic, _encode(body), qos, retain)
        return cur, self._count(db)

    def _insert_row(
        self, db: sqlite3.Connection, kind: str, topic: str, payload: bytes, qos: int, retain: bool
    ) -> sqlite3.Cursor:
        return db.execute(
            "INSERT INTO outbox (kind, topic, payload, qos, retain, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (kind, topic, payload, qos, int(retain), self._clock()),
        )

    def _tell_losses(self, db: sqlite3.Connection) -> None:
        """Inside a write: skip the lost numbers and store one ``lost`` message per stream."""
        for name, loss in list(self._lost.items()):
            self._set_counter(db, name, loss.seq_to)
            notice = {
                "type": "lost",
                "count": loss.count,
                "seq_from": loss.seq_from,
                "seq_to": loss.seq_to,
                "reason": loss.reason,
                "ts": self._clock(),
                "seq": self._next(db, name),
            }
            self._insert_row(
                db, _NOTICE_KINDS.get(name, EVENT), loss.topic, _encode(notice), 1, False
            )

    def _write(
        self, fn: Callable[[sqlite3.Connection], T], *, tell: bool, retry: bool = False
    ) -> T:
        """Run ``fn(db)`` in one write transaction. With ``tell`` the pending ``lost``
        messages go first, in the same transaction.

        A full disk gives up the reserve and checkpoints; only ``retry`` writes (deletes,
        which free space) use that room at once, new messages wait for freed pages.
        """
        with self._lock:
            try:
                result = self._transaction_call(fn, tell)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) != SQLITE_FULL:
                    raise
                self._on_full()
                if not retry:
                    raise
                result = self._transaction_call(fn, tell)
            if tell and self.error is not None:
                self._recovered()
            if self._full and self._ballast.claim():
                self._full = False
                log.warning("outbox %s: the filesystem has room again", self.path)
            return result

    def _on_full(self) -> None:
        if not self._full:
            self._full = True
            self._ballast.release()
            log.error(
                "outbox %s: the filesystem is full; using the reserve to deliver and delete "
                "what is stored, new messages are stored again as space frees",
                self.path,
            )
        self._checkpoint()

    def _room(self) -> bool:
        """While full: an insert fits into pages freed by deletes, or the disk has room."""
        try:
            free_pages = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        except sqlite3.Error:
            free_pages = 0
        return free_pages >= 4 or self._ballast.free_bytes() >= 2 * RESERVE_BYTES

    def _transaction_call(self, fn: Callable[[sqlite3.Connection], T], tell: bool) -> T:
        with self._transaction() as db:
            if tell:
                self._tell_losses(db)
            result = fn(db)
        if tell:
            self._lost.clear()  # committed: the lost numbers are told
        return result

    def _checkpoint(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(RESTART)")

    def _failed(self, kind: str, topic: str, seq: str | None, exc: sqlite3.Error | str) -> None:
        with self._lock:
            self.failed += 1
            reason = str(exc)
            if self.error is None:
                log.error("outbox %s: cannot store messages: %s", self.path, reason)
            self.error = reason
            if seq is None or seq not in _NOTICE_KINDS:
                return
            loss = self._lost.get(seq)
            if loss is None:
                try:
                    last = self._counter_value(self._db, seq)
                except sqlite3.Error:
                    return  # not even readable: nothing to number
                loss = self._lost[seq] = _Loss(topic, last + 1, last, reason=reason)
            loss.seq_to += 1
            loss.count += 1
            self._mark.cover(seq, loss.seq_to)

    def _recovered(self) -> None:
        log.warning(
            "outbox %s: storing again (%d messages could not be stored meanwhile)",
            self.path,
            self.failed,
        )
        self.error = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, transaction(self._db) as db:
            yield db

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
    def _counter_value(db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _set_counter(db: sqlite3.Connection, name: str, value: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
            (name, value),
        )

    def _next(self, db: sqlite3.Connection, name: str) -> int:
        value = self._counter_value(db, name) + 1
        self._set_counter(db, name, value)
        self._mark.cover(name, value)
        return value

    def counter(self, name: str) -> int:
        """The last number handed out by ``put(seq=name)`` (0 if none yet)."""
        with self._lock:
            return self._counter_value(self._db, name)

    # ------------------------------------------------------------------ sending
    def fetch(self, after: int = 0, limit: int = 100) -> list[Row]:
        """The oldest waiting messages with row id above ``after``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, payload, qos, retain FROM outbox"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit + len(self._undeleted)),
            ).fetchall()
            skip = self._undeleted
        out = [
            Row(r[0], r[1], r[2], bytes(r[3]), r[4], bool(r[5])) for r in rows if r[0] not in skip
        ]
        return out[:limit]

    def delete(self, ids: Iterable[int]) -> int:
        """Forget acknowledged messages (ids already gone are ignored); one transaction.

        A delete that fails (a full disk) is kept and retried with the next one; those rows
        are not fetched again meanwhile, so delivery goes on.
        """
        with self._lock:
            ids = sorted(set(ids) | self._undeleted)
            if not ids:
                return 0

            def remove(db: sqlite3.Connection) -> tuple[int, int]:
                n = 0
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    n += db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
                return n, self._count(db)

            trouble = self.error is not None or bool(self._lost)
            try:
                n, depth = self._write(remove, tell=False, retry=True)
            except sqlite3.Error as exc:
                if not self._undeleted:
                    log.warning(
                        "outbox %s: cannot delete acknowledged messages yet: %s", self.path, exc
                    )
                self._undeleted.update(ids)
                return 0
            self._undeleted.clear()
            self.depth = depth
            if self.depth < self.max_messages:
                self._over_bound_warned = False
            if trouble:
                self._checkpoint()  # give the freed pages' WAL space back to the filesystem
                if self._lost and (not self._full or self._room()):
                    with contextlib.suppress(sqlite3.Error):
                        self.depth = self._write(self._count, tell=True)
            return n


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
