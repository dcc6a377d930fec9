"""Which frames the model sees: the pacer, the file reader's timestamps and selection, and
the one rule live capture and edge classify share."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest

from edge.app.pipeline import LastFrame, ModelInfo, Parts
from edge.app.reporter import Message, Reporter
from edge.app.video import VideoPipeline
from edge.config import parse_config
from edge.errors import SourceError
from edge.pacing import Pacer, takes_every_frame
from edge.sources.orientation import Orientation
from edge.sources.video_file import VideoFile
from tests.support.cli import run_cli


def taken(fps: float, times) -> list[float]:
    pacer = Pacer(fps)
    return [t for t in times if pacer.take(t)]


def test_thirty_fps_source_gives_every_sixth_frame():
    times = [i / 30 for i in range(300)]
    got = taken(5.0, times)
    assert got == [times[i] for i in range(0, 300, 6)]


@pytest.mark.parametrize("source_fps", [28.0, 29.97, 24.0, 12.5, 7.0])
def test_average_rate_is_the_model_rate_whatever_the_source_rate(source_fps):
    n = int(source_fps * 60)
    got = taken(5.0, [i / source_fps for i in range(n)])
    assert abs(len(got) - 300) <= 2  # one minute at 5 steps/s
    gaps = np.diff(got)
    assert gaps.min() >= 0.2 - 1 / source_fps - 1e-9
    assert gaps.max() <= 0.2 + 1 / source_fps + 1e-9


def test_jittery_timestamps_still_average_the_model_rate():
    rng = np.random.default_rng(7)
    times = np.cumsum(rng.uniform(0.02, 0.05, size=3000))  # ~29 fps with jitter
    got = taken(5.0, times)
    assert abs(len(got) / (times[-1] - times[0]) - 5.0) < 0.1


def test_a_source_at_or_below_the_model_rate_gives_every_frame():
    times = [i / 5 for i in range(50)]
    assert taken(5.0, times) == times
    times = [i / 25 for i in range(100)]
    assert taken(30.0, times) == times
    assert takes_every_frame(30.0, 25.0)
    assert takes_every_frame(5.0, 5.0)
    assert not takes_every_frame(5.0, 30.0)
    assert not takes_every_frame(5.0, None)


def test_a_stall_does_not_cause_a_burst_and_time_going_back_restarts():
    pacer = Pacer(5.0)
    assert pacer.take(0.0)
    assert not pacer.take(0.1)
    assert pacer.take(10.0)  # stalled ten seconds
    # No catch-up burst: the next step is a period after the stall, not immediately.
    assert not pacer.take(10.05)
    assert not pacer.take(10.1)
    assert pacer.take(10.2)
    assert pacer.take(1.0)  # restarted source: clock went back
    assert not pacer.take(1.1)


def test_bad_rates_are_refused():
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Pacer(bad)


# ----------------------------------------------------------------------------- video file


def test_file_timestamps_start_at_zero_and_increase(videos):
    for name in ("eye_makeup.avi", "arm_wrestling.mp4", "squats.mp4"):
        path = videos / name
        video = VideoFile(path)
        times = [f.timestamp for f in video.frames()]
        assert times[0] == 0.0
        assert np.all(np.diff(times) > 0), name
        assert video.fps and abs(times[-1] - (len(times) - 1) / video.fps) < 0.1, name


def test_select_sees_every_timestamp_and_only_selected_frames_are_decoded(videos):
    path = videos / "carving_ice.mp4"
    seen: list[float] = []
    pacer = Pacer(5.0)

    def select(t: float) -> bool:
        seen.append(t)
        return pacer.take(t)

    frames = list(VideoFile(path).frames(select))
    assert len(seen) == 200
    assert [f.seq for f in frames] == list(range(0, 200, 6))
    assert all(f.image.shape == (360, 360, 3) and f.image.dtype == np.uint8 for f in frames)


def test_frames_match_a_plain_opencv_read(videos):
    path = videos / "carving_ice_small.mp4"
    cap = cv2.VideoCapture(str(path))
    plain = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        plain.append(image)
    cap.release()
    ours = list(VideoFile(path).frames(lambda t: True))
    assert len(ours) == len(plain)
    for a, b in zip(ours[::10], plain[::10], strict=True):
        np.testing.assert_array_equal(a.image, b)


@pytest.mark.parametrize("opencv_sets_threads", [True, False])
def test_a_decoder_thread_count_decodes_the_same_frames(videos, monkeypatch, opencv_sets_threads):
    """With OpenCV 4.7+ the decoder takes the thread count it is given; an older OpenCV
    (Debian bookworm's 4.6 on a Raspberry Pi) has no such property and keeps FFmpeg's."""
    from edge.sources import video_file

    if not opencv_sets_threads:
        monkeypatch.setattr(video_file, "_N_THREADS", None)
    path = videos / "carving_ice_small.mp4"
    plain = list(VideoFile(path).frames(lambda t: True))
    single = list(VideoFile(path, decode_threads=1).frames(lambda t: True))
    assert len(single) == len(plain) == 131
    for a, b in zip(single[::10], plain[::10], strict=True):
        np.testing.assert_array_equal(a.image, b.image)


def test_orientation_is_applied_and_reported(videos):
    path = videos / "squats.mp4"
    video = VideoFile(path, Orientation(rotate=90))
    assert (video.width, video.height) == (1280, 720)
    first = next(video.frames())
    assert first.image.shape == (720, 1280, 3)


def test_prepared_matches_the_sequential_path_and_loops_as_new_epochs(videos):
    path = videos / "carving_ice_small.mp4"
    video = VideoFile(path)

    def prepare(bgr: np.ndarray, out: np.ndarray) -> None:
        cv2.resize(bgr, (16, 16), dst=out, interpolation=cv2.INTER_AREA)

    expected = [cv2.resize(f.image, (16, 16), interpolation=cv2.INTER_AREA) for f in video.frames()]
    items = []
    for item in video.prepared(prepare, (16, 16, 3), np.uint8, depth=2, loops=2):
        items.append((item.seq, item.epoch, item.timestamp, item.data.copy()))
    n = len(expected)
    assert len(items) == 2 * n
    assert [i[0] for i in items] == list(range(2 * n))
    assert [i[1] for i in items] == [0] * n + [1] * n
    assert items[n][2] == 0.0  # timestamps restart with the new epoch
    for k, (_, _, _, data) in enumerate(items):
        np.testing.assert_array_equal(data, expected[k % n])


def test_prepared_stops_its_thread_when_the_consumer_stops(videos):
    path = videos / "arm_wrestling.mp4"
    before = threading.active_count()
    it = VideoFile(path).prepared(lambda bgr, out: None, (1,), np.uint8, depth=2)
    next(it)
    it.close()
    assert threading.active_count() == before


def test_prepared_raises_worker_errors_in_the_consumer(videos):
    path = videos / "carving_ice_small.mp4"

    def prepare(bgr: np.ndarray, out: np.ndarray) -> None:
        raise SourceError("boom in prepare")

    with pytest.raises(SourceError, match="boom in prepare"):
        list(VideoFile(path).prepared(prepare, (1,), np.uint8))


def test_missing_unreadable_and_empty_videos_are_source_errors(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        VideoFile(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match=r"junk\.mp4"):
        VideoFile(junk)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.mp4"):
        VideoFile(empty)


# ----------------------------------------------------------------------------- one rule


@pytest.mark.parametrize("name", ["carving_ice.mp4", "arm_wrestling.mp4", "squats.mp4"])
def test_edge_run_and_edge_classify_step_on_the_same_source_frames(
    a0, k600_labels, videos, tmp_path, name
):
    """30, 28 and 5 fps clips: the live path (capture -> VideoPipeline, what edge run
    does) and edge classify pick the same source frames, and both call them "frame"."""
    clip = videos / name
    proc = run_cli("classify", str(clip), "--model", str(a0), "--json")
    assert proc.returncode == 0, proc.stderr
    classified = [json.loads(line)["frame"] for line in proc.stdout.splitlines()[:-1]]

    cfg = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "models_dir": str(tmp_path / "models"),
            "source": {"kind": "opencv", "uri": str(clip), "realtime": False},
            "model": {"path": str(a0), "labels": str(k600_labels), "fps": 5},
            "mqtt": {"enabled": False},
        }
    )
    reporter = Reporter("video", ModelInfo(None, None))
    heard: list[Message] = []
    reporter.subscribe(heard.append)
    pipeline = VideoPipeline.build(
        cfg, reporter, Parts(), last=LastFrame(), cancel=threading.Event()
    )
    pipeline.start()
    try:
        while pipeline.tick():
            pass
    finally:
        pipeline.stop()
    stepped = [m.payload["frame"] for m in heard if m.kind == "prediction"]
    assert len(classified) > 10
    assert stepped == classified
