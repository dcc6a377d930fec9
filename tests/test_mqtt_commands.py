"""Commands: validation rules, and a live publisher that answers malformed ones and keeps going."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest

from edge.errors import CommandError
from edge.mqtt.inbox import TokenBucket
from edge.mqtt.payloads import Command, CommandRejected, ReplyPayload, parse_command
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics
from tests.support.broker import (  # noqa: F401
    any_broker_fixture,
    broker_factory_fixture,
    broker_fixture,
    nats_broker_fixture,
    wait_until,
)

T = Topics("edge", "dev1")
LIMIT = 512
SHA = "0123456789abcdef" * 4


def parse(name: str, payload: object) -> Command:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_command(name, raw, LIMIT)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("reset", b"", Command("reset", {}, None)),
        ("reset", {"id": "a-1"}, Command("reset", {}, "a-1")),
        ("snapshot", {"id": 42}, Command("snapshot", {}, "42")),
        ("classify", {}, Command("classify", {}, None)),
        ("model", {"name": "movinet-a0"}, Command("model", {"name": "movinet-a0"}, None)),
        (
            "model",
            {"path": "/m/x.tflite", "sha256": SHA.upper(), "mode": "still", "id": "m"},
            Command("model", {"path": "/m/x.tflite", "sha256": SHA, "mode": "still"}, "m"),
        ),
    ],
)
def test_valid_commands(name: str, payload: object, expected: Command) -> None:
    assert parse(name, payload) == expected


@pytest.mark.parametrize(
    ("name", "payload", "needle", "cmd_id"),
    [
        ("reset", b"{not json", "invalid JSON", None),
        ("reset", b"\xff\xfe", "invalid JSON", None),
        ("reset", [1, 2], "JSON object", None),
        ("reset", "text", "JSON object", None),
        ("reset", {"id": "x", "extra": 1}, "extra: unknown key", "x"),
        ("dance", {"id": "d"}, "unknown command 'dance'", "d"),
        ("model", {"id": "m"}, "exactly one of 'name' or 'path'", "m"),
        ("model", {"name": "a", "path": "b"}, "exactly one of 'name' or 'path'", None),
        ("model", {"name": "a", "sha256": "abc"}, "sha256: must be 64 hexadecimal", None),
        ("model", {"name": "a", "mode": "audio"}, "mode:", None),
        ("model", {"name": 5}, "name:", None),
        ("reset", {"id": ""}, "id:", None),
    ],
)
def test_malformed_commands_are_rejected_with_a_reason(
    name: str, payload: object, needle: str, cmd_id: str | None
) -> None:
    with pytest.raises(CommandRejected) as info:
        parse(name, payload)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.id == cmd_id
    assert isinstance(info.value, CommandError)


def test_size_limit_is_checked_before_parsing() -> None:
    big = json.dumps({"name": "x" * LIMIT}).encode()
    with pytest.raises(CommandRejected, match=r"too large: \d+ bytes > 512"):
        parse_command("model", big, LIMIT)
    parse_command("reset", b" " * LIMIT, LIMIT)  # exactly at the limit is fine


def test_reply_topics_are_not_command_topics() -> None:
    assert T.command_name("edge/dev1/cmd/reset") == "reset"
    assert T.command_name("edge/dev1/cmd/reset/result") is None
    assert T.command_name("edge/dev2/cmd/reset") is None
    assert T.command_name("edge/dev1/cmd/") is None


# --------------------------------------------------------------------------- live


def test_live_commands_valid_malformed_oversized(any_broker, tmp_path: Path) -> None:
    broker = any_broker
    cfg = broker.mqtt_config(max_command_bytes=LIMIT)
    pub = Publisher(cfg, "dev1", tmp_path / "o.sqlite")
    try:
        with broker.subscriber("edge/dev1/#") as sub:
            # A retained command would run again on every connection: never run, never answered.
            sub.publish(T.command("classify"), b'{"id": "r"}', retain=True)
            pub.start()
            sub.wait_payload(T.availability, "online")
            wait_until(lambda: pub.connected, what="connected")
            cmds = pub.commands()

            sub.publish(T.command("reset"), '{"id": "ok-1"}')
            assert cmds.get(timeout=20) == Command("reset", {}, "ok-1")

            bad = [
                ("reset", b'{"id": "j", ', None),  # broken JSON: no id can be read
                ("snapshot", b'["id", "s"]', None),
                ("model", b'{"id": "big", "name": "' + b"x" * LIMIT + b'"}', None),
                ("model", b'{"id": "both", "name": "a", "path": "b"}', "both"),
                ("dance", b'{"id": "dance-1"}', "dance-1"),
            ]
            for name, payload, _ in bad:
                sub.publish(T.command(name), payload)
            expected: dict[str, list[str | None]] = {}
            for name, _, cmd_id in bad:
                expected.setdefault(name, []).append(cmd_id)
            for name, ids in expected.items():
                replies = sub.wait_count(T.reply(name), len(ids))
                bodies = [ReplyPayload.model_validate(m.json()) for m in replies]
                assert all(not b.ok and b.error for b in bodies)
                assert [b.id for b in bodies] == ids
            # The retained command came before all of these, so an answer would be here by now.
            assert sub.on(T.reply("classify")) == []
            assert pub._inbox.retained_ignored == 1
            big = ReplyPayload.model_validate(sub.on(T.reply("model"))[0].json())
            assert "too large" in (big.error or "")

            # The daemon's own reply must not come back as a command.
            pub.reply("reset", {"ok": True, "id": "ok-1"})
            sub.wait_for(
                lambda ms: any(
                    m.topic == T.reply("reset") and b'"ok":true' in m.payload for m in ms
                )
            )
            # ... and the publisher still works: a later valid command and an event go through.
            sub.publish(T.command("model"), '{"name": "movinet-a0", "id": "m2"}')
            assert cmds.get(timeout=20) == Command("model", {"name": "movinet-a0"}, "m2")
            with pytest.raises(queue.Empty):
                cmds.get_nowait()  # nothing malformed or self-sent was queued
            pub.publish_event({"type": "start", "label": "after"})
            assert sub.wait_count(T.events, 1)[0].json()["label"] == "after"
            assert pub.connected
    finally:
        pub.stop()


def test_deeply_nested_json_is_rejected_not_raised() -> None:
    payload = b"[" * 3000  # under the size limit, deeper than the parser goes
    with pytest.raises(CommandRejected, match="nested too deeply"):
        parse_command("model", payload, 4096)


# --------------------------------------------------------------------------- rate limit


def test_token_bucket_takes_a_burst_then_the_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(5)] == [True, True, True, False, False]
    now[0] += 0.5  # one token back at 2/s
    assert [bucket.take() for _ in range(2)] == [True, False]
    now[0] += 60  # a long quiet spell saves up no more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_commands_over_the_rate_are_dropped_unanswered_and_counted(broker, tmp_path: Path) -> None:
    # A rate so low that no token comes back during the test: exactly the burst is taken.
    cfg = broker.mqtt_config(command_rate_per_s=0.001, command_burst=3)
    pub = Publisher(cfg, "dev1", tmp_path / "o.sqlite")
    try:
        with broker.subscriber("edge/dev1/#") as sub:
            pub.start()
            sub.wait_payload(T.availability, "online")
            for i in range(10):
                sub.publish(T.command("dance"), f'{{"id": "d{i}"}}')
            wait_until(lambda: pub.commands_dropped == 7, what="7 commands dropped")
            replies = sub.wait_count(T.reply("dance"), 3)
            assert [m.json()["id"] for m in replies] == ["d0", "d1", "d2"]
            pub.publish_stats({"n": 1})
            stats = sub.wait_count(T.stats, 1)[0].json()
            assert stats["commands_dropped"] == 7
            assert stats["mqtt_protocol"] == "5"
            # Nothing more was answered: the stats message came after every command.
            assert len(sub.on(T.reply("dance"))) == 3
    finally:
        pub.stop()


def test_a_live_retained_command_is_not_run_on_mqtt5(broker, tmp_path: Path) -> None:
    """MQTT 5 keeps the retain flag on live delivery (retainAsPublished), so it is seen."""
    pub = Publisher(broker.mqtt_config(), "dev1", tmp_path / "o.sqlite")
    try:
        with broker.subscriber("edge/dev1/#") as sub:
            pub.start()
            sub.wait_payload(T.availability, "online")
            sub.publish(T.command("reset"), '{"id": "kept"}', retain=True)
            sub.publish(T.command("reset"), '{"id": "live"}')
            assert pub.commands().get(timeout=20).id == "live"
            assert pub._inbox.retained_ignored == 1
            pub.stop()
            # Connecting again (same session) does not fetch the retained command again.
            again = Publisher(broker.mqtt_config(), "dev1", tmp_path / "o.sqlite")
            again.start()
            try:
                wait_until(lambda: again.connected, what="reconnected")
                sub.publish(T.command("reset"), '{"id": "next"}')
                assert again.commands().get(timeout=20).id == "next"
                assert again._inbox.retained_ignored == 0
            finally:
                again.stop()
    finally:
        pub.stop()


def test_a_command_sent_while_the_device_is_away_arrives_when_it_is_back(
    any_broker, tmp_path: Path
) -> None:
    """The persistent session (MQTT 5 and 3.1.1 alike) keeps the command subscription."""
    first = Publisher(any_broker.mqtt_config(), "dev1", tmp_path / "o.sqlite")
    first.start()
    wait_until(lambda: first.connected, what="connected")
    first.stop()
    with any_broker.subscriber(T.availability) as sub:
        sub.wait_payload(T.availability, "stopped")
        sub.publish(T.command("reset"), '{"id": "while-away"}')
    again = Publisher(any_broker.mqtt_config(), "dev1", tmp_path / "o.sqlite")
    try:
        again.start()
        assert again.commands().get(timeout=20).id == "while-away"
    finally:
        again.stop()


def test_no_persistent_session_when_session_expiry_is_0(any_broker, tmp_path: Path) -> None:
    cfg = any_broker.mqtt_config(session_expiry_s=0)
    first = Publisher(cfg, "dev1", tmp_path / "o.sqlite")
    first.start()
    wait_until(lambda: first.connected, what="connected")
    first.stop()
    with any_broker.subscriber(T.availability) as sub:
        sub.wait_payload(T.availability, "stopped")
        sub.publish(T.command("reset"), '{"id": "lost"}')
    again = Publisher(cfg, "dev1", tmp_path / "o.sqlite")
    try:
        again.start()
        wait_until(lambda: again.connected, what="connected again")
        with any_broker.subscriber(T.availability) as sub:  # after our SUBSCRIBE
            sub.wait_payload(T.availability, "online")
            sub.publish(T.command("reset"), '{"id": "now"}')
        assert again.commands().get(timeout=20).id == "now"  # the earlier one was not kept
    finally:
        again.stop()
