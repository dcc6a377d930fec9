"""``edge teach``: teach this device new classes from a few photos or clips, and check them.

Examples are embedded by the model that will recognise them (``--model``, default the
catalogue's image or stream model, whichever fits the files) and kept in the store
(``--store``, default the config's ``teach.store``, else ``state_dir/teach.sqlite``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, SourceError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="teach_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser, model: bool = False) -> None:
        q.add_argument("--store", metavar="FILE", help="the examples' store (SQLite)")
        q.add_argument("--config", "-c", metavar="FILE", help="take the store from this config")
        q.add_argument("--json", action="store_true", help="one JSON object")
        if model:
            q.add_argument("--model", metavar="PATH_OR_NAME", help="the model that embeds")
            q.add_argument("--models-dir", type=Path, help="where catalogue models are installed")

    q = sub.add_parser("add", help="keep photos or clips as examples of LABEL")
    q.add_argument("label", metavar="LABEL")
    q.add_argument("paths", nargs="+", metavar="PATH", help="images, video clips or folders")
    common(q, model=True)
    q = sub.add_parser("list", help="the taught classes and their examples")
    common(q, model=True)
    q = sub.add_parser("forget", help="remove a taught class")
    q.add_argument("label", metavar="LABEL")
    common(q, model=True)
    q = sub.add_parser("export", help="write the examples to one file for another device")
    q.add_argument("file", metavar="FILE")
    common(q, model=True)
    q = sub.add_parser("import", help="add the examples of an exported file (same model only)")
    q.add_argument("file", metavar="FILE")
    common(q, model=True)
    q = sub.add_parser("eval", help="accuracy on DIR (one folder of images or clips per class)")
    q.add_argument("dir", metavar="DIR")
    common(q, model=True)
    q.add_argument("--plot", metavar="CONFUSION.png", help="save the confusion matrix")
    q.add_argument(
        "--cost", action="store_true", help="also measure adding, store size and lookup time"
    )


def store_path(args: argparse.Namespace) -> Path:
    if getattr(args, "store", None):
        return Path(args.store).expanduser()
    from edge.config import find_config, load_config

    config = getattr(args, "config", None)
    if config is None and find_config() is None:
        raise ConfigError("no store given: use --store FILE (or a config file with teach.store)")
    return load_config(config).teach_store


def open_store(args: argparse.Namespace, create: bool = True) -> Any:
    from edge.teach.store import Store

    return Store(store_path(args), create=create)


def teach_options(args: argparse.Namespace) -> dict[str, Any]:
    """Learner settings from the config file (``--config`` or the default one), if any."""
    from edge.config import find_config, load_config

    config = getattr(args, "config", None)
    if config is None and find_config() is None:
        return {}
    t = load_config(config).teach
    return {"learner": t.learner, "k": t.k, "threshold": t.threshold}


def taught_for(classifier: Any, args: argparse.Namespace) -> Any:
    """``--taught``: the store's classes for ``classifier``'s model, or a StoreError."""
    from edge.teach.head import attach

    options = teach_options(args)
    return attach(classifier, open_store(args), top=getattr(args, "top", 5), **options)


def load_embedder(spec: str | None, kind: str, models_dir: Path | None = None) -> Any:
    """An embedder for ``kind`` ('image' or 'video') from ``--model`` or the default model."""
    from edge import catalogue, loader
    from edge.catalogue import default_models_dir
    from edge.config import ModelConfig
    from edge.teach.embedders import ClipEmbedder, ImageEmbedder

    default = catalogue.DEFAULT_STREAM_MODEL if kind == "video" else catalogue.DEFAULT_IMAGE_MODEL
    cfg = ModelConfig.model_validate({"path": spec or default})
    where = models_dir or default_models_dir()
    if kind == "video":
        return ClipEmbedder(loader.load_video_model(cfg, where))
    return ImageEmbedder(loader.load_still_model(cfg, where))


def files_of_one_kind(raw: list[str]) -> tuple[list[Path], str]:
    from edge.teach.embedders import expand, file_kind

    paths = expand(raw)
    kinds = {p: file_kind(p) for p in paths}
    if len(set(kinds.values())) > 1:
        raise SourceError("give images or video clips, not both: one model embeds them all")
    return paths, next(iter(kinds.values()))


def _print(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if args.json else text, flush=True)


def run(args: argparse.Namespace) -> int:
    action = args.teach_command
    if action == "add":
        return _add(args)
    if action == "eval":
        from edge.commands import teach_eval

        return teach_eval.run(args)
    store = open_store(args)
    model = None
    if args.model:
        model = _key_for_model(args.model, args.models_dir)
    if action == "list":
        classes = store.classes(model)
        _print(
            args,
            {"store": str(store.path), "classes": [c.as_dict() for c in classes]},
            "\n".join(f"{c.label}: {c.count} examples ({c.model_name})" for c in classes)
            or f"{store.path}: no taught classes",
        )
        return 0
    if action == "forget":
        from edge.teach.encoding import LabelError

        gone = store.forget(args.label, model)
        if not gone:
            raise LabelError(f"no taught class {args.label.strip()!r} in {store.path}")
        _print(
            args,
            {"label": args.label.strip(), "forgotten": gone},
            f"forgot {args.label.strip()}: {gone} examples",
        )
        return 0
    if action == "export":
        n = store.export(args.file, model)
        _print(args, {"file": args.file, "examples": n}, f"{args.file}: {n} examples")
        return 0
    # import
    if model is None:
        model = _key_for_file(args.file, args.models_dir)
    n = store.import_from(args.file, model)
    _print(
        args,
        {"file": args.file, "imported": n, "model": model.name},
        f"{args.file}: {n} examples imported for {model.name}",
    )
    return 0


def _key_for_model(spec: str, models_dir: Path | None) -> Any:
    """The store key of a model: which kind it is is tried, image first (cheaper to open)."""
    from edge.errors import ModelError

    try:
        return load_embedder(spec, "image", models_dir).key
    except ModelError as image_error:
        try:
            return load_embedder(spec, "video", models_dir).key
        except ModelError:
            raise image_error from None


def _key_for_file(file: str, models_dir: Path | None) -> Any:
    """Without --model an import is checked against the default model of its examples' kind."""
    from edge.teach.embedding import STREAM_BUFFER
    from edge.teach.store import Store

    theirs = Store(file, create=False).models()
    kind = "video" if theirs and theirs[0].tensor == STREAM_BUFFER else "image"
    return load_embedder(None, kind, models_dir).key


def _add(args: argparse.Namespace) -> int:
    from edge.teach.encoding import check_label

    label = check_label(args.label)
    paths, kind = files_of_one_kind(args.paths)
    store = open_store(args)
    embedder = load_embedder(args.model, kind, args.models_dir)
    samples = []
    for path in paths:  # everything is embedded before anything is kept: all or nothing
        got = list(embedder.samples(path))
        if not got:
            raise SourceError(f"{path}: gave no example")
        samples.extend(got)
    store.add_many(
        label,
        [s.embedding for s in samples],
        embedder.key,
        [s.source for s in samples],
        views=[s.views for s in samples],
        thumbnails=[s.thumbnail for s in samples],
    )
    total = next((c.count for c in store.classes(embedder.key) if c.label == label), 0)
    _print(
        args,
        {
            "label": label,
            "added": len(samples),
            "files": len(paths),
            "examples": total,
            "model": {"name": embedder.key.name, "sha256": embedder.key.sha256},
            "store": str(store.path),
        },
        f"{label}: {len(samples)} examples from {len(paths)} files "
        f"({total} in all) for {embedder.key.name}, in {store.path}",
    )
    return 0
