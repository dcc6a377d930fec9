"""The service's IP allow list comes from the config, and a config outside it is refused."""

from __future__ import annotations

import os
from pathlib import Path

from edge import netallow
from edge.config import parse_config
from tests.support.cli import assert_one_line_error, run_cli


def test_allow_list_is_loopback_broker_stream_camera_and_extra_subnets() -> None:
    cfg = parse_config(
        {
            "mqtt": {"host": "10.0.0.5"},
            "source": {"uri": "rtsp://user:secret@192.168.1.9:554/stream"},
            "service": {"ip_allow": ["192.168.2.0/24", "fd00::/8"]},
        }
    )
    entries, warnings = netallow.allow_list(cfg)
    assert entries == ["localhost", "10.0.0.5", "192.168.1.9", "192.168.2.0/24", "fd00::/8"]
    assert warnings == []


def test_a_local_broker_and_a_file_need_only_loopback() -> None:
    cfg = parse_config({"mqtt": {"host": "localhost"}, "source": {"uri": "clip.mp4"}})
    assert netallow.allow_list(cfg) == (["localhost"], [])
    assert netallow.outside(cfg, "localhost") == []


def test_a_name_that_does_not_resolve_allows_any_and_says_so() -> None:
    cfg = parse_config({"mqtt": {"host": "broker.invalid"}})
    entries, warnings = netallow.allow_list(cfg)
    assert entries == ["any"]
    assert len(warnings) == 1 and "mqtt.host broker.invalid" in warnings[0]
    # At start or reload a name that does not resolve yet (DNS not up at boot) is no error.
    assert not [p for p in netallow.outside(cfg, "localhost 10.0.0.5") if "mqtt.host" in p]


def test_outside_names_each_address_the_sandbox_would_block() -> None:
    cfg = parse_config({"mqtt": {"host": "10.0.0.7"}, "source": {"uri": "http://[fd00::9]/v"}})
    assert netallow.outside(cfg, "localhost 10.0.0.0/24 fd00::/8") == []
    assert netallow.outside(cfg, "any") == []
    problems = netallow.outside(cfg, "localhost 10.0.0.5")
    assert problems == [
        "mqtt.host: 10.0.0.7 is outside the service's IPAddressAllow",
        "source.uri: fd00::9 is outside the service's IPAddressAllow",
    ]


def test_check_config_prints_the_list_and_refuses_a_broker_outside_it(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mqtt: {host: 10.0.0.7}\nservice: {ip_allow: [192.168.2.0/24]}\n")
    proc = run_cli("check-config", "--ip-allow", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["localhost", "10.0.0.7", "192.168.2.0/24"]
    env = {**os.environ, "EDGE_IP_ALLOW": "localhost 10.0.0.5 192.168.2.0/24"}
    proc = run_cli("check-config", "-q", str(cfg), env=env)
    assert_one_line_error(proc, str(cfg), "mqtt.host: 10.0.0.7", "install-service.sh")
    env["EDGE_IP_ALLOW"] = "localhost 10.0.0.7 192.168.2.0/24"
    assert run_cli("check-config", "-q", str(cfg), env=env).returncode == 0
