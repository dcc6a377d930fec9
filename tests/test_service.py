"""The systemd unit: systemd itself verifies it, and the hardening the README promises is there."""

from __future__ import annotations

import configparser
import shutil
import subprocess

import pytest

from tests.support.assets import IN_CI, ROOT

UNIT = ROOT / "systemd" / "edge.service"


def _service_section() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if IN_CI:
            pytest.fail("systemd-analyze not installed")
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "edge.service"
    unit.write_text(UNIT.read_text().replace("@PREFIX@", str(ROOT)))
    proc = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if str(unit) in line or "edge.service" in line
    ]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr


def test_unit_is_notify_with_watchdog_and_hardening():
    s = _service_section()
    assert s["Type"] == ["notify"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["2"]
    assert s["User"] == ["edge"] and "video" in s["SupplementaryGroups"][0].split()
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert key in s, key
    assert s["ProtectSystem"] == ["strict"]
    assert s["DevicePolicy"] == ["closed"]
    allowed = " ".join(s["DeviceAllow"])
    for dev in ("video4linux", "media", "dma_heap"):
        assert dev in allowed
    assert "AF_INET" in s["RestrictAddressFamilies"][0]
    assert s["MemoryMax"][0].endswith("M")
    assert s["StateDirectory"] == ["edge"] and s["ConfigurationDirectory"] == ["edge"]


def test_unit_parses_as_ini():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    assert {"Unit", "Service", "Install"} <= set(parser.sections())


def test_reload_validates_before_it_signals():
    # A refused config must fail `systemctl reload` itself, not only a log line.
    reload = _service_section()["ExecReload"]
    assert len(reload) == 2
    assert "check-config" in reload[0] and "/etc/edge/config.yaml" in reload[0]
    assert reload[1].endswith("kill -HUP $MAINPID")


def test_service_waits_for_a_camera_instead_of_exiting():
    assert "--wait-for-camera" in _service_section()["ExecStart"][0]


def test_hardening_beyond_the_basics():
    s = _service_section()
    for key in (
        "PrivateUsers",
        "PrivateMounts",
        "RemoveIPC",
        "MemoryDenyWriteExecute",
        "ProtectProc",
    ):
        assert s[key] in (["yes"], ["invisible"]), key
    assert "~@resources @privileged" in s["SystemCallFilter"]
    assert "AF_NETLINK" not in s["RestrictAddressFamilies"][0]
    assert s["IPAddressDeny"] == ["any"] and "localhost" in s["IPAddressAllow"]
    assert s["UMask"] == ["0077"]


def test_security_score_offline_is_at_most_1_2(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if IN_CI:
            pytest.fail("systemd-analyze not installed")
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "edge.service"
    # As installed for a broker on the LAN (install-service.sh's drop-in adds its address).
    text = UNIT.read_text().replace("@PREFIX@", str(ROOT))
    unit.write_text(text.replace("[Install]", "IPAddressAllow=192.168.1.10\n\n[Install]"))
    proc = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = next(x for x in proc.stdout.splitlines() if "Overall exposure level" in x)
    assert float(line.split(":")[1].split()[0]) <= 1.2, proc.stdout
