"""What the stream model is fed: the MANIFEST's preprocessing, and image orientation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.classifiers.stream import StreamClassifier
from edge.sources.orientation import Orientation
from edge.sources.video_file import VideoFile
from tests.conftest import A0, K600_LABELS, VIDEOS, require


@pytest.fixture(scope="module")
def a0() -> StreamClassifier:
    require(A0, K600_LABELS)
    return StreamClassifier(A0, labels_path=K600_LABELS, threads=1)


def reference(bgr: np.ndarray, size: int = 172) -> np.ndarray:
    """MANIFEST: centre square crop, INTER_AREA to 172x172, BGR->RGB, /255 float32."""
    h, w = bgr.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    square = bgr[y : y + s, x : x + s]
    small = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
    return small[:, :, ::-1].astype(np.float32) / 255.0


@pytest.mark.parametrize("clip", ["squats.mp4", "arm_wrestling.mp4", "carving_ice.mp4"])
def test_model_input_is_the_manifest_preprocessing(a0, clip):
    require(VIDEOS / clip)
    frame = next(VideoFile(VIDEOS / clip).frames())
    buf = a0.preprocess_into(frame.image, a0.new_input())
    assert buf.shape == (1, 1, 172, 172, 3)
    assert buf.dtype == np.float32
    np.testing.assert_allclose(buf[0, 0], reference(frame.image), atol=1e-6)


def test_step_feeds_the_same_input_as_the_pipelined_path(a0):
    require(VIDEOS / "carving_ice.mp4")
    frames = list(VideoFile(VIDEOS / "carving_ice.mp4").frames(lambda t: True))[:30:6]
    a0.reset()
    stepped = [a0.step(f).probs for f in frames]
    a0.reset()
    buf = a0.new_input()
    run = [a0.run(a0.preprocess_into(f.image, buf), f.timestamp).probs for f in frames]
    for a, b in zip(stepped, run, strict=True):
        np.testing.assert_array_equal(a, b)


def test_portrait_crop_takes_the_middle_square(a0):
    # Top and bottom thirds black, middle square white: the crop must see only white.
    image = np.zeros((300, 100, 3), np.uint8)
    image[100:200] = 255
    buf = a0.preprocess_into(image, a0.new_input())
    assert np.all(buf == 1.0)


def test_channels_are_reordered_to_rgb(a0):
    image = np.zeros((50, 50, 3), np.uint8)
    image[..., 0] = 255  # pure blue in BGR
    buf = a0.preprocess_into(image, a0.new_input())[0, 0]
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
