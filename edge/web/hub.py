"""What the page shows, kept where the daemon's threads can hand it over cheaply.

The daemon's reporter pushes each message it builds for MQTT (state, event, prediction, stats,
result) into the hub as well, so the page and MQTT see the same payloads. The hub keeps the
latest of each and the recent events, and fans each message out to the page's live streams;
with no page open a push is a dict assignment and nothing more.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

Listener = Callable[[str, dict[str, Any]], None]
KINDS = ("state", "event", "prediction", "stats", "result", "classes")


class Hub:
    def __init__(self, events_kept: int = 500, results_kept: int = 20) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, Any]] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=events_kept)
        self._results: deque[dict[str, Any]] = deque(maxlen=results_kept)
        self._next_id = 1
        self._listeners: list[Listener] = []

    def push(self, kind: str, payload: dict[str, Any]) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        with self._lock:
            if kind == "event":
                payload = {**payload, "id": self._next_id}
                self._next_id += 1
                self._events.append(payload)
            elif kind == "result":
                self._results.append(payload)
            self._latest[kind] = payload
            listeners = list(self._listeners)
        for listener in listeners:
            listener(kind, payload)

    def latest(self, kind: str) -> dict[str, Any] | None:
        with self._lock:
            return self._latest.get(kind)

    def events_since(self, since: int = 0) -> list[dict[str, Any]]:
        """Events with an ``id`` above ``since`` (ids count from 1 since the daemon started)."""
        with self._lock:
            return [e for e in self._events if e["id"] > since]

    def results(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._results)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    @property
    def watchers(self) -> int:
        with self._lock:
            return len(self._listeners)
