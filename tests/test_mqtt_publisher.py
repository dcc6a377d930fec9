"""The publisher against a real Mosquitto: availability, schemas, no loss across restarts."""

from __future__ import annotations

import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

from edge.mqtt.discovery import device_topic, legacy_topics
from edge.mqtt.payloads import (
    EventPayload,
    PredictionPayload,
    ReplyPayload,
    ResultPayload,
    StatePayload,
    StatsPayload,
    event_payload,
    state_payload,
)
from edge.mqtt.topics import Topics
from tests.support.broker import (  # noqa: F401
    TEST_MODEL,
    Broker,
    NatsBroker,
    TcpProxy,
    any_broker_fixture,
    broker_factory_fixture,
    broker_fixture,
    nats_broker_fixture,
    wait_until,
)
from tests.support.hass import check_device_payload
from tests.support.publisher_proc import Child

DEV = "dev1"
T = Topics("edge", DEV)
MODEL = TEST_MODEL


def _events(sub) -> list[int]:
    return [m.json()["seq"] for m in sub.on(T.events)]


def _in_order_without_gaps(seqs: list[int], n: int) -> bool:
    """First occurrences are exactly 1..n in order; repeats (at-least-once) are allowed."""
    first: list[int] = []
    for s in seqs:
        if s not in first:
            first.append(s)
    return first == list(range(1, n + 1))


def _proc_spec(broker: Any, outbox: Path, **kw: Any) -> dict:
    mqtt = {
        "host": broker.host,
        "port": broker.port,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "keepalive_s": 10,
        "protocol": broker.protocol,
    }
    return {"mqtt": mqtt, "device_id": DEV, "outbox": str(outbox), **kw}


# --------------------------------------------------------------------------- availability


def test_availability_online_then_stopped_and_retained(any_broker, make_pub) -> None:
    with any_broker.subscriber(T.availability) as sub:
        pub = make_pub(any_broker)
        pub.start()
        sub.wait_payload(T.availability, "online")
        wait_until(lambda: pub.connected, what="connected flag")
        # protocol: auto takes MQTT 5 where the broker has it, else falls back to 3.1.1.
        assert pub.protocol == ("5" if any_broker.protocol == "5" else "3.1.1")
        pub.stop()
        sub.wait_payload(T.availability, "stopped")
        assert [m.text for m in sub.on(T.availability)] == ["online", "stopped"]
    with any_broker.subscriber(T.availability) as late:  # a newcomer gets the retained value
        msg = late.wait_payload(T.availability, "stopped")
        assert msg.retain


def test_last_will_offline_after_kill9(any_broker, tmp_path: Path) -> None:
    spec = _proc_spec(any_broker, tmp_path / "o.sqlite", then="connected")
    with any_broker.subscriber(T.availability) as sub, Child(spec) as child:
        child.expect("queued")
        child.expect("connected")
        sub.wait_payload(T.availability, "online")
        child.kill9()
        sub.wait_payload(T.availability, "offline")
    with any_broker.subscriber(T.availability) as late:
        assert late.wait_payload(T.availability, "offline").retain


def test_starts_while_broker_is_down(broker, make_pub) -> None:
    broker.stop()
    pub = make_pub(broker)
    pub.start()  # returns at once even though nothing listens
    pub.publish_event(event_payload("start", ts=1.0, label="walking", score=0.8))
    wait_until(lambda: pub.last_error and "cannot connect" in pub.last_error, what="error")
    assert not pub.connected and pub.outbox_depth == 1
    broker.start()
    wait_until(lambda: pub.connected, what="reconnect")
    wait_until(lambda: pub.outbox_depth == 0, what="outbox flushed")


# --------------------------------------------------------------------------- schemas


