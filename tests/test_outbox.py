"""The durable outbox on real SQLite files: order, numbering, the bound and its drop order."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from pathlib import Path

import pytest

from edge.mqtt.outbox import EVENT, REPLY, STATE, STATS, Outbox


def _bodies(box: Outbox) -> list[dict]:
    return [json.loads(r.payload) for r in box.fetch(0, 10_000)]


def test_fifo_order_and_delete_of_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    ids = [box.put(EVENT, "t/events", {"n": i}, qos=1, seq="events") for i in range(5)]
    assert box.depth == 5
    rows = box.fetch(0, 3)
    assert [json.loads(r.payload)["n"] for r in rows] == [0, 1, 2]
    assert [r.id for r in box.fetch(rows[-1].id, 10)] == ids[3:]
    assert box.delete([ids[0], ids[2]]) == 2
    assert box.delete([ids[0]]) == 0  # a second ack of the same message is harmless
    assert box.depth == 3
    assert [b["n"] for b in _bodies(box)] == [1, 3, 4]
    assert {(r.topic, r.qos, r.retain) for r in box.fetch()} == {("t/events", 1, False)}


def test_seq_numbers_survive_reopen_and_are_per_topic(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    for _ in range(3):
        box.put(EVENT, "t/events", {"type": "start"}, qos=1, seq="events")
    box.put(STATE, "t/state", {"label": "a"}, qos=1, retain=True, seq="state")
    box.delete(r.id for r in box.fetch())
    box.close()

    box = Outbox(path)
    assert box.depth == 0
    box.put(EVENT, "t/events", {"type": "end"}, qos=1, seq="events")
    box.put(STATE, "t/state", {"label": "b"}, qos=1, retain=True, seq="state")
    assert [(b.get("type"), b["seq"]) for b in _bodies(box)] == [("end", 4), (None, 2)]
    assert box.counter("events") == 4


def test_wal_journal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    box.put(EVENT, "t", {}, qos=1)
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_state_keeps_only_the_newest(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put(EVENT, "t/events", {"type": "start"}, qos=1, seq="events")
    for label in ("a", "b", "c"):
        box.put(STATE, "t/state", {"label": label}, qos=1, retain=True, seq="state")
    box.put(EVENT, "t/events", {"type": "end"}, qos=1, seq="events")
    rows = box.fetch()
    assert [r.kind for r in rows] == [EVENT, STATE, EVENT]
    state = json.loads(rows[1].payload)
    assert (state["label"], state["seq"], rows[1].retain) == ("c", 3, True)
    assert box.depth == 3
    assert box.dropped == 0  # superseding retained state is not a loss


def test_bound_drops_qos0_first_and_never_events(tmp_path: Path, caplog) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_messages=100)
    for i in range(60):
        box.put(STATS, "t/stats", {"n": i}, qos=0)
    for _ in range(40):
        box.put(EVENT, "t/events", {"type": "start"}, qos=1, seq="events")
    assert (box.depth, box.dropped) == (100, 0)

    # 70 more events: the 60 stats make room (oldest first), then events grow past the bound.
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.outbox"):
        for _ in range(70):
            assert box.put(EVENT, "t/events", {"type": "start"}, qos=1, seq="events")
    assert box.dropped == 60
    assert box.depth == 110
    assert any("none can be dropped" in r.getMessage() for r in caplog.records)
    bodies = _bodies(box)
    assert [b["seq"] for b in bodies] == list(range(1, 111))

    # Full of events: a stats message has nothing below it to push out, so it is dropped.
    assert box.put(STATS, "t/stats", {"n": 99}, qos=0) is None
    assert (box.depth, box.dropped) == (110, 61)


def test_bound_keeps_newest_stats_and_drops_replies_after_stats(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_messages=100)
    for i in range(50):
        box.put(REPLY, "t/cmd/reset/result", {"ok": True, "n": i}, qos=1)
    for i in range(80):
        box.put(STATS, "t/stats", {"n": i}, qos=0)
    # 30 stats pushed out older stats (the newest are kept for the history)
    assert box.dropped == 30
    stats = [b["n"] for b in _bodies(box) if "ok" not in b]
    assert stats == list(range(30, 80))
    for _ in range(60):
        box.put(EVENT, "t/events", {"type": "start"}, qos=1, seq="events")
    kinds = [r.kind for r in box.fetch(0, 1000)]
    # 50 stats went first, then the 10 oldest replies.
    assert kinds.count(STATS) == 0
    assert kinds.count(REPLY) == 40
    assert kinds.count(EVENT) == 60
    replies = [json.loads(r.payload)["n"] for r in box.fetch(0, 1000) if r.kind == REPLY]
    assert replies == list(range(10, 50))
    assert box.dropped == 30 + 50 + 10
    assert box.depth == 100


def test_two_handles_on_one_file_share_numbering(tmp_path: Path) -> None:
    """A config reload opens the new publisher's outbox before the old one is closed."""
    a = Outbox(tmp_path / "o.sqlite")
    b = Outbox(tmp_path / "o.sqlite")
    for i in range(6):
        (a if i % 2 else b).put(EVENT, "t/events", {}, qos=1, seq="events")
    assert [x["seq"] for x in _bodies(a)] == list(range(1, 7))
    a.delete(r.id for r in a.fetch())
    b.put(EVENT, "t/events", {}, qos=1, seq="events")
    assert b.depth == 1


def test_invalid_message_stores_nothing_and_uses_no_number(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    with pytest.raises(ValueError):
        box.put(EVENT, "t/events", {"score": math.nan}, qos=1, seq="events")
    with pytest.raises(ValueError):
        box.put("bogus", "t/x", {}, qos=1)
    assert box.depth == 0
    box.put(EVENT, "t/events", {"score": 1.0}, qos=1, seq="events")
    assert _bodies(box)[0]["seq"] == 1


def test_corrupt_file_is_moved_aside_and_a_new_outbox_works(tmp_path: Path, caplog) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR, logger="edge.mqtt.outbox"):
        box = Outbox(path)
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.glob("o.sqlite.corrupt-*"))
    box.put(EVENT, "t/events", {}, qos=1, seq="events")
    assert box.depth == 1


def test_state_dir_is_created(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "new" / "dir" / "o.sqlite")
    box.put(EVENT, "t", {}, qos=1)
    assert (tmp_path / "new" / "dir" / "o.sqlite").exists()
