"""``edge classify`` as a user runs it: output formats, options and bad input."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.assets import ROOT
from tests.support.cli import assert_one_line_error, run_cli


@pytest.fixture
def carving(videos: Path) -> Path:
    return videos / "carving_ice.mp4"


@pytest.fixture
def small(videos: Path) -> Path:
    return videos / "carving_ice_small.mp4"


@pytest.fixture
def classify(a0: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``edge classify ARGS --model MODEL`` (MoViNet-A0 unless given)."""

    def run(*args: str, model: Path = a0) -> subprocess.CompletedProcess:
        return run_cli("classify", *args, "--model", str(model))

    return run


def json_lines(proc: subprocess.CompletedProcess) -> tuple[list[dict], dict]:
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return lines[:-1], lines[-1]


def test_json_output_is_one_object_per_step_then_a_summary(classify, carving, k600_labels):
    steps, final = json_lines(classify(str(carving), "--json"))
    assert len(steps) == 34  # 200 frames at 30 fps, taken at 5 fps
    for step in steps:
        assert set(step) == {"t", "frame", "step", "top"}
        assert len(step["top"]) == 5
        assert all(set(s) == {"label", "score"} for s in step["top"])
        scores = [s["score"] for s in step["top"]]
        assert scores == sorted(scores, reverse=True)
    assert [s["frame"] for s in steps] == list(range(0, 200, 6))
    assert steps[0]["t"] == 0.0
    assert all(abs(b["t"] - a["t"] - 0.2) < 0.01 for a, b in itertools.pairwise(steps))
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert set(final) == {"final", "steps", "steps_per_s", "labels"}
    assert final["steps"] == len(steps)
    assert final["steps_per_s"] > 0
    assert final["labels"] == str(k600_labels)  # found beside the model: said which
    assert final["final"]["top"] == steps[-1]["top"]
    assert final["final"]["top"][0]["label"] == "carving ice"
    assert final["final"]["top"][0]["score"] > 0.9


def test_text_output_is_a_readable_top_five_and_no_progress_bar_when_piped(classify, carving):
    proc = classify(str(carving))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 6
    assert "carving_ice.mp4" in lines[0] and "34 steps" in lines[0]
    assert "labels kinetics600_label_map.txt" in lines[0]
    assert lines[1].split()[:3] == ["1.", "carving", "ice"]
    assert float(lines[1].split()[-1]) > 0.9
    assert proc.stderr == ""  # no progress bar, no runtime chatter


def test_progress_bar_on_a_terminal(small, a0):
    leader, follower = pty.openpty()
    # A real terminal has a size; a fresh pty is 0x0, which tqdm draws as nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edge", "classify", str(small), "--model", str(a0)],
            stdout=subprocess.PIPE,
            stderr=follower,
            cwd=ROOT,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    err = b"".join(chunks).decode(errors="replace")
    assert "step" in err and "%" in err, err


def test_fps_at_or_above_the_source_rate_classifies_every_frame(classify, videos):
    steps, final = json_lines(classify(str(videos / "eye_makeup.avi"), "--fps", "30", "--json"))
    assert [s["frame"] for s in steps] == list(range(164))
    assert final["steps"] == 164


def test_portrait_five_fps_clip_is_a_squat(classify, videos):
    steps, final = json_lines(classify(str(videos / "squats.mp4"), "--json", "--top", "3"))
    assert len(steps) == 65
    assert len(final["final"]["top"]) == 3
    assert final["final"]["top"][0]["label"] == "squat"


