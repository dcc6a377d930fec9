"""Few-shot learners over L2-normalised embeddings, and the open-set threshold.

Every learner gives a similarity per taught class (cosine, -1..1). ``scores`` turns those
into probability-like values the smoother can treat like a model's: a softmax over the
classes, scaled down by how far the best class is from the open-set threshold, so an
embedding that is close to no taught class scores low everywhere ("none of these").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

DEFAULT_THRESHOLD = 0.5  # when there are too few examples to calibrate from
TEMPERATURE = 0.05  # softmax over cosine similarities
GATE_WIDTH = 0.05  # how sharply scores fall below the threshold
MARGIN = 0.05  # below the lowest taught similarities, when classes overlap


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


class Learner(Protocol):
    """Fitted on (embeddings, labels); gives a cosine-like similarity per class."""

    name: str
    classes: list[str]

    def fit(self, x: np.ndarray, labels: Sequence[str]) -> Learner: ...

    def similarities(self, q: np.ndarray) -> np.ndarray: ...


class NearestMean:
    """Cosine similarity to each class's mean embedding (the default)."""

    name = "ncm"

    def __init__(self) -> None:
        self.classes: list[str] = []
        self._means = np.zeros((0, 0), np.float32)

    def fit(self, x: np.ndarray, labels: Sequence[str]) -> NearestMean:
        x = normalise(x)
        self.classes = sorted(set(labels))
        lab = np.asarray(labels)
        dim = x.shape[1] if x.ndim == 2 else 0
        means = np.zeros((len(self.classes), dim), np.float32)
        for i, c in enumerate(self.classes):
            means[i] = x[lab == c].mean(axis=0)
        self._means = normalise(means)
        return self

    def similarities(self, q: np.ndarray) -> np.ndarray:
        return self._means @ normalise(q).reshape(-1)


class NearestNeighbours:
    """Per class, the mean cosine similarity of its k most similar examples."""

    name = "knn"

    def __init__(self, k: int = 3) -> None:
        self.k = k
        self.classes: list[str] = []
        # Plain ndarray: numpy's stubs give shapes that differ between releases (Debian's 2.2).
        self._x: np.ndarray = np.zeros((0, 0), np.float32)
        self._owner: np.ndarray = np.zeros(0, np.int64)

    def fit(self, x: np.ndarray, labels: Sequence[str]) -> NearestNeighbours:
        self.classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(self.classes)}
        self._x = normalise(x)
        self._owner = np.array([index[c] for c in labels], np.int64)
        # Examples grouped by class once, so a query is one matrix product and a sort.
        order = np.argsort(self._owner, kind="stable")
        self._x, self._owner = self._x[order], self._owner[order]
        self._bounds = np.searchsorted(self._owner, np.arange(len(self.classes) + 1))
        return self

    def similarities(self, q: np.ndarray) -> np.ndarray:
        sims = self._x @ normalise(q).reshape(-1)
        out = np.empty(len(self.classes), np.float32)
        for i in range(len(self.classes)):
            part = sims[self._bounds[i] : self._bounds[i + 1]]
            k = min(self.k, part.size)
            out[i] = np.partition(part, part.size - k)[part.size - k :].mean()
        return out


def make_learner(name: str, k: int = 3) -> Learner:
    if name == "knn":
        return NearestNeighbours(k)
    if name == "linear":
        from edge.teach.linear import LinearHead

        return LinearHead()
    return NearestMean()


def scores(similarities: np.ndarray, threshold: float) -> np.ndarray:
    """Probability-like scores in 0..1: softmax over classes times an open-set gate."""
    s = np.asarray(similarities, np.float64)
    if s.size == 0:
        return np.zeros(0, np.float32)
    z = np.exp((s - s.max()) / TEMPERATURE)
    gate = 1.0 / (1.0 + np.exp(-(s.max() - threshold) / GATE_WIDTH))
    return (z / z.sum() * gate).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Calibration:
    """The open-set threshold and where it came from."""

    threshold: float
    source: str  # "leave-one-out", "default" (too few examples) or "config"
    positives: int = 0  # examples whose own class was scored without them


def calibrate(learner_name: str, x: np.ndarray, labels: Sequence[str], k: int = 3) -> Calibration:
    """Threshold between examples' similarity to their own class and to the nearest other.

    Leave-one-out: each example is scored by the learner fitted without it (class means
    are updated by subtraction, so this is one pass). Its similarity to its own class is
    what a new example of a taught class looks like; its similarity to the best *other*
    class stands in for something never taught (``_separate`` has the rule). With no
    class of two or more examples there is nothing to calibrate from: the default.
    """
    lab = np.asarray(labels)
    classes = sorted(set(labels))
    x = normalise(x)
    n = len(lab)
    counts = {c: int((lab == c).sum()) for c in classes}
    if n < 3 or len(classes) < 2 or max(counts.values()) < 2:
        return Calibration(DEFAULT_THRESHOLD, "default")
    own: list[float] = []
    other: list[float] = []
    if learner_name == "knn":
        sims_all = x @ x.T
        np.fill_diagonal(sims_all, -np.inf)
        for i in range(n):
            per_class = []
            for c in classes:
                part = sims_all[i, lab == c]
                part = part[np.isfinite(part)]
                if part.size == 0:
                    per_class.append(np.nan)
                    continue
                kk = min(k, part.size)
                per_class.append(float(np.sort(part)[-kk:].mean()))
            _split(per_class, classes.index(str(lab[i])), own, other)
    else:
        sums = {c: x[lab == c].sum(axis=0) for c in classes}
        for i in range(n):
            per_class = []
            for c in classes:
                total, m = sums[c], counts[c]
                if c == lab[i]:
                    total, m = total - x[i], m - 1
                if m == 0:
                    per_class.append(np.nan)
                    continue
                mean = total / max(np.linalg.norm(total), 1e-12)
                per_class.append(float(mean @ x[i]))
            _split(per_class, classes.index(str(lab[i])), own, other)
    if not own:
        return Calibration(DEFAULT_THRESHOLD, "default")
    return Calibration(_separate(np.array(own), np.array(other)), "leave-one-out", len(own))


def _split(per_class: list[float], mine: int, own: list[float], other: list[float]) -> None:
    if not np.isnan(per_class[mine]):
        own.append(per_class[mine])
    rest = [v for j, v in enumerate(per_class) if j != mine and not np.isnan(v)]
    if rest:
        other.append(max(rest))


def _separate(own: np.ndarray, other: np.ndarray) -> float:
    """Midway between the taught (own) and the stand-in unknown (other) similarities.

    Own: 95% of examples must pass. When the nearest other class overlaps that (classes
    that look alike, such as three gestures of one hand), no cut can tell unknowns apart
    without missing taught ones, so the threshold only keeps 95% of taught examples in.
    """
    low = float(np.quantile(own, 0.05))
    if other.size:
        high = float(np.quantile(other, 0.95))
        if high < low:
            return (low + high) / 2
    return max(-1.0, low - MARGIN)
