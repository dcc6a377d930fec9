"""Poison inputs: a decompression bomb, a huge non-image, a file that crashed the daemon.

Each is refused from its size or header before anything large is allocated, recorded
(history row with the error, an ``events`` message), moved to ``rejected/``, and the
files queued behind it are classified.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import StillConfig
from edge.errors import SourceError
from edge.history import HISTORY_FILENAME, History
from edge.imagefile import ImageLimits, header_size, load_image
from edge.sources.watch import FolderWatcher
from edge.still import MAX_ATTEMPTS, StillStation
from tests.support.assets import require
from tests.support.broker import broker_factory_fixture, broker_fixture  # noqa: F401
from tests.support.cli import run_cli
from tests.support.paths import CV_FRUITS, IMAGES, MOBILENET, MOBILENET_LABELS

APPLE, FOX = IMAGES / "fruit_apple.jpg", IMAGES / "fox.jpeg"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="session")
def bomb(tmp_path_factory) -> Path:
    """A real, valid 20000×20000 greyscale PNG of about 1 MB (400 megapixels of zeros)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    side = 20000
    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )
    path.write_bytes(png)
    return path


@pytest.fixture
def huge_not_image(tmp_path) -> Path:
    """A 400 MB file named .jpg that is no image (sparse: it costs no disk)."""
    path = tmp_path / "huge.jpg"
    with path.open("wb") as fh:
        fh.truncate(400 * 1024 * 1024)
    return path


def test_bomb_png_is_refused_from_its_header(bomb) -> None:
    assert bomb.stat().st_size < 2 * 1024 * 1024
    assert header_size(bomb.read_bytes()) == (20000, 20000)
    with pytest.raises(SourceError) as err:
        load_image(bomb)
    assert "20000×20000" in str(err.value) and "megapixel limit" in str(err.value)


def test_huge_file_is_refused_by_size_before_reading(huge_not_image) -> None:
    with pytest.raises(SourceError) as err:
        load_image(huge_not_image)
    assert "400.0 MB" in str(err.value) and "50 MB" in str(err.value)


def test_headers_of_every_format_give_the_true_size(tmp_path) -> None:
    image = np.zeros((30, 70, 3), np.uint8)
    for suffix in (".jpg", ".png", ".bmp", ".webp", ".tiff"):
        ok, buf = cv2.imencode(suffix, image)
        assert ok
        assert header_size(buf.tobytes()) == (70, 30), suffix


def test_a_large_allowed_photo_is_decoded_at_reduced_size(tmp_path) -> None:
    big = tmp_path / "big.jpg"
    rng = np.random.default_rng(1)
    cv2.imwrite(str(big), rng.integers(0, 255, (2400, 3200, 3), np.uint8))
    loaded = load_image(big, min_side=224)
    assert (loaded.width, loaded.height) == (3200, 2400)
    assert loaded.bgr.shape == (300, 400, 3)  # 1/8: still more than 224 per side
    assert load_image(big, min_side=1000).bgr.shape == (1200, 1600, 3)
    assert load_image(big).bgr.shape == (2400, 3200, 3)
    limits = ImageLimits(max_bytes=50 * 2**20, max_pixels=5_000_000)
    with pytest.raises(SourceError, match="megapixel limit"):
        load_image(big, limits)


def test_edge_image_applies_the_same_limits(bomb, huge_not_image) -> None:
    require(MOBILENET, MOBILENET_LABELS, APPLE)
    proc = run_cli(
        "image",
        str(bomb),
        str(huge_not_image),
        str(APPLE),
        "--model",
        str(MOBILENET),
        "--labels",
        str(MOBILENET_LABELS),
    )
    assert proc.returncode == 2
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in proc.stderr
    assert "megapixel limit" in errors[0] and "MB limit" in errors[1]
    assert proc.stdout.startswith(str(APPLE))  # the good photo after them is classified


class Events(list):
    def __call__(self, payload: dict) -> None:
        self.append(payload)


@pytest.fixture(scope="module")
def fruits():
    from edge.loader import load_image as load_model

    require(CV_FRUITS / "model.tflite", APPLE, FOX)
    return load_model(CV_FRUITS, name="fruits")


def _station(tmp_path: Path, model, events: Events) -> StillStation:
    return StillStation(
        [model],
        History(tmp_path / "state" / HISTORY_FILENAME),
        lambda message: None,
        state_dir=tmp_path / "state",
        still=StillConfig(),
        report=events,
    )


