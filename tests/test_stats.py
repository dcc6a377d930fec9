"""Memory and CPU figures read from /proc for the stats topic and `edge bench --live`."""

from __future__ import annotations

import mmap
import subprocess
import sys

import numpy as np

from edge.stats import cgroup_memory_bytes, memory_mb, process_cpu_seconds
from tests.support.broker import wait_until


def test_anonymous_memory_follows_what_the_process_allocates():
    before = memory_mb()
    # Fresh pages from the kernel (not the heap, which may hold freed pages still resident
    # from earlier tests), then touched: resident and anonymous.
    block = mmap.mmap(-1, 48 * 2**20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    np.frombuffer(block, np.uint8)[:] = 1
    after = memory_mb()
    assert after["rss_anon_mb"] - before["rss_anon_mb"] >= 40
    assert after["rss_mb"] - before["rss_mb"] >= 40
    assert after["rss_anon_mb"] < after["rss_mb"]  # VmRSS adds the file-backed pages
    assert 0 < after["pss_mb"] <= after["rss_mb"] + 0.1
    block.close()


def test_another_process_is_read_by_pid():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        figures = memory_mb(child.pid)
        assert figures["rss_mb"] > 1 and figures["rss_anon_mb"] > 0
        # This cgroup now holds two processes at least: it is not the child's own cost.
        assert cgroup_memory_bytes(child.pid) is None
    finally:
        child.stdin.close()
        child.wait(10)
    gone = memory_mb(child.pid)
    assert gone["rss_mb"] is None and gone["pss_mb"] is None


def test_cpu_seconds_grow_with_work():
    start = process_cpu_seconds()
    assert start is not None and start > 0
    x = np.ones(2**20)
    while process_cpu_seconds() <= start:  # a condition, not a duration
        x = np.sqrt(x + 1.0)
    assert process_cpu_seconds() > start


def test_another_process_cpu_seconds_come_from_proc():
    """What edge bench --live reads of the daemon it started."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        wait_until(lambda: (process_cpu_seconds(busy.pid) or 0) > 0.05, what="child CPU time")
    finally:
        busy.kill()
        busy.wait()
    assert process_cpu_seconds(busy.pid) is None  # gone: no figure, not an old one


def test_the_stats_message_carries_every_memory_figure():
    from edge.app.pipeline import PipelineStats
    from edge.app.status import Figures
    from edge.mqtt.payloads import StatsPayload

    body = Figures().stats("video", PipelineStats(model_fps=5.0), None)
    own = memory_mb()
    assert body["rss_anon_mb"] > 10 and body["pss_mb"] > 10
    assert body["rss_anon_mb"] < body["rss_mb"]
    assert abs(body["rss_anon_mb"] - own["rss_anon_mb"]) < 20  # this very process
    assert "cgroup_mb" in body  # None here: the cgroup is shared with other processes
    added_by_publisher = {"mqtt_reconnects": 0, "mqtt_protocol": "5", "commands_dropped": 0}
    checked = StatsPayload.model_validate({**body, **added_by_publisher})
    assert checked.rss_anon_mb == body["rss_anon_mb"] and checked.pss_mb == body["pss_mb"]
