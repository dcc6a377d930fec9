"""``edge image`` run as a user would: real models, real photos, bad files among good ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

from tests.support.cli import assert_one_line_error, run_cli


def edge(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=120)


def _lines(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_custom_vision_folder_of_images_as_json(images, cv_fruits) -> None:
    proc = edge("image", str(images), "--model", str(cv_fruits), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = _lines(proc)
    by_name = {Path(r["path"]).name: r for r in rows}
    assert [Path(r["path"]).name for r in rows] == sorted(by_name)  # folder order: sorted
    assert {"fox.jpeg", "fruit_apple.jpg", "fruit_banana.jpg"} <= set(by_name)
    assert by_name["fruit_apple.jpg"]["top"][0]["label"] == "Apple"
    assert by_name["fruit_apple.jpg"]["label"] == "Apple"
    assert by_name["fruit_banana.jpg"]["label"] == "Banana"
    assert by_name["fox.jpeg"]["label"] is None  # nothing above the threshold
    for r in rows:
        assert r["model"] == cv_fruits.name
        assert set(r["top"][0]) == {"label", "score"}


def test_mobilenet_names_the_red_fox_with_top_k(mobilenet, mobilenet_labels, images) -> None:
    proc = edge(
        "image",
        str(images / "fox.jpeg"),
        "--model",
        str(mobilenet),
        "--labels",
        str(mobilenet_labels),
        "--top",
        "3",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = _lines(proc)
    assert len(row["top"]) == 3
    assert row["top"][0]["label"].startswith("red fox")
    assert row["path"] == str(images / "fox.jpeg")


def test_text_output_is_readable(cv_fruits, images) -> None:
    proc = edge(
        "image",
        str(images / "fruit_banana.jpg"),
        str(images / "fox.jpeg"),
        "--model",
        str(cv_fruits),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    heads = [line for line in lines if not line.startswith("  ")]
    assert heads[0] == str(images / "fruit_banana.jpg") + ": Banana"
    assert heads[1].startswith(str(images / "fox.jpeg") + ": none of these")
    assert len(lines) == 2 + 2 * 5  # each answer, then its top five


def test_labels_with_commas_stay_readable(mobilenet, mobilenet_labels, images) -> None:
    """ImageNet labels hold commas ("red fox, Vulpes vulpes"): one class per line."""
    proc = edge("image", str(images / "fox.jpeg"), "--model", str(mobilenet), "--top", "3")
    assert proc.returncode == 0, proc.stderr
    head, *ranked = proc.stdout.rstrip("\n").splitlines()
    known = set(mobilenet_labels.read_text().splitlines())
    assert head == f"{images / 'fox.jpeg'}: red fox, Vulpes vulpes"
    assert len(ranked) == 3
    for line in ranked:
        score, label = line.strip().split("  ", 1)
        assert 0.0 <= float(score) <= 1.0 and label in known, line
    assert ranked[0].strip().endswith("  red fox, Vulpes vulpes")


def test_channel_order_option_changes_the_answer(cv_fruits, images) -> None:
    args = ("image", str(images / "fruit_apple.jpg"), "--model", str(cv_fruits), "--json")
    normal, swapped = edge(*args), edge(*args, "--channel-order", "RGB")
    assert normal.returncode == swapped.returncode == 0, swapped.stderr
    assert _lines(normal)[0]["label"] == "Apple"
    assert _lines(swapped)[0]["top"][0]["label"] != "Apple"


def test_corrupt_image_among_good_ones_is_one_line_and_exit_2(
    images, cv_fruits, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(images / "fruit_apple.jpg", folder / "a_apple.jpg")
    (folder / "b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg body")
    shutil.copyfile(images / "fruit_banana.jpg", folder / "c_banana.jpg")
    (folder / "notes.txt").write_text("not an image, not even tried")
    proc = edge("image", str(folder), "--model", str(cv_fruits), "--json")
    assert_one_line_error(proc, "b_corrupt.jpg")
    labels = {Path(r["path"]).name: r["label"] for r in _lines(proc)}
    assert labels == {"a_apple.jpg": "Apple", "c_banana.jpg": "Banana"}


def test_zero_size_image_is_one_line_and_exit_2(cv_fruits, images, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    proc = edge("image", str(empty), str(images / "fruit_banana.jpg"), "--model", str(cv_fruits))
    assert_one_line_error(proc, "empty.jpg", "0 bytes")
    assert "Banana" in proc.stdout


def test_label_file_that_does_not_match(mobilenet, images, tmp_path: Path) -> None:
    labels = tmp_path / "short.txt"
    labels.write_text("apple\nbanana\n")
    proc = edge(
        "image", str(images / "fox.jpeg"), "--model", str(mobilenet), "--labels", str(labels)
    )
    assert_one_line_error(proc, "short.txt", "2 labels", "1001 outputs")
    assert proc.stdout == ""


def test_export_zip_without_model(cv_fruits, images, tmp_path: Path) -> None:
    bad = tmp_path / "export.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.write(cv_fruits / "labels.txt", "labels.txt")
        zf.write(cv_fruits / "cvexport.manifest", "cvexport.manifest")
    proc = edge("image", str(images / "fox.jpeg"), "--model", str(bad))
    assert_one_line_error(proc, "export.zip", "no model")


def test_zip_with_escaping_path(cv_fruits, images, tmp_path: Path) -> None:
    bad = tmp_path / "slip.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        for name in ("model.tflite", "labels.txt", "cvexport.manifest"):
            zf.write(cv_fruits / name, name)
        zf.writestr("../../outside.txt", "x")
    proc = edge("image", str(images / "fox.jpeg"), "--model", str(bad))
    assert_one_line_error(proc, "slip.zip", "escapes")
    assert not (tmp_path.parent / "outside.txt").exists()


def test_export_zip_as_model_works(cv_fruits, images, tmp_path: Path) -> None:
    z = tmp_path / "fruits.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name in ("model.tflite", "labels.txt", "cvexport.manifest"):
            zf.write(cv_fruits / name, name)
    proc = edge("image", str(images / "fruit_banana.jpg"), "--model", str(z), "--json")
    assert proc.returncode == 0, proc.stderr
    assert _lines(proc)[0]["label"] == "Banana"
    assert _lines(proc)[0]["model"] == "fruits"


def test_missing_image_path_is_one_line(cv_fruits, tmp_path: Path) -> None:
    proc = edge("image", str(tmp_path / "nope.jpg"), "--model", str(cv_fruits))
    assert_one_line_error(proc, "nope.jpg", "not found")


def test_unknown_model_name_is_one_line(images, tmp_path: Path) -> None:
    proc = edge(
        "image",
        str(images / "fox.jpeg"),
        "--model",
        "no-such-model-anywhere",
        "--models-dir",
        str(tmp_path),
    )
    assert_one_line_error(proc, "no-such-model-anywhere")
