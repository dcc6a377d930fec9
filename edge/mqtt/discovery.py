"""Home Assistant MQTT discovery: the entities a device announces, as (topic, payload) pairs.

One config message per entity (the single-component form, understood by every Home Assistant
release with MQTT discovery), retained so Home Assistant finds them after its own restart, and
sent again when it publishes ``online`` on ``<discovery_prefix>/status``.

Availability: Home Assistant compares the (templated) availability payload with
``payload_available`` and ``payload_not_available`` and ignores anything else, so ``stopped``
(clean exit) would leave the entity "available". The template maps every payload other than
``online`` to ``offline``, so both the Last Will and a clean stop mark the device unavailable.
"""

from __future__ import annotations

from typing import Any, Literal

from edge import __version__
from edge.mqtt.topics import AVAILABLE, OFFLINE, Topics

Mode = Literal["video", "still"]

_LABEL = "{{ value_json.label if value_json.label else 'none' }}"
_STATE_ATTRS = (
    "{{ {'score': value_json.score, 'top': value_json.top, 'since': value_json.since,"
    " 'model': value_json.model.name, 'mode': value_json.mode} | tojson }}"
)


def _common(topics: Topics, object_id: str, name: str, sw_version: str) -> dict[str, Any]:
    device_id = topics.device_id
    return {
        "name": name,
        "unique_id": f"edge_{device_id}_{object_id}",
        "availability": [
            {
                "topic": topics.availability,
                "value_template": f"{{{{ '{AVAILABLE}' if value == '{AVAILABLE}' else"
                f" '{OFFLINE}' }}}}",
                "payload_available": AVAILABLE,
                "payload_not_available": OFFLINE,
            }
        ],
        "device": {
            "identifiers": [f"edge_{device_id}"],
            "name": device_id,
            "manufacturer": "edge",
            "model": "edge video-understanding sensor",
            "sw_version": sw_version,
        },
        "origin": {"name": "edge", "sw_version": sw_version},
    }


def discovery_messages(
    topics: Topics, mode: Mode = "video", *, sw_version: str = __version__
) -> list[tuple[str, dict[str, Any] | None]]:
    """Config messages for ``mode``; a None payload removes an entity the mode does not have."""
    activity = {
        **_common(topics, "activity", "Activity", sw_version),
        "state_topic": topics.state,
        "value_template": _LABEL,
        "json_attributes_topic": topics.state,
        "json_attributes_template": _STATE_ATTRS,
        "icon": "mdi:motion-sensor",
    }
    confidence = {
        **_common(topics, "confidence", "Confidence", sw_version),
        "state_topic": topics.state,
        "value_template": "{{ (value_json.score * 100) | round(1) }}",
        "unit_of_measurement": "%",
        "state_class": "measurement",
        "icon": "mdi:percent",
    }
    model = {
        **_common(topics, "model", "Model", sw_version),
        "state_topic": topics.state,
        "value_template": "{{ value_json.model.name }}",
        "entity_category": "diagnostic",
        "icon": "mdi:brain",
    }
    result = {
        **_common(topics, "last_result", "Last result", sw_version),
        "state_topic": topics.results,
        "value_template": _LABEL,
        "json_attributes_topic": topics.results,
        "icon": "mdi:image-check",
    }
    return [
        (topics.discovery("sensor", "activity"), activity),
        (topics.discovery("sensor", "confidence"), confidence),
        (topics.discovery("sensor", "model"), model),
        (topics.discovery("sensor", "last_result"), result if mode == "still" else None),
    ]
