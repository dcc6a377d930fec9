"""Custom Vision exports: reading what they declare, zips, and installing them safely."""

from __future__ import annotations

import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from edge.classifiers.customvision import (
    ExportPreprocess,
    preprocess_from_metadata,
    read_export,
)
from edge.classifiers.image import read_image
from edge.errors import ModelError
from edge.exports import import_export
from edge.loader import load_image
from edge.runtime import file_sha256
from tests.support.assets import DATA


@pytest.fixture
def apple(images: Path) -> Path:
    return images / "fruit_apple.jpg"


EXPORT_FILES = ("model.tflite", "labels.txt", "cvexport.manifest")


@pytest.fixture
def export_dir(apple, cv_fruits, tmp_path: Path) -> Path:
    """A writable copy of the real fruit export."""
    from tests.support.assets import require

    require(*(cv_fruits / f for f in EXPORT_FILES))
    dest = tmp_path / "fruits-export"
    dest.mkdir()
    for name in EXPORT_FILES:
        shutil.copyfile(cv_fruits / name, dest / name)
    return dest


def _zip(folder: Path, target: Path, prefix: str = "", extra: dict[str, bytes] | None = None):
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, prefix + p.name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return target


def _metadata(folder: Path, **props: str) -> None:
    (folder / "metadata_properties.json").write_text(json.dumps(props), encoding="utf-8")


def _label(clf, path: Path = DATA / "images" / "fruit_apple.jpg") -> str | None:
    return clf.classify(read_image(path)).extra["label"]


# ------------------------------------------------------------------------------ reading


def test_older_export_without_metadata_is_bgr_0_255_plain_resize(export_dir: Path) -> None:
    export = read_export(export_dir)
    assert export.metadata_path is None
    assert export.manifest["Flavor"] == "TensorFlowLite"
    assert export.model_path == export_dir / "model.tflite"
    assert export.preprocess == ExportPreprocess(
        "BGR", (0.0, 255.0), "none", "General (compact) default"
    )


def test_metadata_declares_pixel_format_and_range(export_dir: Path) -> None:
    _metadata(
        export_dir,
        **{
            "Image.BitmapPixelFormat": "Rgb8",
            "Image.ColorSpaceGamma": "SRGB",
            "Image.NominalPixelRange": "Normalized_0_1",
            "CustomVision.Preprocess.CropMethod": "FullImageShorterSide",
        },
    )
    pre = read_export(export_dir).preprocess
    assert (pre.channel_order, pre.value_range, pre.crop) == ("RGB", (0.0, 1.0), "center")
    assert pre.declared_by == "metadata_properties.json"


def test_metadata_ranges() -> None:
    for value, expected in (
        ("NominalRange_0_255", (0.0, 255.0)),
        ("Normalized_0_1", (0.0, 1.0)),
        ("Normalized_1_1", (-1.0, 1.0)),
    ):
        pre = preprocess_from_metadata({"Image.NominalPixelRange": value}, None)
        assert pre.value_range == expected
    folded = preprocess_from_metadata(
        {
            "Image.NominalPixelRange": "Normalized_0_1",
            "CustomVision.Preprocess.NormalizeMean": "[0.5, 0.5, 0.5]",
            "CustomVision.Preprocess.NormalizeStd": "[0.5, 0.5, 0.5]",
        },
        None,
    )
    assert folded.value_range == (-1.0, 1.0)


def test_metadata_channel_order_is_applied_and_config_overrides_it(export_dir: Path) -> None:
    baseline = load_image(export_dir)
    assert _label(baseline) == "Apple"
    # An export that declared RGB would be fed RGB, and this model then misreads the apple.
    _metadata(
        export_dir,
        **{"Image.BitmapPixelFormat": "Rgb8", "Image.NominalPixelRange": "NominalRange_0_255"},
    )
    declared = load_image(export_dir)
    assert declared.input_spec.channel_order == "RGB"
    assert _label(declared) != "Apple"
    overridden = load_image(export_dir, channel_order="BGR")
    assert overridden.input_spec.channel_order == "BGR"
    assert _label(overridden) == "Apple"


