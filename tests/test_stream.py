"""The streaming classifier on the real MoViNet exports and real clips."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edge.classifiers.stream import StreamClassifier
from edge.errors import ModelError
from edge.frame import Frame
from edge.pacing import Pacer
from edge.sources.video_file import VideoFile
from tests.support.assets import DATA

ARM = DATA / "videos" / "arm_wrestling.mp4"
CARVING = DATA / "videos" / "carving_ice.mp4"
SQUATS = DATA / "videos" / "squats.mp4"


@pytest.fixture(scope="module")
def a0_clf(a0, k600_labels) -> StreamClassifier:
    return StreamClassifier(a0, labels_path=k600_labels, threads=2)


def model_frames(path, fps=5.0) -> list[Frame]:
    return list(VideoFile(path).frames(Pacer(fps).take))


def classify(clf: StreamClassifier, frames: list[Frame]):
    clf.reset()
    preds = [clf.step(f) for f in frames]
    return preds


def score(pred, clf, label) -> float:
    return float(pred.probs[clf.labels.index(label)])


def test_carving_ice_is_recognised_with_high_confidence(a0_clf):
    preds = classify(a0_clf, model_frames(CARVING))
    final = preds[-1]
    assert final.top[0].label == "carving ice"
    assert final.top[0].score > 0.9
    assert final.model == a0_clf.name
    assert len(final.top) == 5
    assert final.probs.shape == (600,)
    assert abs(float(final.probs.sum()) - 1.0) < 1e-4


def test_arm_wrestling_is_recognised(a0_clf):
    assert classify(a0_clf, model_frames(ARM))[-1].top[0].label == "arm wrestling"


def test_portrait_five_fps_squats_every_frame_is_a_step(a0_clf):
    frames = model_frames(SQUATS)
    assert len(frames) == 65  # a 5 fps clip at the model's 5 fps: nothing is skipped
    assert frames[0].image.shape[0] > frames[0].image.shape[1]  # portrait
    assert classify(a0_clf, frames)[-1].top[0].label == "squat"


def test_carrying_state_beats_resetting_every_step(a0_clf):
    frames = model_frames(CARVING)
    carried = classify(a0_clf, frames)[-1]
    a0_clf.reset()
    fresh = []
    for f in frames:
        a0_clf.reset()
        fresh.append(a0_clf.step(f))
    cold = fresh[-1]
    assert carried.top[0].label == "carving ice"
    assert cold.top[0].label != "carving ice"
    assert score(cold, a0_clf, "carving ice") < score(carried, a0_clf, "carving ice") - 0.5


def test_state_is_carried_by_tensor_index_and_pass_through_states_are_left_alone(a0_clf):
    sig = a0_clf.signature
    assert sig.key == "serving_default"
    assert len(sig.states) == 43
    # 30 of the official export's state outputs are its input tensors: only 13 move.
    assert len(sig.changing) == 13
    assert {s.name for s in sig.changing} >= {"state_head_pool_buffer"}
    assert all(s.in_index != s.out_index for s in sig.changing)
    assert a0_clf.input_size == (172, 172)
    assert len(a0_clf.sha256) == 64


def test_call_signature_export_gives_a_seven_label_distribution(berlin_int8, berlin_labels):
    clf = StreamClassifier(berlin_int8, labels_path=berlin_labels, threads=2)
    assert clf.signature.key == "call"
    assert len(clf.signature.changing) == 43  # this export copies every state
    preds = classify(clf, model_frames(CARVING)[:10])
    final = preds[-1]
    assert final.probs.shape == (7,)
    assert np.all(np.isfinite(final.probs)) and np.all(final.probs >= 0)
    assert abs(float(final.probs.sum()) - 1.0) < 1e-4
    assert {s.label for s in final.top} <= set(clf.labels)
    assert len(clf.labels) == 7
    # States are really carried: the distribution moves as frames come in.
    assert not np.allclose(preds[0].probs, final.probs)


def test_new_epoch_or_long_gap_starts_afresh(a0_clf):
    carving = model_frames(CARVING)[:12]
    arm = model_frames(ARM)[:12]
    fresh = classify(a0_clf, arm)[-1].probs

    a0_clf.reset()
    for f in carving:
        a0_clf.step(f)
    # The source restarted: same frames, new epoch.
    for f in arm:
        last = a0_clf.step(Frame(f.image, f.timestamp, f.seq, epoch=1))
    np.testing.assert_allclose(last.probs, fresh, atol=1e-6)

    a0_clf.reset()
    for f in carving:
        a0_clf.step(f)
    gap = carving[-1].timestamp + a0_clf.reset_gap_s + 1.0
    before = a0_clf.resets
    preds = [a0_clf.step(Frame(f.image, gap + f.timestamp, f.seq)) for f in arm]
    assert preds[0].extra.get("reset") is True
    assert a0_clf.resets == before + 1  # once, at the gap; not at every later frame
    assert not any(p.extra for p in preds[1:])
    np.testing.assert_allclose(preds[-1].probs, fresh, atol=1e-6)


def test_steps_do_not_allocate_state_arrays(a0_clf):
    frames = model_frames(CARVING)[:8]
    bufs = [a0_clf.preprocess_into(f.image, a0_clf.new_input()) for f in frames]
    a0_clf.reset()
    a0_clf.run(bufs[0], 0.0)
    tracemalloc.start()
    try:
        for i, buf in enumerate(bufs[1:], 1):
            a0_clf.run(buf, i * 0.2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The 13 moving states alone are 2.7 MB per step; a step may allocate only its
    # own result (600 probabilities, the top-k) and small views.
    assert peak < 64 * 1024, peak


def test_label_count_must_match_the_logits(a0, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    with pytest.raises(ModelError, match=r"labels.txt: label file has 3 labels .* 600 outputs"):
        StreamClassifier(a0, labels_path=labels)


def test_an_image_model_is_refused_clearly(mobilenet):
    with pytest.raises(ModelError, match="not a streaming video model"):
        StreamClassifier(mobilenet)


# ------------------------------------------------------------------------ memory horizon


def joined_frames() -> tuple[list[Frame], float]:
    """arm_wrestling then carving_ice as one stream with continuous timestamps."""
    arm, carving = model_frames(ARM), model_frames(CARVING)
    cut = arm[-1].timestamp + 0.2
    out = list(arm)
    out += [Frame(f.image, cut + f.timestamp, len(arm) + i) for i, f in enumerate(carving)]
    return out, cut


def run_joined(model: Path, labels: Path, horizon_s: float):
    clf = StreamClassifier(model, labels_path=labels, threads=2, horizon_s=horizon_s)
    frames, cut = joined_frames()
    preds = [clf.step(f) for f in frames]
    after = [
        (f.timestamp, p.top[0].label)
        for f, p in zip(frames, preds, strict=True)
        if f.timestamp >= cut
    ]
    return clf, preds, after, cut


def test_without_a_horizon_the_past_dominates_forever(a0, k600_labels):
    _, preds, after, _ = run_joined(a0, k600_labels, 0.0)
    assert preds[-1].top[0].label == "arm wrestling"
    assert all(label != "carving ice" for _, label in after)


def test_a_four_second_horizon_follows_the_scene_change(a0, k600_labels):
    clf, preds, after, cut = run_joined(a0, k600_labels, 4.0)
    assert clf.horizon_steps == 20
    switch = next(t for t, label in after if label == "carving ice")
    assert switch - cut <= 2.0
    rest = [label for t, label in after if t >= switch]
    assert sum(label == "carving ice" for label in rest) >= 0.75 * len(rest)
    assert preds[-1].top[0].label == "carving ice"
    # One step per frame and no reset: the horizon is kept arithmetically.
    assert clf.steps == len(preds)
    assert all("reset" not in p.extra for p in preds)


@pytest.mark.parametrize(
    ("clip", "label"),
    [(CARVING, "carving ice"), (ARM, "arm wrestling"), (SQUATS, "squat")],
)
def test_single_clips_keep_their_label_with_the_horizon_on(a0, k600_labels, clip, label):
    clf = StreamClassifier(a0, labels_path=k600_labels, threads=2, horizon_s=4.0)
    preds = classify(clf, model_frames(clip))
    assert preds[-1].top[0].label == label
    # Held through the clip once it has warmed up, not just at the end.
    tail = preds[len(preds) // 2 :]
    assert sum(p.top[0].label == label for p in tail) >= 0.75 * len(tail)


def test_horizon_bounds_the_head_pool_count(a0, k600_labels):
    """The head pool never averages over more than one horizon of steps."""
    clf = StreamClassifier(a0, labels_path=k600_labels, threads=1, horizon_s=2.0, fps=5.0)
    frames = model_frames(CARVING)
    counts = []
    head = next(s for s in clf.signature.states if s.name == "state_head_pool_frame_count")
    for f in frames:
        clf.step(f)
        counts.append(int(clf.interpreter.get_tensor(head.in_index)[0]))
    assert max(counts) <= clf.horizon_steps
    assert min(counts[clf.horizon_steps :]) >= clf.horizon_steps // 2
