"""From a model setting to the files it means: the one place a setting is interpreted.

A setting is a catalogue name, the name of a model installed in ``models_dir``, a ``.tflite``
file, a model folder, or an Azure Custom Vision export (its folder or the ``.zip`` the portal
gives). The answer, a ``ResolvedModel``, says which model file, which label file (and how it
was found), what kind of model it is, and the model file's sha256, computed here once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from edge.catalogue import (
    CatalogueEntry,
    default_models_dir,
    file_records,
    installed_names,
    load_catalogue,
    read_marker,
    unknown_model,
)
from edge.classifiers.customvision import is_export
from edge.errors import ModelError
from edge.runtime import file_sha256

# "auto": a bare model file or folder; what it is shows when it is loaded for a purpose.
Kind = Literal["stream", "image", "auto"]
LabelsFrom = Literal["catalogue", "marker", "beside", "export", "none"]
LABEL_NAMES = ("labels.txt", "label_map.txt")


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    name: str
    path: Path  # the .tflite file, or an export's .zip
    labels: Path | None  # an export reads its own, whatever lies beside it
    kind: Kind
    sha256: str  # of ``path``
    entry: CatalogueEntry | None
    labels_from: LabelsFrom = "none"
    export: bool = False  # an Azure Custom Vision export (an image model fed as it declares)

    @property
    def form(self) -> str:
        """What the loader table is keyed by: the kind, or "export"."""
        return "export" if self.export else self.kind


def labels_beside(model: Path) -> Path | None:
    """The label file in a model's folder: labels.txt or label_map.txt, else the only
    ``*label*.txt`` there (imagenet_labels.txt), else the only ``.txt`` file there."""
    folder = model.parent
    for name in LABEL_NAMES:
        if (folder / name).is_file():
            return folder / name
    texts = sorted(p for p in folder.glob("*.txt") if p.is_file())
    named = [p for p in texts if "label" in p.name.lower()]
    if len(named) == 1:
        return named[0]
    return texts[0] if len(texts) == 1 else None


def _beside(model: Path) -> tuple[Path | None, LabelsFrom]:
    found = labels_beside(model)
    return found, ("beside" if found else "none")


# ------------------------------------------------------------------------------ a user's setting


def resolve_model(spec: str, models_dir: Path | None = None) -> ResolvedModel:
    """A catalogue name, an installed model's name, a model file, folder or export."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    catalogue = load_catalogue()
    if spec in catalogue:
        return _digested(_resolve_installed(catalogue[spec], models_dir))
    if _is_plain_name(spec) and (models_dir / spec).is_dir():
        return _digested(_resolve_dir(models_dir / spec, catalogue))
    path = Path(spec).expanduser()
    if path.is_file():
        return _digested(_resolve_file(path, catalogue))
    if path.is_dir():
        return _digested(_resolve_dir(path, catalogue))
    if _is_plain_name(spec) and not spec.endswith((".tflite", ".zip")):
        raise unknown_model(spec, list(catalogue) + installed_names(models_dir))
    raise ModelError(f"{spec}: not found: no such model file or directory")


def _digested(resolved: ResolvedModel) -> ResolvedModel:
    """Decide "is this a Custom Vision export" (here only) and hash the model file once."""
    path = resolved.path
    tflite = path.suffix.lower() == ".tflite"
    if resolved.kind != "stream" and tflite and is_export(path.parent):
        resolved = replace(resolved, kind="image", export=True, labels_from="export")
    try:
        return replace(resolved, sha256=file_sha256(path))
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model: {exc.strerror or exc}") from None


def _is_plain_name(spec: str) -> bool:
    return bool(spec) and "/" not in spec and "\\" not in spec and spec not in (".", "..")


def _resolve_installed(entry: CatalogueEntry, models_dir: Path) -> ResolvedModel:
    directory = models_dir / entry.name
    model = directory / entry.model_file.filename
    labels_file = entry.labels_file
    labels = directory / labels_file.filename if labels_file else None
    if not model.is_file() or (labels is not None and not labels.is_file()):
        raise ModelError(
            f"model {entry.name} is not installed in {models_dir}: "
            f"run 'edge models fetch {entry.name}'"
        )
    return ResolvedModel(
        entry.name, model, labels, entry.kind, "", entry, "catalogue" if labels else "none"
    )


