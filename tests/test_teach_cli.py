"""`edge teach`, `edge classify --taught` and `edge image --taught` as a user runs them."""

from __future__ import annotations

import json
import shutil

import cv2
import pytest

from tests.support.assets import require
from tests.support.cli import assert_one_line_error, run_cli
from tests.test_classify_cli import read_all, write_clip

CLIPS = {
    "arm": "arm_wrestling.mp4",
    "carve": "carving_ice.mp4",
    "basket": "shooting_basketball.mp4",
    "squat": "squats.mp4",
    "eye": "eye_makeup.avi",
    "pushdown": "example_video01.mp4",
}


def teach(*args: str) -> dict:
    proc = run_cli("teach", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hands_store(mobilenet, hands, tmp_path_factory):
    store = tmp_path_factory.mktemp("hands") / "teach.sqlite"
    for c in ("rock", "paper", "scissors"):
        out = teach(
            "add", c, str(hands / "train" / c), "--model", str(mobilenet), "--store", str(store)
        )
        assert (out["label"], out["added"], out["files"]) == (c, 10, 10)
    return store


@pytest.fixture(scope="module")
def clip_store(a0, videos, tmp_path_factory):
    require(a0, *(videos / f for f in CLIPS.values()))
    store = tmp_path_factory.mktemp("clips") / "teach.sqlite"
    for label, clip in CLIPS.items():
        out = teach("add", label, str(videos / clip), "--model", str(a0), "--store", str(store))
        assert out["added"] >= 3  # one example per second of the clip after the first
    return store


def test_list_forget_and_their_json(mobilenet, hands_store, tmp_path):
    store = tmp_path / "copy.sqlite"
    shutil.copy(hands_store, store)
    listed = teach("list", "--store", str(store))
    assert sorted((c["label"], c["examples"]) for c in listed["classes"]) == [
        ("paper", 10),
        ("rock", 10),
        ("scissors", 10),
    ]
    assert {c["model"]["name"] for c in listed["classes"]} == {mobilenet.stem}
    assert teach("forget", "rock", "--store", str(store))["forgotten"] == 10
    assert sorted(c["label"] for c in teach("list", "--store", str(store))["classes"]) == [
        "paper",
        "scissors",
    ]
    assert_one_line_error(run_cli("teach", "forget", "rock", "--store", str(store)), "rock")


def test_eval_on_the_hands_test_split(mobilenet, hands, hands_store, tmp_path):
    plot = tmp_path / "confusion.png"
    proc = run_cli(
        "teach", "eval", str(hands / "test"), "--model", str(mobilenet),
        "--store", str(hands_store), "--json", "--plot", str(plot),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n"] == 15 and report["learner"] == "ncm"
    assert 0.8 <= report["accuracy"] <= 1.0
    assert set(report["per_class"]) == {"paper", "rock", "scissors"}
    assert sum(report["confusion"]["rock"].values()) == 5
    assert set(report["learners"]) == {"ncm", "knn", "linear"}
    assert len(report["learners"]["linear"]["epochs"]) == 100
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = run_cli("teach", "eval", str(hands / "test"), "--model", str(mobilenet),
                   "--store", str(hands_store))  # fmt: skip
    assert text.returncode == 0 and "confusion" in text.stdout and "linear" in text.stdout


def test_image_taught_names_the_gesture_and_nothing_for_a_fox(
    hands, mobilenet, mobilenet_labels, images, hands_store
):
    rock = sorted((hands / "test" / "rock").iterdir())[0]
    proc = run_cli(
        "image", str(rock), str(images / "fox.jpeg"), "--model", str(mobilenet),
        "--labels", str(mobilenet_labels), "--taught", "--store", str(hands_store), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    hand, fox = (json.loads(line) for line in proc.stdout.splitlines())
    assert hand["label"] == "rock"
    assert {s["label"] for s in hand["top"]} == {"rock", "paper", "scissors"}
    assert all(0.0 <= s["score"] <= 1.0 for s in hand["top"])
    assert fox["label"] is None


def test_export_then_import_on_another_device_and_a_mismatched_model_refused(
    mobilenet, cv_fruits, hands_store, tmp_path
):
    exported = tmp_path / "hands-export.sqlite"
    assert teach("export", str(exported), "--store", str(hands_store))["examples"] == 30
    other = tmp_path / "other.sqlite"
    got = teach("import", str(exported), "--model", str(mobilenet), "--store", str(other))
    assert got["imported"] == 30
    proc = run_cli(
        "teach", "import", str(exported), "--model", str(cv_fruits), "--store", str(other)
    )
    assert_one_line_error(proc, str(exported), "refused")
    assert len(teach("list", "--store", str(other))["classes"]) == 3


def test_each_clip_is_recognised_as_the_action_it_taught(a0, videos, clip_store):
    for label, clip in CLIPS.items():
        proc = run_cli(
            "classify", str(videos / clip), "--model", str(a0), "--taught",
            "--store", str(clip_store), "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        final = json.loads(proc.stdout.splitlines()[-1])["final"]
        assert final["label"] == label, (clip, final)
        assert final["top"][0]["label"] == label
        assert {s["label"] for s in final["top"]} <= set(CLIPS)


def test_a_joined_clip_switches_between_the_two_taught_actions(videos, a0, clip_store, tmp_path):
    size = (256, 256)
    arm = [cv2.resize(f, size) for f in read_all(videos / CLIPS["arm"])]
    carving = [cv2.resize(f, size) for f in read_all(videos / CLIPS["carve"])]
    joined = tmp_path / "joined.avi"
    write_clip(joined, arm + carving, fps=30.0)
    cut = len(arm) / 30.0
    proc = run_cli(
        "classify", str(joined), "--model", str(a0), "--taught", "--store", str(clip_store),
        "--json", "--horizon", "4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(line) for line in proc.stdout.splitlines()[:-1]]
    before = [s["label"] for s in steps if 2.0 <= s["t"] < cut]
    after = [s["label"] for s in steps if s["t"] >= cut + 3.0]
    assert before and after
    assert sum(label == "arm" for label in before) >= 0.9 * len(before)
    assert sum(label == "carve" for label in after) >= 0.9 * len(after)


@pytest.mark.parametrize(
    ("label", "needle"),
    [("", "empty"), ("x" * 100, "longer than"), ("bad\x07label", "control")],
)
def test_bad_labels_are_one_line_and_nothing_is_kept(mobilenet, hands, tmp_path, label, needle):
    store = tmp_path / "t.sqlite"
    image = sorted((hands / "train" / "rock").iterdir())[0]
    proc = run_cli(
        "teach", "add", label, str(image), "--model", str(mobilenet), "--store", str(store)
    )
    assert_one_line_error(proc, needle)
    assert not store.exists()


def test_a_file_that_is_neither_image_nor_video(tmp_path):
    notes = tmp_path / "notes.dat"
    notes.write_text("not a picture\n" * 100)
    proc = run_cli("teach", "add", "x", str(notes), "--store", str(tmp_path / "t.sqlite"))
    assert_one_line_error(proc, str(notes), "neither an image nor a video")


def test_a_corrupt_store_is_an_error_and_is_left_alone(mobilenet, hands, tmp_path):
    store = tmp_path / "t.sqlite"
    store.write_bytes(b"\x00garbage" * 1000)
    image = sorted((hands / "train" / "rock").iterdir())[0]
    for args in (
        ("add", "rock", str(image), "--model", str(mobilenet)),
        ("list",),
    ):
        proc = run_cli("teach", *args, "--store", str(store))
        assert_one_line_error(proc, str(store), "damaged or not a store")
    assert store.read_bytes() == b"\x00garbage" * 1000


def test_taught_without_examples_for_this_model_says_so(cv_fruits, images, mobilenet, hands_store):
    proc = run_cli(
        "image", str(images / "fox.jpeg"), "--model", str(cv_fruits), "--taught",
        "--store", str(hands_store),
    )  # fmt: skip
    assert_one_line_error(proc, "no taught classes for model", mobilenet.stem)


def test_taught_photos_cannot_be_a_video_models_examples(a0, hands, tmp_path):
    image = sorted((hands / "train" / "rock").iterdir())[0]
    proc = run_cli(
        "teach",
        "add",
        "rock",
        str(image),
        "--model",
        str(a0),
        "--store",
        str(tmp_path / "t.sqlite"),
    )
    assert_one_line_error(proc, "an image classifier")


def test_mixed_images_and_clips_are_refused(videos, hands, tmp_path):
    image = sorted((hands / "train" / "rock").iterdir())[0]
    proc = run_cli(
        "teach", "add", "x", str(image), str(videos / "squats.mp4"),
        "--store", str(tmp_path / "t.sqlite"),
    )  # fmt: skip
    assert_one_line_error(proc, "not both")
    assert not (tmp_path / "t.sqlite").exists()
