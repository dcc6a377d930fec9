"""Commands: validation rules, and a live publisher that answers malformed ones and keeps going."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest

from edge.errors import CommandError
from edge.mqtt.payloads import Command, CommandRejected, ReplyPayload, parse_command
from edge.mqtt.publisher import Publisher
from edge.mqtt.topics import Topics
from tests.support.broker import broker_factory_fixture, broker_fixture, wait_until  # noqa: F401

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


def test_live_commands_valid_malformed_oversized(broker, tmp_path: Path) -> None:
    cfg = broker.mqtt_config(max_command_bytes=LIMIT)
    pub = Publisher(cfg, "dev1", tmp_path / "o.sqlite")
    try:
        with broker.subscriber("edge/dev1/#") as sub:
            # A retained command would run again on every reconnect: it is refused.
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
            retained = ReplyPayload.model_validate(sub.wait_count(T.reply("classify"), 1)[0].json())
            assert "retained" in (retained.error or "") and retained.id == "r"
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
