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

import cv2
import numpy as np
import pytest

from tests.conftest import (
    A0,
    BERLIN_INT8,
    BERLIN_LABELS,
    K600_LABELS,
    ROOT,
    VIDEOS,
    assert_one_line_error,
    require,
    run_cli,
)

CARVING = VIDEOS / "carving_ice.mp4"
SMALL = VIDEOS / "carving_ice_small.mp4"


def classify(*args: str, model=A0) -> subprocess.CompletedProcess:
    require(model)
    return run_cli("classify", *args, "--model", str(model))


def json_lines(proc: subprocess.CompletedProcess) -> tuple[list[dict], dict]:
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return lines[:-1], lines[-1]


def test_json_output_is_one_object_per_step_then_a_summary():
    require(CARVING, K600_LABELS)
    steps, final = json_lines(classify(str(CARVING), "--json"))
    assert len(steps) == 34  # 200 frames at 30 fps, taken at 5 fps
    for step in steps:
        assert set(step) == {"t", "frame", "top"}
        assert len(step["top"]) == 5
        assert all(set(s) == {"label", "score"} for s in step["top"])
        scores = [s["score"] for s in step["top"]]
        assert scores == sorted(scores, reverse=True)
    assert [s["frame"] for s in steps] == list(range(0, 200, 6))
    assert steps[0]["t"] == 0.0
    assert all(abs(b["t"] - a["t"] - 0.2) < 0.01 for a, b in itertools.pairwise(steps))
    assert set(final) == {"final", "frames", "fps"}
    assert final["frames"] == len(steps)
    assert final["fps"] > 0
    assert final["final"]["top"] == steps[-1]["top"]
    assert final["final"]["top"][0]["label"] == "carving ice"
    assert final["final"]["top"][0]["score"] > 0.9


def test_text_output_is_a_readable_top_five_and_no_progress_bar_when_piped():
    require(CARVING)
    proc = classify(str(CARVING))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 6
    assert "carving_ice.mp4" in lines[0] and "34 frames" in lines[0]
    assert lines[1].split()[:3] == ["1.", "carving", "ice"]
    assert float(lines[1].split()[-1]) > 0.9
    assert proc.stderr == ""  # no progress bar, no runtime chatter


def test_progress_bar_on_a_terminal():
    require(SMALL, A0)
    leader, follower = pty.openpty()
    # A real terminal has a size; a fresh pty is 0x0, which tqdm draws as nothing.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edge", "classify", str(SMALL), "--model", str(A0)],
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


def test_fps_at_or_above_the_source_rate_classifies_every_frame():
    require(VIDEOS / "eye_makeup.avi")
    steps, final = json_lines(classify(str(VIDEOS / "eye_makeup.avi"), "--fps", "30", "--json"))
    assert [s["frame"] for s in steps] == list(range(164))
    assert final["frames"] == 164


def test_portrait_five_fps_clip_is_a_squat():
    require(VIDEOS / "squats.mp4")
    steps, final = json_lines(classify(str(VIDEOS / "squats.mp4"), "--json", "--top", "3"))
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


def test_rotate_puts_a_sideways_clip_upright(tmp_path):
    require(SMALL)
    sideways = tmp_path / "sideways.avi"
    frames = [cv2.rotate(f, cv2.ROTATE_90_COUNTERCLOCKWISE) for f in read_all(SMALL)]
    write_clip(sideways, frames, codec="FFV1")  # lossless: rotating back gives the same pixels
    every = ("--fps", "30", "--json")
    original, _ = json_lines(classify(str(SMALL), *every))
    upright, _ = json_lines(classify(str(sideways), "--rotate", "90", *every))
    as_is, _ = json_lines(classify(str(sideways), *every))
    assert len(original) == len(upright) == len(as_is) == 131
    assert [s["top"] for s in upright] == [s["top"] for s in original]
    assert [s["top"] for s in as_is] != [s["top"] for s in original]


def test_horizon_on_a_joined_clip_follows_the_cut(tmp_path):
    require(VIDEOS / "arm_wrestling.mp4", CARVING)
    size = (256, 256)
    arm = [cv2.resize(f, size) for f in read_all(VIDEOS / "arm_wrestling.mp4")]
    carving = [cv2.resize(f, size) for f in read_all(CARVING)]
    joined = tmp_path / "joined.avi"
    write_clip(joined, arm + carving, fps=30.0)
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


def test_call_export_runs_through_the_same_command():
    require(BERLIN_INT8, BERLIN_LABELS, SMALL)
    _, final = json_lines(classify(str(SMALL), "--json", "--top", "7", model=BERLIN_INT8))
    top = final["final"]["top"]
    labels = BERLIN_LABELS.read_text().split()
    assert sorted(s["label"] for s in top) == sorted(labels)
    assert abs(sum(s["score"] for s in top) - 1.0) < 1e-3


