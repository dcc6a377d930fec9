"""The live page, its API and the metrics against a real ``edge run`` on a sample clip.

A real daemon process, a real Mosquitto, headless Chromium: what a technician with a phone
and a Prometheus server see, and that the page and MQTT say the same thing.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.support.assets import ROOT
from tests.support.broker import free_port, wait_until
from tests.support.browser import chromium
from tests.support.daemon import DaemonProcess

pytest.importorskip("aiohttp", reason="the web extra: scripts/setup.sh --test installs it")

BASE = "edge/dev1"
SCREENSHOTS = ROOT / "tests" / "screenshots"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with _OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except urllib.error.URLError:
        return 0, b""


def _post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with _OPENER.open(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def live(broker, config_for, tmp_path):
    port = free_port()
    cfg = config_for(tmp_path, broker.port, web={"enabled": True, "port": port})
    daemon = DaemonProcess(tmp_path / "d", cfg).start()
    try:
        wait_until(lambda: _get(port, "/api/state")[0] == 200, 60, what=f"the page on {port}")
        yield daemon, port
    finally:
        daemon.close()


def _last_label(messages) -> str | None:
    states = [m.json() for m in messages if m.topic == f"{BASE}/state" and m.payload]
    return states[-1]["label"] if states else None


def _state_label(port: int) -> str | None:
    status, body = _get(port, "/api/state")
    return json.loads(body).get("label") if status == 200 and body else None


def test_api_agrees_with_mqtt_and_commands_go_through_the_same_table(broker, live) -> None:
    daemon, port = live
    with broker.subscriber(f"{BASE}/#") as sub:
        wait_until(lambda: _state_label(port) == "carving ice", 60, what="label on the API")
        # MQTT's latest state and the API's agree (both come from the reporter)
        sub.wait_for(
            lambda ms: _last_label(ms) == _state_label(port) == "carving ice",
            what="the same label on MQTT and the API",
        )

        status, body = _get(port, "/metrics")
        text = body.decode()
        assert status == 200, text
        for name in (
            "edge_camera_frames_per_second",
            "edge_model_steps_per_second",
            "edge_skipped_frames_total",
            "edge_dropped_frames_total",
            "edge_inference_seconds_bucket",
            'edge_label_changes_total{label="carving ice"}',
            'edge_label{label="carving ice"} 1.0',
            "edge_outbox_messages",
            "edge_mqtt_connected 1.0",
            "edge_mqtt_reconnects_total",
            "edge_resident_memory_bytes",
            "edge_cpu_ratio",
            "edge_uptime_seconds",
            "process_cpu_seconds_total",
        ):
            assert name in text, name

        stats = json.loads(_get(port, "/api/stats")[1])
        assert stats["model_fps"] > 0 and stats["mqtt_connected"] is True

        events = json.loads(_get(port, "/api/events")[1])
        assert any(e["type"] == "start" and e["label"] == "carving ice" for e in events)

        status, reply = _post(port, "/api/cmd/reset", b'{"id": "w1"}')
        assert (status, reply["ok"], reply["id"]) == (200, True, "w1")
        sub.wait_for(
            lambda ms: [
                m for m in ms if m.topic == f"{BASE}/events" and m.json().get("type") == "end"
            ],
            what="the label ended by the page's reset",
        )
        # A refused command reads the same as over MQTT.
        status, web_reply = _post(port, "/api/cmd/reset", b'{"bogus": 1}')
        sub.publish(f"{BASE}/cmd/reset", '{"bogus": 1}')
        mqtt_reply = sub.wait_count(f"{BASE}/cmd/reset/result", 1)[0].json()
        assert status == 400 and web_reply["error"] == mqtt_reply["error"]
        status, jpeg = _get(port, "/api/snapshot.jpg")
        assert status == 200 and jpeg[:2] == b"\xff\xd8"
    assert daemon.alive()


def test_the_page_in_a_browser_shows_the_live_label(broker, live, tmp_path) -> None:
    daemon, port = live
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wait_until(lambda: _state_label(port) == "carving ice", 60, what="the daemon's first label")
    with broker.subscriber(f"{BASE}/events") as sub, chromium(tmp_path / "profile") as driver:
        opened = time.monotonic()
        driver.get(f"http://127.0.0.1:{port}/")
        label = driver.find_element("id", "label")
        wait_until(lambda: label.text == "carving ice", 60, what="the label on the page")
        shown_after = time.monotonic() - opened
        # from the start of navigation to the first state drawn, as the browser measured it
        first_ms = int(driver.execute_script("return document.body.dataset.firstStateMs"))
        wait_until(lambda: driver.find_element("id", "live").text == "live", 20, what="SSE")

        def bars() -> str:  # read in one script: the page replaces the bars as they move
            return driver.execute_script(
                "return [...document.querySelectorAll('#bars .bar')]"
                ".map(b => b.textContent + b.querySelector('.fill').style.width).join('|')"
            )

        first = bars()
        wait_until(lambda: bars() != first, 30, what="the bars to move")
        assert driver.find_element("id", "timeline").find_elements("css selector", "div")

        driver.find_element("css selector", "button[data-cmd=reset]").click()
        reply = driver.find_element("id", "reply")
        wait_until(lambda: reply.text == "reset: ok", 20, what="the reset reply on the page")
        sub.wait_for(
            lambda ms: [m for m in ms if m.json().get("type") == "end"],
            what="the page's reset reaching the daemon",
        )
        driver.find_element("id", "snap-btn").click()
        wait_until(
            lambda: (driver.find_element("id", "snapshot").get_attribute("src") or "").startswith(
                "blob:"
            ),
            20,
            what="the snapshot on the page",
        )
        wait_until(lambda: label.text == "carving ice", 60, what="the label back after reset")

        # teach two seconds of the live camera as a class of its own, from the page
        driver.find_element("id", "teach-label").send_keys("ice work")
        seconds = driver.find_element("id", "teach-seconds")
        seconds.clear()
        seconds.send_keys("2")
        driver.find_element("id", "teach-btn").click()
        wait_until(lambda: reply.text.startswith("teach: "), 20, what="the teach reply")
        assert reply.text == "teach: ok"
        taught = sub.wait_for(
            lambda ms: [m.json() for m in ms if m.json().get("type") == "taught"],
            30,
            what="the taught event",
        )
        assert taught[-1]["label"] == "ice work" and taught[-1]["examples"] > 0

        def classes() -> str:
            return driver.find_element("id", "classes").text

        wait_until(lambda: "ice work (" in classes(), 20, what="the taught class on the page")
        metrics = _get(port, "/metrics")[1].decode()
        assert 'edge_taught_examples{label="ice work"}' in metrics
        thumbs = driver.find_elements("css selector", "#classes img")
        assert thumbs and thumbs[0].get_attribute("src").startswith("data:image/jpeg;base64,")
        shot = SCREENSHOTS / "live-page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        driver.find_element("css selector", "#classes button").click()  # forget
        wait_until(lambda: "ice work" not in classes(), 20, what="the class forgotten")
    print(
        f"\nlive label drawn {first_ms} ms after navigation started"
        f" ({shown_after:.2f} s as polled through the driver); screenshot {shot}"
    )
    assert daemon.alive()


def test_metrics_textfile_without_the_web_server(broker, config_for, tmp_path) -> None:
    prom = tmp_path / "textfile" / "edge.prom"
    prom.parent.mkdir()
    cfg = config_for(tmp_path, broker.port, metrics={"textfile": str(prom), "interval_s": 1})
    daemon = DaemonProcess(tmp_path / "d", cfg).start()
    try:
        wait_until(
            lambda: prom.exists() and 'edge_label{label="carving ice"}' in prom.read_text(),
            60,
            what="the label in the metrics textfile",
        )
        text = prom.read_text()
        assert "edge_model_steps_per_second" in text and "edge_inference_seconds_count" in text
        assert not list(prom.parent.glob("*.tmp*"))  # written atomically
    finally:
        daemon.close()
