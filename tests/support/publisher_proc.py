"""A Publisher in its own process, so a test can ``kill -9`` it like a crash or power cut.

    python -m tests.support.publisher_proc '<json>'

JSON keys: ``mqtt`` (MqttConfig fields), ``device_id``, ``outbox`` (path), ``events`` (how
many events to publish, labelled ``e<seq>``), ``then``: ``hold`` (wait to be killed),
``drain`` (wait until the outbox is empty, then hold) or ``stop`` (clean stop and exit).
Progress lines on stdout: ``queued <n>`` once every event is stored durably, ``connected``,
``drained``, ``stopped``. SIGTERM stops cleanly.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

from edge.config import MqttConfig
from edge.mqtt.publisher import Publisher


def say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    pub = Publisher(MqttConfig(**spec["mqtt"]), spec["device_id"], Path(spec["outbox"]))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    pub.start()
    for _ in range(int(spec.get("events", 0))):
        pub.publish_event({"type": "start", "label": "e", "score": 0.9})
    say(f"queued {pub.outbox_depth}")
    then = spec.get("then", "hold")
    if then in ("drain", "connected"):
        while not pub.connected and not done.is_set():
            time.sleep(0.01)
        say("connected")
    if then == "drain":
        while pub.outbox_depth and not done.is_set():
            time.sleep(0.01)
        say("drained")
    if then != "stop":
        done.wait()
    pub.stop()
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
