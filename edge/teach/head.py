"""Taught classes beside a loaded model: each of its predictions, re-read over the taught classes.

The embedding comes from the step that was just run (the stream model's pooled state, or
the image model's extra output), so recognising taught classes costs no extra invoke.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge.classifiers.base import Prediction
from edge.teach.embedding import StreamEmbedding
from edge.teach.store import ModelKey, Store, StoreError
from edge.teach.taught import TaughtClasses


class TaughtHead:
    """One model's taught classes; ``step(prediction)`` gives the prediction over them."""

    def __init__(
        self,
        key: ModelKey,
        read: Callable[[Prediction], np.ndarray],
        taught: TaughtClasses,
    ) -> None:
        self.key = key
        self._read = read
        self.taught = taught

    @property
    def classes(self) -> list[str]:
        return self.taught.classes

    def embedding(self, base: Prediction) -> np.ndarray:
        return self._read(base)

    def step(self, base: Prediction) -> Prediction:
        pred = self.taught.prediction(self._read(base), base.model, base.timestamp)
        extra = dict(pred.extra)
        if base.extra.get("reset"):
            extra["reset"] = True
        return Prediction(
            pred.probs, pred.top, base.model, base.timestamp, base.inference_ms, extra
        )

    def refit(self, store: Store, **options: Any) -> None:
        """Fit again from the store (after teaching or forgetting)."""
        self.taught = TaughtClasses.from_store(store, self.key, **options)


def embedding_reader(classifier: Any) -> tuple[ModelKey, Callable[[Prediction], np.ndarray]]:
    """How to read the embedding of ``classifier``'s last step, and its store key."""
    if hasattr(classifier, "enable_embedding"):
        tensor = classifier.enable_embedding()
        key = ModelKey(classifier.sha256, tensor.name, classifier.name)

        def from_image(pred: Prediction) -> np.ndarray:
            return np.asarray(pred.extra["embedding"])

        return key, from_image
    reader = StreamEmbedding(classifier)
    key = ModelKey(classifier.sha256, reader.name, classifier.name)
    return key, lambda _pred: reader.read()


def attach(classifier: Any, store: Store, *, required: bool = True, **options: Any) -> TaughtHead:
    """The taught classes of ``classifier``'s model in ``store``.

    ``required``: no taught class for this model is an error (the CLI's ``--taught``);
    the daemon starts without any and is taught while it runs.
    """
    key, read = embedding_reader(classifier)
    taught = TaughtClasses.from_store(store, key, **options)
    if required and not taught:
        others = [m.name for m in store.models() if m.sha256 != key.sha256]
        hint = f" (it has examples of {', '.join(sorted(set(others)))})" if others else ""
        raise StoreError(
            f"{store.path}: no taught classes for model {key.name}{hint}; "
            "teach some with: edge teach add LABEL PATH..."
        )
    return TaughtHead(key, read, taught)
