"""Azure Custom Vision TensorFlow Lite exports: reading one (folder or zip), and how to feed it.

An export is a folder (or the ``.zip`` the portal downloads) holding ``model.tflite``,
``labels.txt``, ``cvexport.manifest`` and, in newer exports, ``metadata_properties.json``.

How pixels must be fed differs per export, and getting it wrong gives confident wrong
answers rather than an error:

* older "General (compact)" exports carry no metadata and take **BGR**, float 0..255, resized
  to the model's input size without cropping (what Microsoft's
  ``customvision-export-samples/.../tensorflow_lite/classification/predict.py`` does);
* newer exports declare it in ``metadata_properties.json`` with the ONNX image-metadata keys
  ``Image.BitmapPixelFormat`` (``Bgr8``/``Rgb8``...) and ``Image.NominalPixelRange``
  (``NominalRange_0_255``, ``Normalized_0_1``, ``Normalized_1_1``, ``NominalRange_16_235``),
  plus ``CustomVision.Preprocess.*`` keys for crop and mean/std.

What the export declares is used unless the config overrides channel order or value range.
(Microsoft's TFLite sample for the "[S1]" domains feeds RGB 0..255 whatever the metadata says;
if such an export answers badly, set ``value_range: [0, 255]`` on the model.)
"""

from __future__ import annotations

import json
import logging
import re
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from edge.errors import ModelError

log = logging.getLogger(__name__)

MANIFEST_NAME = "cvexport.manifest"
METADATA_NAME = "metadata_properties.json"
DEFAULT_MODEL_NAME = "model.tflite"
DEFAULT_LABELS_NAME = "labels.txt"

# Limits for unpacking a zip nobody has vetted: a real export is a few MB.
MAX_ZIP_MEMBERS = 1000
MAX_UNPACKED_BYTES = 1 << 30

_PIXEL_FORMATS = {"Bgr8": "BGR", "Bgra8": "BGR", "Rgb8": "RGB", "Rgba8": "RGB"}
_PIXEL_RANGES = {
    "NominalRange_0_255": (0.0, 255.0),
    "Normalized_0_1": (0.0, 1.0),
    "Normalized_1_1": (-1.0, 1.0),
    "NominalRange_16_235": (16.0, 235.0),
}
_NO_CROP = {"NoCrop", "None", ""}
_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class ExportPreprocess:
    """How to turn a BGR photo into this export's input, and where that was decided."""

    channel_order: str  # "RGB" or "BGR"
    value_range: tuple[float, float]
    crop: str  # "none" (plain resize, as Azure's samples do) or "center"
    declared_by: str  # "metadata_properties.json", "General (compact) default", or "config"


@dataclass(frozen=True, slots=True)
class CustomVisionExport:
    root: Path
    model_path: Path
    labels_path: Path
    manifest_path: Path | None
    metadata_path: Path | None
    manifest: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    preprocess: ExportPreprocess = ExportPreprocess("BGR", (0.0, 255.0), "none", "default")

    @property
    def is_custom_vision(self) -> bool:
        """False for a plain folder holding a model and labels: fed like any TFLite model."""
        return self.manifest_path is not None or self.metadata_path is not None

    @property
    def domain(self) -> str:
        return str(self.manifest.get("DomainType") or "Classification")

    def files(self) -> list[tuple[str, Path]]:
        """(role, path) of every file that belongs to the export."""
        out = [("model", self.model_path), ("labels", self.labels_path)]
        if self.manifest_path is not None:
            out.append(("manifest", self.manifest_path))
        if self.metadata_path is not None:
            out.append(("metadata", self.metadata_path))
        return out


# ------------------------------------------------------------------------------ reading


def is_export(folder: Path) -> bool:
    """A Custom Vision export carries a manifest or a metadata file; a folder with only a
    model and labels is a plain model, fed like any other."""
    return (folder / MANIFEST_NAME).is_file() or (folder / METADATA_NAME).is_file()


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ModelError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ModelError(f"{path}: {what} is not valid JSON: {msg}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: {what} must be a JSON object")
    return data