def test_message_schemas_retain_and_qos(any_broker, make_pub) -> None:
    pub = make_pub(any_broker, cfg={"predictions_max_hz": 50.0})
    with any_broker.subscriber("edge/#") as sub:
        pub.start()
        sub.wait_payload(T.availability, "online")
        top = [{"label": "walking", "score": 0.8123456}, {"label": "running", "score": 0.1}]
        pub.publish_state(
            state_payload(
                label="walking",
                score=0.81,
                since=100.0,
                top=top,
                model=MODEL,
                mode="video",
                ts=101.0,
            )
        )
        pub.publish_event(
            event_payload("start", ts=101.0, label="walking", score=0.81, since=100.0)
        )
        pub.publish_event(event_payload("end", ts=109.0, label="walking"))
        pub.publish_result(
            {
                "ts": 101.5,
                "time": "1970-01-01T00:01:41.500Z",
                "history_id": 1,
                "image": {
                    "path": None,
                    "sha256": "0" * 64,
                    "width": 4,
                    "height": 3,
                    "source": "watch",
                },
                "results": [
                    {"model": MODEL, "top": top, "label": "apple", "inference_ms": 2.0},
                ],
            }
        )
        pub.publish_stats(
            {
                "uptime_s": 5.0,
                "camera_fps": 15.0,
                "model_fps": 5.0,
                "inference_ms": {"p50": 20.0, "p95": 31.0},
                "dropped_frames": 0,
                "reconnects": 0,
                "cpu_percent": 40.0,
                "rss_mb": 90.0,
            }
        )
        pub.publish_prediction(
            {
                "ts": 101.0,
                "frame": 600,
                "step": 100,
                "raw": top,
                "smoothed": top,
                "label": "walking",
            }
        )
        pub.reply("reset", {"ok": True, "id": "r1"})
        for topic in (T.state, T.results, T.stats, T.predictions, T.reply("reset")):
            sub.wait_count(topic, 1)
        sub.wait_count(T.events, 2)

    (state,) = sub.on(T.state)
    s = StatePayload.model_validate(state.json())
    assert state.qos == 1
    with any_broker.subscriber(T.state) as late:  # retained: a newcomer gets it at once
        assert late.wait_count(T.state, 1)[0].retain
    assert (s.label, s.mode, s.model.name, s.top[0].score) == (
        "walking",
        "video",
        MODEL["name"],
        0.8123,
    )
    events = [EventPayload.model_validate(m.json()) for m in sub.on(T.events)]
    assert [(e.type, e.seq) for e in events] == [("start", 1), ("end", 2)]
    assert all(m.qos == 1 and not m.retain for m in sub.on(T.events))
    r = ResultPayload.model_validate(sub.on(T.results)[0].json())
    assert (r.results[0].label, r.seq) == ("apple", 1)
    stats = StatsPayload.model_validate(sub.on(T.stats)[0].json())
    assert stats.mqtt_reconnects == 0 and stats.outbox_depth >= 0
    assert sub.on(T.stats)[0].qos == 0
    p = PredictionPayload.model_validate(sub.on(T.predictions)[0].json())
    assert p.smoothed[0].label == "walking" and sub.on(T.predictions)[0].qos == 0
    reply = ReplyPayload.model_validate(sub.on(T.reply("reset"))[0].json())
    assert reply.ok and reply.id == "r1"


def test_event_seq_continues_after_a_clean_restart(broker, make_pub, tmp_path: Path) -> None:
    outbox = tmp_path / "shared.sqlite"
    with broker.subscriber(T.events) as sub:
        first = make_pub(broker, outbox=outbox)
        first.start()
        for _ in range(3):
            first.publish_event({"type": "start", "label": "a"})
        sub.wait_count(T.events, 3)
        first.stop()
        second = make_pub(broker, outbox=outbox)
        second.start()
        second.publish_event({"type": "end", "label": "a"})
        sub.wait_count(T.events, 4)
    assert _events(sub) == [1, 2, 3, 4]


def test_predictions_are_rate_limited_and_not_queued_offline(broker, make_pub) -> None:
    pub = make_pub(broker, cfg={"predictions_max_hz": 0.5})
    body = {"ts": 1.0, "raw": [], "smoothed": [], "label": None}
    pub.publish_prediction(body)  # not connected yet: dropped, not stored
    assert pub.outbox_depth == 0
    with broker.subscriber(T.predictions, T.events) as sub:
        pub.start()
        wait_until(lambda: pub.connected, what="connected")
        for _ in range(20):  # a burst far faster than 0.5 Hz
            pub.publish_prediction(body)
        pub.publish_event({"type": "marker"})  # sent after the burst on the same connection
        sub.wait_count(T.events, 1)
    assert len(sub.on(T.predictions)) == 1


# --------------------------------------------------------------------------- no data lost


