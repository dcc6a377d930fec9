"""From a model setting to a loaded classifier: the one path the daemon and every command take.

``edge.resolve`` turns the setting into a ``ResolvedModel`` (model file, label file, kind,
sha256); the loader for that kind, from the ``LOADERS`` table, turns it into a classifier.
A bare model file ("auto") is loaded as whatever the caller needs, and its own inputs then
say whether it can be that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from edge.classifiers.base import Classifier
from edge.classifiers.customvision import read_export, renamed_errors, unpack_to_temp
from edge.errors import ModelError
from edge.labels import load_labels
from edge.resolve import ResolvedModel, check_sha256, resolve_model, resolve_request
from edge.runtime import check_tflite_file

if TYPE_CHECKING:  # each kind's module is imported by its loader: a command loads only one
    from edge.classifiers.image import ImageClassifier
    from edge.classifiers.stream import StreamClassifier
    from edge.config import ModelConfig

log = logging.getLogger(__name__)

Purpose = Literal["stream", "image"]


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How to load a model, whatever its kind; each loader reads the fields it knows."""

    labels: Path | None = None  # an explicit label file beats the resolved one
    name: str | None = None  # the name to report, instead of the resolved one
    threads: int = 1
    top_k: int = 5
    horizon_s: float = 0.0  # stream
    fps: float = 5.0  # stream
    reset_gap_s: float = 2.0  # stream
    threshold: float | None = None  # image
    channel_order: str | None = None  # image: overrides what an export declares
    value_range: tuple[float, float] | None = None  # image: likewise
    numbered: bool = False  # stream: without a label file, name the classes by number

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> LoadOptions:
        return cls(
            labels=Path(cfg.labels) if cfg.labels else None,
            threads=cfg.threads,
            top_k=cfg.top_k,
            horizon_s=cfg.horizon_s,
            fps=cfg.fps,
            reset_gap_s=cfg.reset_gap_s,
            threshold=cfg.threshold,
            channel_order=cfg.channel_order,
            value_range=cfg.value_range,
        )


def _labels(resolved: ResolvedModel, opts: LoadOptions) -> Path | None:
    return opts.labels or resolved.labels


def _load_stream(resolved: ResolvedModel, opts: LoadOptions) -> StreamClassifier:
    from edge.classifiers.stream import StreamClassifier

    labels = _labels(resolved, opts)
    if labels is None and not opts.numbered:
        raise ModelError(
            f"{resolved.path}: no label file given and none beside the model "
            "(labels.txt, label_map.txt or one *label*.txt)"
        )
    clf = StreamClassifier(
        resolved.path,
        labels_path=labels,
        threads=opts.threads,
        top_k=opts.top_k,
        horizon_s=opts.horizon_s,
        fps=opts.fps,
        reset_gap_s=opts.reset_gap_s,
        name=opts.name or resolved.name,
        sha256=resolved.sha256,
    )
    if labels is None:
        log.warning("%s: no label file beside the model; showing class numbers", resolved.path)
    return clf


def _load_image(resolved: ResolvedModel, opts: LoadOptions) -> ImageClassifier:
    from edge.classifiers.image import ImageClassifier

    check_tflite_file(resolved.path)
    labels = _labels(resolved, opts)
    if labels is None:
        raise ModelError(
            f"{resolved.path}: no label file given and none beside the model "
            "(labels.txt, label_map.txt or one *label*.txt)"
        )
    return ImageClassifier(
        resolved.path,
        load_labels(labels),
        labels_where=labels,
        name=opts.name or resolved.name,
        sha256=resolved.sha256,
        threads=opts.threads,
        top_k=opts.top_k,
        threshold=opts.threshold,
        channel_order=opts.channel_order,
        value_range=opts.value_range,
    )