def _member(root: Path, name: object, key: str, where: Path) -> Path:
    """A file the manifest names, which must be a plain name inside the export folder."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise ModelError(f"{where}: {key} must be a file name")
    if "/" in name or "\\" in name or "\0" in name:
        raise ModelError(f"{where}: {key} {name!r} points outside the export folder")
    return root / name


def _floats(value: object, key: str, where: Path) -> list[float]:
    try:
        items = json.loads(value) if isinstance(value, str) else value
        return [float(v) for v in items]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ModelError(f"{where}: {key} must be a list of numbers, not {value!r}") from None


def _declared(metadata: dict, key: str, table: dict, at: Path, default: Any) -> Any:
    """What ``metadata[key]`` means per ``table``; an unknown value is a one-line error."""
    value = metadata.get(key)
    if value is None:
        return default
    if value not in table:
        known = ", ".join(table)
        raise ModelError(f"{at}: {key} {value!r} is not supported (known: {known})")
    return table[value]


def preprocess_from_metadata(
    metadata: dict[str, Any],
    where: Path | None,
    *,
    channel_order: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> ExportPreprocess:
    """The input convention an export declares, with config overrides applied on top."""
    at = where or Path(METADATA_NAME)
    declared = "metadata_properties.json" if metadata else "General (compact) default"
    order, vrange, crop = "BGR", (0.0, 255.0), "none"
    if metadata:
        order = _declared(metadata, "Image.BitmapPixelFormat", _PIXEL_FORMATS, at, order)
        vrange = _declared(metadata, "Image.NominalPixelRange", _PIXEL_RANGES, at, vrange)
        crop_method = str(metadata.get("CustomVision.Preprocess.CropMethod", "NoCrop"))
        crop = "none" if crop_method in _NO_CROP else "center"
        if value_range is None:
            vrange = _fold_normalisation(metadata, vrange, at)
    if channel_order is not None:
        if channel_order not in ("RGB", "BGR"):
            raise ModelError(f"channel order must be RGB or BGR, not {channel_order!r}")
        order, declared = channel_order, "config"
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ModelError(f"value range must be low < high, not {value_range!r}")
        vrange, declared = (lo, hi), "config"
    return ExportPreprocess(order, vrange, crop, declared)


def _fold_normalisation(
    metadata: dict[str, Any], vrange: tuple[float, float], at: Path
) -> tuple[float, float]:
    """Fold a declared (x - mean) / std into the value range when all channels share it."""
    mean_raw = metadata.get("CustomVision.Preprocess.NormalizeMean")
    std_raw = metadata.get("CustomVision.Preprocess.NormalizeStd")
    if mean_raw in (None, "null") and std_raw in (None, "null"):
        return vrange
    mean = _floats(mean_raw if mean_raw not in (None, "null") else "[0]", "NormalizeMean", at)
    std = _floats(std_raw if std_raw not in (None, "null") else "[1]", "NormalizeStd", at)
    if len(set(mean)) > 1 or len(set(std)) > 1:
        raise ModelError(
            f"{at}: per-channel NormalizeMean/NormalizeStd is not supported; "
            "set value_range on the model to what it expects"
        )
    m, s = mean[0], std[0]
    if s == 0:
        raise ModelError(f"{at}: NormalizeStd must not be 0")
    lo, hi = vrange
    return ((lo - m) / s, (hi - m) / s)


def read_export(
    folder: str | Path,
    *,
    channel_order: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> CustomVisionExport:
    """Read an export folder: which files, and how its input must be fed."""
    root = Path(folder)
    if not root.is_dir():
        raise ModelError(f"{root}: not a Custom Vision export folder")
    manifest_file = root / MANIFEST_NAME
    manifest: dict[str, Any] = {}
    manifest_path: Path | None = None
    if manifest_file.is_file():
        manifest_path = manifest_file
        manifest = _read_json(manifest_file, "cvexport.manifest")
        _check_manifest(manifest, manifest_file)
    where = manifest_path or root
    model_path = _member(
        root,
        manifest.get("ModelFileName", _guess(root, DEFAULT_MODEL_NAME)),
        "ModelFileName",
        where,
    )
    labels_path = _member(
        root,
        manifest.get("LabelFileName", _guess(root, DEFAULT_LABELS_NAME)),
        "LabelFileName",
        where,
    )
    if not model_path.is_file():
        raise ModelError(f"{root}: export has no model file {model_path.name}")
    if not labels_path.is_file():
        raise ModelError(f"{root}: export has no label file {labels_path.name}")
    meta_name = manifest.get("MetadataPropsFileName", METADATA_NAME)
    metadata_path: Path | None = _member(root, meta_name, "MetadataPropsFileName", where)
    metadata: dict[str, Any] = {}
    if metadata_path is not None and metadata_path.is_file():
        metadata = _read_json(metadata_path, "metadata_properties.json")
    else:
        metadata_path = None
    pre = preprocess_from_metadata(
        metadata, metadata_path, channel_order=channel_order, value_range=value_range
    )
    return CustomVisionExport(
        root, model_path, labels_path, manifest_path, metadata_path, manifest, metadata, pre
    )


def _guess(root: Path, default: str) -> str:
    """Without a manifest: the default name, or the only file with that suffix."""
    if (root / default).is_file():
        return default
    found = [p for p in root.glob("*" + Path(default).suffix) if p.is_file()]
    return found[0].name if len(found) == 1 else default


def _check_manifest(manifest: dict[str, Any], where: Path) -> None:
    platform = str(manifest.get("Platform", "TensorFlow"))
    flavor = str(manifest.get("Flavor") or "")
    domain = str(manifest.get("DomainType", "Classification"))
    if platform != "TensorFlow" or (flavor and not flavor.startswith("TensorFlowLite")):
        raise ModelError(
            f"{where}: export is {platform}/{flavor or 'none'}; export the model again "
            "choosing TensorFlow > TensorFlow Lite"
        )
    if domain != "Classification":
        raise ModelError(f"{where}: export is a {domain} model; only Classification is supported")


# ------------------------------------------------------------------------------ zips


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "path escapes the export folder"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    if "\0" in name:
        return "NUL in name"
    return None


def safe_extract(zip_path: str | Path, dest: str | Path) -> Path:
    """Unpack a zip into ``dest``, refusing the whole zip if any entry could land outside it.

    Returns the export root: ``dest`` itself, or the single folder the zip wraps it in.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise ModelError(f"{zip_path}: file not found") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{zip_path}: not a readable zip file ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ModelError(f"{zip_path}: zip has {len(infos)} entries; not a model export")
        for info in infos:
            reason = _unsafe_reason(info)
            if reason:
                raise ModelError(f"{zip_path}: refusing zip entry {info.filename!r}: {reason}")
        if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
            raise ModelError(f"{zip_path}: zip unpacks to more than 1 GiB; not a model export")
        written = 0
        for info in infos:
            target = dest.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, target.open("wb") as out:
                    while chunk := src.read(1 << 16):
                        written += len(chunk)
                        if written > MAX_UNPACKED_BYTES:
                            raise ModelError(f"{zip_path}: zip unpacks to more than 1 GiB")
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                raise ModelError(f"{zip_path}: corrupt entry {info.filename!r}: {msg}") from None
    return _export_root(dest, zip_path)


