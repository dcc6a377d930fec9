"""Still-image classifiers against the real Custom Vision and MobileNet models from the mirror."""

from __future__ import annotations

import numpy as np
import pytest

from edge.classifiers.image import ImageClassifier, load_image_classifier, read_image
from edge.errors import ModelError, SourceError
from edge.labels import load_labels
from edge.preprocess import Preprocessor
from edge.runtime import open_interpreter
from tests.conftest import A0, CV_FRUITS, IMAGES, MOBILENET, MOBILENET_LABELS, require

APPLE, BANANA, ORANGE, FOX = (
    IMAGES / "fruit_apple.jpg",
    IMAGES / "fruit_banana.jpg",
    IMAGES / "fruit_orange.jpg",
    IMAGES / "fox.jpeg",
)


@pytest.fixture(scope="module")
def fruits() -> ImageClassifier:
    require(CV_FRUITS / "model.tflite", APPLE, BANANA, FOX)
    return load_image_classifier(CV_FRUITS)


@pytest.fixture(scope="module")
def mobilenet() -> ImageClassifier:
    require(MOBILENET, MOBILENET_LABELS, FOX)
    return load_image_classifier(MOBILENET, labels=MOBILENET_LABELS)


# ------------------------------------------------------------------------------ Custom Vision


def test_custom_vision_names_the_fruit(fruits: ImageClassifier) -> None:
    for path, fruit in ((APPLE, "Apple"), (BANANA, "Banana")):
        pred = fruits.classify(read_image(path))
        assert pred.top[0].label == fruit
        assert pred.extra["label"] == fruit
        assert pred.top[0].score >= fruits.threshold


def test_custom_vision_says_none_of_these_for_a_fox(fruits: ImageClassifier) -> None:
    pred = fruits.classify(read_image(FOX))
    assert pred.extra["activation"] == "sigmoid"
    assert pred.extra["label"] is None
    assert all(s.score < fruits.threshold for s in pred.top)
    # Independent sigmoids: nothing was stretched to sum to 1.
    assert float(pred.probs.sum()) < 0.5


def test_custom_vision_scores_are_the_models_own_outputs(fruits: ImageClassifier) -> None:
    """The reported scores are exactly what the interpreter returns: no renormalisation."""
    image = read_image(ORANGE)
    pred = fruits.classify(image, top_k=7)
    it = open_interpreter(fruits.path, 1)
    inp = it.get_input_details()[0]
    buf = np.zeros(inp["shape"], np.float32)
    Preprocessor(fruits.input_spec)(image, buf[0])
    it.set_tensor(inp["index"], buf)
    it.invoke()
    raw = it.get_tensor(it.get_output_details()[0]["index"]).reshape(-1)
    np.testing.assert_allclose(pred.probs, raw, rtol=1e-5, atol=1e-6)
    assert [s.label for s in pred.top] == [fruits.labels[i] for i in np.argsort(-raw)]


def test_custom_vision_export_is_fed_bgr_0_255(fruits: ImageClassifier) -> None:
    spec = fruits.input_spec
    assert (spec.channel_order, spec.value_range) == ("BGR", (0.0, 255.0))
    assert (spec.height, spec.width) == (227, 227)


def test_feeding_the_other_channel_order_changes_the_answer(fruits: ImageClassifier) -> None:
    swapped = load_image_classifier(CV_FRUITS, channel_order="RGB")
    assert swapped.input_spec.channel_order == "RGB"
    changed = 0
    for path, fruit in ((APPLE, "Apple"), (BANANA, "Banana"), (ORANGE, "Orange")):
        image = read_image(path)
        assert fruits.classify(image).extra["label"] == fruit
        if swapped.classify(image).extra["label"] != fruit:
            changed += 1
    assert changed >= 2


def test_threshold_is_per_model(fruits: ImageClassifier) -> None:
    score = fruits.classify(read_image(APPLE)).top[0].score
    strict = load_image_classifier(CV_FRUITS, threshold=(score + 1.0) / 2)
    pred = strict.classify(read_image(APPLE))
    assert pred.top[0].label == "Apple"  # the score is still reported...
    assert pred.extra["label"] is None  # ...but it does not reach this model's threshold
    lenient = load_image_classifier(CV_FRUITS, threshold=0.0)
    assert lenient.classify(read_image(FOX)).extra["label"] is not None


# ------------------------------------------------------------------------------ MobileNet (uint8)