def _load_export(resolved: ResolvedModel, opts: LoadOptions) -> ImageClassifier:
    """A Custom Vision export: fed as it declares, with its own labels unless told otherwise."""
    from edge.classifiers.image import ImageClassifier

    keepalive = None
    shown: dict[Path, Path] = {}
    if resolved.path.suffix.lower() == ".zip":
        keepalive, root = unpack_to_temp(resolved.path)
        shown = {root: resolved.path, Path(keepalive.name): resolved.path}
    else:
        root = resolved.path.parent
    try:
        with renamed_errors(shown):
            export = read_export(
                root, channel_order=opts.channel_order, value_range=opts.value_range
            )
            labels = opts.labels or export.labels_path
            # What the user named: a label file inside a zip is shown as zip/member.
            shown_labels = labels
            if keepalive is not None and labels.is_relative_to(root):
                shown_labels = resolved.path / labels.relative_to(root)
            pre = export.preprocess if export.is_custom_vision else None
            if pre is not None:
                log.debug("%s: input %s as declared by %s", resolved.path, pre, pre.declared_by)
            clf = ImageClassifier(
                export.model_path,
                load_labels(labels),
                labels_where=shown_labels,
                name=opts.name or resolved.name,
                # From a zip, what runs is the model inside: its digest is the model's.
                sha256=None if keepalive is not None else resolved.sha256,
                threads=opts.threads,
                top_k=opts.top_k,
                threshold=opts.threshold,
                preprocess=pre,
                channel_order=opts.channel_order,
                value_range=opts.value_range,
                keepalive=keepalive,
            )
    except BaseException:
        if keepalive is not None:
            keepalive.cleanup()
        raise
    return clf


Loader = Callable[[ResolvedModel, LoadOptions], Classifier]

# Which loader builds a model of each kind, and what that kind is for.
LOADERS: dict[str, tuple[Purpose, Loader]] = {
    "stream": ("stream", _load_stream),
    "image": ("image", _load_image),
    "export": ("image", _load_export),
}

_WHAT = {"stream": "a streaming video model", "image": "a still-image model"}


def load(
    resolved: ResolvedModel,
    purpose: Purpose,
    opts: LoadOptions,
    *,
    needed_by: str = "this",
    hint: str = "",
) -> Classifier:
    """Load ``resolved`` for ``purpose``; a model of the other kind is a one-line ModelError
    saying what it is, what ``needed_by`` needs, and the ``hint``."""
    made_for, loader = LOADERS[purpose if resolved.kind == "auto" else resolved.form]
    if made_for != purpose:
        raise ModelError(
            f"{resolved.name}: is {_WHAT[made_for]}; {needed_by} needs {_WHAT[purpose]}"
            + (f" ({hint})" if hint else "")
        )
    return loader(resolved, opts)


def _resolve(
    spec: str, models_dir: Path | None, *, request: bool, sha256: str | None
) -> ResolvedModel:
    if request:
        assert models_dir is not None
        return resolve_request(spec, models_dir, sha256=sha256)
    resolved = resolve_model(spec, models_dir)
    if sha256:
        check_sha256(resolved, sha256)
    return resolved


def load_stream(
    spec: str | Path,
    models_dir: Path | None = None,
    *,
    needed_by: str = "this",
    hint: str = "",
    **options: object,
) -> StreamClassifier:
    """A stream model from a setting; ``options`` are ``LoadOptions`` fields."""
    resolved = resolve_model(str(spec), models_dir)
    return cast(
        "StreamClassifier",
        load(resolved, "stream", _options(options), needed_by=needed_by, hint=hint),
    )


def load_image(
    spec: str | Path,
    models_dir: Path | None = None,
    *,
    needed_by: str = "this",
    hint: str = "",
    **options: object,
) -> ImageClassifier:
    """An image model from a setting; ``options`` are ``LoadOptions`` fields."""
    resolved = resolve_model(str(spec), models_dir)
    return cast(
        "ImageClassifier",
        load(resolved, "image", _options(options), needed_by=needed_by, hint=hint),
    )


def _options(options: dict[str, object]) -> LoadOptions:
    if isinstance(options.get("labels"), str):
        options = {**options, "labels": Path(cast(str, options["labels"]))}
    return replace(LoadOptions(), **options)  # type: ignore[arg-type]


def load_video_model(
    cfg: ModelConfig, models_dir: Path, *, request: bool = False
) -> StreamClassifier:
    """The daemon's model in video mode. ``request``: the setting came over the network, so
    only names and paths inside ``models_dir`` are taken."""
    clf = _load_configured(cfg, "stream", models_dir, request=request, needed_by="video mode")
    return cast("StreamClassifier", clf)


def load_still_model(
    cfg: ModelConfig, models_dir: Path, *, request: bool = False
) -> ImageClassifier:
    """One of the daemon's models in still mode (see ``load_video_model``)."""
    clf = _load_configured(cfg, "image", models_dir, request=request, needed_by="still mode")
    return cast("ImageClassifier", clf)


def _load_configured(
    cfg: ModelConfig, purpose: Purpose, models_dir: Path, *, request: bool, needed_by: str
) -> Classifier:
    resolved = _resolve(cfg.spec, models_dir, request=request, sha256=cfg.sha256)
    return load(resolved, purpose, LoadOptions.from_config(cfg), needed_by=needed_by)
