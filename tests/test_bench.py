"""``edge bench`` runs its three loops and reports them; speed itself is not asserted here."""

from __future__ import annotations

import json

import cv2

from edge.commands.bench import ExampleLoopClassifier
from edge.labels import load_labels
from edge.sources.video_file import VideoFile
from tests.conftest import A0, K600_LABELS, VIDEOS, assert_one_line_error, require, run_cli

CLIP = VIDEOS / "carving_ice_small.mp4"


def test_bench_json_reports_all_three_loops():
    require(A0, CLIP)
    proc = run_cli(
        "bench",
        "--model",
        str(A0),
        "--video",
        str(CLIP),
        "--frames",
        "150",
        "--rounds",
        "2",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for key in ("floor", "baseline", "pipeline"):
        assert report[key]["fps"] > 0, key
        assert report[key]["frames"] == 150  # more than the clip's 131: it was looped
        assert report[key]["threads"] >= 1
        assert len(report[key]["rounds"]) == 2
        assert min(report[key]["rounds"]) <= report[key]["fps"] <= max(report[key]["rounds"])
    assert set(report["ratios"]) == {"pipeline_baseline", "pipeline_floor"}
    assert (
        abs(
            report["ratios"]["pipeline_baseline"]
            - report["pipeline"]["fps"] / report["baseline"]["fps"]
        )
        < 0.01
    )
    assert report["peak_rss_mb"] > 10
    assert report["video_frames"] == 131
    assert len(report["sha256"]) == 64


def test_bench_text_output_and_thread_options():
    require(A0, CLIP)
    proc = run_cli(
        "bench",
        "--model",
        str(A0),
        "--video",
        str(CLIP),
        "--frames",
        "40",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--pipeline-threads",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for word in ("floor", "baseline", "pipeline", "pipeline/baseline", "peak RSS"):
        assert word in out, out
    floor_line = next(line for line in out.splitlines() if line.startswith("floor"))
    pipe_line = next(line for line in out.splitlines() if line.startswith("pipeline "))
    assert "threads 1" in floor_line and "threads 2" in pipe_line


def test_baseline_loop_really_classifies():
    """The baseline does the same work: on a square clip it finds the same action."""
    require(A0, K600_LABELS, CLIP)
    clf = ExampleLoopClassifier(A0, load_labels(K600_LABELS), threads=1)
    ranked = []
    for frame in VideoFile(CLIP).frames(lambda t: True):
        ranked = clf.classify(cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB))
    assert ranked[0][0] == "carving ice"
    assert len(ranked) == 5


def test_bench_bad_input_is_one_line():
    require(A0, CLIP)
    proc = run_cli("bench", "--model", str(A0), "--video", str(CLIP), "--frames", "0")
    assert_one_line_error(proc, "--frames")
    proc = run_cli("bench", "--model", str(A0), "--video", str(VIDEOS / "nope.mp4"))
    assert_one_line_error(proc, "nope.mp4")
