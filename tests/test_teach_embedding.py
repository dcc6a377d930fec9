"""Embeddings read from the classifiers' own step: the pooled features, found in any graph."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from edge.classifiers.image import read_image
from edge.classifiers.stream import StreamClassifier
from edge.errors import ModelError
from edge.frame import Frame
from edge.loader import load_image
from edge.runtime import open_interpreter
from edge.teach.embedding import StreamEmbedding, find_image_embedding


def _preserved(path, index, image_input):
    """The tensor as the debugging option of the interpreter shows it, for comparison."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], image_input)
    it.invoke()
    return it.get_tensor(index).reshape(-1)


@pytest.mark.parametrize(
    ("model", "labels", "name", "size"),
    [
        ("mobilenet", "mobilenet_labels", "MobilenetV2/Logits/AvgPool", 1280),
        ("cv_fruits", None, "pool10", 512),
    ],
)
def test_image_embedding_is_the_pool_before_the_logits(request, images, model, labels, name, size):
    model = request.getfixturevalue(model)
    labels = request.getfixturevalue(labels) if labels else None
    clf = load_image(model, labels=labels)
    fox = read_image(images / "fox.jpeg")
    before = clf.classify(fox)
    tensor = clf.enable_embedding()
    assert (tensor.name, tensor.size) == (name, size)
    after = clf.classify(fox)
    # Same scores as without it, and the embedding from the same invoke.
    np.testing.assert_allclose(after.probs, before.probs, atol=1e-6)
    emb = after.extra["embedding"]
    assert emb.shape == (size,) and emb.dtype == np.float32 and np.linalg.norm(emb) > 0
    # The value the interpreter itself holds for that tensor when it keeps every tensor.
    raw = _preserved(clf.path, tensor.index, clf._input)
    want = (raw.astype(np.float32) - tensor.zero_point) * (tensor.scale or 1.0)
    np.testing.assert_allclose(emb, want, rtol=1e-5, atol=1e-5)


def test_a_model_without_a_pooled_feature_before_its_logits_is_refused(a0):
    it = open_interpreter(a0)
    logits = next(int(d["index"]) for d in it.get_output_details() if tuple(d["shape"]) == (1, 600))
    with pytest.raises(ModelError, match="no usable embedding"):
        find_image_embedding(it, logits, a0)


def _clip(videos, name):
    from edge.pacing import Pacer
    from edge.sources.video_file import VideoFile

    return [f.image for f in VideoFile(videos / name).frames(Pacer(5.0).take)]


def _embedding_after(a0, k600_labels, frames, horizon_s):
    clf = StreamClassifier(a0, labels_path=k600_labels, horizon_s=horizon_s, reset_gap_s=math.inf)
    reader = StreamEmbedding(clf)
    assert reader.size == 480
    assert not reader.read().any()  # nothing seen yet
    for i, img in enumerate(frames):
        clf.step(Frame(image=img, timestamp=i / 5.0, seq=i))
    e = reader.read()
    assert np.isfinite(e).all()
    return e / np.linalg.norm(e)


def test_stream_embedding_is_the_head_average_and_follows_the_horizon(a0, k600_labels, videos):
    arm, carving = _clip(videos, "arm_wrestling.mp4"), _clip(videos, "carving_ice.mp4")
    alone = _embedding_after(a0, k600_labels, carving, 2.0)
    # Under a 2 s horizon the embedding is the last seconds' (the mature copy): what came
    # before no longer counts. Without one, the whole past is in the average.
    assert float(alone @ _embedding_after(a0, k600_labels, arm + carving, 2.0)) > 0.99
    assert (
        float(
            _embedding_after(a0, k600_labels, carving, 0.0)
            @ _embedding_after(a0, k600_labels, arm + carving, 0.0)
        )
        < 0.95
    )


def test_taught_classes_cost_no_extra_invoke_per_video_step(a0, k600_labels, videos, tmp_path):
    from edge.teach.head import attach
    from edge.teach.store import Store

    clf = StreamClassifier(a0, labels_path=k600_labels, horizon_s=4.0, reset_gap_s=math.inf)
    frames = _clip(videos, "carving_ice.mp4")[:12]
    with Store(tmp_path / "t.sqlite") as store:
        from edge.teach.embedders import ClipEmbedder

        key = ClipEmbedder(clf).key
        for i, img in enumerate(frames):
            clf.step(Frame(image=img, timestamp=i / 5.0, seq=i))
        store.add("carving", StreamEmbedding(clf).read(), key, "live")
        head = attach(clf, store)
        clf.reset()
        calls = []
        invoke = clf._invoke
        clf._invoke = lambda: (calls.append(1), invoke())[1]
        labels = []
        for i, img in enumerate(frames):
            labels.append(head.step(clf.step(Frame(image=img, timestamp=i / 5.0, seq=i))))
    assert len(calls) == len(frames)
    assert labels[-1].extra["label"] == "carving"
