"""A softmax layer trained on the device over frozen embeddings: "retrain the last layer".

Numpy only, full-batch gradient descent on a cosine softmax (unit-length embeddings times
a fixed scale), which trains in well under a second for hundreds of examples. Augmentation
is on the fly: every epoch each example is represented by one of its views (the photo,
its mirror image, crops), drawn at random, so the head never sees the same set twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.teach.learners import normalise

SCALE = 20.0  # logits = SCALE * cosine-like products: sharp enough for a few examples


@dataclass(frozen=True, slots=True)
class Epoch:
    epoch: int
    loss: float
    val_accuracy: float | None  # None without a validation split


@dataclass(slots=True)
class LinearHead:
    """Softmax over taught classes; ``similarities`` returns logits / SCALE (cosine-like)."""

    epochs: int = 100
    rate: float = 0.05
    decay: float = 1e-3
    seed: int = 0
    name: str = "linear"
    classes: list[str] = field(default_factory=list)
    history: list[Epoch] = field(default_factory=list)
    _w: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    _b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def fit(self, x: np.ndarray, labels: Sequence[str]) -> LinearHead:
        return self.fit_views([v[None, :] for v in np.asarray(x)], labels)

    def fit_views(
        self,
        views: Sequence[np.ndarray],
        labels: Sequence[str],
        val: tuple[np.ndarray, Sequence[str]] | None = None,
    ) -> LinearHead:
        """Train on examples given as (views, dim) arrays; loss and validation per epoch."""
        self.classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.array([index[c] for c in labels], np.int64)
        n, k = len(y), len(self.classes)
        groups = [normalise(np.asarray(v)) * SCALE for v in views]
        dim = groups[0].shape[1]
        w = np.zeros((dim, k), np.float64)
        b = np.zeros(k, np.float64)
        rng = np.random.default_rng(self.seed)
        rows = np.arange(n)
        val_x = val_y = None
        if val is not None and len(val[1]):
            val_x = normalise(val[0]) * SCALE
            val_y = np.array([index.get(c, -1) for c in val[1]], np.int64)
        self.history = []
        for epoch in range(1, self.epochs + 1):
            batch = np.stack([g[rng.integers(len(g))] for g in groups])
            z = batch @ w + b
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            loss = float(-np.log(p[rows, y] + 1e-12).mean())
            p[rows, y] -= 1.0
            p /= n
            w -= self.rate * (batch.T @ p + self.decay * w)
            b -= self.rate * p.sum(axis=0)
            acc = None
            if val_x is not None and val_y is not None:
                acc = float(((val_x @ w + b).argmax(axis=1) == val_y).mean())
            self.history.append(Epoch(epoch, loss, acc))
        self._w, self._b = w.astype(np.float32), b.astype(np.float32)
        return self

    def similarities(self, q: np.ndarray) -> np.ndarray:
        logits = (normalise(q).reshape(-1) * SCALE) @ self._w + self._b
        return (logits / SCALE).astype(np.float32)