def _resolve_file(path: Path, catalogue: dict[str, CatalogueEntry]) -> ResolvedModel:
    if path.suffix.lower() == ".zip":
        return ResolvedModel(path.stem, path, None, "image", "", None, "export", export=True)
    marker = read_marker(path.parent)
    entry = catalogue.get(str((marker or {}).get("name")))
    if entry is not None and entry.model_file.filename == path.name:
        return _from_marker_dir(path.parent, entry)
    # "model.tflite" (an export or an installed folder) is better named by its folder.
    name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
    labels, found = _beside(path)
    return ResolvedModel(name, path, labels, "auto", "", None, found)


def _from_marker_dir(directory: Path, entry: CatalogueEntry) -> ResolvedModel:
    model = directory / entry.model_file.filename
    if not model.is_file():
        raise ModelError(f"{model}: model file not found")
    lf = entry.labels_file
    labels = directory / lf.filename if lf and (directory / lf.filename).is_file() else None
    return ResolvedModel(
        entry.name, model, labels, entry.kind, "", entry, "catalogue" if labels else "none"
    )


def _model_in(directory: Path) -> Path:
    model = directory / "model.tflite"
    if model.is_file():
        return model
    found = sorted(directory.glob("*.tflite"))
    if len(found) != 1:
        raise ModelError(
            f"{directory}: no model.tflite (or a single .tflite file) in this directory"
        )
    return found[0]


def _resolve_dir(directory: Path, catalogue: dict[str, CatalogueEntry]) -> ResolvedModel:
    marker = read_marker(directory)
    entry = catalogue.get(str((marker or {}).get("name")))
    if entry is not None:
        return _from_marker_dir(directory, entry)
    by_role = {r.get("role"): r for r in file_records(marker).values()}
    name = str((marker or {}).get("name") or directory.name)
    if "model" in by_role:  # an imported model: its marker says which file is which
        model = directory / str(by_role["model"]["filename"])
        if not model.is_file():
            raise ModelError(f"{model}: model file not found")
        lrec = by_role.get("labels")
        labels, found = (directory / str(lrec["filename"]), "marker") if lrec else _beside(model)
        kind: Kind = "stream" if (marker or {}).get("kind") == "stream" else "image"
        return ResolvedModel(name, model, labels, kind, "", None, found)
    model = _model_in(directory)
    labels, found = _beside(model)
    return ResolvedModel(name, model, labels, "auto", "", None, found)


# ------------------------------------------------------------------------------ over the network


def resolve_request(spec: str, models_dir: Path, sha256: str | None = None) -> ResolvedModel:
    """Resolve a model asked for over the network: only names, or paths inside ``models_dir``."""
    if not isinstance(spec, str) or not spec or "\0" in spec:
        raise ModelError("model request: empty or invalid model name")
    if sha256 is not None and not _is_sha256(sha256):
        raise ModelError("model request: sha256 must be 64 hexadecimal digits")
    models_dir = Path(models_dir)
    root = models_dir.resolve()
    catalogue = load_catalogue()
    if spec in catalogue:
        resolved = _resolve_installed(catalogue[spec], models_dir)
    else:
        path = Path(spec)
        if not path.is_absolute():
            path = models_dir / path
        real = path.resolve()
        if not real.is_relative_to(root):
            raise ModelError(f"model request: {spec} is outside the models directory {models_dir}")
        if not real.exists():
            if _is_plain_name(spec) and not spec.endswith((".tflite", ".zip")):
                raise unknown_model(spec, list(catalogue) + installed_names(models_dir))
            raise ModelError(f"model request: {spec}: no such model under {models_dir}")
        resolved = (
            _resolve_file(real, catalogue) if real.is_file() else _resolve_dir(real, catalogue)
        )
    for part in (resolved.path, resolved.labels):
        if part is not None and not part.resolve().is_relative_to(root):
            raise ModelError(f"model request: {part} leads outside the models directory")
    resolved = _digested(resolved)
    if sha256 is not None:
        check_sha256(resolved, sha256)
    return resolved


def _is_sha256(value: object) -> bool:
    text = str(value).lower()
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def check_sha256(resolved: ResolvedModel, expected: str) -> None:
    """A ModelError unless the model file is the one asked for."""
    if resolved.sha256 != expected.lower():
        raise ModelError(
            f"{resolved.path}: sha256 mismatch: expected {expected.lower()} got {resolved.sha256}"
        )
