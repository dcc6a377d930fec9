"""What the stream model is fed: the MANIFEST's preprocessing, and image orientation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.classifiers.stream import RESIZE, StreamClassifier
from edge.preprocess import RESIZE_METHODS, InputSpec, Preprocessor
from edge.sources.orientation import Orientation
from edge.sources.video_file import VideoFile


@pytest.fixture(scope="module")
def a0_clf(a0, k600_labels) -> StreamClassifier:
    return StreamClassifier(a0, labels_path=k600_labels, threads=1)


def square(bgr: np.ndarray) -> np.ndarray:
    h, w = bgr.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return bgr[y : y + s, x : x + s]


def block_mean(image: np.ndarray, k: int) -> np.ndarray:
    """The k x k block average, in numpy (what an integer-factor area reduction is)."""
    m = image.shape[0] // k
    off = (image.shape[0] - m * k) // 2
    part = image[off : off + m * k, off : off + m * k].astype(np.float64)
    return np.rint(part.reshape(m, k, m, k, 3).mean(axis=(1, 3))).astype(np.uint8)


def reference(bgr: np.ndarray, method: str, size: int = 172) -> np.ndarray:
    """Centre square crop, the named resize to 172x172, BGR->RGB, /255 float32."""
    sq = square(bgr)
    if method == "area" and sq.shape[0] > size:
        small = cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA)
    else:
        if method == "area2" and sq.shape[0] >= 2 * size:
            sq = block_mean(sq, sq.shape[0] // size)
        small = cv2.resize(sq, (size, size), interpolation=cv2.INTER_LINEAR)
    return small[:, :, ::-1].astype(np.float32) / 255.0


@pytest.mark.parametrize("clip", ["squats.mp4", "arm_wrestling.mp4", "carving_ice.mp4"])
def test_model_input_is_centre_crop_resize_rgb_scaled(videos, a0_clf, clip):
    frame = next(VideoFile(videos / clip).frames())
    buf = a0_clf.preprocess_into(frame.image, a0_clf.new_input())
    assert buf.shape == (1, 1, 172, 172, 3)
    assert buf.dtype == np.float32
    np.testing.assert_allclose(buf[0, 0], reference(frame.image, RESIZE), atol=1e-6)


@pytest.mark.parametrize("method", RESIZE_METHODS)
@pytest.mark.parametrize("clip", ["squats.mp4", "carving_ice.mp4", "eye_makeup.avi"])
def test_each_resize_method_is_what_it_says(videos, clip, method):
    frame = next(VideoFile(videos / clip).frames())
    pre = Preprocessor(InputSpec(172, 172, resize=method))
    out = pre(frame.image, np.empty((172, 172, 3), np.float32))
    # The block average may round one step differently from OpenCV's fast path.
    tolerance = 1.01 / 255 if method == "area2" else 1e-6
    np.testing.assert_allclose(out, reference(frame.image, method), atol=tolerance)


def test_an_unknown_resize_method_is_refused():
    with pytest.raises(ValueError, match="resize"):
        Preprocessor(InputSpec(8, 8, resize="cubic"))


def test_step_feeds_the_same_input_as_the_pipelined_path(videos, a0_clf):
    frames = list(VideoFile(videos / "carving_ice.mp4").frames(lambda t: True))[:30:6]
    a0_clf.reset()
    stepped = [a0_clf.step(f).probs for f in frames]
    a0_clf.reset()
    buf = a0_clf.new_input()
    run = [a0_clf.run(a0_clf.preprocess_into(f.image, buf), f.timestamp).probs for f in frames]
    for a, b in zip(stepped, run, strict=True):
        np.testing.assert_array_equal(a, b)


def test_portrait_crop_takes_the_middle_square(a0_clf):
    # Top and bottom thirds black, middle square white: the crop must see only white.
    image = np.zeros((300, 100, 3), np.uint8)
    image[100:200] = 255
    buf = a0_clf.preprocess_into(image, a0_clf.new_input())
    assert np.all(buf == 1.0)


def test_channels_are_reordered_to_rgb(a0_clf):
    image = np.zeros((50, 50, 3), np.uint8)
    image[..., 0] = 255  # pure blue in BGR
    buf = a0_clf.preprocess_into(image, a0_clf.new_input())[0, 0]
    assert np.all(buf[..., 2] == 1.0) and np.all(buf[..., :2] == 0.0)


# ---------------------------------------------------------------------------- orientation


def marked() -> np.ndarray:
    """A 2x3 image whose pixels are numbered so every move is visible."""
    return np.arange(6, dtype=np.uint8).reshape(2, 3, 1).repeat(3, axis=2)


def test_identity_is_free():
    image = marked()
    assert Orientation().apply(image) is image
    assert Orientation().identity


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (Orientation(90), [[3, 0], [4, 1], [5, 2]]),
        (Orientation(180), [[5, 4, 3], [2, 1, 0]]),
        (Orientation(270), [[2, 5], [1, 4], [0, 3]]),
        (Orientation(0, hflip=True), [[2, 1, 0], [5, 4, 3]]),
        (Orientation(0, vflip=True), [[3, 4, 5], [0, 1, 2]]),
        (Orientation(0, hflip=True, vflip=True), [[5, 4, 3], [2, 1, 0]]),
        (Orientation(90, hflip=True), [[0, 3], [1, 4], [2, 5]]),
    ],
)
def test_rotation_is_clockwise_then_flips(orientation, expected):
    out = orientation.apply(marked())
    np.testing.assert_array_equal(out[..., 0], np.array(expected, np.uint8))
    h, w = out.shape[:2]
    assert orientation.output_size(3, 2) == (w, h)


def test_only_quarter_turns_are_accepted():
    with pytest.raises(ValueError, match="rotate"):
        Orientation(45)
