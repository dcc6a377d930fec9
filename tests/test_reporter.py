"""The reporter in-process: label and camera changes to events and state, and its listeners."""

from __future__ import annotations

import numpy as np
import pytest

from edge.app.pipeline import ModelInfo
from edge.app.reporter import Message, Reporter
from edge.classifiers.base import Prediction, top_k
from edge.config import SmootherConfig
from edge.frame import Frame
from edge.mqtt.payloads import EventPayload, PredictionPayload, StatePayload
from edge.smoothing import Smoother

LABELS = ["walking", "running", "sitting"]
MODEL = ModelInfo("toy", "ab" * 32)
CFG = SmootherConfig(tau_s=0.2, consecutive=2, min_dwell_s=0.2, exit_hold_s=0.5)


class Wire:
    """Records what a listener hears, numbering it per kind like the outbox numbers topics."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: str) -> list[dict]:
        return [m.payload for m in self.messages if m.kind == kind]

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.of("event") if e["type"] == kind]


def drive(reporter: Reporter, smoother: Smoother, label: str, start: float, steps: int) -> float:
    """``steps`` model steps, 0.1 s apart, confident of ``label``; returns the next time."""
    probs = np.full(len(LABELS), 0.05, np.float32)
    probs[LABELS.index(label)] = 0.9
    t = start
    for i in range(steps):
        frame = Frame(np.zeros((4, 4, 3), np.uint8), t, i, 0, 1000.0 + t)
        pred = Prediction(probs, top_k(probs, LABELS, 3), MODEL.name or "", t, inference_ms=1.5)
        reporter.step(smoother.update(pred.probs, t), frame, pred)
        t += 0.1
    return t


@pytest.fixture
def wired() -> tuple[Reporter, Smoother, Wire]:
    clock = iter(float(n) for n in range(2000, 10**6))
    reporter = Reporter("video", MODEL, clock=lambda: next(clock))
    wire = Wire()
    reporter.subscribe(wire)
    return reporter, Smoother(LABELS, CFG), wire


def test_a_label_change_is_one_end_one_start_and_one_state(wired) -> None:
    reporter, smoother, wire = wired
    t = drive(reporter, smoother, "walking", 0.0, 10)
    assert reporter.ready
    assert [e["label"] for e in wire.events("start")] == ["walking"]
    states = wire.of("state")
    assert states[0]["label"] is None  # the first state says the sensor is up, no label yet
    assert states[-1]["label"] == "walking" and states[-1]["camera"] == "ok"
    start = wire.events("start")[0]
    assert states[-1]["since"] == start["since"] <= start["ts"]

    n_states = len(states)
    drive(reporter, smoother, "running", t, 10)
    (end,) = wire.events("end")
    assert end["label"] == "walking"
    assert [e["label"] for e in wire.events("start")] == ["walking", "running"]
    assert len(wire.of("state")) == n_states + 1  # one change, one state
    assert wire.of("state")[-1]["since"] > states[-1]["since"]
    # Every step is a prediction; each body fits the published schema once numbered.
    assert len(wire.of("prediction")) == 20
    for n, body in enumerate(wire.of("state"), 1):
        StatePayload.model_validate({**body, "seq": n})
    for n, body in enumerate(wire.of("event"), 1):
        EventPayload.model_validate({**body, "seq": n})
    pred = PredictionPayload.model_validate(wire.of("prediction")[-1])
    assert pred.raw[0].label == "running" and pred.label == "running"


def test_a_stalled_camera_ends_the_label_and_says_so_in_state(wired) -> None:
    reporter, smoother, wire = wired
    drive(reporter, smoother, "sitting", 0.0, 10)
    reporter.camera(False)
    assert wire.events("camera")[-1]["state"] == "stalled"
    (end,) = wire.events("end")
    assert end["label"] == "sitting" and end["reason"] == "camera stalled"
    last = wire.of("state")[-1]
    assert last["label"] is None and last["since"] is None and last["camera"] == "stalled"
    reporter.camera(True)
    assert wire.events("camera")[-1]["state"] == "ok"
    assert len(wire.events("end")) == 1  # frames again: nothing more to end


def test_heartbeat_repeats_state_only_when_due(wired) -> None:
    reporter, _, wire = wired
    reporter.heartbeat(reporter.clock(), 60)
    assert wire.of("state") == []  # nothing said before the sensor is ready
    reporter.mark_ready()
    first = reporter.last_state
    reporter.heartbeat(first + 59, 60)
    assert len(wire.of("state")) == 1
    reporter.heartbeat(first + 60, 60)
    assert len(wire.of("state")) == 2


def test_a_failing_listener_is_logged_and_the_others_still_hear(wired, caplog) -> None:
    reporter, _, wire = wired

    def broken(message: Message) -> None:
        raise RuntimeError("listener bug")

    unsubscribe = reporter.subscribe(broken)
    later = Wire()
    reporter.subscribe(later)
    reporter.event("config", ok=True)
    assert wire.events("config") and later.events("config")
    assert "listener failed" in caplog.text

    unsubscribe()
    unsubscribe()  # twice is harmless
    caplog.clear()
    reporter.event("config", ok=True)
    assert len(later.events("config")) == 2 and "listener failed" not in caplog.text
