"""Home Assistant MQTT discovery: the whole device in one retained device-based config message.

Device-based discovery (Home Assistant 2024.11 and later) announces every component of a device
on ``<discovery_prefix>/device/<device_id>/config`` with shared ``dev``, ``o`` (origin) and
``availability`` and a ``cmps`` map, so the device appears whole and at once. A component the
current mode does not have is sent as an entry with only ``p``, which removes it; an empty
retained payload on the topic would remove the device.

Earlier releases announced one config per entity on ``<prefix>/sensor/<device_id>/<id>/config``.
Those topics are cleared (empty retained payloads) before the device config is sent, so Home
Assistant does not show each entity twice and the ``unique_id`` values can carry over.

Availability: Home Assistant compares the (templated) availability payload with
``payload_available`` and ``payload_not_available`` and ignores anything else, so ``stopped``
(clean exit) would leave the entities "available". The template maps every payload other than
``online`` to ``offline``, so both the Last Will and a clean stop mark the device unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from edge import __version__
from edge.mqtt.topics import AVAILABLE, OFFLINE, Topics

Mode = Literal["video", "still"]

LEGACY_SENSORS = ("activity", "confidence", "model", "last_result")
"""Object ids of the per-entity configs earlier releases published (all ``sensor``)."""

_LABEL = "{{ value_json.label if value_json.label else 'none' }}"
_STATE_ATTRS = (
    "{{ {'score': value_json.score, 'top': value_json.top, 'since': value_json.since,"
    " 'model': value_json.model.name, 'mode': value_json.mode} | tojson }}"
)
# Only label start/end become Home Assistant events; an empty rendering is ignored there.
_LABEL_EVENT = (
    "{% if value_json.type in ['start', 'end'] %}"
    "{{ {'event_type': value_json.type, 'label': value_json.label,"
    " 'score': value_json.score} | tojson }}{% endif %}"
)


def device_topic(topics: Topics) -> str:
    return f"{topics.discovery_prefix}/device/{topics.device_id}/config"


def legacy_topics(topics: Topics) -> list[str]:
    return [topics.discovery("sensor", object_id) for object_id in LEGACY_SENSORS]


def _component(topics: Topics, platform: str, key: str, name: str, **opts: Any) -> dict[str, Any]:
    unique_id = f"edge_{topics.device_id}_{key}"
    return {
        "p": platform,
        "name": name,
        "unique_id": unique_id,
        "default_entity_id": f"{platform}.{unique_id}",
        **opts,
    }


def _button(topics: Topics, key: str, name: str, command: str, icon: str) -> dict[str, Any]:
    return _component(
        topics,
        "button",
        key,
        name,
        command_topic=topics.command(command),
        payload_press="{}",
        icon=icon,
    )


def components(topics: Topics, mode: Mode, models: Sequence[str] = ()) -> dict[str, dict]:
    """Every component key edge knows, mapped to its config or to a removal entry (only ``p``)."""
    t = topics
    present: dict[str, dict[str, Any]] = {
        "activity": _component(
            t,
            "sensor",
            "activity",
            "Activity",
            state_topic=t.state,
            value_template=_LABEL,
            json_attributes_topic=t.state,
            json_attributes_template=_STATE_ATTRS,
            icon="mdi:motion-sensor",
        ),
        "confidence": _component(
            t,
            "sensor",
            "confidence",
            "Confidence",
            state_topic=t.state,
            value_template="{{ (value_json.score * 100) | round(1) }}",
            unit_of_measurement="%",
            state_class="measurement",
            icon="mdi:percent",
        ),
        "label_event": _component(
            t,
            "event",
            "label_event",
            "Label",
            state_topic=t.events,
            value_template=_LABEL_EVENT,
            event_types=["start", "end"],
            icon="mdi:label-outline",
        ),
        "snapshot": _component(
            t, "image", "snapshot", "Snapshot", image_topic=t.snapshot, content_type="image/jpeg"
        ),
        "reset": _button(t, "reset", "Reset", "reset", "mdi:restart"),
        "take_snapshot": _button(t, "take_snapshot", "Take snapshot", "snapshot", "mdi:camera"),
        "camera": _component(
            t,
            "sensor",
            "camera",
            "Camera",
            state_topic=t.state,
            value_template="{{ value_json.camera | default('unknown') }}",
            entity_category="diagnostic",
            icon="mdi:cctv",
        ),
        "outbox_depth": _component(
            t,
            "sensor",
            "outbox_depth",
            "Outbox depth",
            state_topic=t.stats,
            value_template="{{ value_json.outbox_depth }}",
            unit_of_measurement="messages",
            state_class="measurement",
            entity_category="diagnostic",
            icon="mdi:tray-full",
        ),
        "model": _component(
            t,
            "sensor",
            "model",
            "Model",
            state_topic=t.state,
            value_template="{{ value_json.model.name }}",
            entity_category="diagnostic",
            icon="mdi:brain",
        ),
    }
    if models:
        present["model_select"] = _component(
            t,
            "select",
            "model_select",
            "Model choice",
            command_topic=t.command("model"),
            command_template='{"name": "{{ value }}"}',
            state_topic=t.state,
            value_template="{{ value_json.model.name }}",
            options=list(models),
            entity_category="config",
            icon="mdi:brain",
        )
    if mode == "still":
        present["last_result"] = _component(
            t,
            "sensor",
            "last_result",
            "Last result",
            state_topic=t.results,
            value_template=_LABEL,
            json_attributes_topic=t.results,
            icon="mdi:image-check",
        )
        present["classify"] = _button(t, "classify", "Classify now", "classify", "mdi:image-search")
    removed = {"model_select": "select", "last_result": "sensor", "classify": "button"}
    return {
        **{key: {"p": platform} for key, platform in removed.items() if key not in present},
        **present,
    }


def device_config(
    topics: Topics,
    mode: Mode = "video",
    *,
    sw_version: str = __version__,
    models: Sequence[str] = (),
) -> dict[str, Any]:
    """The device-based discovery payload for ``mode``."""
    return {
        "dev": {
            "ids": [f"edge_{topics.device_id}"],
            "name": topics.device_id,
            "mf": "edge",
            "mdl": "edge video-understanding sensor",
            "sw": sw_version,
        },
        "o": {"name": "edge", "sw": sw_version},
        "availability": [
            {
                "topic": topics.availability,
                "value_template": f"{{{{ '{AVAILABLE}' if value == '{AVAILABLE}' else"
                f" '{OFFLINE}' }}}}",
                "payload_available": AVAILABLE,
                "payload_not_available": OFFLINE,
            }
        ],
        "qos": 1,
        "cmps": components(topics, mode, models),
    }


def discovery_messages(
    topics: Topics,
    mode: Mode = "video",
    *,
    sw_version: str = __version__,
    models: Sequence[str] = (),
) -> list[tuple[str, dict[str, Any] | None]]:
    """Retained messages in order: clear the legacy per-entity configs, then the device config.

    A None payload is sent as an empty retained message (a removal).
    """
    legacy: list[tuple[str, dict[str, Any] | None]] = [(t, None) for t in legacy_topics(topics)]
    device = device_config(topics, mode, sw_version=sw_version, models=models)
    return [*legacy, (device_topic(topics), device)]
