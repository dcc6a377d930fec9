"""Message schemas: what each topic carries, and validation of the commands a device accepts.

Outgoing payloads are plain dicts built by the daemon (or the builders here) and serialised
once; the pydantic models describe them for subscribers and tests and allow extra keys so a
newer daemon can add fields without breaking older dashboards. Incoming commands are checked
strictly (size, JSON, object, schema) because anyone with write access to the broker can
send them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.errors import CommandError
from edge.mqtt.topics import COMMANDS

# --------------------------------------------------------------------------- outgoing


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ScoredOut(BaseModel):
    label: str
    score: float


class ModelRef(BaseModel):
    name: str | None
    sha256: str | None = None


class StatePayload(_Out):
    """``state`` (retained, QoS 1): the current smoothed label; sent on change and as heartbeat."""

    label: str | None
    score: float
    since: float | None
    top: list[ScoredOut]
    model: ModelRef
    mode: Literal["video", "still"]
    ts: float
    seq: int = Field(ge=1)


class EventPayload(_Out):
    """``events`` (QoS 1): ``seq`` grows by one per message, so a gap means a lost message."""

    type: str
    ts: float
    seq: int = Field(ge=1)
    label: str | None = None
    score: float | None = None


class PredictionPayload(_Out):
    """``predictions`` (QoS 0, rate-limited): raw and smoothed top-k of one model step."""

    ts: float
    frame: int  # the source frame's index (what "frame" means everywhere in edge)
    step: int  # the model step's number since the model was loaded
    raw: list[ScoredOut]
    smoothed: list[ScoredOut]
    label: str | None = None


class StillImage(BaseModel):
    """The photo or file a still result is about."""

    path: str | None  # None when the device keeps no images (``still.keep_images: none``)
    sha256: str
    width: int
    height: int
    source: str  # schedule, command, watch, file


class TaughtAnswer(BaseModel):
    """The classes taught to a still model, on the same image (``edge.teach``)."""

    label: str | None  # the recognised taught class, None below the open-set threshold
    top: list[ScoredOut]


class StillModelResult(BaseModel):
    """One still model's answer on the image."""

    model: ModelRef
    top: list[ScoredOut]
    label: str | None  # the model's decision: top-1 above its threshold, else None
    threshold: float | None = None
    activation: str | None = None
    inference_ms: float
    taught: TaughtAnswer | None = None  # the first model's, once it has taught classes


class ResultPayload(_Out):
    """``results`` (QoS 1, durable): one image, every still model's answer on it."""

    ts: float
    seq: int = Field(ge=1)
    time: str  # ``ts`` as ISO 8601 UTC
    history_id: int  # the row in the device's history database
    image: StillImage
    results: list[StillModelResult] = Field(min_length=1)


class InferenceMs(BaseModel):
    p50: float | None
    p95: float | None


class StatsPayload(_Out):
    """``stats`` (QoS 0, every ``stats_interval_s``); dropped first when the outbox is full."""

    ts: float
    uptime_s: float
    camera_fps: float | None
    model_fps: float | None
    inference_ms: InferenceMs
    dropped_frames: int
    reconnects: int
    outbox_depth: int
    outbox_error: str | None = None  # why messages cannot be stored now (a full disk), else null
    cpu_percent: float
    rss_mb: float  # VmRSS: includes shared libraries' file pages
    rss_anon_mb: float | None = None  # the process's own pages: the figure to watch
    pss_mb: float | None = None
    cgroup_mb: float | None = None  # the unit's cgroup, when it has one of its own
    mqtt_reconnects: int
    mqtt_protocol: Literal["5", "3.1.1"]
    commands_dropped: int  # over the command rate limit, unanswered


class ReplyPayload(_Out):
    """``cmd/<name>/result`` (QoS 1): ``ok`` plus either the result fields or ``error``."""

    ok: bool
    id: str | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _error_when_failed(self) -> ReplyPayload:
        if not self.ok and not self.error:
            raise ValueError("a failed reply carries 'error'")
        return self


class _ScoredLike(Protocol):
    """``edge.classifiers.base.Scored``, duck-typed: the mqtt room does not import classifiers."""

    @property
    def label(self) -> str: ...
    @property
    def score(self) -> float: ...


Scores = Iterable["_ScoredLike | Mapping[str, Any]"]


def _scored(items: Scores, digits: int = 4) -> list[dict[str, Any]]:
    out = []
    for s in items:
        if isinstance(s, Mapping):
            out.append({"label": str(s["label"]), "score": round(float(s["score"]), digits)})
        else:
            out.append({"label": str(s.label), "score": round(float(s.score), digits)})
    return out


def state_payload(
    *,
    label: str | None,
    score: float,
    since: float | None,
    top: Scores,
    model: Mapping[str, Any],
    mode: str,
    ts: float,
) -> dict[str, Any]:
    """A ``state`` body without ``seq`` (the publisher numbers it)."""
    return {
        "label": label,
        "score": round(float(score), 4),
        "since": since,
        "top": _scored(top),
        "model": {"name": model.get("name"), "sha256": model.get("sha256")},
        "mode": mode,
        "ts": ts,
    }


def event_payload(
    kind: str, *, ts: float, label: str | None = None, score: float | None = None, **extra: Any
) -> dict[str, Any]:
    """An ``events`` body without ``seq``: ``kind`` is ``start``, ``end`` or another event type."""
    body: dict[str, Any] = {"type": kind, "ts": ts}
    if label is not None:
        body["label"] = label
    if score is not None:
        body["score"] = round(float(score), 4)
    body.update(extra)
    return body


