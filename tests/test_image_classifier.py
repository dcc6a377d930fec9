"""Still-image classifiers against the real Custom Vision and MobileNet models from the mirror."""

from __future__ import annotations

import numpy as np
import pytest

from edge.classifiers.image import ImageClassifier, read_image
from edge.errors import ModelError, SourceError
from edge.labels import load_labels
from edge.loader import load_image
from edge.preprocess import Preprocessor
from edge.runtime import open_interpreter
from tests.support.assets import DATA

APPLE, BANANA, ORANGE, FOX = (
    DATA / "images" / "fruit_apple.jpg",
    DATA / "images" / "fruit_banana.jpg",
    DATA / "images" / "fruit_orange.jpg",
    DATA / "images" / "fox.jpeg",
)


@pytest.fixture(scope="module")
def fruits(cv_fruits) -> ImageClassifier:
    return load_image(cv_fruits)


@pytest.fixture(scope="module")
def mobilenet_clf(mobilenet, mobilenet_labels) -> ImageClassifier:
    return load_image(mobilenet, labels=mobilenet_labels)


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


def test_feeding_the_other_channel_order_changes_the_answer(
    cv_fruits, fruits: ImageClassifier
) -> None:
    swapped = load_image(cv_fruits, channel_order="RGB")
    assert swapped.input_spec.channel_order == "RGB"
    changed = 0
    for path, fruit in ((APPLE, "Apple"), (BANANA, "Banana"), (ORANGE, "Orange")):
        image = read_image(path)
        assert fruits.classify(image).extra["label"] == fruit
        if swapped.classify(image).extra["label"] != fruit:
            changed += 1
    assert changed >= 2


def test_threshold_is_per_model(cv_fruits, fruits: ImageClassifier) -> None:
    score = fruits.classify(read_image(APPLE)).top[0].score
    strict = load_image(cv_fruits, threshold=(score + 1.0) / 2)
    pred = strict.classify(read_image(APPLE))
    assert pred.top[0].label == "Apple"  # the score is still reported...
    assert pred.extra["label"] is None  # ...but it does not reach this model's threshold
    lenient = load_image(cv_fruits, threshold=0.0)
    assert lenient.classify(read_image(FOX)).extra["label"] is not None


# ------------------------------------------------------------------------------ MobileNet (uint8)


def test_mobilenet_quant_names_the_red_fox(mobilenet_clf: ImageClassifier) -> None:
    pred = mobilenet_clf.classify(read_image(FOX))
    assert pred.top[0].label.startswith("red fox")
    assert pred.extra["activation"] == "softmax"
    assert pred.extra["label"] == pred.top[0].label  # no threshold: the best class


def test_mobilenet_output_is_dequantised_with_scale_and_zero_point(
    mobilenet_clf: ImageClassifier,
) -> None:
    pred = mobilenet_clf.classify(read_image(BANANA))
    q = pred.probs * 256.0  # scale 1/256, zero point 0
    np.testing.assert_allclose(q, np.round(q), atol=1e-4)
    assert 0.95 <= float(pred.probs.sum()) <= 1.0 + 1e-6
    assert pred.top[0].label == "banana"


def test_mobilenet_background_class_is_never_reported(mobilenet_clf: ImageClassifier) -> None:
    assert mobilenet_clf.labels[0] == "background"
    pred = mobilenet_clf.classify(read_image(FOX), top_k=2000)
    labels = [s.label for s in pred.top]
    assert "background" not in labels
    assert len(labels) == len(mobilenet_clf.labels) - 1
    assert pred.probs.shape == (1001,)


def test_uint8_input_takes_raw_pixels_and_quantises_a_declared_range(
    mobilenet,
    mobilenet_labels,
    mobilenet_clf: ImageClassifier,
) -> None:
    assert mobilenet_clf.input_spec.raw_pixels
    assert mobilenet_clf.input_spec.channel_order == "RGB"
    # Declaring the float range (-1, 1) quantises with the input's scale 1/128 and zero
    # point 128, which lands on the same integers as the raw pixels.
    ranged = load_image(mobilenet, labels=mobilenet_labels, value_range=(-1.0, 1.0))
    assert not ranged.input_spec.raw_pixels
    assert ranged.input_spec.zero_point == 128
    image = read_image(FOX)
    a, b = mobilenet_clf.classify(image), ranged.classify(image)
    assert b.top[0].label == a.top[0].label
    np.testing.assert_allclose(a.probs, b.probs, atol=2 / 256)


def test_threshold_makes_mobilenet_say_none(
    mobilenet, mobilenet_labels, mobilenet_clf: ImageClassifier
) -> None:
    strict = load_image(mobilenet, labels=mobilenet_labels, threshold=0.95)
    pred = strict.classify(read_image(FOX))
    assert pred.top[0].score < 0.95
    assert pred.extra["label"] is None


def test_grayscale_input_is_accepted(mobilenet_clf: ImageClassifier) -> None:
    gray = read_image(BANANA)[:, :, 1].copy()
    pred = mobilenet_clf.classify(gray)
    assert len(pred.top) == 5


# ------------------------------------------------------------------------------ bad input


def test_label_file_that_does_not_match_the_outputs(cv_fruits, tmp_path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(load_labels(cv_fruits / "labels.txt")[:6]) + "\n")
    with pytest.raises(ModelError) as err:
        load_image(cv_fruits / "model.tflite", labels=labels)
    msg = str(err.value)
    assert str(labels) in msg and "6 labels" in msg and "7 outputs" in msg
    assert "\n" not in msg


def test_bare_model_without_labels_is_refused(mobilenet, tmp_path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(mobilenet.read_bytes())
    with pytest.raises(ModelError, match="no label file"):
        load_image(model)


def test_a_video_model_is_not_an_image_classifier(a0) -> None:
    with pytest.raises(ModelError, match="inputs"):
        load_image(a0, labels=a0.parent / "kinetics600_label_map.txt")


def test_missing_and_non_tflite_models(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_image(tmp_path / "nope.tflite")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="TFL3"):
        load_image(fake, labels=tmp_path / "x.txt")


def test_read_image_errors_name_the_file(tmp_path) -> None:
    # Neutral names, so that only the reason can match the expected word.
    empty, garbage, truncated, headers = (tmp_path / f"photo{i}.jpg" for i in range(4))
    empty.write_bytes(b"")
    garbage.write_bytes(b"\x00\x01 this is not an image " * 50)
    fox = FOX.read_bytes()
    # Cut after the EXIF thumbnail, whose own end-of-image marker must not count.
    assert fox.find(b"\xff\xd9") < 20000 < len(fox)
    truncated.write_bytes(fox[:20000])
    scan = fox.find(b"\xff\xda", fox.find(b"\xff\xd9"))  # the photo's scan, after the thumbnail
    headers.write_bytes(fox[:scan])  # every header, no image data
    cases = {empty: "empty", garbage: "cannot decode", truncated: "truncated"}
    cases[headers] = "truncated"
    cases[tmp_path / "missing.jpg"] = "not found"
    for path, needle in cases.items():
        with pytest.raises(SourceError) as err:
            read_image(path)
        assert str(err.value).startswith(f"{path}: ") and needle in str(err.value), err.value


def test_read_image_returns_bgr_uint8() -> None:
    image = read_image(FOX)
    assert image.dtype == np.uint8 and image.shape == (480, 640, 3)
