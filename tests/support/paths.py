"""The real models and media as plain paths, for tests that build configs for `edge run`.

The fixtures in tests/conftest.py hand out the same files; ``require`` them before use.
"""

from __future__ import annotations

from tests.conftest import MIRROR
from tests.support.assets import DATA

A0 = MIRROR / "movinet_kinetics600" / "movinet_a0_stream_int8.tflite"
K600_LABELS = MIRROR / "movinet_kinetics600" / "kinetics600_label_map.txt"
CV_FRUITS = MIRROR / "customvision_fruits"
MOBILENET = MIRROR / "imagenet_mobilenet_v2_quant" / "mobilenet_v2_1.0_224_quant.tflite"
MOBILENET_LABELS = MIRROR / "imagenet_mobilenet_v2_quant" / "imagenet_labels.txt"
VIDEOS = DATA / "videos"
IMAGES = DATA / "images"
MODELS = MIRROR
