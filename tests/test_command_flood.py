"""A command flood must not starve events: `edge run` under 2,000 commands/s on a real broker.

The flood comes from ``mosquitto_pub -l`` (one QoS 1 command per line, paced here), so the
test's own Python does not compete with the daemon for a core. An event produced in the
middle of the flood (a SIGHUP reload's ``config`` event) must reach a subscriber before the
flood is over: ordered against a marker published once the broker has taken the flood's
last command, not against a clock.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.assets import missing
from tests.support.broker import HOST, broker_factory_fixture, broker_fixture, wait_until  # noqa: F401
from tests.support.daemon import DaemonProcess

BASE = "edge/dev1"
RATE = 2000  # commands per second
COMMANDS = 10_000  # five seconds of flood
MARKER = "flood/end"
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"


@pytest.fixture(autouse=True)
def _assets(a0, k600_labels, videos) -> None:
    if not Path(MOSQUITTO_PUB).exists():
        missing(
            MOSQUITTO_PUB, "install the Mosquitto clients (`apt-get install mosquitto-clients`)"
        )


def _flood(port: int, written: list[int]) -> subprocess.Popen:
    """``mosquitto_pub -l`` fed ``COMMANDS`` lines at ``RATE``/s; ``written[0]`` counts them."""
    args = ["-h", HOST, "-p", str(port), "-q", "1", "-i", "flooder", "-t", f"{BASE}/cmd/reset"]
    proc = subprocess.Popen(
        [MOSQUITTO_PUB, *args, "-l"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    line = b'{"id": "flood", "bogus": 1}\n'  # each one would be rejected with an error reply

    def feed() -> None:
        assert proc.stdin is not None
        t0 = time.monotonic()
        while written[0] < COMMANDS:
            due = min(COMMANDS, int((time.monotonic() - t0) * RATE) + 1)
            if due > written[0]:
                proc.stdin.write(line * (due - written[0]))
                proc.stdin.flush()
                written[0] = due
            time.sleep(0.01)
        proc.stdin.close()

    threading.Thread(target=feed, daemon=True).start()
    return proc


def test_events_keep_flowing_during_a_command_flood(
    a0, k600_labels, videos, broker, tmp_path: Path
) -> None:
    config = {
        "device_id": "dev1",
        "state_dir": str(tmp_path / "state"),
        "models_dir": str(tmp_path / "models"),
        "source": {"kind": "opencv", "uri": str(videos / "carving_ice.mp4"), "loop": True},
        "model": {"path": str(a0), "labels": str(k600_labels), "fps": 2},
        "mqtt": {
            "host": HOST,
            "port": broker.port,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "stats_interval_s": 1,
            "predictions_max_hz": 0,
        },
    }
    daemon = DaemonProcess(tmp_path / "d", config)
    topics = (f"{BASE}/events", f"{BASE}/stats", f"{BASE}/availability", MARKER)
    with broker.subscriber(*topics, f"{BASE}/cmd/+/result") as sub:
        daemon.start()
        try:
            sub.wait_payload(f"{BASE}/availability", "online", timeout=60)
            sub.wait_count(f"{BASE}/stats", 1, timeout=60)
            written = [0]
            flooder = _flood(broker.port, written)
            wait_until(lambda: written[0] >= COMMANDS // 3, 60, "a third of the flood sent")
            daemon.signal(signal.SIGHUP)  # the reload's event is produced mid-flood
            assert flooder.wait(120) == 0
            sub.publish(MARKER, "end")  # after the broker acknowledged every command
            sub.wait_payload(MARKER, "end", timeout=60)

            order = [
                "config"
                if m.topic == f"{BASE}/events" and m.json().get("type") == "config"
                else m.topic
                for m in sub.messages
            ]
            assert "config" in order[: order.index(MARKER)], "the event waited for the flood"

            # The flood reached the daemon and was counted, not answered.
            stats = sub.wait_for(
                lambda ms: [
                    m.json()
                    for m in ms
                    if m.topic == f"{BASE}/stats" and m.json()["commands_dropped"] >= COMMANDS // 2
                ],
                60,
                "stats counting the dropped commands",
            )
            assert stats[-1]["commands_dropped"] <= COMMANDS
            answered = len(sub.on(f"{BASE}/cmd/reset/result"))
            assert 0 < answered < COMMANDS // 50

            # Once the flood is over, a command is answered again (asked until a token is back).
            def answered_after() -> bool:
                if any(b'"after"' in m.payload for m in sub.on(f"{BASE}/cmd/reset/result")):
                    return True
                sub.publish(f"{BASE}/cmd/reset", '{"id": "after"}')
                return False

            wait_until(answered_after, 60, "an answer after the flood")
            assert daemon.alive()
        finally:
            daemon.close()
