"""Label and camera changes become ``events``, ``state`` and ``predictions``, in one place.

The reporter remembers what the sensor last said (label, since, camera), so every
message agrees with the one before it, and hands each message to the publisher (when
MQTT is on) and to every listener that subscribed: a live page, metrics, teaching hear
exactly what subscribers on the broker hear, also with MQTT off. Bodies are built by the
``edge.mqtt.payloads`` builders only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from edge.mqtt.payloads import event_payload, prediction_payload, state_payload

if TYPE_CHECKING:
    from edge.app.pipeline import Mode, ModelInfo
    from edge.classifiers.base import Prediction
    from edge.frame import Frame
    from edge.smoothing import Stable

log = logging.getLogger("edge.reporter")

Kind = Literal["state", "event", "prediction", "result", "stats"]


@dataclass(frozen=True, slots=True)
class Message:
    """One published message: its topic kind and its body (``seq`` is added by the outbox)."""

    kind: Kind
    payload: dict[str, Any]


Listener = Callable[[Message], None]


class Sink(Protocol):
    """Where messages go on the wire: ``edge.mqtt.publisher.Publisher``."""

    def publish_state(self, payload: dict[str, Any]) -> None: ...
    def publish_event(self, payload: dict[str, Any]) -> None: ...
    def publish_prediction(self, payload: dict[str, Any]) -> None: ...
    def publish_result(self, payload: dict[str, Any]) -> None: ...
    def publish_stats(self, payload: dict[str, Any]) -> None: ...
    def publish_snapshot(self, jpeg: bytes) -> None: ...


class Reporter:
    """What the sensor says, said once. Not thread-safe: call it from the daemon's loop.

    Listeners run in that loop too, so they must be quick (hand work to a thread of
    their own); one that raises is logged and kept, and never stops the sensor.
    """

    def __init__(
        self,
        mode: Mode,
        model: ModelInfo,
        sink: Sink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.mode: Mode = mode
        self.model = model
        self.clock = clock
        self.ready = False
        self.stable: Stable | None = None
        self.steps = 0  # model steps reported; "frame" is the source's own count
        self.since: float | None = None  # wall time the current label (or none) took over
        self.camera_ok = True
        self.last_state = 0.0
        self.taught: dict[str, Any] | None = None  # the taught classes, when teaching is on
        self._listeners: list[Listener] = []

    # ------------------------------------------------------------------ listeners
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every message from now on; returns the unsubscribe call."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, kind: Kind, payload: dict[str, Any]) -> None:
        sink = self.sink
        if sink is not None:
            publish: Callable[[dict[str, Any]], None] = {
                "state": sink.publish_state,
                "event": sink.publish_event,
                "prediction": sink.publish_prediction,
                "result": sink.publish_result,
                "stats": sink.publish_stats,
            }[kind]
            publish(payload)
        if self._listeners:
            message = Message(kind, payload)
            for listener in list(self._listeners):
                try:
                    listener(message)
                except Exception:
                    log.exception("a listener failed on a %s message", kind)

    # ------------------------------------------------------------------ what happened
    @property
    def label(self) -> str | None:
        return self.stable.label if self.stable is not None else None

    def set_model(self, mode: Mode, model: ModelInfo) -> None:
        self.mode, self.model = mode, model

    def mark_ready(self) -> None:
        """The first thing worth saying: the first frame, or a still pipeline started."""
        if not self.ready:
            self.ready = True
            self.state(self.clock())

    def step(self, stable: Stable, frame: Frame, pred: Prediction) -> None:
        """One model step: events and state on a label change, always a prediction."""
        self.stable = stable
        self.steps += 1
        now = self.clock()
        self.mark_ready()
        if stable.changed:
            log.info("label: %s (%.2f)", stable.label or "none", stable.score)
            since = None
            if stable.since is not None:  # the smoother's clock is the frames'; state uses wall
                since = frame.wall_time - (frame.timestamp - stable.since)
            if stable.previous:
                self.event("end", ts=now, label=stable.previous, frame_ts=frame.wall_time)
            if stable.label:
                self.event(
                    "start",
                    ts=now,
                    label=stable.label,
                    score=stable.score,
                    since=since,
                    frame_ts=frame.wall_time,
                )
            self.state(now, since)
        body = prediction_payload(
            ts=now,
            frame_ts=frame.wall_time,
            frame=frame.seq,
            step=self.steps,
            raw=pred.top,
            smoothed=stable.top,
            label=stable.label,
            inference_ms=pred.inference_ms,
        )
        self._emit("prediction", body)

    def camera(self, ok: bool) -> None:
        """A stalled camera ends the current label: state must not go on claiming it."""
        now = self.clock()
        self.camera_ok = ok
        self.event("camera", ts=now, state="ok" if ok else "stalled")
        if ok:
            return
        if self.label:
            self.event("end", ts=now, label=self.label, reason="camera stalled")
        self.stable = None
        self.since = None
        self.state(now)

    def end_label(self, reason: str) -> None:
        """A new model starts afresh: the label held ends and "none" starts now, as on a reset."""
        now = self.clock()
        if self.label:
            self.event("end", ts=now, label=self.label, reason=reason)
        self.stable = None
        self.state(now, since=now)

    def state(self, now: float, since: float | None = None) -> None:
        self.last_state = now
        stable = self.stable
        payload = state_payload(
            label=stable.label if stable is not None else None,
            score=stable.score if stable is not None else 0.0,
            since=since if since is not None else self.since,
            top=stable.top if stable is not None else (),
            model=self.model._asdict(),
            mode=self.mode,
            ts=now,
        )
        payload["camera"] = "ok" if self.camera_ok else "stalled"
        if self.taught is not None:
            payload["taught"] = self.taught
        if since is not None:
            self.since = since
        self._emit("state", payload)

    def heartbeat(self, now: float, every_s: float) -> None:
        if self.ready and now - self.last_state >= every_s:
            self.state(now)

    def event(self, kind: str, *, ts: float | None = None, **fields: Any) -> None:
        self._emit("event", event_payload(kind, ts=self.clock() if ts is None else ts, **fields))

    def result(self, payload: dict[str, Any]) -> None:
        """A still result, built by ``edge.still.StillStation``."""
        self._emit("result", payload)

    def stats(self, payload: dict[str, Any]) -> None:
        self._emit("stats", payload)

    def snapshot(self, jpeg: bytes) -> None:
        """A snapshot was taken: the retained ``snapshot`` topic (Home Assistant's image)."""
        if self.sink is not None:
            self.sink.publish_snapshot(jpeg)
