"""Opening an outbox file, and what survives a damaged one: the numbers, every readable row.

``open_outbox`` refuses a file or directory it cannot write (one line naming the owner and
the fix), treats a failed ``PRAGMA quick_check`` as damage, says when a file was empty, and
recovers a damaged file: moved aside, its readable rows copied into a new one.

``SeqMark`` keeps, in a small file beside the outbox, an upper bound of every ``seq`` ever
issued. It is written once per ``RESERVE`` numbers, not per message, so it costs almost
nothing; when the outbox file is lost or corrupt, numbering continues above the mark, so a
subscriber that de-duplicates on ``seq`` never mistakes a new event for an old one (the
jump is a visible gap, never a repeat).

``salvage`` reads a damaged outbox row by row: forwards until the first unreadable page,
then backwards from the end, so rows on both sides of a damaged middle are kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import ConfigError
from edge.files import PRIVATE, create_private, require_writable, write_private

log = logging.getLogger("edge.mqtt.outbox")

RESERVE = 100  # numbers reserved per write of the mark file
WAL_PAGES = 16  # checkpoint after this many WAL pages

SalvagedRow = tuple[str, str, bytes, int, int, float]  # kind, topic, payload, qos, retain, created


class SeqMark:
    """``{counter name: reserved up to}`` in ``<outbox>.seq``; survives the outbox file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reserved: dict[str, int] = self._load()
        self._warned = False

    def _load(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(k): int(v) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("%s: unreadable (%s); numbering relies on the outbox alone", self.path, exc)
            return {}

    def cover(self, name: str, value: int) -> None:
        """Make sure the mark is at least ``value`` for ``name`` (written ahead by RESERVE)."""
        if value <= self.reserved.get(name, 0):
            return
        self.reserved[name] = value + RESERVE
        try:
            write_private(self.path, json.dumps(self.reserved).encode(), PRIVATE)
            self._warned = False
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("%s: cannot save the seq mark: %s", self.path, exc.strerror or exc)


@dataclass(slots=True)
class Salvage:
    rows: list[SalvagedRow] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    unreadable: int | None = 0  # rows known to exist but unreadable; None: unknown
    highest_seq: dict[str, int] = field(default_factory=dict)


def _ids(db: sqlite3.Connection, order: str) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(sqlite3.Error):
        for (row_id,) in db.execute(f"SELECT id FROM outbox ORDER BY id {order}"):
            out.append(int(row_id))
    return out


def salvage(path: Path) -> Salvage:
    """Every readable row and counter of the damaged outbox at ``path`` (never raises)."""
    found = Salvage()
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        found.unreadable = None
        return found
    try:
        with contextlib.suppress(sqlite3.Error):
            found.counters = {
                str(n): int(v) for n, v in db.execute("SELECT name, value FROM counters")
            }
        ids = sorted(set(_ids(db, "ASC")) | set(_ids(db, "DESC")))
        if not ids:  # an empty table, or one that cannot be read at all
            found.unreadable = None
            with contextlib.suppress(sqlite3.Error):
                db.execute("SELECT count(*) FROM outbox").fetchone()
                found.unreadable = 0
        bad = 0
        for row_id in ids:
            try:
                row = db.execute(
                    "SELECT kind, topic, payload, qos, retain, created FROM outbox WHERE id = ?",
                    (row_id,),
                ).fetchone()
            except sqlite3.Error:
                bad += 1
                continue
            if row is None:
                continue
            if any(value is None for value in row):
                bad += 1
                continue
            kind, topic, payload, qos, retain, created = row
            payload = bytes(payload)
            found.rows.append(
                (str(kind), str(topic), payload, int(qos), int(retain), float(created))
            )
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                seq = json.loads(payload).get("seq")
                if isinstance(seq, int):
                    name = {"event": "events", "result": "results"}.get(str(kind), str(kind))
                    found.highest_seq[name] = max(found.highest_seq.get(name, 0), seq)
        if found.unreadable is not None:
            found.unreadable += bad
    finally:
        db.close()
    return found


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed on success, else rolled back (a failed COMMIT too)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def _connect(path: Path, schema: str) -> sqlite3.Connection:
    create_private(path, PRIVATE)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        # A small WAL, checkpointed often and then reused from its start: on a full
        # filesystem it keeps the room that deleting acknowledged rows needs, and it never
        # grows to hold the space the database itself would need (a few messages a minute
        # make the extra checkpoints cheap).
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={WAL_PAGES * 2 * 4096}")
        db.executescript(schema)
        check = db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise sqlite3.DatabaseError("quick_check: " + "; ".join(str(r[0]) for r in check[:3]))
        db.execute("BEGIN IMMEDIATE")  # fails now on a file opened read-only
        db.execute("ROLLBACK")
    except BaseException:
        db.close()
        raise
    return db


def open_outbox(
    path: Path, schema: str, mark: SeqMark, notices: list[dict], clock
) -> sqlite3.Connection:
    """A writable, checked outbox at ``path``; what had to be done is appended to ``notices``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"outbox: cannot create {path.parent}: {exc.strerror}") from None
    require_writable(path, "outbox")
    fresh = not path.exists()
    if not fresh and path.stat().st_size == 0:
        log.warning("outbox %s is empty (0 bytes): starting it afresh", path)
        notices.append({"type": "outbox_recovered", "reason": "empty file", "salvaged": 0})
        fresh = True
    known: dict[str, int] = {}
    try:
        db = _connect(path, schema)
    except sqlite3.OperationalError as exc:  # not the file's content: permissions, I/O
        raise ConfigError(f"outbox: cannot open {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        db, known, notice = _recover(path, schema, exc, clock)
        notices.append(notice)
        fresh = True
    if fresh:
        _continue_numbering(db, path, known, mark)
    for name, value in db.execute("SELECT name, value FROM counters").fetchall():
        mark.cover(name, int(value))
    return db


def _recover(
    path: Path, schema: str, exc: sqlite3.DatabaseError, clock
) -> tuple[sqlite3.Connection, dict[str, int], dict]:
    """Move the damaged file aside, start a new one and copy every readable row into it."""
    aside = path.with_name(f"{path.name}.corrupt-{int(clock())}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        try:
            if src.exists():
                src.replace(Path(str(aside) + suffix))
        except OSError as err:
            raise ConfigError(
                f"outbox: {path} is damaged ({exc}) and cannot be moved aside: "
                f"{err.strerror or err}"
            ) from None
    found = salvage(aside)
    db = _connect(path, schema)
    with transaction(db):
        db.executemany(
            "INSERT INTO outbox (kind, topic, payload, qos, retain, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            found.rows,
        )
    highest = dict(found.counters)
    for name, value in found.highest_seq.items():
        highest[name] = max(highest.get(name, 0), value)
    lost = "an unknown number" if found.unreadable is None else str(found.unreadable)
    log.error(
        "outbox %s was damaged (%s): moved aside to %s; %d pending messages salvaged, "
        "%s unreadable",
        path,
        exc,
        aside,
        len(found.rows),
        lost,
    )
    notice = {
        "type": "outbox_recovered",
        "reason": str(exc),
        "moved_to": str(aside),
        "salvaged": len(found.rows),
        "unreadable": found.unreadable,
    }
    return db, highest, notice


def _continue_numbering(
    db: sqlite3.Connection, path: Path, known: dict[str, int], mark: SeqMark
) -> None:
    """A new file numbers on above everything ever issued: the mark and what was salvaged."""
    start = dict(known)
    for name, value in mark.reserved.items():
        start[name] = max(start.get(name, 0), value)
    if not start:
        return
    with transaction(db):
        for name, value in start.items():
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
                (name, value),
            )
    numbers = ", ".join(f"{n} {v}" for n, v in db.execute("SELECT name, value FROM counters"))
    log.warning("outbox %s is new: seq continues after %s", path, numbers)
