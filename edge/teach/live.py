"""Taught classes in the running sensor: what is published, and teaching while it runs.

One ``LiveTeacher`` per pipeline, bound to its model. Each step's prediction goes through
``publish``: with no taught class it is the model's own; with ``publish: taught`` it is the
taught classes' scores; with ``taught_or_base`` both share one vector, taught scores first
and the model's scaled by what the taught classes leave (their scores sum to almost 1 when
one is recognised, to almost 0 when none is), so the smoother hands over smoothly. A
live teaching session keeps one embedding per second of frames as examples.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.classifiers.base import Prediction, top_k
from edge.errors import EdgeError
from edge.teach.embedders import thumbnail
from edge.teach.encoding import check_label
from edge.teach.head import TaughtHead, attach
from edge.teach.store import Store

log = logging.getLogger("edge.teach")

MAX_SECONDS = 60.0
EVERY_S = 1.0


@dataclass(slots=True)
class Session:
    """Live teaching: ``seconds`` of frames from the first one after the command."""

    label: str
    seconds: float
    start: float | None = None
    last: float | None = None
    embeddings: list[np.ndarray] = field(default_factory=list)
    thumbnails: list[bytes | None] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


class LiveTeacher:
    """The running model's taught classes; errors here never stop the sensor."""

    def __init__(
        self,
        store_path: Path,
        classifier: Any,
        *,
        learner: str = "ncm",
        k: int = 3,
        threshold: float | None = None,
        publish: str = "taught_or_base",
        top: int = 5,
        on_taught: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store_path = store_path
        self._classifier = classifier
        self.base_labels: list[str] = list(classifier.labels)
        self.publish_mode = publish
        self.top_k = top
        self.options: dict[str, Any] = {
            "learner": learner,
            "k": k,
            "threshold": threshold,
            "top": top,
        }
        self.on_taught = on_taught
        self.error: str | None = None
        self.store: Store | None = None
        self.head: TaughtHead | None = None
        self.session: Session | None = None
        self.version = 0  # grows when the taught classes change
        try:
            self.store = Store(store_path)
            self.head = attach(classifier, self.store, required=False, **self.options)
        except EdgeError as exc:
            self.error = str(exc)
            log.error("teaching is off: %s", exc)
            if self.store is not None:
                self.store.close()
                self.store = None
        self._labels = self._published_labels()

    # ------------------------------------------------------------------ what is published
    @property
    def classes(self) -> list[str]:
        return self.head.classes if self.head is not None else []

    @property
    def labels(self) -> list[str]:
        """The label list of the vector ``publish`` returns (what the smoother is built on)."""
        return self._labels

    def _published_labels(self) -> list[str]:
        taught = self.classes
        if not taught:
            return list(self.base_labels)
        if self.publish_mode == "taught":
            return list(taught)
        return list(taught) + [b for b in self.base_labels if b not in set(taught)]

    def publish(self, base: Prediction, image: np.ndarray | None = None) -> Prediction:
        """The prediction to smooth and publish for this step; collects a session's examples."""
        head = self.head
        if head is None:
            return base
        embedding = head.embedding(base) if (self.session or head.classes) else None
        if self.session is not None and embedding is not None:
            self._collect(embedding, base.timestamp, image)
        if not head.classes or embedding is None:
            return base
        taught = head.taught.prediction(embedding, base.model, base.timestamp)
        if self.publish_mode == "taught":
            probs = taught.probs
        else:
            probs = self._combined(taught.probs, base.probs)
        top = top_k(probs, self._labels, self.top_k)
        extra = dict(base.extra)
        extra["taught"] = taught.extra.get("label")
        return Prediction(probs, top, base.model, base.timestamp, base.inference_ms, extra)

    def _combined(self, taught: np.ndarray, base: np.ndarray) -> np.ndarray:
        n = len(taught)
        out = np.zeros(len(self._labels), np.float32)
        out[:n] = taught
        rest = max(0.0, 1.0 - float(taught.sum()))
        index = {label: i for i, label in enumerate(self._labels)}
        where = np.fromiter((index[b] for b in self.base_labels), np.int64, len(self.base_labels))
        np.add.at(out, where, np.asarray(base, np.float32).reshape(-1) * rest)
        return out

    # ------------------------------------------------------------------ teaching
    def _usable(self) -> tuple[Store, TaughtHead]:
        if self.store is None or self.head is None:
            raise EdgeError(f"teaching is unavailable: {self.error or 'no store'}")
        return self.store, self.head

    def start_session(self, label: str, seconds: float) -> dict[str, Any]:
        """``cmd/teach`` in video mode: the next ``seconds`` of frames become examples."""
        self._usable()
        label = check_label(label)
        if not 1.0 <= seconds <= MAX_SECONDS:
            raise EdgeError(f"seconds must be between 1 and {MAX_SECONDS:g}, not {seconds:g}")
        if self.session is not None:
            raise EdgeError(f"already teaching {self.session.label!r}; wait until it is done")
        self.session = Session(label, float(seconds))
        log.info("teaching %r for %g s", label, seconds)
        return {"label": label, "seconds": seconds, "collecting": True}

    def cancel_session(self, reason: str) -> None:
        """The camera stalled or the stream was reset mid-session: nothing half-taught."""
        if self.session is not None:
            label = self.session.label
            self.session = None
            log.warning("teaching %r abandoned: %s", label, reason)
            if self.on_taught is not None:
                self.on_taught({"label": label, "examples": 0, "ok": False, "error": reason})

    def _collect(self, embedding: np.ndarray, t: float, image: np.ndarray | None) -> None:
        s = self.session
        assert s is not None
        if s.start is None:
            s.start = t
        elapsed = t - s.start
        if elapsed + 1e-9 >= EVERY_S and (s.last is None or t - s.last + 1e-9 >= EVERY_S):
            s.last = t
            s.embeddings.append(np.array(embedding, np.float32))
            s.thumbnails.append(thumbnail(image) if image is not None else None)
            s.times.append(t)
        if elapsed + 1e-9 >= s.seconds:
            self.session = None
            try:
                reply = {**self.add(s.label, s.embeddings, "live", s.thumbnails), "ok": True}
            except EdgeError as exc:
                reply = {"label": s.label, "examples": 0, "ok": False, "error": str(exc)}
            if self.on_taught is not None:
                self.on_taught(reply)

    def add(
        self,
        label: str,
        embeddings: list[np.ndarray],
        source: str,
        thumbnails: list[bytes | None] | None = None,
    ) -> dict[str, Any]:
        """Keep examples and fit again at once; the reply/event body."""
        store, head = self._usable()
        label = check_label(label)
        if not embeddings:
            raise EdgeError(f"no example of {label!r} was collected")
        store.add_many(
            label,
            embeddings,
            head.key,
            [source] * len(embeddings),
            thumbnails=thumbnails,
        )
        self._refit()
        count = next((c.count for c in store.classes(head.key) if c.label == label), 0)
        log.info("taught %r: %d new examples, %d in all", label, len(embeddings), count)
        return {"label": label, "examples": len(embeddings), "total": count}

    def forget(self, label: str) -> dict[str, Any]:
        store, head = self._usable()
        label = check_label(label)
        gone = store.forget(label, head.key)
        if not gone:
            raise EdgeError(f"no taught class {label!r} for model {head.key.name}")
        self._refit()
        return {"label": label, "forgotten": gone}

    def describe(self, thumbnails: bool = False) -> dict[str, Any]:
        """``cmd/classes`` and the ``taught`` part of ``state``; ``thumbnails`` adds the newest
        kept thumbnail of each class (base64 JPEG), for a page."""
        if self.head is None or self.store is None:
            return {"classes": [], "error": self.error}
        store, key = self.store, self.head.key
        classes = store.classes(key)
        body: dict[str, Any] = {**self.head.taught.describe(), "publish": self.publish_mode}
        body["classes"] = [{"label": c.label, "examples": c.count} for c in classes]
        if thumbnails:
            for entry in body["classes"]:
                jpeg = store.class_thumbnail(entry["label"], key)
                if jpeg is not None:
                    entry["thumbnail"] = base64.b64encode(jpeg).decode("ascii")
        if not classes:
            body["note"] = f"no taught classes for model {self.head.key.name}"
        if self.session is not None:
            body["teaching"] = self.session.label
        return body

    def _refit(self) -> None:
        store, head = self._usable()
        head.refit(store, **self.options)
        self._labels = self._published_labels()
        self.version += 1

    def summary(self) -> dict[str, Any]:
        """The ``taught`` part of ``state``: small, it goes out with every heartbeat."""
        if self.head is None:
            return {"classes": [], "error": self.error}
        body: dict[str, Any] = {"classes": self.classes, "publish": self.publish_mode}
        if not self.classes:
            body["note"] = f"no taught classes for model {self.head.key.name}"
        return body

    def result_fields(self, classifier: Any, pred: Prediction) -> dict[str, Any] | None:
        """Still mode: the taught classes' answer on a photo, beside the model's own."""
        head = self.head
        if classifier is not self._classifier or head is None or not head.classes:
            return None
        taught = head.step(pred)
        return {"label": taught.extra.get("label"), "top": [s.as_dict() for s in taught.top]}

    def embed_image(self, bgr: np.ndarray) -> np.ndarray:
        """An image model's embedding of a photo (re-labelling a past one)."""
        _, head = self._usable()
        return head.embedding(self._classifier.classify(bgr))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