def test_mobilenet_quant_names_the_red_fox(mobilenet: ImageClassifier) -> None:
    pred = mobilenet.classify(read_image(FOX))
    assert pred.top[0].label.startswith("red fox")
    assert pred.extra["activation"] == "softmax"
    assert pred.extra["label"] == pred.top[0].label  # no threshold: the best class


def test_mobilenet_output_is_dequantised_with_scale_and_zero_point(
    mobilenet: ImageClassifier,
) -> None:
    pred = mobilenet.classify(read_image(BANANA))
    q = pred.probs * 256.0  # scale 1/256, zero point 0
    np.testing.assert_allclose(q, np.round(q), atol=1e-4)
    assert 0.95 <= float(pred.probs.sum()) <= 1.0 + 1e-6
    assert pred.top[0].label == "banana"


def test_mobilenet_background_class_is_never_reported(mobilenet: ImageClassifier) -> None:
    assert mobilenet.labels[0] == "background"
    pred = mobilenet.classify(read_image(FOX), top_k=2000)
    labels = [s.label for s in pred.top]
    assert "background" not in labels
    assert len(labels) == len(mobilenet.labels) - 1
    assert pred.probs.shape == (1001,)


def test_uint8_input_takes_raw_pixels_and_quantises_a_declared_range(
    mobilenet: ImageClassifier,
) -> None:
    assert mobilenet.input_spec.raw_pixels
    assert mobilenet.input_spec.channel_order == "RGB"
    # Declaring the float range (-1, 1) quantises with the input's scale 1/128 and zero
    # point 128, which lands on the same integers as the raw pixels.
    ranged = load_image_classifier(MOBILENET, labels=MOBILENET_LABELS, value_range=(-1.0, 1.0))
    assert not ranged.input_spec.raw_pixels
    assert ranged.input_spec.zero_point == 128
    image = read_image(FOX)
    a, b = mobilenet.classify(image), ranged.classify(image)
    assert b.top[0].label == a.top[0].label
    np.testing.assert_allclose(a.probs, b.probs, atol=2 / 256)


def test_threshold_makes_mobilenet_say_none(mobilenet: ImageClassifier) -> None:
    strict = load_image_classifier(MOBILENET, labels=MOBILENET_LABELS, threshold=0.95)
    pred = strict.classify(read_image(FOX))
    assert pred.top[0].score < 0.95
    assert pred.extra["label"] is None


def test_grayscale_input_is_accepted(mobilenet: ImageClassifier) -> None:
    gray = read_image(BANANA)[:, :, 1].copy()
    pred = mobilenet.classify(gray)
    assert len(pred.top) == 5


# ------------------------------------------------------------------------------ bad input


def test_label_file_that_does_not_match_the_outputs(tmp_path) -> None:
    require(CV_FRUITS / "model.tflite")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(load_labels(CV_FRUITS / "labels.txt")[:6]) + "\n")
    with pytest.raises(ModelError) as err:
        load_image_classifier(CV_FRUITS / "model.tflite", labels=labels)
    msg = str(err.value)
    assert str(labels) in msg and "6 labels" in msg and "7 outputs" in msg
    assert "\n" not in msg


def test_bare_model_without_labels_is_refused(tmp_path) -> None:
    require(MOBILENET)
    model = tmp_path / "m.tflite"
    model.write_bytes(MOBILENET.read_bytes())
    with pytest.raises(ModelError, match="no label file"):
        load_image_classifier(model)


def test_a_video_model_is_not_an_image_classifier() -> None:
    require(A0)
    with pytest.raises(ModelError, match="inputs"):
        load_image_classifier(A0, labels=A0.parent / "kinetics600_label_map.txt")


def test_missing_and_non_tflite_models(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_image_classifier(tmp_path / "nope.tflite")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="TFL3"):
        load_image_classifier(fake, labels=tmp_path / "x.txt")


def test_read_image_errors_name_the_file(tmp_path) -> None:
    require(FOX)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\x00\x01 this is not an image " * 50)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(FOX.read_bytes()[:20000])
    cases = {empty: "empty", garbage: "cannot decode", truncated: "truncated"}
    cases[tmp_path / "missing.jpg"] = "not found"
    for path, needle in cases.items():
        with pytest.raises(SourceError) as err:
            read_image(path)
        assert str(path) in str(err.value) and needle in str(err.value)


def test_read_image_returns_bgr_uint8() -> None:
    require(FOX)
    image = read_image(FOX)
    assert image.dtype == np.uint8 and image.shape == (480, 640, 3)