def test_broker_restart_mid_run_loses_no_event(any_broker, make_pub) -> None:
    """Events keep coming from another thread while the broker goes away and comes back."""
    # A persistent session: the broker keeps what arrives for the subscriber across its restart.
    watch = lambda: any_broker.subscriber(T.events, persistent=True, client_id="events-watcher")  # noqa: E731
    sub = watch()
    # NATS 2.9 can lose, for a subscriber, messages it is delivering to it at the moment it
    # stops (after acknowledging them to edge): there the watcher is away for the whole run,
    # its session keeping everything, and reads it all at the end. It also acknowledges a
    # message before JetStream has stored it (a loss seen on a slow, emulated machine), so
    # there the trickle pauses while the broker stops, once JetStream holds all it has
    # acknowledged.
    away = isinstance(any_broker, NatsBroker)
    if away:
        sub.close()
    pub = make_pub(any_broker)
    pub.start()
    sent = 0
    done = threading.Event()
    go = threading.Event()
    go.set()

    def produce() -> None:
        nonlocal sent
        while not done.is_set():
            go.wait()
            pub.publish_event({"type": "start", "label": "x"})
            sent += 1
            done.wait(0.003)  # a steady trickle, like a busy sensor

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        if away:
            wait_until(lambda: sent >= 20 and pub.outbox_depth < sent - 10, what="20 events sent")
        else:
            sub.wait_count(T.events, 20)
        if away:
            go.clear()
            wait_until(lambda: pub.outbox_depth == 0, what="the outbox acknowledged")
            wait_until(lambda: any_broker.stored() >= sent, what="JetStream to store them")
        any_broker.stop()
        go.set()
        wait_until(lambda: not pub.connected, what="publisher to notice the broker is gone")
        offline_from = sent
        wait_until(lambda: sent >= offline_from + 20, what="events published while offline")
        assert pub.outbox_depth >= 20
        any_broker.start()
        wait_until(lambda: pub.connected, what="reconnect")
        online_from = sent
        wait_until(lambda: sent >= online_from + 20, what="events published after the restart")
    finally:
        done.set()
        go.set()
        producer.join(10)
    if away:
        sub = watch()
    try:
        sub.wait_for(lambda ms: _in_order_without_gaps(_events(sub), sent), 30, f"events 1..{sent}")
        wait_until(lambda: pub.outbox_depth == 0, what="outbox drained")
        assert pub.reconnects >= 1
        assert pub.dropped == 0
    finally:
        sub.close()


def test_network_loss_with_messages_in_flight_resends_them(any_broker, make_pub) -> None:
    """Messages sent into a dead link (no PUBACK) are sent again on the next connection."""
    with TcpProxy(any_broker.port) as link, any_broker.subscriber(T.events, T.availability) as sub:
        pub = make_pub(any_broker, cfg={"port": link.port})
        pub.start()
        pub.publish_event({"type": "start", "label": "before"})
        sub.wait_count(T.events, 1)
        link.blackhole()
        for _ in range(10):
            pub.publish_event({"type": "start", "label": "lost-on-the-wire"})
        wait_until(lambda: link.discarded > 0, what="events sent into the dead link")
        link.cut()
        link.restore()
        wait_until(lambda: pub.reconnects >= 1, what="reconnect through the link")
        pub.publish_event({"type": "end", "label": "after"})
        sub.wait_for(lambda ms: _in_order_without_gaps(_events(sub), 12), 30, "events 1..12")
        wait_until(lambda: pub.outbox_depth == 0, what="outbox drained")
        # Subscribed again on the new connection ("online" follows the SUBSCRIBE).
        sub.wait_for(
            lambda ms: [m.text for m in ms if m.topic == T.availability].count("online") == 2
        )
        sub.publish(T.command("reset"), '{"id": "after-reconnect"}')
        assert pub.commands().get(timeout=20).id == "after-reconnect"


def test_kill9_with_undelivered_outbox_then_restart_delivers_in_order(
    any_broker, tmp_path: Path
) -> None:
    outbox = tmp_path / "o.sqlite"
    any_broker.stop()  # nothing can be delivered by the first process
    with Child(_proc_spec(any_broker, outbox, events=25, then="hold")) as first:
        assert first.expect("queued") == "queued 25"
        first.kill9()
    db = sqlite3.connect(outbox)
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'event'").fetchone()[0] == 25
    db.close()

    any_broker.start()
    spec = _proc_spec(any_broker, outbox, events=5, then="drain")
    with any_broker.subscriber(T.events, T.availability) as sub, Child(spec) as second:
        second.expect("queued")
        second.expect("connected")
        second.expect("drained")
        sub.wait_for(lambda ms: _in_order_without_gaps(_events(sub), 30), 30, "events 1..30")
        second.signal(signal.SIGTERM)
        second.expect("stopped")
        assert second.proc.wait(10) == 0
        sub.wait_payload(T.availability, "stopped")


