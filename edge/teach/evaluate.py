"""How well the taught classes recognise a labelled test set, learner by learner.

A test folder named after a class that was never taught counts as right when the answer is
"none", so the open-set threshold is measured too.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.teach.learners import normalise
from edge.teach.linear import LinearHead
from edge.teach.store import Examples, ModelKey, Store
from edge.teach.taught import TaughtClasses

LEARNERS = ("ncm", "knn", "linear")
NONE = "none"


def evaluate(
    taught: TaughtClasses, truth: Sequence[str], embeddings: Sequence[np.ndarray]
) -> dict[str, Any]:
    """Accuracy (0..1), per-class results and the confusion matrix of one fitted learner."""
    names = [*sorted(set(taught.classes) | set(truth)), NONE]
    confusion = {t: dict.fromkeys(names, 0) for t in sorted(set(truth))}
    correct = 0
    nones = 0
    for label, emb in zip(truth, embeddings, strict=True):
        got = taught.verdict(emb).label
        expected = label if label in taught.classes else None
        correct += got == expected
        nones += got is None
        confusion[label][got or NONE] += 1
    per_class = {}
    for t, row in confusion.items():
        n = sum(row.values())
        right = row[t] if t in taught.classes else row[NONE]
        per_class[t] = {"n": n, "correct": right, "accuracy": round(right / n, 4) if n else 0.0}
    n = len(truth)
    return {
        "learner": taught.learner_name,
        "accuracy": round(correct / n, 4) if n else 0.0,
        "n": n,
        "correct": correct,
        "none": nones,
        "threshold": round(taught.threshold, 4),
        "threshold_source": taught.calibration.source,
        "per_class": per_class,
        "labels": names,
        "confusion": confusion,
    }


def training_curve(examples: Examples, seed: int = 0) -> list[dict[str, Any]]:
    """The linear head's loss and validation accuracy per epoch, on a held-out fifth.

    Each class keeps at least one example for training; classes with a single example
    have none to validate on.
    """
    rng = np.random.default_rng(seed)
    lab = np.asarray(examples.labels)
    val_idx: list[int] = []
    for c in sorted(set(examples.labels)):
        idx = np.flatnonzero(lab == c)
        take = len(idx) // 5
        if take:
            val_idx.extend(int(i) for i in rng.choice(idx, take, replace=False))
    train_idx = [i for i in range(len(lab)) if i not in set(val_idx)]
    head = LinearHead()
    val = (examples.embeddings[val_idx], [examples.labels[i] for i in val_idx]) if val_idx else None
    head.fit_views(
        [examples.views[i] for i in train_idx], [examples.labels[i] for i in train_idx], val
    )
    return [
        {"epoch": e.epoch, "loss": round(e.loss, 5), "val_accuracy": e.val_accuracy}
        for e in head.history
    ]


def cost(
    dim: int, *, views: int = 0, store_examples: int = 1000, classify_against: int = 10_000
) -> dict[str, Any]:
    """What teaching costs on this machine, on random unit embeddings of the model's size.

    Adding: ms per example kept one at a time (each its own transaction, as the daemon
    does), after its embedding exists. Size: the store file for ``store_examples`` with
    thumbnails. Classifying: ms per step against ``classify_against`` examples in 10 classes.
    """
    rng = np.random.default_rng(0)
    thumb = bytes(rng.integers(0, 256, 1500, dtype=np.uint8))  # a typical 64-px JPEG
    key = ModelKey("0" * 64, "cost", "cost")
    out: dict[str, Any] = {"dim": dim, "views": views}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "cost.sqlite")
        vecs = normalise(rng.standard_normal((store_examples, dim)).astype(np.float32))
        times = []
        aug = list(vecs[:views])
        for i, v in enumerate(vecs):
            t0 = time.perf_counter()
            store.add(f"class{i % 10}", v, key, "cost", views=aug, thumbnail=thumb)
            times.append(time.perf_counter() - t0)
        out["add_ms_p50"] = round(float(np.median(times)) * 1000, 3)
        out["add_ms_max"] = round(float(np.max(times)) * 1000, 3)
        out["store_examples"] = store_examples
        out["store_bytes"] = os.path.getsize(store.path)
        more = classify_against - store_examples
        if more > 0:
            extra = normalise(rng.standard_normal((more, dim)).astype(np.float32))
            store.add_many("class0", list(extra), key, ["cost"] * more)
        examples = store.examples(key)
        out["classify_against"] = len(examples)
        q = normalise(rng.standard_normal((200, dim)).astype(np.float32))
        for name in ("ncm", "knn"):
            taught = TaughtClasses(examples, learner=name, threshold=0.5)
            taught.verdict(q[0])
            t0 = time.perf_counter()
            for row in q:
                taught.verdict(row)
            out[f"classify_ms_{name}"] = round((time.perf_counter() - t0) / len(q) * 1000, 4)
    return out
