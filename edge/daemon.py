"""The sensor daemon: wires source → classifier → smoother → publisher and owns the life cycle.

It holds no model, camera or MQTT logic of its own; it decides when each piece
runs, and handles signals, systemd notify/watchdog, stats, config reload and
model swaps.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge import __version__
from edge.config import Config, ModelConfig, load_config
from edge.errors import EdgeError
from edge.frame import Frame
from edge.loader import load_for_mode
from edge.mqtt.payloads import event_payload, reply_payload, state_payload
from edge.notify import Notifier
from edge.stats import CpuMeter, RateMeter, Window, rss_bytes

log = logging.getLogger("edge.daemon")

OVERRIDE_FILE = "model-override.json"  # a model swapped in over MQTT, kept across restarts


@dataclass(slots=True)
class _Timers:
    last_state: float = 0.0
    last_stats: float = 0.0
    last_frame: float = 0.0  # monotonic time of the last frame processed
    next_still: float = 0.0


class Daemon:
    def __init__(
        self, cfg: Config, config_path: Path | None = None, overrides: dict | None = None
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = overrides or {}
        self.notifier = Notifier()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.started = time.monotonic()
        self.timers = _Timers()
        self.infer_ms = Window(512)
        self.model_rate = RateMeter(10.0)
        self.cpu = CpuMeter()
        self.last_frame: Frame | None = None
        self._since_wall: float | None = None
        self._file_cfg = cfg  # the config as loaded, before a kept model swap
        self._camera_ok = True
        self.last_stable: Any = None
        self.ready = False
        self.capture: Any = None
        self.publisher: Any = None
        self.classifier: Any = None
        self.smoother: Any = None
        self.station: Any = None
        self.still_classifiers: list[Any] = []
        self.camera: Any = None  # still mode: a command that takes a photo
        self.watcher: Any = None

    # ------------------------------------------------------------------ set-up
    def _prepare_dirs(self) -> None:
        for path in (self.cfg.state_dir, self.cfg.resolved_models_dir):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EdgeError(f"state_dir: cannot create {path}: {exc.strerror}") from None

    def _model_info(self) -> dict[str, Any]:
        if self.cfg.mode == "video" and self.classifier is not None:
            return {"name": self.classifier.name, "sha256": self.classifier.sha256}
        if self.still_classifiers:
            first = self.still_classifiers[0]
            return {"name": first.name, "sha256": first.sha256}
        return {"name": None, "sha256": None}

    def _load_models(self, cfg: Config) -> tuple[Any, list[Any]]:
        models_dir = cfg.resolved_models_dir
        if cfg.mode == "video":
            return load_for_mode(cfg.model, "video", models_dir), []
        return None, [load_for_mode(m, "still", models_dir) for m in cfg.still_model_list]

    def _make_smoother(self, labels: list[str]) -> Any:
        from edge.smoothing import Smoother

        return Smoother(labels, self.cfg.smoother)

    def _make_capture(self, cfg: Config) -> Any:
        if cfg.mode == "still" and cfg.source.kind == "command":
            from edge.sources.command import CommandCamera

            self.camera = CommandCamera(
                cfg.source.command or "", timeout_s=cfg.source.command_timeout_s, cancel=self._stop
            )
            return None
        from edge.sources.factory import make_capture

        return make_capture(cfg.source, model_fps=cfg.model.fps)

    def _make_publisher(self, cfg: Config) -> Any:
        if not cfg.mqtt.enabled:
            return None
        from edge.mqtt.publisher import Publisher

        publisher = Publisher(
            cfg.mqtt,
            cfg.device_id,
            cfg.state_dir / "outbox.sqlite",
            model_info=self._model_info,
            mode=cfg.mode,
        )
        publisher.check()
        return publisher

    def _make_station(self, cfg: Config) -> Any:
        from edge.history import History
        from edge.still import StillStation

        publish = self.publisher.publish_result if self.publisher else (lambda payload: None)
        history = History(cfg.state_dir / "history.sqlite")
        self.watcher = None
        if cfg.still.watch_dir:
            from edge.sources.watch import FolderWatcher

            self.watcher = FolderWatcher(
                cfg.still.watch_dir, state_path=cfg.state_dir, poll_s=cfg.still.watch_poll_s
            )
        return StillStation(
            self.still_classifiers,
            history,
            publish,
            state_dir=cfg.state_dir,
            still=cfg.still,
        )

    # ------------------------------------------------------- model swap, kept
    # A swap over MQTT outlives restarts and reloads, until the config file's own model
    # settings change: then the file, the operator's newer word, wins.

    @staticmethod
    def _model_fields(cfg: Config) -> dict[str, Any]:
        return {
            "mode": cfg.mode,
            "model": cfg.model.model_dump(mode="json"),
            "still_models": [m.model_dump(mode="json") for m in cfg.still_models],
        }

    def _override_path(self, cfg: Config) -> Path:
        return cfg.state_dir / OVERRIDE_FILE

    def _save_override(self) -> None:
        path = self._override_path(self.cfg)
        data = {"file": self._model_fields(self._file_cfg), **self._model_fields(self.cfg)}
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("%s: cannot keep the model swap across restarts: %s", path, exc)

    def _with_override(self, cfg: Config) -> Config:
        path = self._override_path(cfg)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cfg
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable, ignored: %s", path, exc)
            return cfg
        if data.get("file") != self._model_fields(cfg):
            log.info("the config's model settings changed since the last swap; using them")
            path.unlink(missing_ok=True)
            return cfg
        try:
            return cfg.model_copy(
                update={
                    "mode": data["mode"],
                    "model": ModelConfig(**data["model"]),
                    "still_models": [ModelConfig(**m) for m in data["still_models"]],
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("%s: invalid, ignored: %s", path, exc)
            return cfg

    def start(self) -> None:
        """Load everything that can fail on bad input before touching the network."""
        self._file_cfg = self.cfg
        self.cfg = cfg = self._with_override(self.cfg)
        self._prepare_dirs()
        self.classifier, self.still_classifiers = self._load_models(cfg)
        if self.classifier is not None:
            self.smoother = self._make_smoother(self.classifier.labels)
        self.capture = self._make_capture(cfg)
        self.publisher = self._make_publisher(cfg)
        if cfg.mode == "still":
            self.station = self._make_station(cfg)
        if self.publisher:
            self.publisher.start()
        if self.capture:
            self.capture.start()
        log.info(
            "edge %s started: device %s, mode %s, model %s, source %s",
            __version__,
            cfg.device_id,
            cfg.mode,
            self._model_info()["name"],
            getattr(self.capture, "description", cfg.source.command or "none"),
        )
        self.notifier.status("starting: waiting for the first frame")
        if cfg.mode == "still":
            self._mark_ready()

    def _mark_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.notifier.ready(self._status_line())
            self._publish_state(time.time())

    # --------------------------------------------------------------- main loop
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def run(self, duration_s: float | None = None) -> int:
        self.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                self._tick()
        finally:
            self.shutdown()
        return 0

    def _tick(self) -> None:
        if self.cfg.mode == "video":
            frame = self.capture.get(timeout=0.2)
            if frame is not None:
                self._video_step(frame)
            elif getattr(self.capture, "finished", False):
                log.info("end of %s (set source.loop to play it again)", self.capture.description)
                self._stop.set()
        else:
            self._still_tick()
        self._handle_commands()
        self._housekeeping(time.time())

    def _video_step(self, frame: Frame) -> None:
        self.last_frame = frame
        pred = self.classifier.step(frame)
        self.infer_ms.add(pred.inference_ms)
        self.model_rate.tick()
        self.timers.last_frame = time.monotonic()
        stable = self.smoother.update(pred.probs, frame.timestamp)
        self.last_stable = stable
        now = time.time()
        if not self.ready:
            self._mark_ready()
        if stable.changed:
            log.info("label: %s (%.2f)", stable.label or "none", stable.score)
        if stable.changed and self.publisher:
            since_wall = None
            if stable.since is not None:  # the smoother's clock is the frames'; state uses wall
                since_wall = frame.wall_time - (frame.timestamp - stable.since)
            if stable.previous:
                self.publisher.publish_event(
                    event_payload("end", ts=now, label=stable.previous, frame_ts=frame.wall_time)
                )
            if stable.label:
                self.publisher.publish_event(
                    event_payload(
                        "start",
                        ts=now,
                        label=stable.label,
                        score=stable.score,
                        since=since_wall,
                        frame_ts=frame.wall_time,
                    )
                )
            self._publish_state(now, since_wall)
        if self.publisher:
            self.publisher.publish_prediction(
                {
                    "ts": now,
                    "frame_ts": frame.wall_time,
                    "frame": frame.seq,
                    "raw": [s.as_dict() for s in pred.top],
                    "smoothed": [s.as_dict() for s in stable.top],
                    "label": stable.label,
                    "inference_ms": round(pred.inference_ms, 3),
                }
            )

    # ------------------------------------------------------------------ still
    def _still_tick(self) -> None:
        interval = self.cfg.still.interval_s
        if interval > 0 and time.monotonic() >= self.timers.next_still:
            self.timers.next_still = time.monotonic() + interval
            try:
                self._take_photo("schedule")
            except EdgeError as exc:
                log.warning("scheduled photo failed: %s", exc)
            except Exception:  # the disk, or a bug: keep the device running
                log.exception("scheduled photo failed")
        if self.watcher is not None:
            try:
                self.station.poll_watch(self.watcher)
            except Exception:
                log.exception("watched folder %s", self.cfg.still.watch_dir)
        if self.capture is not None:
            frame = self.capture.get(timeout=0.05)
            if frame is not None:
                self.last_frame = frame
                self.timers.last_frame = time.monotonic()
        else:
            self._stop.wait(0.1)

    def _take_photo(self, source: str) -> dict[str, Any]:
        if self.camera is not None:
            path = self.camera.capture(self.station.new_image_path())
            return self.station.classify_path(path, source=source)
        frame = self.capture.get(timeout=2.0) if self.capture is not None else None
        if frame is None and self._frames_fresh():
            frame = self.last_frame
        if frame is None:
            raise EdgeError(
                f"no frame from the camera in the last {self.cfg.source.frame_timeout_s:g} s"
            )
        self.last_frame = frame
        return self.station.classify_image(frame.image, source=source)

    # --------------------------------------------------------------- commands
    def _handle_commands(self) -> None:
        if not self.publisher:
            return
        queue = self.publisher.commands()
        while not queue.empty():
            cmd = queue.get_nowait()
            try:
                reply = reply_payload(True, id=cmd.id, **self._run_command(cmd.name, cmd.args))
            except EdgeError as exc:
                reply = reply_payload(False, id=cmd.id, error=str(exc))
            except Exception as exc:  # a bug or the disk: say so, keep running
                log.exception("command %s failed", cmd.name)
                error = f"internal error: {exc.__class__.__name__}: {exc}"
                reply = reply_payload(False, id=cmd.id, error=error)
            self.publisher.reply(cmd.name, reply)

    def _run_command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "reset":
            if self.classifier is not None:
                self.classifier.reset()
            if self.smoother is not None:
                self.smoother.reset()
            return {"reset": True}
        if name == "snapshot":
            return self._snapshot()
        if name == "classify":
            if self.cfg.mode != "still":
                raise EdgeError("classify works in still mode; switch with cmd/model mode=still")
            return {"result": self._take_photo("command")}
        if name == "model":
            return self._swap_model(args)
        raise EdgeError(f"unknown command {name!r}")

    def _snapshot(self) -> dict[str, Any]:
        frame = self.last_frame
        if frame is None:
            raise EdgeError("no frame captured yet")
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            raise EdgeError("could not encode the snapshot")
        snap_dir = self.cfg.state_dir / "snapshots"
        snap_dir.mkdir(parents=True, exist_ok=True)
        path = snap_dir / "latest.jpg"
        path.write_bytes(jpeg.tobytes())
        h, w = frame.image.shape[:2]
        return {
            "path": str(path),
            "width": w,
            "height": h,
            "frame_ts": frame.wall_time,
            "jpeg_base64": base64.b64encode(jpeg.tobytes()).decode("ascii"),
        }

    def _swap_model(self, args: dict[str, Any]) -> dict[str, Any]:
        """Load the requested model beside the running one; swap only if it loads and runs."""
        spec = args.get("name") or args.get("path")
        mode = args.get("mode") or self.cfg.mode
        if mode == "video" and self.capture is None:
            raise EdgeError("video mode needs a camera or stream source, not a photo command")
        fields: dict[str, Any] = {"name": args["name"]} if args.get("name") else {"path": spec}
        if "path" in fields and not Path(spec).is_absolute():
            # Kept as an absolute path, so the swap still resolves after a restart.
            fields["path"] = str(self.cfg.resolved_models_dir / spec)
        if args.get("sha256"):
            fields["sha256"] = args["sha256"]
        base = self.cfg.model.model_dump(exclude={"name", "path", "sha256", "labels"})
        try:
            model_cfg = ModelConfig(**base, **fields)
        except ValueError as exc:
            raise EdgeError(f"invalid model request: {exc}") from None
        new = load_for_mode(model_cfg, mode, self.cfg.resolved_models_dir, request=True)
        probe = np.zeros((240, 320, 3), np.uint8)
        if mode == "video":
            new.step(Frame(probe, time.monotonic(), 0, -1, time.time()))
            new.reset()
        else:
            new.classify(probe)
        old_mode = self.cfg.mode
        updates: dict[str, Any] = {"mode": mode}
        if mode == "video":
            updates["model"] = model_cfg
            self.classifier, self.still_classifiers = new, []
            self.smoother = self._make_smoother(new.labels)
        else:
            updates["still_models"] = [model_cfg]
            self.classifier, self.still_classifiers = None, [new]
        self.cfg = self.cfg.model_copy(update=updates)
        self._save_override()
        if mode == "still":
            self._replace_station(self._make_station(self.cfg))
        if old_mode != mode and self.publisher is not None:
            self.publisher.set_mode(mode)
        self.last_stable = None
        self._publish_state(time.time())
        log.info("model swapped to %s (%s mode)", new.name, mode)
        return {"model": {"name": new.name, "sha256": new.sha256}, "mode": mode}

    # ----------------------------------------------------------------- output
    def _publish_state(self, now: float, since: float | None = None) -> None:
        self.timers.last_state = now
        if not self.publisher:
            return
        stable = self.last_stable
        payload = state_payload(
            label=getattr(stable, "label", None),
            score=getattr(stable, "score", 0.0),
            since=since if since is not None else self._since_wall,
            top=getattr(stable, "top", ()),
            model=self._model_info(),
            mode=self.cfg.mode,
            ts=now,
        )
        payload["camera"] = "ok" if self._camera_ok else "stalled"
        if since is not None:
            self._since_wall = since
        self.publisher.publish_state(payload)

    def _frames_fresh(self) -> bool:
        last = self.timers.last_frame
        return bool(last) and time.monotonic() - last < self.cfg.source.frame_timeout_s

    def _housekeeping(self, now: float) -> None:
        # The watchdog is fed only while the camera delivers; a photo command is run
        # on demand and has its own timeout.
        alive = self._frames_fresh() or (self.cfg.mode == "still" and self.capture is None)
        if alive and self.ready:
            self.notifier.watchdog()
        if self.ready and self.cfg.mode == "video" and alive != self._camera_ok:
            self._camera_changed(alive, now)
        if self.ready and now - self.timers.last_state >= self.cfg.mqtt.heartbeat_s:
            self._publish_state(now)
        if now - self.timers.last_stats >= self.cfg.mqtt.stats_interval_s:
            self.timers.last_stats = now
            stats = self.stats()
            self.notifier.status(self._status_line(stats))
            if self.publisher:
                self.publisher.publish_stats(stats)

    def _camera_changed(self, ok: bool, now: float) -> None:
        """A stalled camera ends the current label: state must not go on claiming it."""
        self._camera_ok = ok
        if ok:
            log.info("camera: frames again")
        else:
            log.warning("camera: no frame for %g s", self.cfg.source.frame_timeout_s)
        if self.publisher:
            self.publisher.publish_event(
                event_payload("camera", ts=now, state="ok" if ok else "stalled")
            )
        if ok:
            return
        label = getattr(self.last_stable, "label", None)
        if label and self.publisher:
            self.publisher.publish_event(
                event_payload("end", ts=now, label=label, reason="camera stalled")
            )
        if self.classifier is not None:
            self.smoother = self._make_smoother(self.classifier.labels)
        self.last_stable = None
        self._since_wall = None
        self._publish_state(now)

    def stats(self) -> dict[str, Any]:
        cap = self.capture.stats if self.capture is not None else None
        p50, p95 = self.infer_ms.percentile(50), self.infer_ms.percentile(95)
        return {
            "ts": time.time(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "mode": self.cfg.mode,
            "camera_fps": round(cap.camera_fps, 2) if cap else None,
            "model_fps": round(self.model_rate.rate(), 2),
            "inference_ms": {
                "p50": None if p50 is None else round(p50, 2),
                "p95": None if p95 is None else round(p95, 2),
            },
            "dropped_frames": cap.dropped if cap else 0,
            "skipped_frames": cap.skipped if cap else 0,
            "reconnects": cap.reconnects if cap else 0,
            "stalls": cap.stalls if cap else 0,
            "outbox_depth": self.publisher.outbox_depth if self.publisher else 0,
            "outbox_dropped": self.publisher.dropped if self.publisher else 0,
            "mqtt_connected": bool(self.publisher and self.publisher.connected),
            "cpu_percent": round(self.cpu.percent(), 1),
            "rss_mb": round(rss_bytes() / 2**20, 1),
        }

    def _status_line(self, stats: dict[str, Any] | None = None) -> str:
        label = getattr(self.last_stable, "label", None) or "-"
        if stats is None:
            return f"{self.cfg.mode}: {self._model_info()['name']}, label {label}"
        p50 = stats["inference_ms"]["p50"]
        return (
            f"{self.cfg.mode}: label {label}, {stats['model_fps']} steps/s, "
            f"infer p50 {p50} ms, outbox {stats['outbox_depth']}, "
            f"mqtt {'up' if stats['mqtt_connected'] else 'down'}"
        )

    # ----------------------------------------------------------------- reload
    def reload(self) -> None:
        """SIGHUP: apply a new config; an invalid one keeps the running config and says why."""
        self.notifier.reloading()
        try:
            loaded = load_config(self.config_path, self.overrides)
            self._apply(self._with_override(loaded))
            self._file_cfg = loaded
        except EdgeError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            self.notifier.send("READY=1", f"STATUS=config reload refused: {exc}")
            if self.publisher:
                self.publisher.publish_event(
                    event_payload("config", ts=time.time(), ok=False, error=str(exc))
                )
            return
        log.info("config reloaded from %s", self.config_path)
        self.notifier.send("READY=1", f"STATUS={self._status_line()}")
        if self.publisher:
            self.publisher.publish_event(event_payload("config", ts=time.time(), ok=True))

    def _apply(self, new: Config) -> None:
        """Build every part the new config changes, then switch; a failure changes nothing."""
        old = self.cfg
        models_changed = (
            new.mode != old.mode or new.model != old.model or new.still_models != old.still_models
        )
        source_changed = new.source != old.source or new.mode != old.mode
        mqtt_changed = new.mqtt != old.mqtt or new.device_id != old.device_id
        replace_publisher = mqtt_changed or new.mode != old.mode
        classifier, stills, capture, publisher = None, [], None, None
        camera_before = self.camera
        try:
            if models_changed:
                classifier, stills = self._load_models(new)
            if source_changed:
                capture = self._make_capture(new)
            if replace_publisher:
                publisher = self._make_publisher(new)
        except BaseException:
            self.camera = camera_before
            if capture is not None:
                capture.stop()
            raise
        self.cfg = new
        if models_changed:
            self.classifier, self.still_classifiers = classifier, stills
        if self.classifier is not None and (models_changed or new.smoother != old.smoother):
            self.smoother = self._make_smoother(self.classifier.labels)
        if source_changed:
            if self.capture is not None:
                self.capture.stop()
            self.capture = capture
            if self.capture is not None:
                self.capture.start()
        if replace_publisher:
            if self.publisher is not None:
                self.publisher.close(timeout=1.0)
            self.publisher = publisher
            if publisher is not None:
                publisher.start()
        if new.mode == "still":
            self._replace_station(self._make_station(new))

    def _replace_station(self, station: Any) -> None:
        old, self.station = self.station, station
        if old is not None and old is not station:
            close = getattr(old.history, "close", None)
            if close is not None:
                close()

    # --------------------------------------------------------------- shutdown
    def shutdown(self) -> None:
        """Stop within ~2 s: camera and MQTT flush run side by side."""
        self.notifier.stopping()
        threads = []
        if self.capture is not None:
            threads.append(threading.Thread(target=self.capture.stop, daemon=True))
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
