"""Beyond one Mosquitto: `edge run` on NATS's MQTT gateway (3.1.1 only), and a bridged site.

The publisher's loss tests run on every broker and protocol (tests/test_mqtt_publisher.py,
``any_broker``); here the whole daemon meets NATS, and a site broker forwards to a central
one that goes away.
"""

from __future__ import annotations

import signal
from pathlib import Path

from edge.mqtt.publisher import Publisher
from tests.support.broker import (  # noqa: F401
    broker_factory_fixture,
    nats_broker_fixture,
    wait_until,
)
from tests.support.daemon import DaemonProcess

BASE = "edge/dev1"


def _first_seqs(sub, topic: str) -> list[int]:
    """Each ``seq`` in the order first received (repeats, at-least-once, left out)."""
    seen: list[int] = []
    for body in sub.json(topic):
        if body["seq"] not in seen:
            seen.append(body["seq"])
    return seen


def test_edge_run_on_nats_publishes_state_events_and_answers_commands(
    a0, k600_labels, videos, config_for, nats_broker, tmp_path
):
    daemon = DaemonProcess(tmp_path / "d", config_for(tmp_path, nats_broker.port))
    with nats_broker.subscriber(f"{BASE}/#") as sub:
        daemon.start()
        try:
            sub.wait_payload(f"{BASE}/availability", "online", timeout=60)
            state = sub.wait_for(
                lambda ms: next(
                    (
                        m.json()
                        for m in ms
                        if m.topic == f"{BASE}/state" and m.json()["label"] == "carving ice"
                    ),
                    None,
                ),
                90,
                "state with the clip's label",
            )
            assert state["top"][0]["label"] == "carving ice"
            start = sub.wait_for(
                lambda ms: [b for b in sub.json(f"{BASE}/events") if b.get("type") == "start"],
                30,
                "a start event",
            )[0]
            assert start["label"] == "carving ice" and start["seq"] >= 1
            stats = sub.wait_count(f"{BASE}/stats", 1, timeout=30)[0].json()
            assert stats["mqtt_protocol"] == "3.1.1"
            assert "refuses MQTT 5; using 3.1.1" in daemon.log()

            sub.publish(f"{BASE}/cmd/reset", '{"id": "n1"}')
            sub.publish(f"{BASE}/cmd/model", '{"id": "n2", "name": "a", "path": "b"}')
            reset = sub.wait_count(f"{BASE}/cmd/reset/result", 1)[0].json()
            assert reset == {"ok": True, "id": "n1", "reset": True}
            refused = sub.wait_count(f"{BASE}/cmd/model/result", 1)[0].json()
            assert not refused["ok"] and refused["id"] == "n2" and "exactly one" in refused["error"]

            daemon.signal(signal.SIGKILL)
            sub.wait_payload(f"{BASE}/availability", "offline", timeout=60)  # the Last Will
        finally:
            daemon.close()
    with nats_broker.subscriber(f"{BASE}/availability", f"{BASE}/state") as late:
        # Retained, in JetStream: a newcomer gets the Will and the last state.
        assert late.wait_payload(f"{BASE}/availability", "offline").retain
        assert late.wait_count(f"{BASE}/state", 1)[0].retain


def test_bridged_site_delivers_events_made_while_the_central_broker_was_down(
    broker_factory, tmp_path: Path
) -> None:
    central = broker_factory()
    site = broker_factory(bridge=(central.port, "edge/#"))
    # The central subscriber's persistent session keeps what arrives while it reconnects.
    watch = central.subscriber(f"{BASE}/events", persistent=True, client_id="central-watcher")
    pub = Publisher(site.mqtt_config(), "dev1", tmp_path / "outbox.sqlite")
    try:
        pub.start()
        for _ in range(5):
            pub.publish_event({"type": "start", "label": "before"})
        watch.wait_for(lambda ms: _first_seqs(watch, f"{BASE}/events") == [1, 2, 3, 4, 5])

        central.stop()
        for _ in range(30):
            pub.publish_event({"type": "start", "label": "while central is down"})
        # The site broker took them all: edge's outbox is empty, the site queues for the bridge.
        wait_until(lambda: pub.outbox_depth == 0, what="the site broker to take every event")
        assert pub.connected and pub.reconnects == 0

        central.start()
        watch.wait_for(
            lambda ms: _first_seqs(watch, f"{BASE}/events") == list(range(1, 36)),
            60,
            "events 1..35 at the central broker, in order",
        )
    finally:
        pub.stop()
        watch.close()


def test_commands_from_the_centre_reach_a_bridged_device_and_replies_come_back(
    broker_factory, tmp_path: Path
) -> None:
    """The README's site bridge with the 'in' direction: one level, so replies do not loop."""
    central = broker_factory()
    site = broker_factory(bridge=(central.port, "edge/#"), bridge_in="edge/+/cmd/+")
    pub = Publisher(site.mqtt_config(), "dev1", tmp_path / "outbox.sqlite")
    with central.subscriber(f"{BASE}/#") as sub:
        try:
            pub.start()
            sub.wait_payload(f"{BASE}/availability", "online")  # the bridge carries it out

            def asked() -> bool:  # the bridge subscribes at the centre once it is up
                if not pub.commands().empty():
                    return True
                sub.publish(f"{BASE}/cmd/reset", '{"id": "from-the-centre"}')
                return False

            wait_until(asked, 30, "a command from the centre at the device")
            cmd = pub.commands().get_nowait()
            assert cmd.id == "from-the-centre"
            pub.reply(cmd.name, {"ok": True, "id": cmd.id})
            reply = sub.wait_count(f"{BASE}/cmd/reset/result", 1)[0].json()
            assert reply == {"ok": True, "id": "from-the-centre"}
            sub.publish(f"{BASE}/cmd/reset", '{"id": "once"}')
            while pub.commands().get(timeout=20).id != "once":
                pass
            pub.publish_event({"type": "marker"})  # out through the same bridge, after both
            sub.wait_count(f"{BASE}/events", 1)
            # Had the reply or the command looped (out, in, out ...), copies would be here.
            assert len(sub.on(f"{BASE}/cmd/reset/result")) == 1
            assert [m.payload for m in sub.on(f"{BASE}/cmd/reset")].count(b'{"id": "once"}') == 1
        finally:
            pub.stop()
