"""Video mode: capture → stream classifier → smoother → reporter, one frame per tick."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.app.pipeline import LastFrame, Mode, ModelInfo, Parts, PipelineStats, Source
from edge.app.teaching import make_teacher
from edge.errors import EdgeError
from edge.frame import Frame
from edge.loader import load_video_model
from edge.smoothing import Smoother
from edge.stats import RateMeter, Window

if TYPE_CHECKING:
    from edge.app.reporter import Reporter
    from edge.classifiers.stream import StreamClassifier
    from edge.config import Config
    from edge.sources.base import Capture

log = logging.getLogger("edge.video")


class VideoPipeline:
    mode: Mode = "video"

    def __init__(
        self,
        cfg: Config,
        capture: Capture,
        classifier: StreamClassifier,
        smoother: Smoother,
        reporter: Reporter,
        last: LastFrame,
        *,
        capture_running: bool = False,
    ) -> None:
        self.teacher = make_teacher(cfg, classifier, reporter)
        self._taught_version = self.teacher.version
        if self.teacher.labels != smoother.labels:
            smoother = Smoother(self.teacher.labels, cfg.smoother)
        self.cfg = cfg
        self.capture = capture
        self.classifier = classifier
        self.smoother = smoother
        self.reporter = reporter
        self.description = capture.description
        self._capture_running = capture_running
        self.infer_ms = Window(512)
        self.model_rate = RateMeter(10.0)
        self.last = last
        self._started = time.monotonic()

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
    ) -> VideoPipeline:
        """Load what ``parts`` lacks; ``request``: a model asked for over MQTT, checked harder."""
        if parts.source is not None and parts.source.capture is None:
            raise EdgeError(
                f"video mode needs a camera or stream source, not source.kind {cfg.source.kind!r}"
            )
        classifier = parts.stream
        if classifier is None:
            classifier = load_stream(cfg, request=request)
        if request:
            probe(classifier)
        smoother = parts.smoother or Smoother(classifier.labels, cfg.smoother)
        kept = parts.source.capture if parts.source is not None else None
        need = max(classifier.input_size)
        if kept is not None and (kept.scaled_to is None or kept.scaled_to >= need):
            return cls(cfg, kept, classifier, smoother, reporter, last, capture_running=True)
        from edge.sources.factory import make_capture

        capture = make_capture(cfg.source, cfg.model.fps, classifier.input_size)
        return cls(cfg, capture, classifier, smoother, reporter, last)

    # ------------------------------------------------------------------ protocol
    def start(self) -> None:
        self._started = time.monotonic()
        if not self._capture_running:
            self.capture.start()
            self._capture_running = True
        self.reporter.set_model("video", self.model_info())
        self.reporter.taught = self.teacher.summary()

    def tick(self) -> bool:
        frame = self.capture.get(timeout=0.2)
        if frame is not None:
            self._step(frame)
        elif self.capture.finished:
            log.info("end of %s (set source.loop to play it again)", self.capture.description)
            return False
        self._watch_camera()
        return True

    def stop(self, keep: Parts | None = None) -> None:
        kept = keep.source.capture if keep is not None and keep.source is not None else None
        if self.capture is not kept:
            self.capture.stop()
        self.teacher.close()

    def reset(self) -> None:
        self.classifier.reset()
        self.smoother.reset()

    def classify(self, source: str) -> dict[str, Any]:
        raise EdgeError("classify works in still mode; switch with cmd/model mode=still")

    def stats(self) -> PipelineStats:
        cap = self.capture.stats
        return PipelineStats(
            camera_fps=cap.camera_fps,
            model_fps=self.model_rate.rate(),
            inference_p50_ms=self.infer_ms.percentile(50),
            inference_p95_ms=self.infer_ms.percentile(95),
            dropped_frames=cap.dropped,
            skipped_frames=cap.skipped,
            reconnects=cap.reconnects,
            stalls=cap.stalls,
        )

    def model_info(self) -> ModelInfo:
        return ModelInfo(self.classifier.name, self.classifier.sha256)

    def snapshot(self) -> Frame | None:
        return self.last.frame

    def alive(self) -> bool:
        return self.last.fresh(self.cfg.source.frame_timeout_s)

    def parts(self) -> Parts:
        return Parts(Source(self.capture), self.classifier, self.smoother)

    def kept(self, old: Config, new: Config) -> Parts:
        if new.mode != "video":
            return Parts()
        same_model = new.model == old.model and new.models_dir == old.models_dir
        return Parts(
            source=Source(self.capture) if new.source == old.source else None,
            stream=self.classifier if same_model else None,
            smoother=self.smoother if same_model and new.smoother == old.smoother else None,
        )

    # ------------------------------------------------------------------ internals
    def _step(self, frame: Frame) -> None:
        pred = self.classifier.step(frame)
        self.infer_ms.add(pred.inference_ms)
        self.model_rate.tick()
        self.last.seen(frame)
        if pred.extra.get("reset"):
            self.teacher.cancel_session("the stream was reset")
        pred = self.teacher.publish(pred, frame.image)
        if self.teacher.version != self._taught_version:
            self._relabel()
        stable = self.smoother.update(pred.probs, frame.timestamp)
        self.reporter.step(stable, frame, pred)

    def _watch_camera(self) -> None:
        reporter = self.reporter
        timeout = self.cfg.source.frame_timeout_s
        if not reporter.ready:
            # A source that never delivers a first frame is stalled too, and says so.
            if reporter.camera_ok and time.monotonic() - self._started > timeout:
                error = self.capture.stats.error
                log.warning(
                    "camera: no first frame within %g s%s", timeout, f" ({error})" if error else ""
                )
                reporter.camera(False)
            return
        ok = self.alive()
        if ok == reporter.camera_ok:
            return
        if ok:
            log.info("camera: frames again")
        else:
            log.warning("camera: no frame for %g s", self.cfg.source.frame_timeout_s)
            self.teacher.cancel_session("the camera stalled")
            self.smoother = Smoother(self.teacher.labels, self.cfg.smoother)
        reporter.camera(ok)

    def _relabel(self) -> None:
        """Taught classes changed: a smoother over the new labels; the old label ends."""
        self._taught_version = self.teacher.version
        self.smoother = Smoother(self.teacher.labels, self.cfg.smoother)
        self.reporter.taught = self.teacher.summary()
        self.reporter.end_label("taught classes changed")


def load_stream(cfg: Config, *, request: bool = False) -> StreamClassifier:
    return load_video_model(cfg.model, cfg.resolved_models_dir, request=request)


def probe(classifier: StreamClassifier) -> None:
    """Run a model asked for over MQTT once on a blank frame, before it replaces a working one."""
    blank = np.zeros((240, 320, 3), np.uint8)
    classifier.step(Frame(blank, time.monotonic(), 0, -1, time.time()))
    classifier.reset()
