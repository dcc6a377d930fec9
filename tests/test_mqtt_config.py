"""The MQTT settings that choose the protocol, the session and the command rate."""

from __future__ import annotations

import pytest
import yaml

from edge.config import parse_config
from edge.errors import ConfigError


def mqtt(text: str):
    return parse_config(yaml.safe_load(text)).mqtt


@pytest.mark.parametrize(
    ("text", "want"), [("", "auto"), ("5", "5"), ("'5'", "5"), ("3.1.1", "3.1.1")]
)
def test_protocol_as_written_in_yaml(text: str, want: str) -> None:
    assert mqtt(f"mqtt: {{protocol: {text}}}" if text else "mqtt: {}").protocol == want


@pytest.mark.parametrize("bad", ["3.1", "4", "v5", "true"])
def test_an_unknown_protocol_names_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.protocol: "):
        mqtt(f"mqtt: {{protocol: {bad}}}")


@pytest.mark.parametrize("qos", [0, 2])
def test_qos_other_than_1_is_refused_with_the_reason(qos: int) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.qos: must be 1: .*outbox"):
        mqtt(f"mqtt: {{qos: {qos}}}")


@pytest.mark.parametrize(
    "setting",
    [
        "max_inflight: 0",
        "session_expiry_s: -1",
        "command_rate_per_s: 0",
        "command_rate_per_s: .inf",
        "command_burst: 0",
    ],
)
def test_limits_are_checked(setting: str) -> None:
    key = setting.split(":")[0]
    with pytest.raises(ConfigError, match=rf"mqtt\.{key}: "):
        mqtt(f"mqtt: {{{setting}}}")


def test_defaults() -> None:
    cfg = mqtt("mqtt: {}")
    assert (cfg.max_inflight, cfg.session_expiry_s) == (20, 3600)
    assert (cfg.command_rate_per_s, cfg.command_burst) == (5.0, 20)