def test_value_range_override_beats_metadata(export_dir: Path) -> None:
    _metadata(export_dir, **{"Image.NominalPixelRange": "Normalized_0_1"})
    assert load_image(export_dir).input_spec.value_range == (0.0, 1.0)
    clf = load_image(export_dir, value_range=(0.0, 255.0))
    assert clf.input_spec.value_range == (0.0, 255.0)
    assert _label(clf) == "Apple"


def test_unsupported_metadata_is_one_line_model_error(export_dir: Path) -> None:
    _metadata(export_dir, **{"Image.BitmapPixelFormat": "Gray8"})
    with pytest.raises(ModelError, match="Gray8") as err:
        read_export(export_dir)
    assert "\n" not in str(err.value)
    (export_dir / "metadata_properties.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_export(export_dir)


def test_manifest_for_another_platform_is_refused(export_dir: Path) -> None:
    manifest = json.loads((export_dir / "cvexport.manifest").read_text(encoding="utf-8-sig"))
    manifest.update(Platform="ONNX", Flavor="ONNXFloat16")
    (export_dir / "cvexport.manifest").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="TensorFlow Lite"):
        read_export(export_dir)


def test_manifest_file_names_cannot_point_outside(export_dir: Path) -> None:
    manifest = json.loads((export_dir / "cvexport.manifest").read_text(encoding="utf-8-sig"))
    manifest["ModelFileName"] = "../model.tflite"
    (export_dir / "cvexport.manifest").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="outside"):
        read_export(export_dir)


def test_plain_model_folder_is_fed_like_any_tflite_model(
    mobilenet, mobilenet_labels, images, tmp_path: Path
) -> None:
    """A folder with a model and labels but no Custom Vision files gets no BGR 0..255."""

    folder = tmp_path / "imagenet"
    folder.mkdir()
    shutil.copyfile(mobilenet, folder / mobilenet.name)
    shutil.copyfile(mobilenet_labels, folder / mobilenet_labels.name)
    assert not read_export(folder).is_custom_vision
    clf = load_image(folder)
    assert clf.input_spec.channel_order == "RGB" and clf.input_spec.raw_pixels
    assert clf.classify(read_image(images / "fox.jpeg")).top[0].label.startswith("red fox")


def test_export_folder_without_model(export_dir: Path) -> None:
    (export_dir / "model.tflite").unlink()
    with pytest.raises(ModelError, match="no model"):
        load_image(export_dir)


# ------------------------------------------------------------------------------ zips


def test_downloaded_zip_loads_directly(cv_fruits, export_dir: Path, tmp_path: Path) -> None:
    flat = _zip(export_dir, tmp_path / "Fruits.TensorFlowLite.zip")
    nested = _zip(export_dir, tmp_path / "nested.zip", prefix="export/")
    for z in (flat, nested):
        clf = load_image(z)
        assert clf.sha256 == file_sha256(cv_fruits / "model.tflite")
        assert _label(clf) == "Apple"
    assert load_image(flat).name == "Fruits.TensorFlowLite"


def _assert_nothing_installed(models_dir: Path) -> None:
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


@pytest.mark.parametrize(
    "evil", ["../escaped.txt", "/tmp/edge-absolute-escape.txt", "sub/../../escaped.txt"]
)
def test_zip_with_escaping_paths_is_refused(export_dir: Path, tmp_path: Path, evil: str) -> None:
    bad = _zip(export_dir, tmp_path / "evil.zip", extra={evil: b"owned"})
    models_dir = tmp_path / "models"
    with pytest.raises(ModelError, match="refusing zip entry") as err:
        import_export(bad, models_dir)
    assert "\n" not in str(err.value)
    _assert_nothing_installed(models_dir)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/edge-absolute-escape.txt").exists()
    with pytest.raises(ModelError, match="refusing zip entry"):
        load_image(bad)


def test_zip_with_symlink_entry_is_refused(export_dir: Path, tmp_path: Path) -> None:
    bad = _zip(export_dir, tmp_path / "link.zip")
    with zipfile.ZipFile(bad, "a") as zf:
        info = zipfile.ZipInfo("labels-link.txt")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    models_dir = tmp_path / "models"
    with pytest.raises(ModelError, match="symbolic link"):
        import_export(bad, models_dir)
    _assert_nothing_installed(models_dir)


