"""Taught classes as a classifier head: embedding in, scores and a label (or none) out."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edge.classifiers.base import Prediction, Scored, top_k
from edge.teach.learners import (
    Calibration,
    Learner,
    NearestMean,
    calibrate,
    make_learner,
    normalise,
    scores,
)
from edge.teach.store import Examples, ModelKey, Store


@dataclass(frozen=True, slots=True)
class Verdict:
    """One embedding classified against the taught classes."""

    probs: np.ndarray  # one score per class, 0..1
    top: tuple[Scored, ...]
    label: str | None  # the recognised class, None below the threshold
    similarity: float  # the best class's similarity


class TaughtClasses:
    """The examples of one model fitted by one learner, with a calibrated open-set threshold.

    The linear head's outputs are not similarities, so its open-set gate is the nearest-mean
    similarity: the head chooses the class, the distance to the taught classes says whether
    it is one of them at all.
    """

    def __init__(
        self,
        examples: Examples,
        *,
        learner: str = "ncm",
        k: int = 3,
        threshold: float | None = None,
        top: int = 5,
    ) -> None:
        self.learner_name = learner
        self.size = len(examples)
        self.classes: list[str] = sorted(set(examples.labels))
        self.top_k = top
        self._learner: Learner | None = None
        self._gate: Learner | None = None
        if not self.classes:
            self.calibration = Calibration(0.0, "none")
            return
        if learner == "linear":
            from edge.teach.linear import LinearHead

            self._learner = LinearHead().fit_views(examples.views, examples.labels)
            self._gate = NearestMean().fit(examples.embeddings, examples.labels)
        else:
            self._learner = make_learner(learner, k).fit(examples.embeddings, examples.labels)
            self._gate = self._learner
        base = "knn" if learner == "knn" else "ncm"
        if threshold is not None:
            self.calibration = Calibration(float(threshold), "config")
        else:
            self.calibration = calibrate(base, examples.embeddings, examples.labels, k)

    @classmethod
    def from_store(cls, store: Store, model: ModelKey, **kwargs: object) -> TaughtClasses:
        return cls(store.examples(model), **kwargs)  # type: ignore[arg-type]

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    def __bool__(self) -> bool:
        return bool(self.classes)

    def verdict(self, embedding: np.ndarray) -> Verdict:
        if self._learner is None or self._gate is None:
            return Verdict(np.zeros(0, np.float32), (), None, 0.0)
        q = normalise(np.asarray(embedding, np.float32).reshape(1, -1))[0]
        sims = self._learner.similarities(q)
        gate_sims = sims if self._gate is self._learner else self._gate.similarities(q)
        best = float(gate_sims.max())
        if self._gate is self._learner:
            probs = scores(sims, self.threshold)
        else:
            z = np.exp(sims * 20.0 - (sims * 20.0).max())
            probs = scores(gate_sims, self.threshold)
            probs = (z / z.sum() * probs.sum()).astype(np.float32)
        top = top_k(probs, self.classes, self.top_k)
        label = self.classes[int(np.argmax(probs))] if best >= self.threshold else None
        return Verdict(probs, top, label, best)

    def prediction(
        self, embedding: np.ndarray, model: str, timestamp: float | None = None
    ) -> Prediction:
        """A Prediction over the taught classes, for the smoother and the publishers."""
        v = self.verdict(embedding)
        return Prediction(
            v.probs,
            v.top,
            model,
            time.time() if timestamp is None else timestamp,
            0.0,
            {"label": v.label, "similarity": round(v.similarity, 4), "threshold": self.threshold},
        )

    def describe(self) -> dict[str, object]:
        return {
            "learner": self.learner_name,
            "classes": len(self.classes),
            "examples": self.size,
            "threshold": round(self.threshold, 4),
            "threshold_source": self.calibration.source,
        }
