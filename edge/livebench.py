"""`edge bench --live`: the daemon as users run it, measured from outside.

It starts `edge run` as its own process on a clip (realtime, looped: a 30 fps source for
the sample clip) with the model at 5 steps/s, against a private Mosquitto on a loopback
port, subscribes like a dashboard would, and reports frame→delivery latency against the
inference time of the same steps, the daemon's CPU time per model step (everything it
does: capture, decode, inference, publishing), and its memory over the run: RssAnon (its
own pages, the figure judged), PSS, VmRSS, and its cgroup's usage where it has one.
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
from edge.stats import memory_mb, process_cpu_seconds

START_TIMEOUT_S = 300.0  # edge run's start-up, up to its first step


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


class _PageWatcher:
    """An open live page: a client on the daemon's event stream, reading everything it gets."""

    def __init__(self, port: int) -> None:
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True)
        self._thread.start()

    def _run(self, port: int) -> None:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while not self._stop.is_set():
            try:
                with opener.open(f"http://127.0.0.1:{port}/api/stream", timeout=30) as stream:
                    for line in stream:
                        if line.startswith(b"event:"):
                            self.events += 1
                        if self._stop.is_set():
                            return
            except OSError:
                self._stop.wait(0.2)  # the daemon is still starting

    def close(self) -> None:
        self._stop.set()


