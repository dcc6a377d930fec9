"""The pipelines and the command table in-process, without a broker: real models, clips, files."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.app import commands
from edge.app.daemon import Daemon
from edge.app.pipeline import LastFrame, ModelInfo, Parts
from edge.app.reporter import Message, Reporter
from edge.app.still import StillPipeline
from edge.app.video import VideoPipeline
from edge.config import Config, parse_config
from edge.errors import EdgeError, SourceError
from edge.mqtt.payloads import ResultPayload


@pytest.fixture
def clip(videos: Path) -> Path:
    return videos / "carving_ice.mp4"


class Heard:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: str) -> list[dict]:
        return [m.payload for m in self.messages if m.kind == kind]


@pytest.fixture
def video_config(a0: Path, k600_labels: Path, clip: Path) -> Callable[..., Config]:
    def make(tmp_path: Path, **extra) -> Config:
        return parse_config(
            {
                "state_dir": str(tmp_path / "state"),
                "models_dir": str(tmp_path / "models"),
                "source": {"kind": "opencv", "uri": str(clip), "realtime": False},
                "model": {"path": str(a0), "labels": str(k600_labels), "fps": 5},
                "smoother": {"tau_s": 0.6, "consecutive": 2, "min_dwell_s": 0.5},
                "mqtt": {"enabled": False},
                **extra,
            }
        )

    return make


@pytest.fixture
def still_config(cv_fruits: Path, images: Path) -> Callable[..., Config]:
    def make(tmp_path: Path, **extra) -> Config:
        return parse_config(
            {
                "mode": "still",
                "state_dir": str(tmp_path / "state"),
                "models_dir": str(tmp_path / "models"),
                "source": {
                    "kind": "command",
                    "command": f"cp {images / 'fruit_apple.jpg'} {{path}}",
                },
                "still_models": [{"path": str(cv_fruits)}],
                "mqtt": {"enabled": False},
                **extra,
            }
        )

    return make


def tick_until(pipeline, condition, what: str, limit: int = 2000) -> None:
    for _ in range(limit):
        if condition():
            return
        assert pipeline.tick(), f"the source ended before {what}"
    raise AssertionError(f"no {what} after {limit} ticks")


def test_video_pipeline_labels_a_clip_and_resets(
    video_config, a0, k600_labels, clip, tmp_path: Path
) -> None:
    cfg = video_config(tmp_path)
    reporter = Reporter("video", ModelInfo(None, None))
    heard = Heard()
    reporter.subscribe(heard)
    pipeline = VideoPipeline.build(
        cfg, reporter, Parts(), last=LastFrame(), cancel=threading.Event()
    )
    pipeline.start()
    try:
        tick_until(pipeline, lambda: reporter.label == "carving ice", "label")
        start = [e for e in heard.of("event") if e["type"] == "start"]
        assert [e["label"] for e in start] == ["carving ice"]
        assert heard.of("state")[-1]["model"]["name"] == a0.stem
        stats = pipeline.stats()
        assert stats.model_fps > 0 and stats.inference_p50_ms and stats.inference_p50_ms > 0
        frame = pipeline.snapshot()
        assert frame is not None and frame.image.ndim == 3
        assert pipeline.alive()
        with pytest.raises(EdgeError, match="still mode"):
            pipeline.classify("command")

        pipeline.reset()  # the next step ends the label, as cmd/reset does
        tick_until(
            pipeline,
            lambda: any(e["type"] == "end" for e in heard.of("event")),
            "end event after reset",
        )
        (end,) = [e for e in heard.of("event") if e["type"] == "end"]
        assert end["label"] == "carving ice"
    finally:
        pipeline.stop()


def test_a_rebuild_keeps_the_parts_the_new_config_leaves_alone(
    video_config, a0, k600_labels, clip, tmp_path: Path
) -> None:
    old = video_config(tmp_path)
    reporter = Reporter("video", ModelInfo(None, None))
    last, cancel = LastFrame(), threading.Event()
    first = VideoPipeline.build(old, reporter, Parts(), last=last, cancel=cancel)
    first.start()
    try:
        new = old.model_copy(update={"smoother": old.smoother.model_copy(update={"tau_s": 1.0})})
        kept = first.kept(old, new)
        assert kept.stream is first.classifier and kept.smoother is None
        assert kept.source is not None and kept.source.capture is first.capture
        second = VideoPipeline.build(new, reporter, kept, last=last, cancel=cancel)
        assert second.capture is first.capture and second.smoother is not first.smoother
        first.stop(keep=second.parts())
        second.start()  # the capture taken over is running already: not started twice
        tick_until(second, lambda: last.frame is not None and second.alive(), "a frame")
    finally:
        first.capture.stop()


def test_still_pipeline_photo_command_and_watched_folder(
    still_config, cv_fruits, images, tmp_path: Path
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    cfg = still_config(tmp_path, still={"watch_dir": str(watch), "watch_poll_s": 0.05})
    reporter = Reporter("still", ModelInfo(None, None))
    heard = Heard()
    reporter.subscribe(heard)
    pipeline = StillPipeline.build(
        cfg, reporter, Parts(), last=LastFrame(), cancel=threading.Event()
    )
    pipeline.start()
    try:
        assert reporter.ready and heard.of("state")[-1]["mode"] == "still"
        assert pipeline.alive()  # a photo command needs no stream of frames
        message = pipeline.classify("command")
        assert heard.of("result") == [message]
        result = ResultPayload.model_validate({**message, "seq": 1})
        assert result.results[0].label == "Apple" and result.image.source == "command"
        assert result.image.path and Path(result.image.path).is_file()

        shutil.copy(images / "fruit_banana.jpg", tmp_path / "banana.tmp")
        (tmp_path / "banana.tmp").rename(watch / "banana.jpg")
        tick_until(pipeline, lambda: len(heard.of("result")) == 2, "the watched file's result")
        second = heard.of("result")[1]
        assert second["image"]["source"] == "watch"
        assert second["results"][0]["label"] == "Banana"
        assert pipeline.model_info().name == cv_fruits.name
    finally:
        pipeline.stop()


def running(cfg) -> tuple[Daemon, Heard]:
    daemon = Daemon(cfg)
    heard = Heard()
    daemon.reporter.subscribe(heard)
    daemon.start()
    return daemon, heard


def until_label(daemon: Daemon, label: str, limit: int = 2000) -> None:
    for _ in range(limit):
        if daemon.reporter.label == label:
            return
        daemon.tick()
        assert not daemon.stopping.is_set(), f"the clip ended before the label {label!r}"
    raise AssertionError(f"no label {label!r} after {limit} ticks")


def test_commands_run_in_process_with_the_same_validation_and_replies(
    video_config, a0, k600_labels, clip, cv_fruits, tmp_path: Path, caplog
) -> None:
    """The path a web page takes: raw JSON in, the reply MQTT would send out."""
    shutil.copytree(cv_fruits, tmp_path / "models" / "fruits")
    caplog.set_level(logging.INFO, logger="edge.commands")
    daemon, heard = running(video_config(tmp_path))
    try:
        until_label(daemon, "carving ice")
        assert commands.call(daemon, "reset", b'{"id": "r1"}') == {
            "ok": True,
            "reset": True,
            "id": "r1",
        }
        bad = commands.call(daemon, "reset", b"{not json")
        assert bad["ok"] is False and "JSON" in bad["error"]
        unknown = commands.call(daemon, "dance", b"{}")
        assert unknown["ok"] is False and "reset" in unknown["error"]
        extra = commands.call(daemon, "snapshot", b'{"pad": 1}')
        assert extra["ok"] is False and "pad" in extra["error"]
        refused = commands.call(daemon, "classify", b"{}")
        assert refused == {"ok": False, "error": refused["error"]} and "still" in refused["error"]
        snap = commands.call(daemon, "snapshot", b"{}")
        assert snap["ok"] is True and Path(snap["path"]).is_file()

        swapped = commands.call(
            daemon, "model", json.dumps({"path": "fruits", "mode": "still"}).encode()
        )
        assert swapped["ok"] is True and swapped["mode"] == "still", swapped
        assert isinstance(daemon.pipeline, StillPipeline)
        assert heard.of("state")[-1]["mode"] == "still"
        assert heard.of("state")[-1]["model"]["name"] == "fruits"
        photo = commands.call(daemon, "classify", b"{}")
        # The clip's capture was kept: the photo is its latest frame.
        assert photo["ok"] is True and photo["result"]["image"]["source"] == "command"
        assert heard.of("result")[-1] == photo["result"]
    finally:
        daemon.shutdown()
    # Every command and its outcome is in the log, refusals with their reason.
    logged = [r.getMessage() for r in caplog.records if r.name == "edge.commands"]
    assert "command reset accepted" in logged
    assert "command model accepted" in logged and "command snapshot accepted" in logged
    assert any(m.startswith("command reset refused: invalid JSON") for m in logged)
    assert any(m.startswith("command dance refused: unknown command") for m in logged)
    assert f"command classify refused: {refused['error']}" in logged
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "edge.commands")


def test_a_model_swap_ends_the_label_is_kept_and_can_be_cleared(
    video_config, a0, k600_labels, clip, berlin_int8, berlin_labels, tmp_path: Path, caplog
) -> None:
    cattle = tmp_path / "models" / "cattle"
    cattle.mkdir(parents=True)
    shutil.copy(berlin_int8, cattle / "model.tflite")
    shutil.copy(berlin_labels, cattle / "labels.txt")
    cfg = video_config(tmp_path)
    daemon, heard = running(cfg)
    try:
        until_label(daemon, "carving ice")
        held_since = heard.of("state")[-1]["since"]
        n_events = len(heard.of("event"))
        swapped = commands.call(daemon, "model", b'{"path": "cattle/model.tflite"}')
        assert swapped["ok"] is True and swapped["model"]["name"] == "cattle", swapped
        # Like a reset: the label held ends, and "none" starts at the swap.
        (end,) = heard.of("event")[n_events:]
        assert (end["type"], end["label"], end["reason"]) == ("end", "carving ice", "model swap")
        state = heard.of("state")[-1]
        assert state["label"] is None and state["model"]["name"] == "cattle"
        assert state["since"] > held_since and state["since"] == end["ts"]
    finally:
        daemon.shutdown()

    # A restart keeps the swap, and says so and how to clear it.
    caplog.set_level(logging.INFO, logger="edge.overrides")
    daemon, heard = running(cfg)
    try:
        assert daemon.pipeline.model_info().name == "cattle"
        (note,) = [r.getMessage() for r in caplog.records if r.name == "edge.overrides"]
        assert "model-override.json" in note and "in force" in note
        assert '{"clear": true}' in note and "cattle" in note
        refused = commands.call(daemon, "model", b'{"clear": true, "name": "x"}')
        assert refused["ok"] is False and "clear" in refused["error"]
        cleared = commands.call(daemon, "model", b'{"clear": true, "id": "c"}')
        assert cleared["ok"] is True and cleared["cleared"] is True and cleared["id"] == "c"
        assert cleared["model"]["name"] == a0.stem and cleared["mode"] == "video"
        assert heard.of("state")[-1]["model"]["name"] == a0.stem
        assert not (tmp_path / "state" / "model-override.json").exists()
    finally:
        daemon.shutdown()
    daemon, _ = running(cfg)  # and a restart after clearing runs the file's model
    try:
        assert daemon.pipeline.model_info().name == a0.stem
    finally:
        daemon.shutdown()


def test_auto_without_a_camera_runs_a_watched_folder_alone_but_not_a_schedule(
    still_config,
    cv_fruits,
    tmp_path: Path,
) -> None:
    if list(Path("/dev").glob("video*")):
        pytest.skip("this machine has a camera")
    watch = tmp_path / "watch"
    watch.mkdir()
    folder = still_config(tmp_path, source={"kind": "auto"}, still={"watch_dir": str(watch)})
    reporter = Reporter("still", ModelInfo(None, None))
    pipeline = StillPipeline.build(
        folder, reporter, Parts(), last=LastFrame(), cancel=threading.Event()
    )
    try:
        assert pipeline.description == "none" and pipeline.alive()
        with pytest.raises(EdgeError, match="watched folder"):
            pipeline.classify("command")
    finally:
        pipeline.stop()
    schedule = still_config(
        tmp_path, source={"kind": "auto"}, still={"watch_dir": str(watch), "interval_s": 60}
    )
    with pytest.raises(SourceError, match="no camera"):
        StillPipeline.build(schedule, reporter, Parts(), last=LastFrame(), cancel=threading.Event())


def test_commands_from_another_thread_run_in_the_daemons_loop(
    video_config, a0, k600_labels, clip, tmp_path: Path
) -> None:
    daemon, _ = running(video_config(tmp_path))
    replies: dict[str, dict] = {}

    def page() -> None:  # a web page's request thread
        replies["bad"] = daemon.inbox.submit("reset", b"[1]").result(timeout=60)
        replies["reset"] = daemon.inbox.submit("reset", b'{"id": "w1"}').result(timeout=60)
        replies["snapshot"] = daemon.inbox.submit("snapshot", b"{}").result(timeout=60)

    thread = threading.Thread(target=page)
    try:
        until_label(daemon, "carving ice")
        thread.start()
        for _ in range(2000):
            if not thread.is_alive():
                break
            daemon.tick()
        thread.join(timeout=60)
        assert replies["bad"]["ok"] is False and "object" in replies["bad"]["error"]
        assert replies["reset"] == {"ok": True, "reset": True, "id": "w1"}
        assert replies["snapshot"]["ok"] is True and replies["snapshot"]["width"] > 0
        waiting = daemon.inbox.submit("reset", b"{}")
    finally:
        daemon.shutdown()
    assert waiting.result(timeout=5) == {"ok": False, "error": "the sensor is stopping"}
