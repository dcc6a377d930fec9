"""Few-shot learners on real embeddings: the hands photos, and a never-taught image."""

from __future__ import annotations

import numpy as np
import pytest

from edge.classifiers.image import read_image
from edge.loader import load_image
from edge.teach.embedders import ImageEmbedder
from edge.teach.evaluate import evaluate, training_curve
from edge.teach.learners import DEFAULT_THRESHOLD, calibrate, scores
from edge.teach.store import Examples
from edge.teach.taught import TaughtClasses

CLASSES = ("paper", "rock", "scissors")


@pytest.fixture(scope="module")
def embedded_hands(mobilenet, hands, images, mobilenet_labels):
    embedder = ImageEmbedder(load_image(mobilenet, labels=mobilenet_labels))
    labels, embs, views = [], [], []
    for c in CLASSES:
        for f in sorted((hands / "train" / c).iterdir()):
            s = embedder.sample(read_image(f), f.name)
            labels.append(c)
            embs.append(s.embedding)
            views.append(np.vstack([s.embedding, *s.views]))
    taught = Examples(labels, np.vstack(embs), views)
    truth, test = [], []
    for c in CLASSES:
        for f in sorted((hands / "test" / c).iterdir()):
            truth.append(c)
            test.append(embedder.embedding_of(f))
    fox = embedder.embedding_of(images / "fox.jpeg")
    return taught, truth, test, fox


def test_nearest_class_mean_reaches_the_published_figure_on_the_test_split(embedded_hands):
    taught, truth, test, _ = embedded_hands
    result = evaluate(TaughtClasses(taught), truth, test)
    assert result["n"] == 15
    assert result["accuracy"] >= 0.8  # logistic regression on SqueezeNet features: 80%
    assert set(result["per_class"]) == set(CLASSES)
    assert sum(sum(row.values()) for row in result["confusion"].values()) == 15


@pytest.mark.parametrize("learner", ["ncm", "knn", "linear"])
def test_every_learner_recognises_the_gestures_and_refuses_a_fox(embedded_hands, learner):
    taught, truth, test, fox = embedded_hands
    model = TaughtClasses(taught, learner=learner)
    assert model.calibration.source == "leave-one-out"
    result = evaluate(model, truth, test)
    assert result["accuracy"] >= 0.6  # three classes: chance is a third
    assert result["none"] <= 2  # the threshold keeps taught gestures in
    verdict = model.verdict(fox)
    assert verdict.label is None
    assert verdict.similarity < model.threshold
    assert float(verdict.probs.sum()) < 0.5  # low everywhere, not a confident wrong class


def test_scores_are_probability_like_and_fall_below_the_threshold():
    s = scores(np.array([0.9, 0.5, 0.1]), threshold=0.6)
    assert s.argmax() == 0 and 0.9 < s.sum() <= 1.0 and (s >= 0).all()
    low = scores(np.array([0.3, 0.2, 0.1]), threshold=0.6)
    assert low.sum() < 0.01


def test_threshold_needs_two_examples_of_a_class_to_calibrate():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    cal = calibrate("ncm", x, ["a", "b", "c"])
    assert (cal.threshold, cal.source) == (DEFAULT_THRESHOLD, "default")


def test_a_threshold_from_config_wins_and_says_so(embedded_hands):
    taught, *_ = embedded_hands
    model = TaughtClasses(taught, threshold=0.95)
    assert model.describe()["threshold_source"] == "config" and model.threshold == 0.95


def test_linear_head_reports_loss_and_validation_accuracy_every_epoch(embedded_hands):
    taught, *_ = embedded_hands
    curve = training_curve(taught)
    assert len(curve) == 100
    assert curve[-1]["loss"] < curve[0]["loss"] / 5
    assert all(0.0 <= e["val_accuracy"] <= 1.0 for e in curve)
    assert curve[-1]["val_accuracy"] >= 0.5
