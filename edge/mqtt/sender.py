"""The outbox thread: sends stored messages in order and forgets them only once acknowledged.

At most ``window`` outbox messages are unacknowledged at a time. A row is deleted when the
broker acknowledged it (PUBACK for QoS 1, the socket write for QoS 0 stats). On every new
connection paho's own copies are dropped and sending starts again from the oldest row, so
delivery resumes in order after broker restarts, network loss and process restarts alike
(at-least-once: a message whose PUBACK was lost arrives twice, never out of order).

``acked`` is called from paho's ``on_publish``, which runs while paho holds its message
lock: it only queues the acknowledgement for this thread and never takes our lock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from edge.mqtt.outbox import Outbox

log = logging.getLogger(__name__)


class Sender:
    """Drives one outbox through whichever client is connected; ``rejected`` counts refusals."""

    def __init__(self, outbox: Outbox, name: str, before_send: Callable[[], None]) -> None:
        self._outbox = outbox
        self._before_send = before_send  # run in this thread each round (protocol fallback)
        self._lock = threading.Lock()  # guards _client, _inflight, _cursor, _gen, _window
        self._wake = threading.Event()
        self._acks: queue.SimpleQueue[tuple[int, int, Any]] = queue.SimpleQueue()
        self._client: mqtt.Client | None = None  # set while connected
        self._inflight: dict[int, tuple[int, str]] = {}  # mid -> (row id, topic)
        self._cursor = 0  # highest row id handed to paho on this connection
        self._window = 1
        self._gen = 0  # connection generation; acks from an older one are ignored
        self._stop = False
        self.rejected = 0  # messages the broker refused (e.g. by ACL), dropped
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def connected(self, client: mqtt.Client, window: int) -> None:
        """A new connection (paho's copies already dropped): resend from the oldest row."""
        with self._lock:
            self._inflight.clear()
            self._cursor = 0
            self._gen += 1
            self._window = window
            self._client = client
        self._wake.set()

    def disconnected(self) -> None:
        with self._lock:
            self._client = None
        self._wake.set()

    def acked(self, mid: int, reason: Any) -> None:
        self._acks.put((self._gen, mid, reason))
        self._wake.set()

    # ------------------------------------------------------------------ thread
    def _loop(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._drain_acks()
                if self._stop:
                    return
                self._before_send()
                self._send_window()
            except Exception:
                if self._stop:
                    return
                log.exception("mqtt: outbox sender error")
                time.sleep(0.5)

    def _drain_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                gen, mid, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                entry = self._inflight.pop(mid, None) if gen == self._gen else None
            if entry is None:
                continue  # not an outbox message, or from a connection since replaced
            row_id, topic = entry
            if reason.is_failure:
                self.rejected += 1
                log.error("mqtt: broker refused a message on %s: %s; dropping it", topic, reason)
            done.append(row_id)
        if done:
            self._outbox.delete(done)

    def _send_window(self) -> None:
        bad: list[int] = []
        with self._lock:
            client = self._client
            room = self._window - len(self._inflight)
            if client is None or room <= 0:
                return
            for row in self._outbox.fetch(self._cursor, room):
                self._cursor = row.id
                try:
                    info = client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                except ValueError as exc:
                    log.error("mqtt: cannot publish on %r: %s; dropping it", row.topic, exc)
                    bad.append(row.id)
                    continue
                self._inflight[info.mid] = (row.id, row.topic)
        if bad:
            self._outbox.delete(bad)
