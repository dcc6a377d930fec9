"""Home Assistant's MQTT discovery rules, as documented, to check what edge announces.

Only the parts edge touches: the abbreviations Home Assistant expands (from its
``abbreviations.py``: ``ABBREVIATIONS``, ``DEVICE_ABBREVIATIONS``, ``ORIGIN_ABBREVIATIONS``),
the device-based payload (``dev``, ``o``, ``cmps``; ``p`` per component; removal with only
``p``), and the options each platform requires.
"""

from __future__ import annotations

import re
from typing import Any

ABBREVIATIONS = {
    "avty": "availability",
    "avty_t": "availability_topic",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "cmps": "components",
    "content_type": "content_type",
    "def_ent_id": "default_entity_id",
    "ent_cat": "entity_category",
    "evt_typ": "event_types",
    "ic": "icon",
    "img_t": "image_topic",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "o": "origin",
    "obj_id": "object_id",
    "ops": "options",
    "p": "platform",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "pl_prs": "payload_press",
    "stat_cla": "state_class",
    "stat_t": "state_topic",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {
    "cns": "connections",
    "ids": "identifiers",
    "name": "name",
    "mf": "manufacturer",
    "mdl": "model",
    "hw": "hw_version",
    "sw": "sw_version",
    "sa": "suggested_area",
    "sn": "serial_number",
}
ORIGIN_ABBREVIATIONS = {"name": "name", "sw": "sw_version", "url": "support_url"}

REQUIRED = {
    "sensor": {"state_topic"},
    "button": {"command_topic"},
    "select": {"command_topic", "options"},
    "event": {"state_topic", "event_types"},
    "image": set(),  # exactly one of image_topic / url_topic, checked below
}
_TOPIC = re.compile(r"[^#+\0]+")
_ENTITY_ID = re.compile(r"([a-z_]+)\.([a-z0-9_]+)")


def expand(obj: dict[str, Any], table: dict[str, str] = ABBREVIATIONS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        full = table.get(key, key)
        assert full not in out, f"{key!r} and its long form both given"
        out[full] = value
    if isinstance(out.get("availability"), list):
        out["availability"] = [expand(a) for a in out["availability"]]
    return out


def expand_device_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as Home Assistant reads it: every abbreviation at every level expanded."""
    root = expand(payload)
    root["device"] = expand(root.pop("dev", root.get("device", {})), DEVICE_ABBREVIATIONS)
    root["origin"] = expand(root["origin"], ORIGIN_ABBREVIATIONS)
    root["components"] = {k: expand(v) for k, v in root["components"].items()}
    return root


def check_device_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Assert the documented rules; return the expanded payload."""
    root = expand_device_payload(payload)
    device, origin, comps = root["device"], root["origin"], root["components"]
    assert device.get("identifiers") or device.get("connections"), "device needs identifiers"
    assert origin.get("name"), "origin needs a name"
    assert comps, "no components"
    seen_ids: set[str] = set()
    for key, comp in comps.items():
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", key), key
        platform = comp.get("platform")
        assert platform in REQUIRED, (key, platform)
        if set(comp) == {"platform"}:
            continue  # a removal
        assert "object_id" not in comp, f"{key}: object_id is ignored from 2026.4"
        uid = comp.get("unique_id")
        assert uid and uid not in seen_ids, (key, uid)
        seen_ids.add(uid)
        missing = REQUIRED[platform] - set(comp)
        assert not missing, (key, missing)
        if platform == "image":
            assert ("image_topic" in comp) != ("url_topic" in comp), key
        if "default_entity_id" in comp:
            m = _ENTITY_ID.fullmatch(comp["default_entity_id"])
            assert m and m.group(1) == platform, (key, comp["default_entity_id"])
        for name, value in comp.items():
            if name.endswith("_topic"):
                assert isinstance(value, str) and _TOPIC.fullmatch(value), (key, name, value)
        if platform == "select":
            assert comp["options"] and all(isinstance(o, str) for o in comp["options"])
    for avail in root.get("availability", []):
        assert _TOPIC.fullmatch(avail["topic"])
    return root
