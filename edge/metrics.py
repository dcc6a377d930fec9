"""Prometheus metrics of one daemon: what a fleet maintainer scrapes from every device.

Per-step figures (the inference histogram, label changes) are fed by the daemon's reporter as
they happen; everything else is read at scrape time from the same figures the ``stats`` topic
carries, so ``/metrics``, MQTT and the live page cannot disagree and scraping costs the frame
path nothing. Without the web server the same text is written atomically to a node_exporter
textfile (``metrics.textfile``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
    write_to_textfile,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# stats key -> (metric name, help, kind, scale); counters are cumulative since start
_STATS: tuple[tuple[str, str, str, str, float], ...] = (
    ("camera_fps", "edge_camera_frames_per_second", "Frames the camera delivers", "g", 1),
    ("model_fps", "edge_model_steps_per_second", "Model steps per second", "g", 1),
    ("frames", "edge_camera_frames", "Frames grabbed from the camera", "c", 1),
    ("skipped_frames", "edge_skipped_frames", "Frames grabbed but not classified", "c", 1),
    ("dropped_frames", "edge_dropped_frames", "Frames replaced before the model read them", "c", 1),
    ("reconnects", "edge_camera_reconnects", "Camera re-opens after the first", "c", 1),
    ("stalls", "edge_camera_stalls", "Times no frame arrived in time", "c", 1),
    ("outbox_depth", "edge_outbox_messages", "Messages waiting in the outbox", "g", 1),
    (
        "outbox_oldest_s",
        "edge_outbox_oldest_age_seconds",
        "Age of the oldest waiting message",
        "g",
        1,
    ),
    ("outbox_dropped", "edge_messages_dropped", "Messages dropped by the outbox bound", "c", 1),
    ("lost", "edge_messages_lost", "Messages lost (full or failing disk)", "c", 1),
    ("mqtt_reconnects", "edge_mqtt_reconnects", "MQTT connections after the first", "c", 1),
    ("uptime_s", "edge_uptime_seconds", "Seconds since the daemon started", "g", 1),
    ("cpu_percent", "edge_cpu_ratio", "Process CPU use (1 = one core)", "g", 0.01),
    ("rss_mb", "edge_resident_memory_bytes", "Resident set size", "g", 2**20),
    ("rss_anon_mb", "edge_anonymous_memory_bytes", "Anonymous resident memory", "g", 2**20),
    ("pss_mb", "edge_proportional_memory_bytes", "Proportional set size", "g", 2**20),
    ("cgroup_mb", "edge_cgroup_memory_bytes", "The service cgroup's memory.current", "g", 2**20),
)
_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class _StatsCollector(Collector):
    """Reads the daemon's figures at scrape time; a key missing from them is not exported."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        stats = self._read()
        for key, name, doc, kind, scale in _STATS:
            value = stats.get(key)
            if value is None or isinstance(value, bool):
                continue
            family = CounterMetricFamily if kind == "c" else GaugeMetricFamily
            yield family(name, doc, value=float(value) * scale)
        connected = stats.get("mqtt_connected")
        if connected is not None:
            yield GaugeMetricFamily(
                "edge_mqtt_connected", "1 while connected to the broker", value=float(connected)
            )
        camera = GaugeMetricFamily(
            "edge_camera_state", "1 for the camera's current state", labels=["state"]
        )
        state = str(stats.get("camera") or "unknown")
        camera.add_metric([state], 1.0)
        yield camera
        label = GaugeMetricFamily(
            "edge_label", "1 for the current published label (none: no label)", labels=["label"]
        )
        label.add_metric([str(stats.get("label") or "none")], 1.0)
        yield label
        score = stats.get("score")
        if score is not None:
            yield GaugeMetricFamily("edge_label_score", "Score of the current label", value=score)
        taught = stats.get("taught")
        if isinstance(taught, Mapping):
            examples = GaugeMetricFamily(
                "edge_taught_examples", "Teaching examples per taught class", labels=["label"]
            )
            for name, count in sorted(taught.items()):
                examples.add_metric([str(name)], float(count))
            yield examples
        info = GaugeMetricFamily(
            "edge_info",
            "Version, mode and model of the daemon",
            labels=["version", "mode", "model"],
        )
        info.add_metric(
            [__version__, str(stats.get("mode") or ""), str(stats.get("model") or "")], 1.0
        )
        yield info


class Metrics:
    """One registry per daemon (tests run several daemons in one process)."""

    def __init__(self, read_stats: Callable[[], Mapping[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StatsCollector(read_stats))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, open fds, ...
        self.inference = Histogram(
            "edge_inference_seconds",
            "Model invoke time per step",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.label_changes = Counter(
            "edge_label_changes",
            "Times each label started",
            ["label"],
            registry=self.registry,
        )
        self._lock = threading.Lock()

    def observe_step(self, inference_s: float) -> None:
        self.inference.observe(inference_s)

    def label_started(self, label: str) -> None:
        self.label_changes.labels(label=label).inc()

    def text(self) -> bytes:
        with self._lock:
            return generate_latest(self.registry)

    def write_textfile(self, path: Path) -> None:
        """Atomic (temporary file + rename), as node_exporter's textfile collector needs."""
        with self._lock:
            write_to_textfile(str(path), self.registry)
