"""From a model setting (catalogue name or path) to a loaded classifier.

The one place that knows both the catalogue and the classifier kinds, so the
daemon and the CLI load models the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.config import ModelConfig
from edge.errors import ModelError

if TYPE_CHECKING:
    from edge.catalogue import ResolvedModel


def resolve(spec: str, models_dir: Path, *, request: bool = False, sha256: str | None = None):
    from edge import catalogue

    if request:
        return catalogue.resolve_request(spec, models_dir, sha256=sha256)
    resolved = catalogue.resolve_model(spec, models_dir)
    if sha256:
        catalogue.check_sha256(resolved.path, sha256)
    return resolved


def load_stream(resolved: ResolvedModel, cfg: ModelConfig) -> Any:
    from edge.classifiers.stream import StreamClassifier

    labels = Path(cfg.labels) if cfg.labels else resolved.labels
    if labels is None:
        raise ModelError(f"{resolved.path}: no label file found; set model.labels")
    return StreamClassifier(
        resolved.path,
        labels_path=labels,
        threads=cfg.threads,
        top_k=cfg.top_k,
        horizon_s=cfg.horizon_s,
        fps=cfg.fps,
        reset_gap_s=cfg.reset_gap_s,
        name=resolved.name,
    )


def load_still(resolved: ResolvedModel, cfg: ModelConfig) -> Any:
    from edge.catalogue import is_export_folder
    from edge.classifiers.image import load_image_classifier

    export = resolved.kind == "image" and is_export_folder(resolved.path.parent)
    spec = resolved.path.parent if export else resolved.path
    # An export (folder or zip) carries its own labels; only an explicit setting overrides them.
    own_labels = export or spec.suffix == ".zip"
    return load_image_classifier(
        spec,
        labels=cfg.labels if own_labels else cfg.labels or resolved.labels,
        threads=cfg.threads,
        top_k=cfg.top_k,
        threshold=cfg.threshold,
        channel_order=cfg.channel_order,
        value_range=cfg.value_range,
        name=resolved.name,
    )


def load_for_mode(cfg: ModelConfig, mode: str, models_dir: Path, *, request: bool = False) -> Any:
    """Load ``cfg`` as a stream model (video mode) or an image model (still mode)."""
    resolved = resolve(cfg.spec, models_dir, request=request, sha256=cfg.sha256)
    if mode == "video":
        if resolved.kind == "image":
            raise ModelError(f"{cfg.spec}: an image classifier cannot run in video mode")
        return load_stream(resolved, cfg)
    if resolved.kind == "stream":
        raise ModelError(f"{cfg.spec}: a streaming video model cannot run in still mode")
    return load_still(resolved, cfg)
