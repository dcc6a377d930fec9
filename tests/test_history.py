"""The local SQLite history of still results, its retention, and ``edge history``."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import yaml

from edge.errors import ConfigError, SourceError
from edge.history import HISTORY_FILENAME, History, ModelResult, parse_since
from tests.support.cli import assert_one_line_error, run_cli

DAY = 86400.0


def _result(label: str | None = "Apple", score: float = 0.9) -> ModelResult:
    return ModelResult("fruits", "ab" * 32, label, [{"label": "Apple", "score": score}])


def _record(h: History, ts: float, path: Path | None, *, owned: bool, source: str = "schedule"):
    return h.record(
        ts=ts,
        image_path=path,
        image_sha256="cd" * 32,
        width=640,
        height=480,
        source=source,
        mode="camera" if owned else "file",
        owned=owned,
        results=[_result(), ModelResult("imagenet", None, None, [])],
    )


def test_records_round_trip_and_filter_by_time(tmp_path: Path) -> None:
    now = time.time()
    with History(tmp_path / HISTORY_FILENAME) as h:
        old = _record(h, now - 3 * DAY, None, owned=False)
        new = _record(h, now - 60, tmp_path / "x.jpg", owned=True)
        assert new > old
        all_entries = h.query()
        assert [e.id for e in all_entries] == [old, new]  # oldest first
        recent = h.query(since=now - 3600)
        assert [e.id for e in recent] == [new]
        e = recent[0]
        assert e.image_path == str(tmp_path / "x.jpg")
        assert [r.model_name for r in e.results] == ["fruits", "imagenet"]
        assert e.results[0].top == [{"label": "Apple", "score": 0.9}]
        assert e.results[1].label is None
        d = e.as_dict()
        assert d["results"][0]["model"] == {"name": "fruits", "sha256": "ab" * 32}
        assert d["image"]["kept"] is True
        assert d["time"].endswith("Z")
        assert [x.id for x in h.query(limit=1)] == [new]


def test_database_is_in_wal_mode_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILENAME
    with History(path) as h:
        _record(h, time.time(), None, owned=False)
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with History(path, readonly=True) as h:
        assert h.count() == 1


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    with History(tmp_path / HISTORY_FILENAME) as h:

        def write() -> None:
            for _ in range(25):
                _record(h, time.time(), None, owned=False)

        threads = [threading.Thread(target=write) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert h.count() == 100
        assert len({e.id for e in h.query()}) == 100


def test_retention_by_days_deletes_only_old_owned_images(tmp_path: Path) -> None:
    now = time.time()
    files = {n: tmp_path / f"{n}.jpg" for n in ("old_own", "new_own", "old_watch")}
    for f in files.values():
        f.write_bytes(b"jpeg")
    with History(tmp_path / HISTORY_FILENAME) as h:
        a = _record(h, now - 10 * DAY, files["old_own"], owned=True)
        b = _record(h, now - 1 * DAY, files["new_own"], owned=True)
        c = _record(h, now - 10 * DAY, files["old_watch"], owned=False, source="watch")
        assert h.prune_images("all", now=now) == 0
        assert h.prune_images("days", keep_days=7, now=now) == 1
        assert not files["old_own"].exists()
        assert files["new_own"].exists() and files["old_watch"].exists()
        rows = {e.id: e for e in h.query()}
        assert set(rows) == {a, b, c}  # rows are kept
        assert rows[a].image_deleted_ts == now and not rows[a].as_dict()["image"]["kept"]
        assert rows[b].image_deleted_ts is None
        assert h.prune_images("none", now=now) == 1
        assert not files["new_own"].exists()
        assert files["old_watch"].exists()  # never a file this device did not take


def test_parse_since() -> None:
    now = 1_700_000_000.0
    assert parse_since("1h", now) == now - 3600
    assert parse_since("2d", now) == now - 2 * DAY
    assert parse_since("30m", now) == now - 1800
    assert parse_since("1w", now) == now - 7 * DAY
    assert (
        parse_since("2024-05-01T12:00:00Z")
        == dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc).timestamp()
    )
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday-ish")


def test_not_a_database_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / HISTORY_FILENAME
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SourceError, match="cannot open history database") as err:
        History(bad)
    assert str(bad) in str(err.value)


# ------------------------------------------------------------------------------ CLI


def _fill(state_dir: Path) -> tuple[int, int]:
    now = time.time()
    with History(state_dir / HISTORY_FILENAME) as h:
        old = _record(h, now - 2 * DAY, state_dir / "old.jpg", owned=True)
        new = _record(h, now - 120, state_dir / "new.jpg", owned=True, source="command")
    return old, new


def test_history_cli_json_and_since(tmp_path: Path) -> None:
    old, new = _fill(tmp_path)
    proc = run_cli("history", "--state-dir", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == [old, new]
    assert rows[1]["image"]["source"] == "command"
    assert rows[1]["results"][0]["top"][0]["label"] == "Apple"
    proc = run_cli("history", "--state-dir", str(tmp_path), "--json", "--since", "1h")
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == [new]


def test_history_cli_text_and_config(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _fill(state)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(state), "mode": "still"}))
    proc = run_cli("history", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "fruits: Apple 0.9000" in lines[0] and "imagenet: none of these" in lines[0]
    # A photo taken on cmd/classify says so; "[command]" would read as source.kind: command.
    assert "[cmd/classify]" in lines[1] and "[command]" not in lines[1]


def test_history_cli_bad_since_and_empty_state(tmp_path: Path) -> None:
    proc = run_cli("history", "--state-dir", str(tmp_path), "--since", "last tuesday")
    assert_one_line_error(proc, "--since", "last tuesday")
    proc = run_cli("history", "--state-dir", str(tmp_path / "fresh"))
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert "no still results yet" in proc.stderr
