"""From a model setting to a loaded classifier, as the daemon does it."""

from __future__ import annotations

import zipfile

from edge.config import ModelConfig
from edge.loader import load_still_model


def test_a_zipped_export_keeps_its_own_labels_whatever_lies_beside_it(
    cv_fruits, mobilenet_labels, tmp_path
):
    archive = tmp_path / "fruits.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in cv_fruits.iterdir():
            zf.write(f, f.name)
    (tmp_path / "labels.txt").write_bytes(mobilenet_labels.read_bytes())  # unrelated, 1001 lines
    clf = load_still_model(ModelConfig(path=str(archive)), tmp_path / "models")
    assert clf.labels == (cv_fruits / "labels.txt").read_text().split()


def test_an_export_folder_is_an_image_model_with_its_labels(cv_fruits, tmp_path):
    clf = load_still_model(ModelConfig(path=str(cv_fruits)), tmp_path / "models")
    assert len(clf.labels) == 7 and clf.labels[0] == "Apple"