def test_zip_without_a_model_is_refused(export_dir: Path, tmp_path: Path) -> None:
    (export_dir / "model.tflite").unlink()
    bad = _zip(export_dir, tmp_path / "nomodel.zip")
    models_dir = tmp_path / "models"
    with pytest.raises(ModelError, match="no model") as err:
        import_export(bad, models_dir)
    assert "\n" not in str(err.value)
    _assert_nothing_installed(models_dir)


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK but not really a zip")
    with pytest.raises(ModelError, match="not a zip"):
        import_export(fake, tmp_path / "models")
    with pytest.raises(ModelError, match="not a readable zip"):
        load_image(fake)


# ------------------------------------------------------------------------------ importing


def test_import_zip_installs_a_loadable_named_model(
    cv_fruits, export_dir: Path, tmp_path: Path
) -> None:
    z = _zip(export_dir, tmp_path / "My Fruits.zip")
    models_dir = tmp_path / "models"
    installed = import_export(z, models_dir)
    assert installed == models_dir / "My-Fruits"
    assert sorted(p.name for p in installed.iterdir()) == sorted([*EXPORT_FILES, "installed.json"])
    marker = json.loads((installed / "installed.json").read_text())
    assert marker["kind"] == "image"
    assert marker["sha256"] == file_sha256(cv_fruits / "model.tflite")
    # No staging folders left behind.
    assert [p.name for p in models_dir.iterdir()] == ["My-Fruits"]
    clf = load_image(installed)
    assert _label(clf) == "Apple"


def test_imported_model_resolves_by_name_in_the_catalogue(
    cv_fruits, export_dir: Path, tmp_path: Path
) -> None:
    from edge import catalogue, resolve

    models_dir = tmp_path / "models"
    import_export(export_dir, models_dir, name="fruit-screen")
    resolved = resolve.resolve_model("fruit-screen", models_dir)
    assert resolved.kind == "image"
    assert resolved.path == models_dir / "fruit-screen" / "model.tflite"
    assert resolved.sha256 == file_sha256(cv_fruits / "model.tflite")
    assert "fruit-screen" in catalogue.installed_names(models_dir)


def test_import_refuses_an_existing_name_unless_replacing(export_dir: Path, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    first = import_export(export_dir, models_dir, name="fruits")
    with pytest.raises(ModelError, match="already exists"):
        import_export(export_dir, models_dir, name="fruits")
    (export_dir / "labels.txt").write_text(
        (export_dir / "labels.txt").read_text().replace("Apple", "Pomme")
    )
    again = import_export(export_dir, models_dir, name="fruits", replace=True)
    assert again == first
    assert "Pomme" in (again / "labels.txt").read_text()
    assert [p.name for p in models_dir.iterdir()] == ["fruits"]


def test_failed_import_leaves_nothing(export_dir: Path, tmp_path: Path) -> None:
    (export_dir / "labels.txt").write_text("Apple\nBanana\n")  # 2 labels for 7 outputs
    models_dir = tmp_path / "models"
    with pytest.raises(ModelError, match="2 labels but the model has 7 outputs") as err:
        import_export(export_dir, models_dir)
    assert str(export_dir) in str(err.value)  # the user's folder, not the staging folder
    assert ".import-" not in str(err.value)
    _assert_nothing_installed(models_dir)
    bad_zip = _zip(export_dir, tmp_path / "short-labels.zip")
    with pytest.raises(ModelError, match="2 labels") as err:
        import_export(bad_zip, models_dir)
    assert str(bad_zip) in str(err.value)
    _assert_nothing_installed(models_dir)


def test_import_of_a_folder_without_model(export_dir: Path, tmp_path: Path) -> None:
    (export_dir / "model.tflite").unlink()
    models_dir = tmp_path / "models"
    with pytest.raises(ModelError, match="no model"):
        import_export(export_dir, models_dir)
    _assert_nothing_installed(models_dir)
    with pytest.raises(ModelError, match="no such file"):
        import_export(tmp_path / "missing", models_dir)
