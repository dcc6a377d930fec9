"""The sensor's figures: the ``stats`` message and the one-line status systemd shows."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from edge.mqtt.payloads import stats_payload
from edge.stats import CpuMeter, memory_mb, rss_bytes

if TYPE_CHECKING:
    from edge.app.pipeline import PipelineStats
    from edge.mqtt.publisher import Publisher


class Figures:
    """Process-wide figures (uptime, CPU, memory) joined with the pipeline's and the outbox's."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.cpu = CpuMeter()

    def stats(
        self,
        mode: str,
        pipeline: PipelineStats,
        publisher: Publisher | None,
        cpu: CpuMeter | None = None,
    ) -> dict[str, Any]:
        mem = memory_mb()
        return stats_payload(
            **asdict(pipeline),
            ts=time.time(),
            uptime_s=time.monotonic() - self.started,
            mode=mode,
            outbox_depth=publisher.outbox_depth if publisher else 0,
            outbox_dropped=publisher.dropped if publisher else 0,
            outbox_error=publisher.outbox_error if publisher else None,
            mqtt_connected=bool(publisher and publisher.connected),
            cpu_percent=(cpu or self.cpu).percent(),
            rss_mb=mem["rss_mb"] or rss_bytes() / 2**20,
            rss_anon_mb=mem["rss_anon_mb"],
            pss_mb=mem["pss_mb"],
            cgroup_mb=mem["cgroup_mb"],
        )


def status_line(
    mode: str,
    model: str | None,
    label: str | None,
    stats: dict[str, Any] | None = None,
    *,
    camera_ok: bool = True,
) -> str:
    """What ``systemctl status`` shows: the model at start, the figures once there are some;
    an outbox that cannot store comes first, because messages are being lost."""
    camera = "" if camera_ok else ", camera stalled"
    if stats is None:
        return f"{mode}: {model}, label {label or '-'}{camera}"
    line = (
        f"{mode}: label {label or '-'}{camera}, {stats['model_fps']} steps/s, "
        f"infer p50 {stats['inference_ms']['p50']} ms, outbox {stats['outbox_depth']}, "
        f"mqtt {'up' if stats['mqtt_connected'] else 'down'}"
    )
    if stats.get("outbox_error"):
        line = f"ERROR outbox cannot store: {stats['outbox_error']}; {line}"
    return line
