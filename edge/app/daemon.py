"""The sensor daemon's life cycle: start, loop, signals, systemd notify, reload, shutdown.

Everything a mode does lives in its pipeline (``edge.app.video``, ``edge.app.still``),
everything the sensor says in the reporter, every command in ``edge.app.commands``.
The daemon holds one of each and replaces the pipeline whole on a mode switch, a model
swap or a reload that changes it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from edge import __version__
from edge.app import commands, overrides
from edge.app.faces import Faces
from edge.app.pipeline import Builder, LastFrame, Mode, ModelInfo, Parts, Pipeline
from edge.app.reporter import Reporter
from edge.app.status import Figures, status_line
from edge.app.still import StillPipeline
from edge.app.video import VideoPipeline
from edge.catalogue import installed_names
from edge.config import Config, load_config
from edge.errors import EdgeError
from edge.mqtt.publisher import Publisher
from edge.notify import Notifier
from edge.stats import CpuMeter

log = logging.getLogger("edge.daemon")

PIPELINES: dict[Mode, Builder] = {"video": VideoPipeline.build, "still": StillPipeline.build}


class Daemon:
    def __init__(
        self, cfg: Config, config_path: Path | None = None, options: dict[str, Any] | None = None
    ) -> None:
        self.cfg = cfg
        self.file_cfg = cfg  # the config as loaded, before a kept model swap
        self.config_path = config_path
        self.options = options or {}  # command-line options, applied again on reload
        self.notifier = Notifier()
        self.stopping = threading.Event()
        self._reload = threading.Event()
        self.figures = Figures()
        self.reporter = Reporter(cfg.mode, ModelInfo(None, None))
        self.last = LastFrame()  # outlives pipelines: a swap is no camera stall
        self.publisher: Publisher | None = None
        self.inbox = commands.Inbox(cfg.mqtt.max_command_bytes)  # commands from other threads
        self.faces: Faces | None = None
        self._pipeline: Pipeline | None = None
        self._notified_ready = False
        self._last_stats = 0.0

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise EdgeError("the sensor is not running yet")
        return self._pipeline

    def build(self, cfg: Config, parts: Parts, *, request: bool = False) -> Pipeline:
        builder = PIPELINES[cfg.mode]
        return builder(
            cfg, self.reporter, parts, last=self.last, cancel=self.stopping, request=request
        )

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Load everything that can fail on bad input before touching the network."""
        self.file_cfg = self.cfg
        self.cfg = cfg = overrides.apply(self.cfg)
        for path in (cfg.state_dir, cfg.resolved_models_dir):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EdgeError(f"state_dir: cannot create {path}: {exc.strerror}") from None
        pipeline = self.build(cfg, Parts())
        try:
            self.publisher = self._make_publisher(cfg)
        except BaseException:
            pipeline.stop()
            raise
        self._pipeline = pipeline
        self.reporter.sink = self.publisher
        self.faces = Faces(self)
        try:
            self.faces.start()
        except BaseException:
            pipeline.stop()
            raise
        if self.publisher:
            self.publisher.start()
        pipeline.start()
        log.info(
            "edge %s started: device %s, mode %s, model %s, source %s",
            __version__,
            cfg.device_id,
            cfg.mode,
            pipeline.model_info().name,
            pipeline.description,
        )
        self.notifier.status("starting: waiting for the first frame")
        self._notify_ready()

    def _make_publisher(self, cfg: Config) -> Publisher | None:
        if not cfg.mqtt.enabled:
            return None
        publisher = Publisher(
            cfg.mqtt,
            cfg.device_id,
            cfg.state_dir / "outbox.sqlite",
            model_info=lambda: self.pipeline.model_info()._asdict(),
            mode=cfg.mode,
            commands=commands.SCHEMAS,
        )
        publisher.models = tuple(installed_names(cfg.resolved_models_dir))
        publisher.check()
        return publisher

    def _notify_ready(self) -> None:
        if self.reporter.ready and not self._notified_ready:
            self._notified_ready = True
            self.notifier.ready(self._status_line())

    # ------------------------------------------------------------------ loop
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def run(self, duration_s: float | None = None) -> int:
        self.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not self.stopping.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                self.tick()
        finally:
            self.shutdown()
        return 0

    def tick(self) -> None:
        if not self.pipeline.tick():
            self.stopping.set()
        self._notify_ready()
        if self.publisher:
            queue = self.publisher.commands()
            while not queue.empty():
                cmd = queue.get_nowait()
                self.publisher.reply(cmd.name, commands.execute(self, cmd))
        self.inbox.run_waiting(self)
        self._housekeeping(time.time())

    def _housekeeping(self, now: float) -> None:
        if self.pipeline.alive() and self.reporter.ready:
            self.notifier.watchdog()  # fed only while the camera delivers
        self.reporter.heartbeat(now, self.cfg.mqtt.heartbeat_s)
        if self.faces is not None:
            self.faces.tick(now)
        if now - self._last_stats >= self.cfg.mqtt.stats_interval_s:
            self._last_stats = now
            stats = self.stats()
            self.notifier.status(self._status_line(stats))
            self.reporter.stats(stats)

    def stats(self, cpu: CpuMeter | None = None) -> dict[str, Any]:
        """The ``stats`` figures; ``cpu`` measures since its own last reading (default: ours)."""
        return self.figures.stats(self.cfg.mode, self.pipeline.stats(), self.publisher, cpu)

    def _status_line(self, stats: dict[str, Any] | None = None) -> str:
        model = self.pipeline.model_info().name
        return status_line(
            self.cfg.mode, model, self.reporter.label, stats, camera_ok=self.reporter.camera_ok
        )

    # ------------------------------------------------------------------ swap and reload
    def _switch(self, pipeline: Pipeline) -> None:
        old, self._pipeline = self.pipeline, pipeline
        if old is not pipeline:
            old.stop(keep=pipeline.parts())
            pipeline.start()

    def swap(self, pipeline: Pipeline, cfg: Config) -> None:
        """A model swap (``cmd/model``): switch, keep it across restarts, say so in state."""
        mode_changed = cfg.mode != self.cfg.mode
        self._switch(pipeline)
        self.cfg = cfg
        overrides.save(cfg, self.file_cfg)
        if mode_changed and self.publisher is not None:
            self.publisher.set_mode(cfg.mode)
        self.reporter.end_label("model swap")

    def reload(self) -> None:
        """SIGHUP: apply a new config; an invalid one keeps the running config and says why."""
        self.notifier.reloading()
        try:
            loaded = load_config(self.config_path, self.options)
            self._apply(overrides.apply(loaded))
            self.file_cfg = loaded
        except EdgeError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            self.notifier.send("READY=1", f"STATUS=config reload refused: {exc}")
            self.reporter.event("config", ok=False, error=str(exc))
            return
        log.info("config reloaded from %s", self.config_path)
        self.notifier.send("READY=1", f"STATUS={self._status_line()}")
        self.reporter.event("config", ok=True)

    def _apply(self, new: Config) -> None:
        """Build every part the new config changes, then switch; a failure changes nothing."""
        old = self.cfg
        unchanged = {"mqtt": old.mqtt, "device_id": old.device_id, "log_level": old.log_level}
        rebuild = new.model_copy(update=unchanged) != old
        new_publisher = new.mqtt != old.mqtt or new.device_id != old.device_id
        new_publisher = new_publisher or new.mode != old.mode
        pipeline = self.pipeline
        publisher = self.publisher
        try:
            if rebuild:
                pipeline = self.build(new, self.pipeline.kept(old, new))
            if new_publisher:
                publisher = self._make_publisher(new)
        except BaseException:
            if pipeline is not self.pipeline:
                pipeline.stop(keep=self.pipeline.parts())
            raise
        if self.faces is not None:
            self.faces.reconfigured(new.web, new.metrics)
        self.cfg = new
        self._switch(pipeline)
        if publisher is not self.publisher:
            if self.publisher is not None:
                self.publisher.close(timeout=1.0)
            self.publisher = publisher
            self.reporter.sink = publisher
            if publisher is not None:
                publisher.start()

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop within ~2 s: camera and MQTT flush run side by side."""
        self.notifier.stopping()
        self.inbox.close()
        if self.faces is not None:
            self.faces.stop()
        threads = []
        if self._pipeline is not None:
            threads.append(threading.Thread(target=self._pipeline.stop, daemon=True))
        if self.publisher is not None:
            threads.append(
                threading.Thread(target=self.publisher.stop, kwargs={"timeout": 1.5}, daemon=True)
            )
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=1.8)
        self.notifier.close()
        log.info("stopped")
