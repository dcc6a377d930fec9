"""``edge bench`` runs its four loops and reports them; speed itself is not asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from edge.benchloops import ExampleLoopClassifier, LeanLoopClassifier
from edge.labels import load_labels
from edge.preprocess import RESIZE_METHODS
from edge.sources.video_file import VideoFile
from tests.support.assets import require
from tests.support.cli import assert_one_line_error, run_cli


@pytest.fixture
def clip(videos: Path) -> Path:
    return videos / "carving_ice_small.mp4"


def test_bench_json_reports_all_four_loops_and_judges_its_targets(a0, clip):
    proc = run_cli(
        "bench",
        "--model",
        str(a0),
        "--video",
        str(clip),
        "--frames",
        "150",
        "--rounds",
        "2",
        "--threads",
        "2",
        "--pipeline-threads",
        "1",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for key in ("floor", "floor_pipeline_threads", "baseline", "lean", "pipeline"):
        assert report[key]["fps"] > 0, key
        assert report[key]["frames"] == 150  # more than the clip's 131: it was looped
        assert report[key]["threads"] >= 1
        assert len(report[key]["rounds"]) == 2
        assert min(report[key]["rounds"]) <= report[key]["fps"] <= max(report[key]["rounds"])
    ratios = report["ratios"]
    assert set(ratios) == {
        "pipeline_baseline",
        "lean_baseline",
        "pipeline_floor",
        "pipeline_lean",
        "pipeline_floor_same_threads",
    }
    assert report["floor"]["threads"] == 2
    assert report["floor_pipeline_threads"]["threads"] == report["pipeline"]["threads"] == 1
    same = report["pipeline"]["fps"] / report["floor_pipeline_threads"]["fps"]
    assert abs(ratios["pipeline_floor_same_threads"] - same) < 0.01
    assert report["targets"] == {
        "pipeline_floor": ratios["pipeline_floor"] >= 0.85,
        "pipeline_lean": ratios["pipeline_lean"] >= 1.5,
    }
    assert abs(ratios["pipeline_lean"] - report["pipeline"]["fps"] / report["lean"]["fps"]) < 0.01
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


def test_bench_text_output_and_thread_options(a0, clip):
    proc = run_cli(
        "bench",
        "--model",
        str(a0),
        "--video",
        str(clip),
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
    for word in ("floor", "baseline", "lean", "pipeline", "pipeline/baseline", "peak RSS"):
        assert word in out, out
    targets = [line for line in out.splitlines() if line.startswith("target ")]
    assert len(targets) == 2, out
    assert all(line.endswith((" met", " NOT met")) for line in targets), targets
    floor_lines = [line for line in out.splitlines() if line.startswith("floor")]
    pipe_line = next(line for line in out.splitlines() if line.startswith("pipeline "))
    assert "threads 1" in floor_lines[0] and "threads 2" in pipe_line
    # The floor again at the pipeline's thread count, and the pipeline judged against it too.
    assert len(floor_lines) == 2 and "threads 2" in floor_lines[1], out
    assert "pipeline/floor at the same 2 interpreter thread(s): " in out, out


@pytest.mark.parametrize("loop", [ExampleLoopClassifier, LeanLoopClassifier])
def test_baseline_loops_really_classify(a0, k600_labels, clip, loop):
    """The baselines do the same work: on a square clip they find the same action."""
    clf = loop(a0, load_labels(k600_labels), threads=1)
    ranked = []
    for frame in VideoFile(clip).frames(lambda t: True):
        ranked = clf.classify(cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB))
    assert ranked[0][0] == "carving ice"
    assert len(ranked) == 5
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)


def test_resize_comparison_classifies_each_clip_under_each_method(videos, a0, k600_labels):
    clips = [videos / "carving_ice_small.mp4", videos / "eye_makeup.avi"]
    require(a0, k600_labels, *clips)
    proc = run_cli(
        "bench",
        "--resize",
        *map(str, clips),
        "--model",
        str(a0),
        "--labels",
        str(k600_labels),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    rows = report["rows"]
    assert {(r["clip"], r["method"]) for r in rows} == {
        (c.name, m) for c in clips for m in RESIZE_METHODS
    }
    for r in rows:
        assert r["steps"] > 5 and r["prep_ms"] > 0
        assert 0 < r["reference_score"] <= 1 and 0 <= r["reference_top1_share"] <= 1
        if r["method"] == report["reference"]:
            assert r["top1"] == r["reference_label"] and r["score"] == r["reference_score"]
    assert set(report["summary"]) == set(RESIZE_METHODS)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--frames", "0"), "--frames"),
        (("--threads", "0"), "--threads"),
        (("--rounds", "0"), "--rounds"),
        (("--video", "nope.mp4"), "nope.mp4"),
    ],
)
def test_bench_bad_input_is_one_line(a0, clip, videos, args, needle):
    args = tuple(str(videos / a) if a == "nope.mp4" else a for a in args)
    video = () if "--video" in args else ("--video", str(clip))
    proc = run_cli("bench", "--model", str(a0), *video, *args)
    assert_one_line_error(proc, needle)