def test_full_outbox_while_offline_drops_stats_never_events(
    broker, make_pub, tmp_path: Path
) -> None:
    outbox = tmp_path / "bound.sqlite"
    sub = broker.subscriber(T.events, T.stats, persistent=True, client_id="bound-watcher")
    try:
        broker.stop()
        pub = make_pub(broker, outbox=outbox, cfg={"outbox_max_messages": 100})
        pub.start()
        for i in range(80):
            pub.publish_stats({"n": i})
        for _ in range(60):
            pub.publish_event({"type": "start", "label": "x"})
        assert pub.outbox_depth == 100
        assert pub.dropped == 40  # the 40 oldest stats made room for events
        pub.stop(timeout=0.5)
        broker.start()
        # Mosquitto 2.0.11 can keep the QoS 1 messages it queued, behind QoS 0 ones, for a
        # restored session that reconnects later: the watcher is back before delivery starts.
        sub.wait_connected()
        pub = make_pub(broker, outbox=outbox, cfg={"outbox_max_messages": 100})
        pub.start()
        sub.wait_for(lambda ms: _in_order_without_gaps(_events(sub), 60), 30, "events 1..60")
        sub.wait_count(T.stats, 40)
        assert [m.json()["n"] for m in sub.on(T.stats)] == list(range(40, 80))
    finally:
        sub.close()


# --------------------------------------------------------------------------- discovery


def test_home_assistant_device_discovery_and_reannounce(broker, make_pub) -> None:
    device = device_topic(T)
    legacy = legacy_topics(T)
    with broker.subscriber("homeassistant/#") as sub:
        pub = make_pub(broker, mode="still")
        pub.models = ("movinet-a0-stream-int8", "customvision-fruits")
        pub.start()
        sub.wait_count(device, 1)
        msgs = list(sub.messages)
        # the per-entity configs of earlier releases are cleared before the device appears
        cleared = [i for i, m in enumerate(msgs) if m.topic in legacy and m.payload == b""]
        assert sorted(msgs[i].topic for i in cleared) == sorted(legacy)
        first_device = next(i for i, m in enumerate(msgs) if m.topic == device)
        assert max(cleared) < first_device
        with broker.subscriber(device) as late:  # retained for a Home Assistant started later
            assert late.wait_count(device, 1)[0].retain
        cfg = check_device_payload(sub.on(device)[0].json())
        comps = cfg["components"]
        assert cfg["device"]["identifiers"] == [f"edge_{DEV}"]
        assert cfg["origin"]["name"] == "edge"
        (avail,) = cfg["availability"]
        assert avail["topic"] == T.availability
        assert (avail["payload_available"], avail["payload_not_available"]) == ("online", "offline")
        assert "value_template" in avail  # maps "stopped" to "offline"
        activity = comps["activity"]
        assert activity["state_topic"] == T.state and activity["json_attributes_topic"] == T.state
        assert activity["unique_id"] == f"edge_{DEV}_activity"
        assert activity["default_entity_id"] == f"sensor.edge_{DEV}_activity"
        assert comps["last_result"]["state_topic"] == T.results
        assert comps["classify"]["command_topic"] == T.command("classify")
        assert comps["model_select"]["options"] == list(pub.models)
        assert comps["model_select"]["command_topic"] == T.command("model")
        assert comps["snapshot"]["image_topic"] == T.snapshot
        assert comps["label_event"]["state_topic"] == T.events

        sub.publish("homeassistant/status", "online")
        sub.wait_count(device, 2)

        pub.set_mode("video")  # still-only components are removed with entries of only "p"
        sub.wait_count(device, 3)
        comps = check_device_payload(sub.on(device)[-1].json())["components"]
        assert comps["last_result"] == {"platform": "sensor"}
        assert comps["classify"] == {"platform": "button"}
        assert comps["activity"]["platform"] == "sensor"


def test_unencodable_payload_is_counted_not_raised(broker, make_pub) -> None:
    pub = make_pub(broker)
    pub.publish_event({"type": "start", "score": float("nan")})
    pub.publish_state({"label": object()})
    assert pub.dropped == 2 and pub.outbox_depth == 0
    pub.publish_event({"type": "start", "score": 0.5})
    assert pub.outbox_depth == 1  # and the numbering did not skip
    with broker.subscriber(T.events) as sub:
        pub.start()
        assert sub.wait_count(T.events, 1)[0].json()["seq"] == 1
