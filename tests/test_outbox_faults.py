"""The outbox under real faults: a full tmpfs, damaged and empty files, read-only files.

Every loss must show (a ``seq`` gap and a ``lost`` message), nothing may raise into the
caller, and numbering never restarts below what was already issued.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.mqtt.outbox import EVENT, RESULT, STATE, Outbox
from tests.support.broker import broker_factory_fixture, broker_fixture, wait_until  # noqa: F401
from tests.support.system import fill, immutable, read_only_bind, small_tmpfs


def _bodies(box: Outbox) -> list[dict]:
    return [json.loads(r.payload) for r in box.fetch(0, 100_000)]


def _drain(box: Outbox, batch: int = 20) -> list[dict]:
    """Acknowledge everything the way the publisher does: a window of rows at a time."""
    seen = []
    while rows := box.fetch(0, batch):
        seen += [json.loads(r.payload) for r in rows]
        box.delete(r.id for r in rows)
    return seen


def test_full_filesystem_keeps_delivering_frees_space_and_tells_the_loss(tmp_path, caplog):
    with small_tmpfs(tmp_path / "state", "1m") as state:
        box = Outbox(state / "outbox.sqlite")
        fill(state, leave=320 * 1024)  # nearly full: another program's files fill the rest
        stored, lost_seqs = [], []
        with caplog.at_level(logging.WARNING, logger="edge.mqtt.outbox"):
            while len(lost_seqs) < 25:
                n = len(stored) + len(lost_seqs) + 1
                body = {"type": "start", "label": "x" * 300}
                if box.put(EVENT, "t/events", body, qos=1, seq="events") is None:
                    lost_seqs.append(n)
                else:
                    stored.append(n)
                assert len(stored) < 5000, "the filesystem never filled"
            assert box.error is not None and "full" in box.error
            assert box.failed == 25
            # A retained state cannot be stored either, and says nothing is wrong by raising.
            box.put(STATE, "t/state", {"label": "x"}, qos=1, retain=True, seq="state")

            # The broker acknowledges everything stored: all of it is delivered and deleted,
            # with the filler still there.
            delivered = _drain(box)
            assert [b["seq"] for b in delivered if b.get("type") == "start"] == stored
            assert box.depth == 0

            # Space freed by the acknowledgements takes new messages again.
            assert box.put(EVENT, "t/events", {"type": "end"}, qos=1, seq="events") is not None
        assert box.error is None
        after = _drain(box)
        lost = [b for b in delivered + after if b.get("type") == "lost"]
        assert len(lost) == 1
        assert lost[0]["count"] == 25
        assert (lost[0]["seq_from"], lost[0]["seq_to"]) == (lost_seqs[0], lost_seqs[-1])
        assert lost[0]["seq"] == lost_seqs[-1] + 1
        assert after[-1]["type"] == "end" and after[-1]["seq"] == lost_seqs[-1] + 2
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "filesystem is full" in messages and "storing again" in messages

        # With the filler gone the reserve is claimed back and storing goes on.
        (state / "filler").unlink()
        for _ in range(50):
            assert box.put(RESULT, "t/results", {"n": 1}, qos=1, seq="results") is not None
        assert box._ballast.held
        box.close()


def _outbox_with_pending(path: Path, events: int, acked: int) -> list[int]:
    box = Outbox(path)
    for i in range(events):
        box.put(EVENT, "t/events", {"type": "start", "i": i, "pad": "p" * 900}, qos=1, seq="events")
    box.delete(r.id for r in box.fetch(0, acked))
    pending = [json.loads(r.payload)["seq"] for r in box.fetch(0, 10_000)]
    box.close()
    return pending


def test_damaged_outbox_salvages_readable_rows_and_numbering_goes_on(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite"
    pending = _outbox_with_pending(path, events=60, acked=10)
    page = 4096
    size = path.stat().st_size
    assert size > 20 * page
    with path.open("r+b") as fh:  # garbage over pages in the middle of the table
        fh.seek((size // page // 2) * page)
        fh.write(os.urandom(3 * page))
    with caplog.at_level(logging.ERROR, logger="edge.mqtt.outbox"):
        box = Outbox(path)
    assert list(tmp_path.glob("outbox.sqlite.corrupt-*"))
    (notice,) = box.notices
    assert notice["type"] == "outbox_recovered"
    salvaged = [b["seq"] for b in _bodies(box)]
    assert notice["salvaged"] == len(salvaged) > 0
    assert set(salvaged) <= set(pending) and salvaged == sorted(salvaged)
    assert salvaged[0] == pending[0] and salvaged[-1] == pending[-1]  # both ends of the damage
    assert "salvaged" in caplog.text
    box.put(EVENT, "t/events", {"type": "end"}, qos=1, seq="events")
    assert _bodies(box)[-1]["seq"] > 60  # never a number a subscriber has already seen


def test_truncated_outbox_continues_numbering_after_the_highest_issued(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite"
    _outbox_with_pending(path, events=40, acked=40)
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 3)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.outbox"):
        box = Outbox(path)
    assert box.notices and box.notices[0]["type"] == "outbox_recovered"
    box.put(EVENT, "t/events", {"type": "start"}, qos=1, seq="events")
    assert _bodies(box)[-1]["seq"] > 40
    assert "seq continues after" in caplog.text


def test_empty_outbox_file_is_logged_and_numbering_goes_on(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite"
    _outbox_with_pending(path, events=5, acked=5)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.outbox"):
        box = Outbox(path)
    assert "empty (0 bytes)" in caplog.text
    assert box.notices == [{"type": "outbox_recovered", "reason": "empty file", "salvaged": 0}]
    box.put(EVENT, "t/events", {}, qos=1, seq="events")
    assert _bodies(box)[-1]["seq"] > 5


def test_quick_check_failure_is_treated_as_damage(tmp_path):
    """A file that opens and reads but breaks its own constraints is damaged too."""
    path = tmp_path / "outbox.sqlite"
    _outbox_with_pending(path, events=30, acked=0)
    db = sqlite3.connect(path)
    (table_sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'outbox'").fetchone()
    db.execute("PRAGMA writable_schema=ON")
    loose = table_sql.replace("kind TEXT NOT NULL", "kind TEXT")
    db.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'outbox'", (loose,))
    db.commit()
    db.close()
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO outbox (kind, topic, payload, qos, retain, created)"
        " VALUES (NULL, 't', x'00', 1, 0, 0)"
    )
    db.execute("PRAGMA writable_schema=ON")
    db.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'outbox'", (table_sql,))
    db.commit()
    db.close()
    box = Outbox(path)
    (notice,) = box.notices
    assert "quick_check" in notice["reason"] and "NULL" in notice["reason"]
    assert (notice["salvaged"], notice["unreadable"]) == (30, 1)


def test_read_only_outbox_file_is_refused_with_owner_and_fix(tmp_path):
    path = tmp_path / "outbox.sqlite"
    _outbox_with_pending(path, events=1, acked=0)
    with immutable(path), pytest.raises(ConfigError) as err:
        Outbox(path)
    text = str(err.value)
    assert str(path) in text and "owner root" in text and "chattr -i" in text
    assert "\n" not in text


def test_read_only_state_directory_is_refused_without_a_traceback(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    _outbox_with_pending(state / "outbox.sqlite", events=1, acked=0)
    with read_only_bind(state), pytest.raises(ConfigError) as err:
        Outbox(state / "outbox.sqlite")
    assert "read-only" in str(err.value) and str(state) in str(err.value)


def test_outbox_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        box = Outbox(tmp_path / "outbox.sqlite")
        box.put(EVENT, "t/events", {}, qos=1, seq="events")
    finally:
        os.umask(old)
    for name in ("outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm", "outbox.sqlite.seq"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    box.close()


def test_publisher_on_a_full_filesystem_delivers_then_stores_again(broker, tmp_path, caplog):
    """The field case: broker down while the disk fills, then the broker comes back."""
    from edge.mqtt.publisher import Publisher
    from edge.mqtt.topics import Topics

    topics = Topics("edge", "dev1")
    sub = broker.subscriber(topics.events, persistent=True, client_id="full-disk-watcher")
    try:
        with small_tmpfs(tmp_path / "state", "1m") as state:
            broker.stop()
            pub = Publisher(broker.mqtt_config(), "dev1", state / "outbox.sqlite")
            pub.start()
            fill(state, leave=320 * 1024)
            with caplog.at_level(logging.INFO):
                sent = 0
                while pub.dropped < 10:
                    pub.publish_event({"type": "start", "label": "x" * 300})
                    sent += 1
                    assert sent < 5000, "the filesystem never filled"
                assert pub.outbox_error is not None
                stored = sent - 10
                broker.start()
                wait_until(lambda: pub.outbox_depth == 0, 60, "stored events delivered")
                pub.publish_event({"type": "end"})
                sub.wait_for(
                    lambda ms: [m for m in ms if m.json().get("type") == "end"], 30, "end event"
                )
                pub.stop(timeout=1.0)
        seqs = {}
        for m in sub.on(topics.events):
            seqs.setdefault(m.json()["seq"], m.json())
        assert sorted(seqs) == [*range(1, stored + 1), stored + 11, stored + 12]
        lost = seqs[stored + 11]
        assert (lost["type"], lost["count"], lost["seq_from"], lost["seq_to"]) == (
            "lost",
            10,
            stored + 1,
            stored + 10,
        )
        assert pub.outbox_error is None
        assert not [r for r in caplog.records if r.exc_info], "a traceback in some thread"
    finally:
        sub.close()


def _run_config(tmp_path: Path, state: Path) -> Path:
    import yaml

    from tests.support.assets import require
    from tests.support.broker import free_port
    from tests.support.paths import A0, K600_LABELS, VIDEOS

    require(A0, K600_LABELS, VIDEOS / "carving_ice.mp4")
    config = {
        "state_dir": str(state),
        "models_dir": str(tmp_path / "models"),
        "source": {"kind": "opencv", "uri": str(VIDEOS / "carving_ice.mp4")},
        "model": {"path": str(A0), "labels": str(K600_LABELS)},
        "mqtt": {"host": "127.0.0.1", "port": free_port()},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_edge_run_refuses_a_read_only_outbox_with_one_line(tmp_path):
    from tests.support.cli import assert_one_line_error, run_cli

    state = tmp_path / "state"
    state.mkdir()
    config = _run_config(tmp_path, state)
    _outbox_with_pending(state / "outbox.sqlite", events=1, acked=0)
    with immutable(state / "outbox.sqlite"):
        proc = run_cli("run", "--config", str(config), "--duration", "5", timeout=120)
    assert_one_line_error(proc, f"{state}/outbox.sqlite", "owner root", "chattr -i")


def test_edge_run_in_a_read_only_state_directory_exits_2_without_a_traceback(tmp_path):
    from tests.support.cli import run_cli

    state = tmp_path / "state"
    state.mkdir()
    config = _run_config(tmp_path, state)
    with read_only_bind(state):
        proc = run_cli("run", "--config", str(config), "--duration", "5", timeout=120)
    # Other parts may log that they are off; the refusal is the one error line at the end.
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edge run: error: outbox:") and str(state) in last, last
    assert "read-only" in last


def test_daemon_says_it_cannot_store_in_stats_and_systemd_status(tmp_path):
    """A write failure at run time is an error state, not a silent loss."""
    from tests.support.assets import require
    from tests.support.broker import free_port
    from tests.support.daemon import DaemonProcess, NotifySocket
    from tests.support.paths import A0, K600_LABELS, VIDEOS

    require(A0, K600_LABELS, VIDEOS / "carving_ice.mp4")
    notify = NotifySocket(tmp_path / "notify.sock")
    with small_tmpfs(tmp_path / "state", "1m") as state:
        config = {
            "device_id": "dev1",
            "state_dir": str(state),
            "models_dir": str(tmp_path / "models"),
            "source": {"kind": "opencv", "uri": str(VIDEOS / "carving_ice.mp4"), "loop": True},
            "model": {"path": str(A0), "labels": str(K600_LABELS)},
            # No broker: everything stays in the outbox until the disk is full.
            "mqtt": {
                "host": "127.0.0.1",
                "port": free_port(),
                "stats_interval_s": 0.5,
                "heartbeat_s": 0.2,
            },
        }
        d = DaemonProcess(tmp_path / "d", config, env={"NOTIFY_SOCKET": notify.path})
        try:
            d.start()
            wait_until(lambda: notify.lines("READY=1"), 120, "READY=1")
            fill(state, leave=0)
            wait_until(
                lambda: notify.lines("STATUS=ERROR outbox cannot store"), 60, "STATUS= error"
            )
            assert d.alive()
            assert "cannot store messages" in d.log() and "Traceback" not in d.log()
            code, _ = d.stop()
            assert code == 0, d.log()
        finally:
            d.close()
            notify.close()
