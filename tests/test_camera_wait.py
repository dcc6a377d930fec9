"""`edge run --wait-for-camera` (the service) on a machine without a camera: it reports itself
started and waiting instead of exiting, feeds the watchdog, and a reload naming a source ends
the wait. A real process, a real notify socket, the real model and clip."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.broker import wait_until
from tests.support.daemon import DaemonProcess, NotifySocket


@pytest.fixture(autouse=True)
def _no_camera_here(a0, k600_labels, videos) -> None:
    if list(Path("/dev").glob("video*")):
        pytest.skip("this machine has a camera")


@pytest.fixture
def camera_wait_config(a0: Path, k600_labels: Path) -> Callable[..., dict]:
    """``camera_wait_config(tmp, **source)``: A0 on ``source`` (default: auto), no MQTT."""

    def make(tmp: Path, **source) -> dict:
        return {
            "state_dir": str(tmp / "state"),
            "models_dir": str(tmp / "models"),
            "source": source or {"kind": "auto"},
            "model": {"path": str(a0), "labels": str(k600_labels)},
            "mqtt": {"enabled": False, "stats_interval_s": 1},
        }

    return make


def _statuses(notify: NotifySocket) -> list[str]:
    return [line for _, line in list(notify.messages) if line.startswith("STATUS=")]


@pytest.fixture
def waiting(camera_wait_config, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    d = DaemonProcess(
        tmp_path / "d",
        camera_wait_config(tmp_path),
        env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "3000000"},
    )
    d.start("--wait-for-camera")
    wait_until(lambda: notify.lines("READY=1"), timeout=60, what="READY=1 while waiting")
    yield d, notify
    d.close()
    notify.close()


def test_no_camera_waits_visibly_and_feeds_the_watchdog(waiting):
    d, notify = waiting
    assert any("waiting for a camera" in s for s in _statuses(notify)), _statuses(notify)
    ready_at = notify.lines("READY=1")[0]
    # Fed while waiting, so systemd neither restarts it nor kills it as hung.
    wait_until(
        lambda: len([t for t in notify.lines("WATCHDOG=1") if t > ready_at]) >= 3,
        timeout=30,
        what="watchdog pings while waiting",
    )
    assert d.alive(), d.log()
    assert d.log().count("waiting for a camera") == 1, d.log()
    code, _ = d.stop()
    assert code == 0, d.log()


def test_a_reload_naming_a_clip_ends_the_wait(videos, waiting):
    d, notify = waiting
    # A refused config keeps waiting and says why.
    d.config_path.write_text("source: {kind: opencv, uri: 'http://127.0.0.1:9/v', loop: true}\n")
    d.signal(signal.SIGHUP)
    wait_until(
        lambda: any("reload refused" in s for s in _statuses(notify)), timeout=30, what="refusal"
    )
    assert "source.loop" in d.log() and "still waiting" in d.log()
    assert d.alive()
    d.write_config({**d.config, "source": {"uri": str(videos / "carving_ice.mp4"), "loop": True}})
    d.signal(signal.SIGHUP)
    wait_until(
        lambda: any(s.startswith("STATUS=video:") for s in _statuses(notify)),
        timeout=60,
        what="the daemon running on the clip",
    )
    assert len(notify.lines("READY=1")) >= 2
    code, _ = d.stop()
    assert code == 0, d.log()


def test_without_the_option_no_camera_still_exits_3(camera_wait_config, tmp_path):
    d = DaemonProcess(tmp_path / "d", camera_wait_config(tmp_path))
    d.start()
    assert d.proc is not None
    assert d.proc.wait(120) == 3, d.log()
    assert "no camera" in d.log()