def _export_root(dest: Path, where: Path) -> Path:
    if (dest / MANIFEST_NAME).is_file() or list(dest.glob("*.tflite")):
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir() and not p.name.startswith("__MACOSX")]
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(subdirs) == 1 and not files:
        return _export_root(subdirs[0], where)
    raise ModelError(f"{where}: no model (.tflite) in this export")


def renamed_errors(mapping: dict[Path, Path]):
    """Re-raise ModelErrors with temporary folders replaced by what the user named."""
    return _Renamer(mapping)


class _Renamer:
    def __init__(self, mapping: dict[Path, Path]) -> None:
        # Longest first, so a folder inside another is replaced before its parent.
        self.pairs = sorted(
            ((str(k), str(v)) for k, v in mapping.items()), key=lambda kv: -len(kv[0])
        )

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if isinstance(exc, ModelError):
            msg = str(exc)
            for old, new in self.pairs:
                msg = msg.replace(old, new)
            if msg != str(exc):
                raise ModelError(msg) from None
        return False


def unpack_to_temp(zip_path: Path) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    """Unpack a downloaded export to a private temporary folder that lives as long as the handle."""
    tmp = tempfile.TemporaryDirectory(prefix="edge-export-")
    try:
        root = safe_extract(zip_path, tmp.name)
    except BaseException:
        tmp.cleanup()
        raise
    return tmp, root
