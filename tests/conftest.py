"""Fixtures for the real parts the tests run on: models from the mirror, media from tests/data,
a Mosquitto per test, publishers, and the model mirror served over HTTP.

A model fixture skips when the model is missing, with how to get it (a failure with CI=true);
the media are committed, so only a damaged checkout lacks them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.assets import DATA, GET_DATA, ROOT, require
from tests.support.broker import (  # noqa: F401  (registers the fixtures for every test)
    any_broker_fixture,
    broker_factory_fixture,
    broker_fixture,
    make_pub_fixture,
    nats_broker_fixture,
)
from tests.support.localhttp import QuietHandler, serve


def _mirror_from_installed() -> Path:
    """Without a model mirror, lay the models setup.sh installed out in the mirror's layout."""
    from edge.catalogue import default_models_dir, is_installed, load_catalogue

    installed = default_models_dir()
    view = ROOT / ".pytest_cache" / "model-mirror"
    for entry in load_catalogue().values():
        if not is_installed(entry, installed):
            continue
        for f in entry.files:
            if not f.mirror:
                continue
            link = view / f.mirror
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(installed / entry.name / f.filename)
    return view


def _model_mirror() -> Path:
    env = os.environ.get("EDGE_MODEL_MIRROR")
    if env and Path(env).is_dir():
        return Path(env)
    return _mirror_from_installed()


MIRROR = _model_mirror()


# ------------------------------------------------------------------------------ models


def _model(relative: str) -> Path:
    path = MIRROR / relative
    require(path)
    return path


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The model mirror (EDGE_MODEL_MIRROR, else the installed models in the mirror's layout)."""
    require(MIRROR)
    return MIRROR


@pytest.fixture(scope="session")
def a0() -> Path:
    """MoViNet-A0 stream, int8, Kinetics-600."""
    return _model("movinet_kinetics600/movinet_a0_stream_int8.tflite")


@pytest.fixture(scope="session")
def k600_labels() -> Path:
    return _model("movinet_kinetics600/kinetics600_label_map.txt")


@pytest.fixture(scope="session")
def berlin_int8() -> Path:
    """A custom MoViNet (cattle behaviour, 5 classes), int8."""
    return _model("movinet_custom_berlin0308/a0_int8.tflite")


@pytest.fixture(scope="session")
def berlin_labels() -> Path:
    return _model("movinet_custom_berlin0308/label_map.txt")


@pytest.fixture(scope="session")
def cv_fruits() -> Path:
    """An Azure Custom Vision TFLite export folder (model.tflite, labels.txt, metadata)."""
    _model("customvision_fruits/model.tflite")
    return _model("customvision_fruits")


@pytest.fixture(scope="session")
def mobilenet() -> Path:
    """MobileNetV2 1.0 224, uint8 quantised, ImageNet."""
    return _model("imagenet_mobilenet_v2_quant/mobilenet_v2_1.0_224_quant.tflite")


@pytest.fixture(scope="session")
def mobilenet_labels() -> Path:
    return _model("imagenet_mobilenet_v2_quant/imagenet_labels.txt")


@pytest.fixture
def mirror_url(mirror: Path) -> Iterator[str]:
    """The model mirror served over HTTP on a free 127.0.0.1 port."""

    class Handler(QuietHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(mirror), **kw)

    yield from serve(Handler)


# ------------------------------------------------------------------------------ media


def _data(name: str) -> Path:
    path = DATA / name
    require(path, how=GET_DATA)
    return path


@pytest.fixture(scope="session")
def videos() -> Path:
    """Real clips (tests/data/videos, listed in tests/data/MANIFEST.md)."""
    return _data("videos")


@pytest.fixture(scope="session")
def images() -> Path:
    """Real photos (tests/data/images)."""
    return _data("images")


@pytest.fixture(scope="session")
def hands() -> Path:
    """A few-shot set: hands/{train,test}/{rock,paper,scissors}/*.jpg."""
    return _data("hands")


# ------------------------------------------------------------------------------ a daemon's config


@pytest.fixture
def config_for(a0: Path, k600_labels: Path, videos: Path) -> Callable[..., dict[str, Any]]:
    """``config_for(tmp, broker_port, **overrides)``: a video-mode config for ``edge run``,
    MoViNet-A0 on a looping real clip, quick reconnects and heartbeats."""
    from edge.config import merge

    def make(tmp: Path, port: int, **extra: Any) -> dict[str, Any]:
        base = {
            "device_id": "dev1",
            "state_dir": str(tmp / "state"),
            "models_dir": str(tmp / "models"),
            "source": {"kind": "opencv", "uri": str(videos / "carving_ice.mp4"), "loop": True},
            "model": {"path": str(a0), "labels": str(k600_labels), "fps": 5, "horizon_s": 4},
            "smoother": {"tau_s": 0.6, "consecutive": 2, "min_dwell_s": 0.5},
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 0.5,
                "stats_interval_s": 1,
                "heartbeat_s": 2,
                "predictions_max_hz": 5,
            },
        }
        return merge(base, extra)

    return make


# ------------------------------------------------------------------------------ the skip count


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Leave the skip count where scripts/test.sh prints it, after pytest's own summary."""
    out = os.environ.get("EDGE_TEST_SKIPS_FILE")
    if out:
        skipped = len(terminalreporter.stats.get("skipped", []))
        Path(out).write_text(f"{skipped}\n")
