"""A Publisher in its own process, so a test can ``kill -9`` it like a crash or power cut.

    python -m tests.support.publisher_proc '<json>'

JSON keys: ``mqtt`` (MqttConfig fields), ``device_id``, ``outbox`` (path), ``events`` (how
many events to publish, labelled ``e<seq>``), ``then``: ``hold`` (wait to be killed),
``drain`` (wait until the outbox is empty, then hold) or ``stop`` (clean stop and exit).
Progress lines on stdout: ``queued <n>`` once every event is stored durably, ``connected``,
``drained``, ``stopped``. SIGTERM stops cleanly. Tests drive it through ``Child``.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge.config import MqttConfig
from edge.mqtt.publisher import Publisher

ROOT = Path(__file__).resolve().parents[2]


class Child:
    """The publisher process seen from a test: read its progress lines with a timeout."""

    def __init__(self, spec: dict) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.publisher_proc", json.dumps(spec)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self._lines.put(line.strip())
        self._lines.put(None)

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """The next progress line, which must start with ``prefix``."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {prefix!r} line from the publisher process") from None
        assert line is not None, f"publisher process ended: {''.join(self.stderr)[-2000:]}"
        assert line.startswith(prefix), (line, prefix)
        return line

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
