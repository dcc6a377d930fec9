"""What the daemon asks of a mode: the small protocol a video or still pipeline fulfils.

A mode is an object, not a branch: the daemon ticks whichever pipeline it holds, and a
mode switch, a model swap or a reload builds a new one (reusing the parts the change
left alone, see ``Parts``) and replaces the old.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from edge.app.reporter import Reporter
    from edge.classifiers.image import ImageClassifier
    from edge.classifiers.stream import StreamClassifier
    from edge.config import Config
    from edge.frame import Frame
    from edge.smoothing import Smoother
    from edge.sources.base import Capture
    from edge.sources.command import CommandCamera
    from edge.teach.live import LiveTeacher

Mode = Literal["video", "still"]


class ModelInfo(NamedTuple):
    """The model a pipeline runs, as ``state`` and command replies name it."""

    name: str | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """A pipeline's share of the ``stats`` message."""

    camera_fps: float | None = None
    model_fps: float = 0.0
    inference_p50_ms: float | None = None
    inference_p95_ms: float | None = None
    dropped_frames: int = 0
    skipped_frames: int = 0
    reconnects: int = 0
    stalls: int = 0


class LastFrame:
    """The newest frame seen and when. The daemon keeps one for every pipeline it runs, so a
    swap or a reload is not mistaken for a camera stall and a snapshot still has a frame."""

    def __init__(self) -> None:
        self.frame: Frame | None = None
        self.at = 0.0  # time.monotonic() when it was seen

    def seen(self, frame: Frame) -> None:
        self.frame = frame
        self.at = time.monotonic()

    def fresh(self, timeout_s: float) -> bool:
        return bool(self.at) and time.monotonic() - self.at < timeout_s


class Source(NamedTuple):
    """Where a pipeline's images come from: a live capture, a photo command, or neither."""

    capture: Capture | None = None
    camera: CommandCamera | None = None


@dataclass(slots=True)
class Parts:
    """Parts already built (taken over from the running pipeline, or loaded by a swap).

    ``None`` means "build it from the config". A new pipeline starts only the parts it
    built, and the old one stops only the parts the new one did not take over.
    """

    source: Source | None = None
    stream: StreamClassifier | None = None
    smoother: Smoother | None = None
    images: list[ImageClassifier] | None = None


class Pipeline(Protocol):
    mode: Mode
    description: str  # the source, for the start-up log line
    teacher: LiveTeacher  # the running model's taught classes (edge.app.teaching)

    def start(self) -> None:
        """Start the parts this pipeline built itself."""
        ...

    def tick(self) -> bool:
        """Do one bounded step of work (at most a few hundred ms); False once the source
        has ended for good (a file without ``loop``)."""
        ...

    def stop(self, keep: Parts | None = None) -> None:
        """Stop every part that ``keep`` does not hold."""
        ...

    def reset(self) -> None:
        """Forget the stream state and the smoothing (``cmd/reset``)."""
        ...

    def classify(self, source: str) -> dict[str, Any]:
        """Take a photo now and classify it; the ``results`` message. EdgeError if unable."""
        ...

    def stats(self) -> PipelineStats: ...

    def model_info(self) -> ModelInfo: ...

    def snapshot(self) -> Frame | None:
        """The latest frame seen, if any."""
        ...

    def alive(self) -> bool:
        """Whether the camera delivers (the systemd watchdog is fed only while it does)."""
        ...

    def parts(self) -> Parts:
        """What this pipeline is made of."""
        ...

    def kept(self, old: Config, new: Config) -> Parts:
        """The parts a change of config from ``old`` to ``new`` leaves untouched."""
        ...


class Builder(Protocol):
    """Makes a mode's pipeline for ``cfg`` from ``parts`` plus what they lack (not started).

    ``request``: the model was asked for over MQTT, so it is resolved inside the models
    directory only and run once on a blank image before it may replace a working one.
    """

    def __call__(
        self,
        cfg: Config,
        reporter: Reporter,
        parts: Parts,
        *,
        last: LastFrame,
        cancel: threading.Event,
        request: bool = False,
    ) -> Pipeline: ...
