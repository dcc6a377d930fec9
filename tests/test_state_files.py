"""Files in the state directory: private modes whatever the umask, refused when read-only."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from edge.errors import ConfigError
from edge.history import History
from tests.support.system import immutable


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_history_is_group_readable_only_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with History(tmp_path / "history.sqlite") as h:
            h.record(
                ts=1.0,
                image_path=None,
                image_sha256="0" * 64,
                width=1,
                height=1,
                source="watch",
                mode="file",
                owned=False,
                results=[],
            )
            assert _mode(tmp_path / "history.sqlite") == 0o640
            assert _mode(tmp_path / "history.sqlite-wal") == 0o640
    finally:
        os.umask(old)


def test_read_only_history_is_refused_with_owner_and_fix(tmp_path):
    path = tmp_path / "history.sqlite"
    History(path).close()
    with immutable(path), pytest.raises(ConfigError) as err:
        History(path)
    assert str(path) in str(err.value) and "owner root" in str(err.value)


def test_history_of_an_older_version_gains_the_error_column(tmp_path):
    path = tmp_path / "history.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE stills (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL,"
        " image_path TEXT, image_sha256 TEXT NOT NULL, width INTEGER, height INTEGER,"
        " source TEXT NOT NULL, mode TEXT NOT NULL, owned INTEGER NOT NULL DEFAULT 0,"
        " image_deleted_ts REAL)"
    )
    db.execute(
        "CREATE TABLE still_results (still_id INTEGER NOT NULL, position INTEGER NOT NULL,"
        " model_name TEXT NOT NULL, model_sha256 TEXT, label TEXT, top_json TEXT NOT NULL,"
        " PRIMARY KEY (still_id, position))"
    )
    db.execute(
        "INSERT INTO stills (ts, image_sha256, source, mode) VALUES (1, 'ab', 'watch', 'file')"
    )
    db.commit()
    db.close()
    with History(path, readonly=True) as h:
        assert [e.error for e in h.query()] == [None]
    with History(path) as h:
        h.record(
            ts=2.0,
            image_path="x.png",
            image_sha256="",
            width=None,
            height=None,
            source="watch",
            mode="file",
            owned=False,
            results=[],
            error="too large",
        )
        assert [e.error for e in h.query()] == [None, "too large"]


def test_kept_model_swap_is_private_whatever_the_umask(tmp_path):
    from edge.app import overrides
    from edge.config import Config, ModelConfig

    cfg = Config(state_dir=tmp_path)
    swapped = cfg.model_copy(update={"model": ModelConfig(name="movinet-a1-stream-int8")})
    old = os.umask(0o022)
    try:
        overrides.save(swapped, cfg)
    finally:
        os.umask(old)
    assert _mode(tmp_path / overrides.OVERRIDE_FILE) == 0o600