def test_plot_writes_a_png(tmp_path):
    require(SMALL)
    out = tmp_path / "timeline.png"
    proc = classify(str(SMALL), "--plot", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] >= 600
    # Something was drawn in colour besides the axes.
    assert (np.ptp(image.astype(int), axis=2) > 60).sum() > 500


def test_plot_without_matplotlib_is_a_clear_error(tmp_path):
    require(SMALL, A0)
    blocker = tmp_path / "block" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked for this test')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "block"))
    proc = run_cli(
        "classify", str(SMALL), "--model", str(A0), "--plot", str(tmp_path / "p.png"), env=env
    )
    assert_one_line_error(proc, "matplotlib", "edge[plot]")


# ------------------------------------------------------------------------------ bad input


def test_missing_model(tmp_path):
    require(SMALL)
    proc = run_cli("classify", str(SMALL), "--model", str(tmp_path / "missing.tflite"))
    assert_one_line_error(proc, "missing.tflite", "not found")


def test_file_that_is_not_tflite(tmp_path):
    require(SMALL)
    fake = tmp_path / "fake.tflite"
    fake.write_text("definitely not a flatbuffer\n" * 10)
    assert_one_line_error(run_cli("classify", str(SMALL), "--model", str(fake)), "fake.tflite")


@pytest.mark.parametrize("fraction", [0.5, 0.98])
def test_truncated_model(tmp_path, fraction):
    require(A0, SMALL)
    data = A0.read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: int(len(data) * fraction)])
    assert_one_line_error(run_cli("classify", str(SMALL), "--model", str(cut)), "cut.tflite")


def test_label_file_of_the_wrong_length(tmp_path):
    require(A0, SMALL)
    labels = tmp_path / "short.txt"
    labels.write_text("one\ntwo\n")
    proc = run_cli("classify", str(SMALL), "--model", str(A0), "--labels", str(labels))
    assert_one_line_error(proc, "short.txt", "2 labels", "600")


def test_unreadable_video(tmp_path):
    require(A0)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    assert_one_line_error(run_cli("classify", str(junk), "--model", str(A0)), "junk.mp4")


def test_empty_video(tmp_path):
    require(A0)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    assert_one_line_error(run_cli("classify", str(empty), "--model", str(A0)), "empty.avi")


def test_missing_video(tmp_path):
    require(A0)
    proc = run_cli("classify", str(tmp_path / "gone.mp4"), "--model", str(A0))
    assert_one_line_error(proc, "gone.mp4", "not found")


def test_unknown_catalogue_name():
    require(SMALL)
    proc = run_cli("classify", str(SMALL), "--model", "movinet-z9-imaginary")
    assert_one_line_error(proc, "movinet-z9-imaginary")


def test_bad_numbers_are_one_line_errors():
    require(SMALL, A0)
    proc = run_cli("classify", str(SMALL), "--model", str(A0), "--fps", "0")
    assert_one_line_error(proc, "--fps")
    proc = run_cli("classify", str(SMALL), "--model", str(A0), "--horizon", "-1")
    assert_one_line_error(proc, "--horizon")


def test_model_given_as_a_plain_folder(tmp_path):
    require(A0, K600_LABELS, VIDEOS / "carving_ice_small.mp4")
    folder = tmp_path / "my-movinet"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(A0.read_bytes())
    (folder / "labels.txt").write_bytes(K600_LABELS.read_bytes())
    proc = run_cli(
        "classify", str(VIDEOS / "carving_ice_small.mp4"), "--model", str(folder), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    assert final["final"]["top"][0]["label"] == "carving ice"


def test_horizon_is_in_seconds_whatever_the_step_rate(tmp_path):
    """squats.mp4 is a 5 fps clip: --fps 5 and --fps 30 both take every frame, and a 4 s
    horizon must mean the same 4 s of it (not 20 steps in one case and 120 in the other)."""
    clip = VIDEOS / "squats.mp4"
    require(A0, K600_LABELS, clip)

    def steps(fps: str) -> list[list]:
        proc = run_cli(
            "classify", str(clip), "--model", str(A0), "--fps", fps, "--horizon", "4", "--json"
        )
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(x) for x in proc.stdout.splitlines()]
        return [[(t["label"], round(t["score"], 4)) for t in s["top"]] for s in lines[:-1]]

    at5, at30 = steps("5"), steps("30")
    assert len(at5) == len(at30) == 65
    assert at5 == at30
