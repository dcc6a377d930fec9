"""The taught examples: one SQLite file, each example tied to the model that embedded it.

An example is a label, a unit-length embedding (float16), optional augmented views of it
(the mirror image and a crop of a photo, for training the linear head), where it came
from, and an optional small JPEG thumbnail. Every query names the model's sha256 and
embedding tensor, so a different model never sees examples it did not make. A file that
is not a store, or a damaged one, is an error naming it; it is never replaced by an empty
store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import EdgeError
from edge.teach.encoding import check_label, unit16, views_blob, views_of

SCHEMA_VERSION = 1
KIND = "edge-teach-store"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS examples (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    model_name TEXT NOT NULL,
    tensor TEXT NOT NULL,
    dim INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    views BLOB,
    source TEXT NOT NULL,
    created REAL NOT NULL,
    thumbnail BLOB
);
CREATE INDEX IF NOT EXISTS examples_model ON examples (model_sha256, tensor, label);
"""


class StoreError(EdgeError):
    """The store file is unreadable, damaged, or holds examples of another model."""


@dataclass(frozen=True, slots=True)
class ModelKey:
    """What ties an example to the model that made it."""

    sha256: str
    tensor: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Examples:
    """The examples of one model, in arrays ready for a learner."""

    labels: list[str]
    embeddings: np.ndarray  # (n, dim) float32, unit rows
    views: list[np.ndarray]  # per example (v, dim): the embedding first, then its views

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, slots=True)
class ClassCount:
    label: str
    count: int
    model_name: str
    model_sha256: str

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "examples": self.count,
            "model": {"name": self.model_name, "sha256": self.model_sha256},
        }