def _age(path: Path, seconds: float = 60) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_watched_folder_refuses_poison_and_goes_on(tmp_path, fruits, bomb, huge_not_image):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(bomb, inbox / "a-bomb.png")
    os.replace(huge_not_image, inbox / "b-huge.jpg")
    shutil.copy(APPLE, inbox / "c.jpg")
    for name in ("a-bomb.png", "b-huge.jpg", "c.jpg"):
        _age(inbox / name)
    events = Events()
    station = _station(tmp_path, fruits, events)
    watcher = FolderWatcher(inbox, state_path=tmp_path / "state", poll_s=0)
    results = station.poll_watch(watcher, budget_s=60)
    assert [r["image"]["path"] for r in results] == [str(inbox / "c.jpg")]
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == ["a-bomb.png", "b-huge.jpg"]
    assert sorted(p.name for p in inbox.iterdir()) == ["c.jpg", "rejected"]
    assert [e["type"] for e in events] == ["rejected", "rejected"]
    assert "megapixel" in events[0]["error"] and "MB limit" in events[1]["error"]
    assert events[0]["moved_to"] == str(inbox / "rejected" / "a-bomb.png")
    entries = station.history.query()
    assert [bool(e.error) for e in entries] == [True, True, False]
    assert entries[0].id == events[0]["history_id"]
    assert station.poll_watch(watcher, budget_s=60) == []  # nothing offered again


def test_a_file_that_stopped_the_daemon_twice_is_refused(tmp_path, fruits):
    """Simulates the crash exactly: begin() was recorded, done() never came."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    photo = inbox / "p.jpg"
    photo.write_bytes(APPLE.read_bytes())
    _age(photo)
    state = tmp_path / "state"
    for _ in range(MAX_ATTEMPTS):  # each start takes it, and "dies" while classifying
        watcher = FolderWatcher(inbox, state_path=state, poll_s=0)
        assert watcher.poll() == [photo]
        watcher.begin(photo)
    events = Events()
    station = _station(tmp_path, fruits, events)
    watcher = FolderWatcher(inbox, state_path=state, poll_s=0)
    assert station.poll_watch(watcher, budget_s=60) == []
    assert "stopped 2 times" in events[0]["error"]
    assert (inbox / "rejected" / "p.jpg").exists()


def test_daemon_under_a_memory_limit_refuses_the_bomb_and_classifies_the_rest(tmp_path, bomb):
    """The field case: a 1 MB PNG dropped into the watched folder of `edge run` under the
    unit's MemoryMax=300M. Before, decoding it took 2.4 GB: killed, restarted, killed again."""
    import yaml

    from tests.support.assets import ROOT
    from tests.support.broker import wait_until
    from tests.support.system import MemoryLimit

    require(CV_FRUITS / "model.tflite", APPLE)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(bomb, inbox / "a-bomb.png")
    shutil.copy(APPLE, inbox / "b.jpg")
    for name in ("a-bomb.png", "b.jpg"):
        _age(inbox / name)
    state = tmp_path / "state"
    config = {
        "mode": "still",
        "state_dir": str(state),
        "models_dir": str(tmp_path / "models"),
        "source": {"kind": "command", "command": f"cp {APPLE} {{path}}"},
        "still_models": [{"path": str(CV_FRUITS)}],
        "still": {"watch_dir": str(inbox), "watch_poll_s": 0.2},
        "mqtt": {"enabled": False},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    limit = MemoryLimit(300 * 1024 * 1024)
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(tmp_path / "config.yaml")],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=limit.preexec,
    )
    try:

        def rows() -> list:
            if not (state / HISTORY_FILENAME).exists() or proc.poll() is not None:
                return []
            try:
                with History(state / HISTORY_FILENAME, readonly=True) as h:
                    return h.query()
            except SourceError:  # created, its tables not yet
                return []

        entries = wait_until(lambda: len(rows()) >= 2 or proc.poll() is not None, 120, "2 rows")
        assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
        entries = rows()
        assert "megapixel limit" in (entries[0].error or "")
        assert entries[1].error is None and entries[1].image_path == str(inbox / "b.jpg")
        assert (inbox / "rejected" / "a-bomb.png").exists()
        assert not limit.oom_killed()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        limit.close()


def test_still_daemon_publishes_a_rejected_event(broker, tmp_path):
    from tests.support.daemon import DaemonProcess

    require(CV_FRUITS / "model.tflite", APPLE)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with (inbox / "huge.jpg").open("wb") as fh:
        fh.truncate(400 * 1024 * 1024)
    _age(inbox / "huge.jpg")
    config = {
        "mode": "still",
        "device_id": "dev1",
        "state_dir": str(tmp_path / "state"),
        "models_dir": str(tmp_path / "models"),
        "source": {"kind": "command", "command": f"cp {APPLE} {{path}}"},
        "still_models": [{"path": str(CV_FRUITS)}],
        "still": {"watch_dir": str(inbox), "watch_poll_s": 0.2},
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
    }
    sub = broker.subscriber("edge/dev1/events")
    d = DaemonProcess(tmp_path / "d", config)
    try:
        d.start()
        (event,) = sub.wait_for(
            lambda ms: [m.json() for m in ms if m.json().get("type") == "rejected"],
            120,
            "a rejected event",
        )
        assert event["path"] == str(inbox / "huge.jpg") and "MB limit" in event["error"]
        assert event["moved_to"] == str(inbox / "rejected" / "huge.jpg")
        assert event["history_id"] >= 1 and event["seq"] >= 1
        code, _ = d.stop()
        assert code == 0, d.log()
    finally:
        sub.close()
        d.close()