def write_clip(path, frames, fps: float = 30.0, codec: str = "MJPG") -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def read_all(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, image = cap.read()
        if not ok:
            return out
        out.append(image)


def test_rotate_puts_a_sideways_clip_upright(classify, small, tmp_path):
    sideways = tmp_path / "sideways.avi"
    frames = [cv2.rotate(f, cv2.ROTATE_90_COUNTERCLOCKWISE) for f in read_all(small)]
    write_clip(sideways, frames, codec="FFV1")  # lossless: rotating back gives the same pixels
    every = ("--fps", "30", "--json")
    original, _ = json_lines(classify(str(small), *every))
    upright, _ = json_lines(classify(str(sideways), "--rotate", "90", *every))
    as_is, _ = json_lines(classify(str(sideways), *every))
    assert len(original) == len(upright) == len(as_is) == 131
    assert [s["top"] for s in upright] == [s["top"] for s in original]
    assert [s["top"] for s in as_is] != [s["top"] for s in original]


def test_horizon_on_a_joined_clip_follows_the_cut(classify, carving, videos, tmp_path):
    size = (256, 256)
    arm = [cv2.resize(f, size) for f in read_all(videos / "arm_wrestling.mp4")]
    ice = [cv2.resize(f, size) for f in read_all(carving)]
    joined = tmp_path / "joined.avi"
    write_clip(joined, arm + ice, fps=30.0)
    cut = len(arm) / 30.0

    def after_cut(*extra: str) -> list[str]:
        steps, _ = json_lines(classify(str(joined), "--json", *extra))
        return [(s["t"], s["top"][0]["label"]) for s in steps if s["t"] >= cut - 1e-6]

    unbounded = after_cut()
    assert unbounded[-1][1] == "arm wrestling"
    bounded = after_cut("--horizon", "4")
    switch = next(t for t, label in bounded if label == "carving ice")
    assert switch - cut <= 2.0
    rest = [label for t, label in bounded if t >= switch]
    assert sum(label == "carving ice" for label in rest) >= 0.75 * len(rest)


def test_call_export_runs_through_the_same_command(classify, berlin_int8, berlin_labels, small):
    _, final = json_lines(classify(str(small), "--json", "--top", "7", model=berlin_int8))
    top = final["final"]["top"]
    labels = berlin_labels.read_text().split()
    assert sorted(s["label"] for s in top) == sorted(labels)
    assert abs(sum(s["score"] for s in top) - 1.0) < 1e-3


def test_plot_writes_a_png(classify, small, tmp_path):
    out = tmp_path / "timeline.png"
    proc = classify(str(small), "--plot", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] >= 600
    # Something was drawn in colour besides the axes.
    assert (np.ptp(image.astype(int), axis=2) > 60).sum() > 500


def test_plot_without_matplotlib_is_a_clear_error(small, a0, tmp_path):
    blocker = tmp_path / "block" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked for this test')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "block"))
    proc = run_cli(
        "classify", str(small), "--model", str(a0), "--plot", str(tmp_path / "p.png"), env=env
    )
    assert_one_line_error(proc, "matplotlib", "edge[plot]")


# ------------------------------------------------------------------------------ bad input


def test_missing_model(small, tmp_path):
    proc = run_cli("classify", str(small), "--model", str(tmp_path / "missing.tflite"))
    assert_one_line_error(proc, "missing.tflite", "not found")


def test_file_that_is_not_tflite(small, tmp_path):
    fake = tmp_path / "fake.tflite"
    fake.write_text("definitely not a flatbuffer\n" * 10)
    assert_one_line_error(run_cli("classify", str(small), "--model", str(fake)), "fake.tflite")


@pytest.mark.parametrize("fraction", [0.5, 0.98])
def test_truncated_model(a0, small, tmp_path, fraction):
    data = a0.read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: int(len(data) * fraction)])
    assert_one_line_error(run_cli("classify", str(small), "--model", str(cut)), "cut.tflite")


def test_label_file_of_the_wrong_length(a0, small, tmp_path):
    labels = tmp_path / "short.txt"
    labels.write_text("one\ntwo\n")
    proc = run_cli("classify", str(small), "--model", str(a0), "--labels", str(labels))
    assert_one_line_error(proc, "short.txt", "2 labels", "600")


@pytest.mark.parametrize(
    ("name", "content", "needles"),
    [
        ("junk.mp4", os.urandom(4096), ()),  # not a video at all
        ("empty.avi", b"", ()),
        ("gone.mp4", None, ("not found",)),
    ],
)
def test_a_bad_video_is_a_one_line_error(a0, tmp_path, name, content, needles):
    video = tmp_path / name
    if content is not None:
        video.write_bytes(content)
    proc = run_cli("classify", str(video), "--model", str(a0))
    assert_one_line_error(proc, name, *needles)


