"""From a loaded classifier and a file (photo or clip) to embeddings to teach or classify.

A photo gives one example and two augmented views (its mirror image, a centre crop) that
the linear head trains on; a clip gives one example per second of video once the model
has seen a second of it, since an action is a stretch of time, not one frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import SourceError
from edge.imagefile import IMAGE_SUFFIXES
from edge.nativeio import native_stderr
from edge.teach.embedding import StreamEmbedding
from edge.teach.store import ModelKey

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".3gp")
THUMBNAIL_SIDE = 64
CLIP_WARMUP_S = 1.0
CLIP_EVERY_S = 1.0
CROP = 0.8


def file_kind(path: Path) -> str:
    """'image' or 'video' from the name, else from the content; SourceError for neither."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    try:
        head = path.read_bytes()[: 1 << 20]
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head and cv2.imdecode(np.frombuffer(head, np.uint8), cv2.IMREAD_COLOR) is not None:
        return "image"
    noise: list[str] = []  # FFmpeg's complaints about a file that is not a video
    with native_stderr(noise):
        cap = cv2.VideoCapture(str(path))
        try:
            if cap.isOpened() and cap.read()[0]:
                return "video"
        finally:
            cap.release()
    raise SourceError(f"{path}: neither an image nor a video")


def expand(paths: list[str]) -> list[Path]:
    """Files named, and the images and clips inside folders named (sorted)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
            )
            if not found:
                raise SourceError(f"{path}: no images or video clips in this folder")
            out.extend(found)
        elif not path.exists():
            raise SourceError(f"{path}: no such file")
        else:
            out.append(path)
    return out


def thumbnail(bgr: np.ndarray) -> bytes | None:
    h, w = bgr.shape[:2]
    scale = THUMBNAIL_SIDE / max(h, w)
    small = cv2.resize(
        bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    ok, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    return jpg.tobytes() if ok else None


@dataclass(frozen=True, slots=True)
class Sample:
    """One embedding with what it came from."""

    embedding: np.ndarray
    views: tuple[np.ndarray, ...]
    source: str
    thumbnail: bytes | None
    timestamp: float = 0.0


class ImageEmbedder:
    """Embeddings of photos from an image classifier's pooled features."""

    kind = "image"

    def __init__(self, classifier: Any) -> None:
        tensor = classifier.enable_embedding()
        self.classifier = classifier
        self.key = ModelKey(classifier.sha256, tensor.name, classifier.name)

    def embed(self, bgr: np.ndarray) -> np.ndarray:
        return np.asarray(self.classifier.classify(bgr).extra["embedding"])

    def sample(self, bgr: np.ndarray, source: str) -> Sample:
        h, w = bgr.shape[:2]
        c = max(1, int(min(h, w) * CROP))
        y, x = (h - c) // 2, (w - c) // 2
        views = (
            self.embed(np.ascontiguousarray(bgr[:, ::-1])),
            self.embed(np.ascontiguousarray(bgr[y : y + c, x : x + c])),
        )
        return Sample(self.embed(bgr), views, source, thumbnail(bgr))

    def samples(self, path: Path) -> Iterator[Sample]:
        from edge.classifiers.image import read_image

        yield self.sample(read_image(path), f"file:{path.name}")

    def embedding_of(self, path: Path) -> np.ndarray:
        from edge.classifiers.image import read_image

        return self.embed(read_image(path))


class ClipEmbedder:
    """Embeddings of stretches of a clip from a MoViNet stream model's pooled state."""

    kind = "video"

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier
        self.reader = StreamEmbedding(classifier)
        self.key = ModelKey(classifier.sha256, self.reader.name, classifier.name)

    def samples(self, path: Path) -> Iterator[Sample]:
        from edge.pacing import Pacer
        from edge.sources.video_file import VideoFile

        clf = self.classifier
        clf.reset()
        video = VideoFile(str(path))
        start = taken = None
        last = None
        for frame in video.frames(Pacer(clf.fps).take):
            clf.step(frame)
            t = frame.timestamp
            start = t if start is None else start
            last = frame
            if t - start + 1e-9 >= CLIP_WARMUP_S and (
                taken is None or t - taken + 1e-9 >= CLIP_EVERY_S
            ):
                taken = t
                yield Sample(
                    self.reader.read(), (), f"file:{path.name}@{t:.1f}s", thumbnail(frame.image), t
                )
        if last is None:
            raise SourceError(f"{path}: no frame could be read")
        if taken is None:  # a clip shorter than the warm-up still gives one example
            yield Sample(
                self.reader.read(), (), f"file:{path.name}", thumbnail(last.image), last.timestamp
            )

    def embedding_of(self, path: Path) -> np.ndarray:
        """One embedding for a whole clip: the mean of its per-second ones."""
        from edge.teach.learners import normalise

        return normalise(np.stack([s.embedding for s in self.samples(path)])).mean(axis=0)