class Store:
    """One store file, one connection, usable from several threads (one at a time).

    WAL with full sync: a kept example survives a power cut, at one fsync per change.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            if not create:
                raise StoreError(f"{self.path}: no such store")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create store: {exc.strerror}") from None
        elif not self.path.is_file():
            raise StoreError(f"{self.path}: not a file")
        self._lock = threading.Lock()
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=10.0, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open store: {exc}") from None
        try:
            with self._connect() as db:
                self._check(db, create=create)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection and checks -----------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            if db is None:
                raise StoreError(f"{self.path}: store is closed")
            try:
                with db:
                    yield db
            except sqlite3.OperationalError as exc:  # locked, read-only, disk full, ...
                raise StoreError(f"{self.path}: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: store is damaged or not a store ({exc})") from None

    def _check(self, db: sqlite3.Connection, *, create: bool) -> None:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables and create:
            db.executescript(_SCHEMA)
            db.execute("INSERT INTO meta VALUES ('kind', ?), ('version', ?)", (KIND, "1"))
            return
        if "meta" not in tables or "examples" not in tables:
            raise StoreError(f"{self.path}: not a teaching store (an SQLite file of other data)")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("kind") != KIND:
            raise StoreError(f"{self.path}: not a teaching store")
        if int(meta.get("version", "0")) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store version {meta.get('version')} is newer than this edge"
            )
        row = db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise StoreError(f"{self.path}: store is damaged ({row[0] if row else 'no answer'})")

    # -- writing -------------------------------------------------------------------------

    def add(
        self,
        label: str,
        embedding: np.ndarray,
        model: ModelKey,
        source: str,
        *,
        views: Sequence[np.ndarray] = (),
        thumbnail: bytes | None = None,
        created: float | None = None,
    ) -> int:
        """Keep one example; returns its id."""
        return self.add_many(
            label,
            [embedding],
            model,
            [source],
            views=[views],
            thumbnails=[thumbnail],
            created=created,
        )[0]

    def add_many(
        self,
        label: str,
        embeddings: Sequence[np.ndarray],
        model: ModelKey,
        sources: Sequence[str],
        *,
        views: Sequence[Sequence[np.ndarray]] | None = None,
        thumbnails: Sequence[bytes | None] | None = None,
        created: float | None = None,
    ) -> list[int]:
        """Keep several examples of one label in one transaction (all or none)."""
        label = check_label(label)
        now = time.time() if created is None else created
        rows = []
        for i, emb in enumerate(embeddings):
            v = views[i] if views is not None else ()
            blob = views_blob(v)
            thumb = thumbnails[i] if thumbnails is not None else None
            dim = int(np.asarray(emb).size)
            rows.append(
                (
                    uuid.uuid4().hex,
                    label,
                    model.sha256,
                    model.name,
                    model.tensor,
                    dim,
                    unit16(emb),
                    blob,
                    sources[i],
                    now,
                    thumb,
                )
            )
        with self._connect() as db:
            self._same_dim(db, model, {r[5] for r in rows})
            ids = []
            for r in rows:
                cur = db.execute(
                    "INSERT INTO examples (uid, label, model_sha256, model_name, tensor, dim,"
                    " embedding, views, source, created, thumbnail)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    r,
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def _same_dim(self, db: sqlite3.Connection, model: ModelKey, dims: set[int]) -> None:
        known = {
            r[0]
            for r in db.execute(
                "SELECT DISTINCT dim FROM examples WHERE model_sha256 = ? AND tensor = ?",
                (model.sha256, model.tensor),
            )
        }
        if len(dims | known) > 1:
            raise StoreError(
                f"{self.path}: embeddings of {sorted(dims | known)} values for one model"
            )

    def forget(self, label: str, model: ModelKey | None = None) -> int:
        """Remove a class (of one model, or of every model); returns how many examples went."""
        label = check_label(label)
        with self._connect() as db:
            if model is None:
                cur = db.execute("DELETE FROM examples WHERE label = ?", (label,))
            else:
                cur = db.execute(
                    "DELETE FROM examples WHERE label = ? AND model_sha256 = ? AND tensor = ?",
                    (label, model.sha256, model.tensor),
                )
            return int(cur.rowcount)

    # -- reading -------------------------------------------------------------------------

    def classes(self, model: ModelKey | None = None) -> list[ClassCount]:
        query = (
            "SELECT label, COUNT(*), MAX(model_name), model_sha256 FROM examples {where}"
            " GROUP BY model_sha256, label ORDER BY model_sha256, label"
        )
        with self._connect() as db:
            if model is None:
                rows = db.execute(query.format(where="")).fetchall()
            else:
                rows = db.execute(
                    query.format(where="WHERE model_sha256 = ? AND tensor = ?"),
                    (model.sha256, model.tensor),
                ).fetchall()
        return [ClassCount(r[0], int(r[1]), r[2], r[3]) for r in rows]

    def models(self) -> list[ModelKey]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT model_sha256, tensor, MAX(model_name) FROM examples"
                " GROUP BY model_sha256, tensor"
            ).fetchall()
        return [ModelKey(r[0], r[1], r[2]) for r in rows]

    def examples(self, model: ModelKey) -> Examples:
        with self._connect() as db:
            rows = db.execute(
                "SELECT label, dim, embedding, views FROM examples"
                " WHERE model_sha256 = ? AND tensor = ? ORDER BY id",
                (model.sha256, model.tensor),
            ).fetchall()
        labels: list[str] = []
        embs: list[np.ndarray] = []
        views: list[np.ndarray] = []
        for label, dim, blob, extra in rows:
            try:
                e = np.frombuffer(blob, "<f2").astype(np.float32)
                if e.size != dim:
                    raise ValueError("embedding of the wrong size")
                more = views_of(extra, dim) if extra else None
            except (ValueError, TypeError):
                raise StoreError(f"{self.path}: an example of {label!r} is damaged") from None
            labels.append(label)
            embs.append(e)
            views.append(e[None, :] if more is None else np.vstack([e[None, :], more]))
        dim = embs[0].size if embs else 0
        matrix = np.vstack(embs) if embs else np.zeros((0, dim), np.float32)
        return Examples(labels, matrix, views)

    def class_thumbnail(self, label: str, model: ModelKey) -> bytes | None:
        """The newest thumbnail kept for a class (what a page shows beside its count)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT thumbnail FROM examples WHERE model_sha256 = ? AND tensor = ?"
                " AND label = ? AND thumbnail IS NOT NULL ORDER BY id DESC LIMIT 1",
                (model.sha256, model.tensor, label),
            ).fetchone()
        return row[0] if row else None

    def thumbnail(self, example_id: int) -> bytes | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT thumbnail FROM examples WHERE id = ?", (example_id,)
            ).fetchone()
        return row[0] if row else None

    # -- carrying to another device ------------------------------------------------------

    def export(self, target: str | Path, model: ModelKey | None = None) -> int:
        """Write the examples (of one model, or all) to a new store file; returns the count."""
        target = Path(target).expanduser()
        if target.exists():
            raise StoreError(f"{target}: already exists; export writes a new file")
        where = ""
        args: tuple[str, ...] = ()
        if model is not None:
            where, args = "WHERE model_sha256 = ? AND tensor = ?", (model.sha256, model.tensor)
        with self._connect() as db:
            query = f"SELECT {_COLUMNS} FROM examples {where} ORDER BY id"
            rows = db.execute(query, args).fetchall()
        with Store(target) as out:
            with out._connect() as db:
                db.executemany(f"INSERT INTO examples ({_COLUMNS}) VALUES ({_MARKS})", rows)
            with out._connect() as db:
                db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        return len(rows)

    def import_from(self, source: str | Path, model: ModelKey) -> int:
        """Add the examples of an exported store made by ``model``; refuses any other model.

        Examples already here (same uid) are skipped, so importing twice adds nothing.
        """
        src = Path(source).expanduser()
        if not src.is_file():
            raise StoreError(f"{src}: no such file")
        with Store(src, create=False) as other:
            theirs = other.models()
            with other._connect() as db:
                rows = db.execute(f"SELECT {_COLUMNS} FROM examples ORDER BY id").fetchall()
        if not theirs:
            raise StoreError(f"{src}: holds no examples")
        wrong = [m for m in theirs if (m.sha256, m.tensor) != (model.sha256, model.tensor)]
        if wrong:
            m = wrong[0]
            raise StoreError(
                f"{src}: examples were made by model {m.name or '?'} (sha256 {m.sha256[:12]}…, "
                f"{m.tensor}), not by {model.name or 'the active model'} "
                f"(sha256 {model.sha256[:12]}…); refused"
            )
        for r in rows:
            check_label(r[1])
        with self._connect() as db:
            self._same_dim(db, model, {int(r[5]) for r in rows})
            before = db.total_changes
            db.executemany(f"INSERT OR IGNORE INTO examples ({_COLUMNS}) VALUES ({_MARKS})", rows)
            return db.total_changes - before


_COLUMNS = (
    "uid, label, model_sha256, model_name, tensor, dim, embedding, views, source, created,"
    " thumbnail"
)
_MARKS = ",".join("?" * 11)