def prediction_payload(
    *,
    ts: float,
    frame_ts: float,
    frame: int,
    step: int,
    raw: Scores,
    smoothed: Scores,
    label: str | None,
    inference_ms: float,
) -> dict[str, Any]:
    """A ``predictions`` body: the raw and the smoothed top-k of one model step."""
    return {
        "ts": ts,
        "frame_ts": frame_ts,
        "frame": frame,
        "step": step,
        "raw": _scored(raw, 6),
        "smoothed": _scored(smoothed, 6),
        "label": label,
        "inference_ms": round(inference_ms, 3),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def stats_payload(
    *,
    ts: float,
    uptime_s: float,
    mode: str,
    camera_fps: float | None,
    model_fps: float,
    inference_p50_ms: float | None,
    inference_p95_ms: float | None,
    dropped_frames: int,
    skipped_frames: int,
    reconnects: int,
    stalls: int,
    outbox_depth: int,
    outbox_dropped: int,
    mqtt_connected: bool,
    cpu_percent: float,
    rss_mb: float,
    rss_anon_mb: float | None = None,
    pss_mb: float | None = None,
    cgroup_mb: float | None = None,
    outbox_error: str | None = None,
) -> dict[str, Any]:
    """A ``stats`` body (the publisher adds ``mqtt_reconnects``)."""
    return {
        "ts": ts,
        "uptime_s": round(uptime_s, 1),
        "mode": mode,
        "camera_fps": _round(camera_fps, 2),
        "model_fps": round(model_fps, 2),
        "inference_ms": {"p50": _round(inference_p50_ms, 2), "p95": _round(inference_p95_ms, 2)},
        "dropped_frames": dropped_frames,
        "skipped_frames": skipped_frames,
        "reconnects": reconnects,
        "stalls": stalls,
        "outbox_depth": outbox_depth,
        "outbox_dropped": outbox_dropped,
        "outbox_error": outbox_error,
        "mqtt_connected": mqtt_connected,
        "cpu_percent": round(cpu_percent, 1),
        "rss_mb": round(rss_mb, 1),
        "rss_anon_mb": _round(rss_anon_mb, 1),
        "pss_mb": _round(pss_mb, 1),
        "cgroup_mb": _round(cgroup_mb, 1),
    }


def reply_payload(
    ok: bool, *, id: str | None = None, error: str | None = None, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": ok, **fields}
    if error is not None:
        body["error"] = error
    if id is not None:
        body["id"] = id
    return body


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON; NaN/Infinity are refused because they are not JSON and break subscribers."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command for the daemon's main loop. ``id`` is echoed in the reply."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


class CommandRejected(CommandError):
    """A command that failed validation; carries the request id (if any) for the error reply."""

    def __init__(self, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.id = id


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class CommandArgs(BaseModel):
    """The base of every command's arguments: unknown keys refused, an optional ``id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(None, min_length=1, max_length=128)


class ResetArgs(CommandArgs):
    """Clear the stream model's state and the smoother."""


class SnapshotArgs(CommandArgs):
    """Save and return the latest camera frame."""


class ClassifyArgs(CommandArgs):
    """Still mode: take a photo now and classify it."""


class ModelArgs(CommandArgs):
    """Swap the model: ``name`` (catalogue) or ``path``, optionally pinned by ``sha256``;
    or ``clear``: back to the config file's own model, forgetting a kept swap."""

    name: str | None = Field(None, min_length=1, max_length=256)
    path: str | None = Field(None, min_length=1, max_length=4096)
    sha256: str | None = None
    mode: Literal["video", "still"] | None = None
    clear: bool | None = None

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256.fullmatch(v):
            raise ValueError("must be 64 hexadecimal digits")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _one_of(self) -> ModelArgs:
        if self.clear:
            if self.name or self.path or self.sha256 or self.mode:
                raise ValueError("'clear' goes alone: it returns to the config file's model")
            return self
        if bool(self.name) == bool(self.path):
            raise ValueError("give exactly one of 'name' or 'path' (or 'clear': true)")
        return self


COMMAND_SCHEMAS: dict[str, type[CommandArgs]] = {
    "reset": ResetArgs,
    "snapshot": SnapshotArgs,
    "classify": ClassifyArgs,
    "model": ModelArgs,
}
assert set(COMMAND_SCHEMAS) == set(COMMANDS)


def _raw_id(obj: object) -> str | None:
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) and 0 < len(value) <= 128:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _schema_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_command(
    name: str,
    payload: bytes,
    max_bytes: int,
    schemas: Mapping[str, type[CommandArgs]] = COMMAND_SCHEMAS,
) -> Command:
    """Validate one command message; raise CommandRejected with a one-line reason otherwise.

    ``schemas`` are the commands a device knows (the daemon's table passes its own). An
    empty payload means "no arguments". An integer ``id`` is accepted and echoed as text.
    """
    if len(payload) > max_bytes:
        raise CommandRejected(f"payload too large: {len(payload)} bytes > {max_bytes}")
    schema = schemas.get(name)
    obj: object
    if payload.strip():
        try:
            obj = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CommandRejected(f"invalid JSON: {exc}") from None
        except RecursionError:
            raise CommandRejected("invalid JSON: nested too deeply") from None
    else:
        obj = {}
    cmd_id = _raw_id(obj)
    if schema is None:
        known = ", ".join(schemas)
        raise CommandRejected(f"unknown command {name!r} (known: {known})", cmd_id)
    if not isinstance(obj, dict):
        raise CommandRejected(f"payload must be a JSON object, not {type(obj).__name__}", cmd_id)
    if cmd_id is not None:
        obj = {**obj, "id": cmd_id}
    try:
        args = schema.model_validate(obj)
    except ValidationError as exc:
        raise CommandRejected(f"{name}: {_schema_message(exc)}", cmd_id) from None
    return Command(name, args.model_dump(exclude={"id"}, exclude_none=True), args.id)
