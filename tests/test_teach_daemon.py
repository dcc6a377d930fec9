"""Teaching the running sensor over MQTT: cmd/teach, cmd/forget, cmd/classes, end to end."""

from __future__ import annotations

import json

import pytest

from edge.mqtt.payloads import ResultPayload
from tests.support.daemon import DaemonProcess
from tests.support.mjpeg_server import MjpegServer
from tests.test_daemon import BASE, _wait_label, events


@pytest.fixture
def daemons(tmp_path):
    made: list[DaemonProcess] = []

    def make(config: dict) -> DaemonProcess:
        d = DaemonProcess(tmp_path / f"d{len(made)}", config)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def ask(sub, name: str, payload, n: int) -> dict:
    raw = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    sub.publish(f"{BASE}/cmd/{name}", raw)
    return sub.wait_count(f"{BASE}/cmd/{name}/result", n, timeout=60)[-1].json()


def _state_where(sub, test, what: str) -> dict:
    return sub.wait_for(
        lambda ms: next(
            (
                s
                for s in (
                    m.json()
                    for m in ms
                    if m.topic == f"{BASE}/state" and m.payload and not m.retain
                )
                if test(s)
            ),
            None,
        ),
        90,
        what,
    )


def test_teach_from_live_video_forget_and_it_survives_a_restart(
    config_for, broker, daemons, tmp_path
):
    cfg = config_for(tmp_path, broker.port)
    d = daemons(cfg)
    with broker.subscriber(f"{BASE}/#") as sub:
        d.start()
        _wait_label(sub, "carving ice")
        first = _states(sub)[-1]
        assert first["taught"]["classes"] == [] and "no taught classes" in first["taught"]["note"]

        # Refused, with a reason, and the daemon keeps running.
        assert ask(sub, "teach", {"label": ""}, 1)["ok"] is False
        bad = ask(sub, "teach", {"label": "ice\u0007"}, 2)
        assert bad["ok"] is False and "control" in bad["error"]
        long = ask(sub, "teach", {"label": "x" * 65, "seconds": 2}, 3)
        assert long["ok"] is False and "longer" in long["error"]
        assert ask(sub, "teach", {"label": "a", "seconds": 600}, 4)["ok"] is False
        assert ask(sub, "teach", {"label": "a", "result": 1}, 5)["ok"] is False
        assert ask(sub, "teach", {"label": "a", "colour": "red"}, 6)["ok"] is False
        assert ask(sub, "forget", {"label": "never taught"}, 1)["ok"] is False
        assert d.alive()

        reply = ask(sub, "teach", {"label": "chiselling", "seconds": 3, "id": "t1"}, 7)
        assert reply == {"ok": True, "id": "t1", "label": "chiselling", "seconds": 3,
                         "collecting": True}  # fmt: skip
        taught = sub.wait_for(events("taught", label="chiselling"), 60, "the taught event")[0]
        # One example per second of frames: 3, or fewer if a loaded machine delivers
        # frames further apart than a second.
        n = taught["examples"]
        assert taught["ok"] is True and 1 <= n <= 3 and taught["total"] == n
        # At once: the taught class is what the sensor reports now.
        state = _state_where(sub, lambda s: s["label"] == "chiselling", "the taught label")
        assert state["taught"]["classes"] == ["chiselling"]
        classes = ask(sub, "classes", {}, 1)
        assert classes["ok"] is True
        assert classes["classes"] == [{"label": "chiselling", "examples": n}]
        assert classes["learner"] == "ncm" and classes["threshold_source"] == "default"
        code, _ = d.stop()
        assert code == 0, d.log()

    # A restart keeps what was taught.
    d2 = daemons(cfg)
    with broker.subscriber(f"{BASE}/#") as sub:
        d2.start()
        sub.wait_payload(f"{BASE}/availability", "online", timeout=60)
        _state_where(sub, lambda s: s["label"] == "chiselling", "the taught label after restart")
        gone = ask(sub, "forget", {"label": "chiselling"}, 1)
        assert gone == {"ok": True, "label": "chiselling", "forgotten": n}
        _state_where(sub, lambda s: s["label"] == "carving ice", "the model's label again")
        code, _ = d2.stop()
        assert code == 0, d2.log()


