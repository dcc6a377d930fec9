"""Still mode: a schedule, ``cmd/classify`` and a watched folder feed one ``StillStation``.

Photos come from a photo command (``source.kind: command``) or the latest frame of a
live capture; the station classifies each with every still model and hands one
``results`` message to the reporter.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.app.pipeline import LastFrame, Mode, ModelInfo, Parts, PipelineStats, Source
from edge.app.teaching import make_teacher
from edge.errors import EdgeError, SourceError
from edge.history import History
from edge.loader import load_still_model
from edge.still import StillStation

if TYPE_CHECKING:
    from edge.app.reporter import Reporter
    from edge.classifiers.image import ImageClassifier
    from edge.config import Config
    from edge.frame import Frame
    from edge.sources.watch import FolderWatcher

log = logging.getLogger("edge.still")


class StillPipeline:
    mode: Mode = "still"

    def __init__(
        self,
        cfg: Config,
        source: Source,
        station: StillStation,
        watcher: FolderWatcher | None,
        reporter: Reporter,
        last: LastFrame,
        *,
        cancel: threading.Event,
        capture_running: bool = False,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.station = station
        self.watcher = watcher
        self.reporter = reporter
        self.cancel = cancel
        capture, camera = source
        self.description = (
            capture.description if capture else camera.description if camera else "none"
        )
        self._capture_running = capture_running
        self.last = last
        self._next_photo = 0.0
        self.teacher = make_teacher(cfg, station.classifiers[0], reporter)
        station.taught = self.teacher.result_fields

    @classmethod
    def build(
        cls,
        cfg: Config,
        reporter: Reporter,
        parts: Parts,
        *,
        last: LastFrame,
        cancel: threading.Event,
        request: bool = False,
    ) -> StillPipeline:
        """Load what ``parts`` lacks; ``request``: a model asked for over MQTT, checked harder."""
        classifiers = parts.images
        if classifiers is None:
            classifiers = load_images(cfg, request=request)
        if request:
            for clf in classifiers:
                clf.classify(np.zeros((240, 320, 3), np.uint8))
        source = parts.source if parts.source is not None else make_source(cfg, cancel)
        watcher = None
        if cfg.still.watch_dir:
            from edge.sources.watch import FolderWatcher

            watcher = FolderWatcher(
                cfg.still.watch_dir, state_path=cfg.state_dir, poll_s=cfg.still.watch_poll_s
            )
        history = History(cfg.state_dir / "history.sqlite")
        station = StillStation(
            classifiers,
            history,
            reporter.result,
            state_dir=cfg.state_dir,
            still=cfg.still,
            report=lambda event: reporter.event(event.pop("type"), **event),
        )
        return cls(
            cfg,
            source,
            station,
            watcher,
            reporter,
            last,
            cancel=cancel,
            capture_running=parts.source is not None,
        )

    # ------------------------------------------------------------------ protocol
    def start(self) -> None:
        capture = self.source.capture
        if capture is not None and not self._capture_running:
            capture.start()
            self._capture_running = True
        self.reporter.set_model("still", self.model_info())
        self.reporter.taught = self.teacher.summary()
        self.reporter.mark_ready()

    def tick(self) -> bool:
        interval = self.cfg.still.interval_s
        if interval > 0 and time.monotonic() >= self._next_photo:
            self._next_photo = time.monotonic() + interval
            try:
                self.classify("schedule")
            except EdgeError as exc:
                log.warning("scheduled photo failed: %s", exc)
            except Exception:  # the disk, or a bug: keep the device running
                log.exception("scheduled photo failed")
        if self.watcher is not None:
            try:
                self.station.poll_watch(self.watcher)
            except Exception:
                log.exception("watched folder %s", self.cfg.still.watch_dir)
        capture = self.source.capture
        if capture is not None:
            frame = capture.get(timeout=0.05)
            if frame is not None:
                self.last.seen(frame)
        else:
            self.cancel.wait(0.1)
        return True

    def stop(self, keep: Parts | None = None) -> None:
        capture = self.source.capture
        kept = keep.source.capture if keep is not None and keep.source is not None else None
        if capture is not None and capture is not kept:
            capture.stop()
        self.station.history.close()
        self.teacher.close()

    def reset(self) -> None:
        """Nothing carries over from one photo to the next."""

    def classify(self, source: str) -> dict[str, Any]:
        capture, camera = self.source
        if capture is None and camera is None:
            raise EdgeError(
                f"no camera (source.kind {self.cfg.source.kind!r}): "
                f"photos come only from the watched folder {self.cfg.still.watch_dir}"
            )
        if camera is not None:
            path = camera.capture(self.station.new_image_path())
            return self.station.classify_path(path, source=source)
        frame = capture.get(timeout=2.0) if capture is not None else None
        if frame is None and self.alive() and capture is not None:
            frame = self.last.frame
        if frame is None:
            raise EdgeError(
                f"no frame from the camera in the last {self.cfg.source.frame_timeout_s:g} s"
            )
        self.last.seen(frame)
        return self.station.classify_image(frame.image, source=source)

    def stats(self) -> PipelineStats:
        capture = self.source.capture
        if capture is None:
            return PipelineStats()
        cap = capture.stats
        return PipelineStats(
            camera_fps=cap.camera_fps,
            dropped_frames=cap.dropped,
            skipped_frames=cap.skipped,
            reconnects=cap.reconnects,
            stalls=cap.stalls,
        )

    def model_info(self) -> ModelInfo:
        first = self.station.classifiers[0]
        return ModelInfo(first.name, first.sha256)

    def snapshot(self) -> Frame | None:
        return self.last.frame

    def alive(self) -> bool:
        """A photo command runs on demand with its own timeout: alive without frames."""
        if self.source.capture is None:
            return True
        return self.last.fresh(self.cfg.source.frame_timeout_s)

    def parts(self) -> Parts:
        return Parts(source=self.source, images=self.station.classifiers)

    def kept(self, old: Config, new: Config) -> Parts:
        if new.mode != "still":
            return Parts()
        same_models = (
            new.still_model_list == old.still_model_list and new.models_dir == old.models_dir
        )
        return Parts(
            source=self.source if new.source == old.source else None,
            images=self.station.classifiers if same_models else None,
        )


def make_source(cfg: Config, cancel: threading.Event) -> Source:
    """The photo source; none for ``source.kind: none``, or when ``auto`` finds no camera
    and a watched folder without a schedule is all still mode needs."""
    kind = cfg.source.kind
    if kind == "none":
        return Source()
    if kind == "command":
        from edge.sources.command import CommandCamera

        camera = CommandCamera(
            cfg.source.command or "", timeout_s=cfg.source.command_timeout_s, cancel=cancel
        )
        return Source(camera=camera)
    from edge.sources.factory import make_capture

    try:
        return Source(capture=make_capture(cfg.source, model_fps=cfg.model.fps))
    except SourceError:
        folder_only = cfg.still.watch_dir and not cfg.still.interval_s
        if kind != "auto" or cfg.source.uri or not folder_only:
            raise
    log.warning(
        "no camera found: still mode runs on the watched folder %s only "
        "(source.kind: none says so without looking for a camera)",
        cfg.still.watch_dir,
    )
    return Source()


def load_images(cfg: Config, *, request: bool = False) -> list[ImageClassifier]:
    models_dir = cfg.resolved_models_dir
    return [load_still_model(m, models_dir, request=request) for m in cfg.still_model_list]
