"""StillStation: several real models on one photo, one message, history, retention, watch."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from edge.classifiers.image import ImageClassifier, read_image
from edge.config import StillConfig
from edge.errors import SourceError
from edge.history import HISTORY_FILENAME, History
from edge.loader import load_image
from edge.sources.watch import FolderWatcher
from edge.still import StillStation
from tests.support.assets import DATA

BANANA, FOX, APPLE = (
    DATA / "images" / "fruit_banana.jpg",
    DATA / "images" / "fox.jpeg",
    DATA / "images" / "fruit_apple.jpg",
)


@pytest.fixture(scope="module")
def models(mobilenet, mobilenet_labels, cv_fruits) -> list[ImageClassifier]:
    return [
        load_image(cv_fruits, name="fruits"),
        load_image(mobilenet, labels=mobilenet_labels, name="imagenet"),
    ]


class Outbox:
    def __init__(self, fail: bool = False) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, message: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.messages.append(message)


def _station(tmp_path: Path, models, outbox=None, **still: Any) -> StillStation:
    history = History(tmp_path / "state" / HISTORY_FILENAME)
    return StillStation(
        models,
        history,
        outbox if outbox is not None else Outbox(),
        state_dir=tmp_path / "state",
        still=StillConfig(**still),
    )


def _by_model(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["model"]["name"]: r for r in message["results"]}


def test_one_message_with_every_models_result(tmp_path: Path, models) -> None:
    outbox = Outbox()
    station = _station(tmp_path, models, outbox)
    message = station.classify_path(BANANA, source="watch")
    assert outbox.messages == [message]
    image = message["image"]
    assert image["sha256"] == hashlib.sha256(BANANA.read_bytes()).hexdigest()
    assert (image["width"], image["height"], image["source"]) == (1024, 768, "watch")
    assert image["path"] == str(BANANA)
    results = _by_model(message)
    assert set(results) == {"fruits", "imagenet"}
    assert results["fruits"]["label"] == "Banana"
    assert results["imagenet"]["label"] == "banana"
    assert results["fruits"]["model"]["sha256"] == models[0].sha256
    assert results["fruits"]["activation"] == "sigmoid"
    assert all(set(t) == {"label", "score"} for r in message["results"] for t in r["top"])
    # The same result is in the local history.
    (entry,) = station.history.query()
    assert entry.id == message["history_id"]
    assert entry.image_sha256 == image["sha256"]
    assert [(r.model_name, r.label) for r in entry.results] == [
        ("fruits", "Banana"),
        ("imagenet", "banana"),
    ]


def test_sigmoid_model_says_none_while_imagenet_names_the_fox(tmp_path: Path, models) -> None:
    message = _station(tmp_path, models).classify_path(FOX)
    results = _by_model(message)
    assert results["fruits"]["label"] is None
    assert results["imagenet"]["label"].startswith("red fox")


def test_camera_image_is_saved_under_state_dir(tmp_path: Path, models) -> None:
    station = _station(tmp_path, models)
    message = station.classify_image(read_image(APPLE), source="schedule")
    saved = Path(message["image"]["path"])
    assert saved.parent == tmp_path / "state" / "images"
    assert saved.is_file()
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == message["image"]["sha256"]
    assert _by_model(message)["fruits"]["label"] == "Apple"
    (entry,) = station.history.query()
    assert entry.owned and entry.mode == "camera" and entry.source == "schedule"


def test_keep_none_keeps_no_image_but_keeps_the_result(tmp_path: Path, models) -> None:
    station = _station(tmp_path, models, keep_images="none")
    message = station.classify_image(read_image(APPLE))
    assert message["image"]["path"] is None
    images = tmp_path / "state" / "images"
    assert not images.exists() or list(images.iterdir()) == []
    # A photo a camera command wrote into images/ is deleted once classified.
    photo = station.new_image_path()
    shutil.copyfile(BANANA, photo)
    message = station.classify_path(photo, source="command")
    assert not photo.exists()
    assert message["image"]["path"] is None
    assert _by_model(message)["fruits"]["label"] == "Banana"
    assert station.history.count() == 2
    # Files from elsewhere (a watched folder) are never deleted.
    outside = tmp_path / "mine.jpg"
    shutil.copyfile(FOX, outside)
    station.classify_path(outside, source="watch")
    assert outside.exists()


def test_keep_days_prunes_old_photos(tmp_path: Path, models) -> None:
    clock = [time.time() - 10 * 86400]
    station = _station(tmp_path, models, keep_images="days", keep_days=7)
    station.clock = lambda: clock[0]
    old = Path(station.classify_image(read_image(APPLE))["image"]["path"])
    assert old.exists()
    clock[0] = time.time()
    new = Path(station.classify_image(read_image(BANANA))["image"]["path"])
    assert not old.exists() and new.exists()
    assert station.history.count() == 2


def test_corrupt_image_publishes_nothing(tmp_path: Path, models) -> None:
    outbox = Outbox()
    station = _station(tmp_path, models, outbox)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 nope")
    with pytest.raises(SourceError, match=r"bad\.jpg"):
        station.classify_path(bad)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="0 bytes"):
        station.classify_path(empty)
    assert outbox.messages == [] and station.history.count() == 0


def test_publisher_failure_keeps_the_history(tmp_path: Path, models) -> None:
    station = _station(tmp_path, models, Outbox(fail=True))
    message = station.classify_path(BANANA)
    assert _by_model(message)["fruits"]["label"] == "Banana"
    assert station.history.count() == 1


def test_watched_folder_files_are_classified_once(tmp_path: Path, models) -> None:
    outbox = Outbox()
    station = _station(tmp_path, models, outbox)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = FolderWatcher(inbox, state_path=tmp_path / "state", poll_s=0)
    shutil.copyfile(BANANA, inbox / "one.jpg")
    (inbox / "broken.jpg").write_bytes(b"not an image")
    (inbox / "readme.txt").write_text("ignored")
    old = time.time() - 60  # as if moved in: already settled
    for name in ("one.jpg", "broken.jpg"):
        os.utime(inbox / name, (old, old))
    done = station.poll_watch(watcher)
    assert [Path(m["image"]["path"]).name for m in done] == ["one.jpg"]
    assert station.poll_watch(watcher) == []
    # After a restart the watcher remembers what it reported.
    again = FolderWatcher(inbox, state_path=tmp_path / "state", poll_s=0)
    assert station.poll_watch(again) == []
    assert len(outbox.messages) == 1
