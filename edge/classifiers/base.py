"""What every classifier is (the ``Classifier`` protocol), the result types they share, and
the numeric helpers that build them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Scored:
    label: str
    score: float

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "score": round(float(self.score), 6)}


@dataclass(frozen=True, slots=True)
class Prediction:
    """One classifier output. ``probs`` is the full score vector (owned by the prediction)."""

    probs: np.ndarray
    top: tuple[Scored, ...]
    model: str
    timestamp: float
    inference_ms: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


def softmax(logits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    if out is None:
        out = np.empty_like(logits)
    np.subtract(logits, logits.max(), out=out)
    np.exp(out, out=out)
    out /= out.sum()
    return out


def top_k(scores: np.ndarray, labels: list[str], k: int) -> tuple[Scored, ...]:
    scores = np.asarray(scores).reshape(-1)
    k = max(0, min(k, scores.size))
    if k == 0:
        return ()
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return tuple(Scored(labels[i], float(scores[i])) for i in idx)


class Classifier(Protocol):
    """A loaded model, as whoever reports on it sees it (daemon, CLI, MQTT model info).

    How it is run differs per kind (``StreamClassifier.step``, ``ImageClassifier.classify``);
    what it is does not.
    """

    kind: str  # "stream" or "image"
    name: str
    path: Path  # the model file
    sha256: str  # of the model file that runs
    labels: list[str]
    labels_path: Path | None  # where the labels came from; None: class numbers