def test_unknown_catalogue_name(small):
    proc = run_cli("classify", str(small), "--model", "movinet-z9-imaginary")
    assert_one_line_error(proc, "movinet-z9-imaginary")


@pytest.mark.parametrize(
    "option",
    [("--fps", "0"), ("--fps", "-5"), ("--horizon", "-1"), ("--threads", "0"), ("--top", "0")],
)
def test_bad_numbers_are_one_line_errors(small, a0, option):
    proc = run_cli("classify", str(small), "--model", str(a0), *option)
    assert_one_line_error(proc, option[0])


def test_model_given_as_a_plain_folder(a0, k600_labels, videos, tmp_path):
    folder = tmp_path / "my-movinet"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(a0.read_bytes())
    (folder / "labels.txt").write_bytes(k600_labels.read_bytes())
    proc = run_cli(
        "classify", str(videos / "carving_ice_small.mp4"), "--model", str(folder), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    assert final["final"]["top"][0]["label"] == "carving ice"


def test_horizon_is_in_seconds_whatever_the_step_rate(videos, a0, k600_labels, tmp_path):
    """squats.mp4 is a 5 fps clip: --fps 5 and --fps 30 both take every frame, and a 4 s
    horizon must mean the same 4 s of it (not 20 steps in one case and 120 in the other)."""
    clip = videos / "squats.mp4"

    def steps(fps: str) -> list[list]:
        proc = run_cli(
            "classify", str(clip), "--model", str(a0), "--fps", fps, "--horizon", "4", "--json"
        )
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(x) for x in proc.stdout.splitlines()]
        return [[(t["label"], round(t["score"], 4)) for t in s["top"]] for s in lines[:-1]]

    at5, at30 = steps("5"), steps("30")
    assert len(at5) == len(at30) == 65
    assert at5 == at30


def test_a_photo_is_pointed_to_edge_image(a0, images):
    photo = images / "fox.jpeg"
    proc = run_cli("classify", str(photo), "--model", str(a0))
    assert_one_line_error(proc, str(photo), "is an image", f"edge image {photo}")


def test_the_plot_shows_what_would_be_published(a0, k600_labels, videos):
    """Legend outside the axes, the smoothed label as a band, the horizon as a line."""
    from edge.classifiers.stream import StreamClassifier
    from edge.config import SmootherConfig
    from edge.pacing import Pacer
    from edge.plot import segments, timeline_figure
    from edge.smoothing import Smoother
    from edge.sources.video_file import VideoFile

    clf = StreamClassifier(a0, labels_path=k600_labels, horizon_s=2.0)
    smoother = Smoother(clf.labels, SmootherConfig())
    times, probs, smoothed = [], [], []
    for frame in VideoFile(videos / "carving_ice.mp4").frames(Pacer(5.0).take):
        pred = clf.step(frame)
        times.append(frame.timestamp)
        probs.append(pred.probs)
        smoothed.append(smoother.update(pred.probs, frame.timestamp).label)
    fig = timeline_figure(times, probs, clf.labels, smoothed=smoothed, horizon_s=2.0)
    fig.canvas.draw()
    curves, band = fig.axes
    legend = curves.get_legend()
    assert legend.get_window_extent().x0 >= curves.get_window_extent().x1  # beside, not on
    assert "memory horizon (2 s)" in [t.get_text() for t in legend.get_texts()]
    (line,) = [ln for ln in curves.get_lines() if ln.get_linestyle() == "--"]
    assert line.get_xdata()[0] == times[0] + 2.0
    runs = segments(smoothed, times)
    assert runs and runs[-1][2] == "carving ice"
    assert [t.get_text() for t in band.texts] == [label for _, _, label in runs]
    assert len(band.patches) == len(runs)
    assert segments(["a", "a", None, "b"], [0.0, 1.0, 2.0, 3.0]) == [
        (0.0, 2.0, "a"),
        (3.0, 3.0, "b"),
    ]