def run_live(
    *,
    model: str | None,
    labels: str | None,
    video: Path,
    duration_s: float,
    warmup_s: float,
    page: bool = False,
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
    model_cfg: dict[str, Any] = {"fps": 5, "horizon_s": 4}  # threads as the daemon's default
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
    web_port = _free_port()
    if page:
        config["web"] = {"enabled": True, "port": web_port}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    broker = subprocess.Popen(
        [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    daemon = None
    collector = None
    watcher: _PageWatcher | None = None
    memory: list[tuple[float, dict[str, float | None]]] = []
    cpu_window: dict[str, float] = {}
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
        # As the service runs it (systemd/edge.service), unless the caller chose otherwise.
        env = {"MALLOC_ARENA_MAX": "2", **os.environ}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(work / "config.yaml")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "daemon.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        if page:
            watcher = _PageWatcher(web_port)

        def check_running() -> None:
            if daemon is not None and daemon.poll() is not None:
                log = (work / "daemon.log").read_text(errors="replace").strip().splitlines()
                raise ConfigError(f"bench --live: edge run exited: {log[-1] if log else '?'}")

        # The warm-up starts at the first step, not at the launch: on a slow board the
        # daemon's own start-up (imports, the model) can take longer than the warm-up.
        started = time.monotonic()
        while not collector.samples:
            check_running()
            if time.monotonic() - started > START_TIMEOUT_S:
                raise ConfigError(
                    f"bench --live: edge run gave no step within {START_TIMEOUT_S:g} s"
                )
            time.sleep(0.05)
        t0 = time.monotonic()
        while time.monotonic() - t0 < warmup_s + duration_s:
            check_running()
            now = time.monotonic() - t0
            figures = memory_mb(daemon.pid)
            if figures["rss_mb"] is not None:  # past the first step: the model is loaded
                memory.append((now, figures))
            if now >= warmup_s and "cpu0" not in cpu_window:
                cpu_window["cpu0"] = process_cpu_seconds(daemon.pid) or 0.0
                cpu_window["steps0"] = len(collector.samples)
                cpu_window["t0"] = now
            time.sleep(1.0)
        cpu_window["cpu1"] = process_cpu_seconds(daemon.pid) or 0.0
        cpu_window["steps1"] = len(collector.samples)
        cpu_window["t1"] = time.monotonic() - t0
        warm_samples = len(collector.samples)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(10)
        if collector is not None:
            collector.close()
        if watcher is not None:
            watcher.close()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    samples = collector.samples if collector else []
    # Drop the warm-up share of the samples (model load, first frames).
    skip = int(len(samples) * warmup_s / (warmup_s + duration_s))
    steady = samples[skip:warm_samples]
    lat = [s[0] for s in steady]
    inf = [s[1] for s in steady]
    lat50, inf50 = _percentile(lat, 50), _percentile(inf, 50)
    return {
        "live": True,
        "page": None if watcher is None else {"open": True, "events_received": watcher.events},
        "video": str(video),
        "duration_s": duration_s,
        "steps": len(steady),
        "latency_ms": {"p50": lat50, "p95": _percentile(lat, 95)},
        "inference_ms": {"p50": inf50, "p95": _percentile(inf, 95)},
        "latency_over_inference_ms": None if lat50 is None or inf50 is None else lat50 - inf50,
        "target_latency_ms": None if inf50 is None else inf50 + 3.0,
        "cpu": _cpu(cpu_window),
        "memory_mb": _memory(memory, warmup_s),
        "targets": {},
    }


def _cpu(w: dict[str, float]) -> dict[str, float | None]:
    """CPU of the daemon over the measured window, per model step and in % of one core."""
    steps = w.get("steps1", 0) - w.get("steps0", 0)
    span = w.get("t1", 0.0) - w.get("t0", 0.0)
    used = w.get("cpu1", 0.0) - w.get("cpu0", 0.0)
    return {
        "ms_per_step": round(used * 1000 / steps, 2) if steps > 0 else None,
        "percent": round(100 * used / span, 1) if span > 0 else None,
        "steps_per_s": round(steps / span, 2) if span > 0 else None,
    }


def _memory(
    samples: list[tuple[float, dict[str, float | None]]], warmup_s: float
) -> dict[str, Any]:
    """Per figure: the first reading once steps flow (a cold start), the steady median and
    max after the warm-up, and the growth from the first to the last minute (a third of a
    short run)."""
    out: dict[str, Any] = {}
    after = [f for t, f in samples if t >= warmup_s]
    window = max(1, min(60, len(after) // 3))
    for key in ("rss_anon_mb", "pss_mb", "rss_mb", "cgroup_mb"):
        values: list[float] = [v for f in after if (v := f[key]) is not None]
        first = next((f[key] for _, f in samples if f[key] is not None), None)
        if not values:
            out[key] = None
            continue
        growth = (
            statistics.mean(values[-window:]) - statistics.mean(values[:window])
            if len(values) >= 2 * window
            else None
        )
        out[key] = {
            "cold": first,
            "steady_median": statistics.median(values),
            "max": max(values),
            "growth_first_to_last": None if growth is None else round(growth, 2),
        }
    out["window_samples"] = window
    return out


# Targets: the process's own memory (anonymous pages) steady and flat, and the resident
# size of a cold start including shared libraries.
RSS_ANON_MAX_MB = 64.0
RSS_ANON_GROWTH_MAX_MB = 1.0
RSS_MAX_MB = 120.0


def judge(result: dict[str, Any]) -> dict[str, Any]:
    lat, target = result["latency_ms"]["p50"], result["target_latency_ms"]
    mem = result["memory_mb"]
    anon, rss = mem.get("rss_anon_mb"), mem.get("rss_mb")
    growth = None if anon is None else anon["growth_first_to_last"]
    result["targets"] = {
        "latency_p50_le_inference_plus_3ms": None if lat is None else lat <= target,
        "rss_anon_le_64mb": None if anon is None else anon["max"] <= RSS_ANON_MAX_MB,
        "rss_anon_flat": None if growth is None else growth <= RSS_ANON_GROWTH_MAX_MB,
        "rss_le_120mb": None if rss is None else rss["max"] <= RSS_MAX_MB,
    }
    return result


def format_live(r: dict[str, Any]) -> str:
    def f(v: float | None, unit: str = "") -> str:
        return "-" if v is None else f"{v:.2f}{unit}"

    def verdict(key: str) -> str:
        v = r["targets"][key]
        return "unknown" if v is None else "met" if v else "NOT met"

    cpu = r["cpu"]
    mem = r["memory_mb"]
    page = r.get("page")
    seen = "" if page is None else f", live page open ({page['events_received']} events read)"
    lines = [
        f"live: edge run on {r['video']} for {r['duration_s']:.0f} s, {r['steps']} steps{seen}",
        f"  frame→delivery latency p50 {f(r['latency_ms']['p50'], ' ms')}"
        f"  p95 {f(r['latency_ms']['p95'], ' ms')}",
        f"  inference           p50 {f(r['inference_ms']['p50'], ' ms')}"
        f"  p95 {f(r['inference_ms']['p95'], ' ms')}",
        f"  latency − inference p50 {f(r['latency_over_inference_ms'], ' ms')}"
        f"  (target ≤ 3 ms: {verdict('latency_p50_le_inference_plus_3ms')})",
        f"  CPU {f(cpu['ms_per_step'], ' ms')} per model step at {f(cpu['steps_per_s'])} steps/s"
        f" ({f(cpu['percent'], ' %')} of one core, capture and publishing included)",
    ]
    names = {
        "rss_anon_mb": "RssAnon",
        "pss_mb": "PSS",
        "rss_mb": "VmRSS",
        "cgroup_mb": "cgroup memory.current",
    }
    for key, name in names.items():
        m = mem.get(key)
        if m is None:
            if key == "cgroup_mb":
                lines.append(f"  {name}: - (no cgroup of its own)")
            continue
        lines.append(
            f"  {name:<8} cold {f(m['cold'], ' MB')}, steady {f(m['steady_median'], ' MB')}, "
            f"max {f(m['max'], ' MB')}, growth first→last {mem['window_samples']} s "
            f"{f(m['growth_first_to_last'], ' MB')}"
        )
    lines.append(
        f"  targets: RssAnon ≤ {RSS_ANON_MAX_MB:g} MB {verdict('rss_anon_le_64mb')}, "
        f"RssAnon flat (≤ {RSS_ANON_GROWTH_MAX_MB:g} MB growth) {verdict('rss_anon_flat')}, "
        f"VmRSS ≤ {RSS_MAX_MB:g} MB {verdict('rss_le_120mb')}"
    )
    return "\n".join(lines)
