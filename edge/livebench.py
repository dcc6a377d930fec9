"""`edge bench --live`: the daemon as users run it, measured from outside.

It starts `edge run` as its own process on a clip (realtime, looped) against a
private Mosquitto on a loopback port, subscribes like a dashboard would, and
reports frame→delivery latency against the inference time of the same steps,
and the daemon's resident memory over the run (steady level and growth).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.errors import ConfigError
from edge.stats import process_rss_bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


class _Collector:
    """Subscribes to the predictions topic and pairs each with its arrival time."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.samples: list[tuple[float, float]] = []  # (latency ms, inference ms)
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=0)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise ConfigError("bench --live: could not subscribe to the private broker")

    def _on_message(self, client, userdata, msg) -> None:
        arrived = time.time()
        try:
            body = json.loads(msg.payload)
            self.samples.append(((arrived - body["frame_ts"]) * 1000, body["inference_ms"]))
        except (ValueError, KeyError, TypeError):
            pass

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_live(
    *, model: str | None, labels: str | None, video: Path, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    mosquitto = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if mosquitto is None:
        raise ConfigError("bench --live needs mosquitto (apt-get install mosquitto)")
    work = Path(tempfile.mkdtemp(prefix="edge-livebench-"))
    port = _free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    model_cfg: dict[str, Any] = {"fps": 5, "horizon_s": 4, "threads": 2}
    if model and (Path(model).exists() or model.endswith(".tflite")):
        model_cfg["path"] = model
    else:
        model_cfg["name"] = model or "movinet-a0-stream-int8"
    if labels:
        model_cfg["labels"] = labels
    config = {
        "device_id": "bench",
        "state_dir": str(work / "state"),
        "source": {"kind": "opencv", "uri": str(video), "loop": True, "realtime": True},
        "model": model_cfg,
        "mqtt": {"host": "127.0.0.1", "port": port, "predictions_max_hz": 100},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    broker = subprocess.Popen(
        [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    daemon = None
    collector = None
    rss: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ConfigError("bench --live: the private broker did not start") from None
                time.sleep(0.05)
        collector = _Collector(port, "edge/bench/predictions")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(work / "config.yaml")],
            stdout=subprocess.DEVNULL,
            stderr=open(work / "daemon.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        t0 = time.monotonic()
        while time.monotonic() - t0 < warmup_s + duration_s:
            if daemon.poll() is not None:
                log = (work / "daemon.log").read_text(errors="replace").strip().splitlines()
                raise ConfigError(f"bench --live: edge run exited: {log[-1] if log else '?'}")
            value = process_rss_bytes(daemon.pid)
            if value is not None:
                rss.append((time.monotonic() - t0, value / 2**20))
            time.sleep(1.0)
        warm_samples = len(collector.samples)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(10)
        if collector is not None:
            collector.close()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    samples = collector.samples if collector else []
    # Drop the warm-up share of the samples (model load, first frames).
    skip = int(len(samples) * warmup_s / (warmup_s + duration_s))
    steady = samples[skip:warm_samples]
    lat = [s[0] for s in steady]
    inf = [s[1] for s in steady]
    after = [v for t, v in rss if t >= warmup_s]
    minute = max(1, min(60, len(after) // 3))
    growth = (
        statistics.mean(after[-minute:]) - statistics.mean(after[:minute])
        if len(after) >= 2 * minute
        else None
    )
    lat50, inf50 = _percentile(lat, 50), _percentile(inf, 50)
    return {
        "live": True,
        "video": str(video),
        "duration_s": duration_s,
        "steps": len(steady),
        "latency_ms": {"p50": lat50, "p95": _percentile(lat, 95)},
        "inference_ms": {"p50": inf50, "p95": _percentile(inf, 95)},
        "latency_over_inference_ms": None if lat50 is None or inf50 is None else lat50 - inf50,
        "target_latency_ms": None if inf50 is None else inf50 + 3.0,
        "rss_mb": {
            "steady_median": statistics.median(after) if after else None,
            "max": max(after) if after else None,
            "growth_first_to_last": growth,
            "window_samples": minute,
        },
        "targets": {"latency_p50_le_inference_plus_3ms": None, "rss_le_120mb": None},
    }


def judge(result: dict[str, Any]) -> dict[str, Any]:
    lat, target = result["latency_ms"]["p50"], result["target_latency_ms"]
    rss = result["rss_mb"]["max"]
    result["targets"] = {
        "latency_p50_le_inference_plus_3ms": None if lat is None else lat <= target,
        "rss_le_120mb": None if rss is None else rss <= 120,
    }
    return result


def format_live(r: dict[str, Any]) -> str:
    def f(v: float | None, unit: str = "") -> str:
        return "-" if v is None else f"{v:.2f}{unit}"

    t = r["targets"]
    return "\n".join(
        [
            f"live: edge run on {r['video']} for {r['duration_s']:.0f} s, {r['steps']} steps",
            f"  frame→delivery latency p50 {f(r['latency_ms']['p50'], ' ms')}"
            f"  p95 {f(r['latency_ms']['p95'], ' ms')}",
            f"  inference           p50 {f(r['inference_ms']['p50'], ' ms')}"
            f"  p95 {f(r['inference_ms']['p95'], ' ms')}",
            f"  latency − inference p50 {f(r['latency_over_inference_ms'], ' ms')}"
            f"  (target ≤ 3 ms: {'met' if t['latency_p50_le_inference_plus_3ms'] else 'NOT met'})",
            f"  RSS steady {f(r['rss_mb']['steady_median'], ' MB')}, max "
            f"{f(r['rss_mb']['max'], ' MB')} (target ≤ 120 MB: "
            f"{'met' if t['rss_le_120mb'] else 'NOT met'}), growth first→last "
            f"{r['rss_mb']['window_samples']} s {f(r['rss_mb']['growth_first_to_last'], ' MB')}",
        ]
    )