def _states(sub) -> list[dict]:
    return [m.json() for m in sub.on(f"{BASE}/state") if m.payload]


def test_teach_while_the_camera_is_stalled_is_an_error_reply(
    videos, config_for, broker, daemons, tmp_path
):
    server = MjpegServer(videos / "carving_ice.mp4", fps=10)
    server.start()
    try:
        cfg = config_for(
            tmp_path, broker.port, source={"uri": server.url, "loop": False, "frame_timeout_s": 2}
        )
        d = daemons(cfg)
        with broker.subscriber(f"{BASE}/#") as sub:
            d.start()
            _wait_label(sub, "carving ice")
            server.stall()
            sub.wait_for(events("camera", state="stalled"), 30, "a camera stalled event")
            reply = ask(sub, "teach", {"label": "carving", "seconds": 2}, 1)
            assert reply["ok"] is False and "stalled" in reply["error"]
            assert d.alive()
            assert ask(sub, "classes", {}, 1)["classes"] == []
            code, _ = d.stop()
            assert code == 0, d.log()
    finally:
        server.stop()


def test_still_mode_photo_now_and_relabel_a_past_photo(
    mobilenet, cv_fruits, images, config_for, mobilenet_labels, broker, daemons, tmp_path
):
    cfg = config_for(
        tmp_path,
        broker.port,
        mode="still",
        source={"kind": "command", "command": f"cp {images / 'fruit_apple.jpg'} {{path}}"},
        still_models=[{"path": str(mobilenet), "labels": str(mobilenet_labels)}],
    )
    d = daemons(cfg)
    with broker.subscriber(f"{BASE}/#") as sub:
        d.start()
        sub.wait_payload(f"{BASE}/availability", "online", timeout=60)
        assert ask(sub, "teach", {"label": "apple", "seconds": 3}, 1)["ok"] is False
        reply = ask(sub, "teach", {"label": "apple"}, 2)
        assert reply["ok"] is True and reply["examples"] == 1 and reply["total"] == 1, reply
        photo = reply["result"]
        relabelled = ask(sub, "teach", {"label": "fruit", "result": photo}, 3)
        assert relabelled["ok"] is True and relabelled["result"] == photo
        missing = ask(sub, "teach", {"label": "fruit", "result": 9999}, 4)
        assert missing["ok"] is False and "9999" in missing["error"]
        # Later photos carry the taught classes' answer beside the model's own.
        assert ask(sub, "classify", {}, 1)["ok"] is True
        results = sub.wait_count(f"{BASE}/results", 2, timeout=60)
        last = results[-1].json()["results"][0]
        checked = ResultPayload.model_validate(results[-1].json()).results[0].taught
        assert checked is not None and checked.label == last["taught"]["label"]
        assert last["taught"]["label"] in {"apple", "fruit"}
        assert {s["label"] for s in last["taught"]["top"]} == {"apple", "fruit"}
        classes = ask(sub, "classes", {}, 1)["classes"]
        assert classes == [{"label": "apple", "examples": 1}, {"label": "fruit", "examples": 1}]
        code, _ = d.stop()
        assert code == 0, d.log()


def test_a_corrupt_store_turns_teaching_off_not_the_sensor(config_for, broker, daemons, tmp_path):
    cfg = config_for(tmp_path, broker.port)
    store = tmp_path / "state" / "teach.sqlite"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"\x00not a store" * 500)
    d = daemons(cfg)
    with broker.subscriber(f"{BASE}/#") as sub:
        d.start()
        state = _wait_label(sub, "carving ice")
        assert "damaged or not a store" in state["taught"]["error"]
        reply = ask(sub, "teach", {"label": "carving", "seconds": 2}, 1)
        assert reply["ok"] is False and str(store) in reply["error"]
        assert d.alive()
        code, _ = d.stop()
        assert code == 0, d.log()
    assert store.read_bytes() == b"\x00not a store" * 500
