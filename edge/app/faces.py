"""The faces people look at besides MQTT: the live page and Prometheus metrics.

Both listen to the reporter, so they hear exactly what MQTT subscribers hear. The page's
commands go to the daemon's inbox and run on its loop, through the same command table as MQTT
commands, so a page and a broker can never race each other inside a pipeline.
With neither the page nor metrics configured nothing subscribes and the frame path is as
before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import cv2

from edge.app.reporter import Message
from edge.errors import ConfigError
from edge.metrics import Metrics
from edge.stats import CpuMeter
from edge.web.hub import Hub

if TYPE_CHECKING:
    from edge.app.daemon import Daemon
    from edge.web.server import WebServer

log = logging.getLogger("edge.faces")


class Faces:
    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        cfg = daemon.cfg
        self._web_cfg, self._metrics_cfg = cfg.web, cfg.metrics
        self.hub = Hub()
        self.metrics: Metrics | None = None
        self.server: WebServer | None = None
        self._cpu = CpuMeter()  # the stats topic keeps its own measuring window
        self._next_textfile = 0.0
        self._taught: dict[str, int] = {}  # examples per taught class, read on the loop
        self._taught_seen: object = None
        self._taught_dirty = True
        self._unsubscribe: Callable[[], None] | None = None
        if cfg.web.enabled or cfg.metrics.textfile is not None:
            self.metrics = Metrics(self.figures)
        if cfg.web.enabled:
            self.server = _make_server(self)
        if self.metrics is not None or self.server is not None:
            self._unsubscribe = daemon.reporter.subscribe(self._hear)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        if self.server is not None:
            self.server.start()

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.server is not None:
            self.server.stop()

    def reconfigured(self, web: object, metrics: object) -> None:
        if web != self._web_cfg or metrics != self._metrics_cfg:
            log.warning("web/metrics settings changed: they take effect when edge restarts")

    def tick(self, now: float) -> None:
        """On the daemon's loop: count taught examples after a change, write the textfile."""
        if self._taught_dirty and self.metrics is not None:
            self._taught_dirty = False
            try:
                described = self._daemon.pipeline.teacher.describe()
            except Exception as exc:  # a damaged store is the teacher's to report
                log.debug("metrics: taught classes not counted: %s", exc)
                described = {}
            self._taught = {c["label"]: int(c["examples"]) for c in described.get("classes", [])}
        path = self._metrics_cfg.textfile
        if self.metrics is not None and path is not None and now >= self._next_textfile:
            self._next_textfile = now + self._metrics_cfg.interval_s
            try:
                self.metrics.write_textfile(path)
            except OSError as exc:
                log.error("metrics: cannot write %s: %s", path, exc.strerror)

    # ------------------------------------------------------------------ listening
    def _hear(self, message: Message) -> None:
        self.hub.push(message.kind, message.payload)
        metrics = self.metrics
        if metrics is None:
            return
        if message.kind == "state" and message.payload.get("taught") != self._taught_seen:
            self._taught_seen = message.payload.get("taught")
            self._taught_dirty = True
        elif message.kind == "event" and message.payload.get("type") == "taught":
            self._taught_dirty = True
        if message.kind == "prediction":
            ms = message.payload.get("inference_ms")
            if ms is not None:
                metrics.observe_step(ms / 1000.0)
        elif message.kind == "event" and message.payload.get("type") == "start":
            metrics.label_started(str(message.payload.get("label")))

    # ------------------------------------------------------------------ for the server
    def submit(self, name: str, payload: bytes) -> Future[dict[str, Any]]:
        return self._daemon.inbox.submit(name, payload)

    def snapshot_jpeg(self) -> bytes | None:
        frame = self._daemon.last.frame
        if frame is None:
            return None
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return jpeg.tobytes() if ok else None

    def stats(self) -> dict[str, Any]:
        return self.figures()

    def figures(self) -> dict[str, Any]:
        """The stats topic's figures plus what the reporter last said (label, camera, model)."""
        daemon = self._daemon
        figures = daemon.stats(cpu=self._cpu)
        reporter = daemon.reporter
        stable = reporter.stable
        figures.update(
            label=reporter.label,
            score=stable.score if stable is not None and stable.label else None,
            camera="ok" if reporter.camera_ok else "stalled",
            model=reporter.model.name,
            mqtt_reconnects=daemon.publisher.reconnects if daemon.publisher else 0,
            taught=dict(self._taught),
            ts=time.time(),
        )
        return figures


def _make_server(faces: Faces) -> WebServer:
    try:
        from edge.web.server import WebServer, read_token
    except ImportError as exc:
        raise ConfigError(
            f"web.enabled: the live page needs aiohttp ({exc.name} is not installed):"
            " run scripts/setup.sh --web"
        ) from None
    cfg = faces._daemon.cfg
    return WebServer(
        cfg.web.host,
        cfg.web.port,
        faces.hub,
        faces,
        faces.metrics,
        token=read_token(cfg.web.token_file),
        max_command_bytes=cfg.mqtt.max_command_bytes,
    )
