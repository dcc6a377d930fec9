"""``edge image PATH...``: classify photos offline with a still-image model.

Every image is tried even if an earlier one is bad: a bad image prints one error line and
the exit status is 2 at the end, so a batch run never hides which files failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import EdgeError, SourceError
from edge.imagefile import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from edge.classifiers.image import ImageClassifier


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument(
        "--model",
        metavar="PATH_OR_NAME",
        help="a .tflite file, a Custom Vision export folder or .zip, or a catalogue name "
        "(default: mobilenet-v2-quant)",
    )
    p.add_argument("--labels", metavar="FILE", help="label file for a bare .tflite model")
    p.add_argument("--models-dir", type=Path, help="where catalogue models are installed")
    p.add_argument("--top", type=int, default=5, metavar="K", help="how many classes to show")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="below this score the answer is 'none of these' (sigmoid models default to 0.5)",
    )
    p.add_argument(
        "--channel-order",
        choices=["RGB", "BGR"],
        help="override the colour order the model is fed (Custom Vision: what the export says)",
    )
    p.add_argument("--threads", type=int, default=2, help="interpreter threads")
    p.add_argument(
        "--taught", action="store_true", help="report the classes taught to this model instead"
    )
    p.add_argument("--store", metavar="FILE", help="the taught examples (with --taught)")


def _load(args: argparse.Namespace) -> ImageClassifier:
    from edge.catalogue import DEFAULT_IMAGE_MODEL
    from edge.loader import load_image

    return load_image(
        args.model or DEFAULT_IMAGE_MODEL,
        args.models_dir,
        needed_by="edge image",
        hint="use edge classify for videos",
        labels=args.labels,
        threads=args.threads,
        top_k=args.top,
        threshold=args.threshold,
        channel_order=args.channel_order,
    )


def _expand(paths: list[str]) -> Iterator[tuple[Path, EdgeError | None]]:
    """Each image to classify, or the error that stands in for a path that yields none."""
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            images = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not images:
                yield path, SourceError(f"{path}: no image files in this folder")
            for image in images:
                yield image, None
        else:
            yield path, None


def _text(path: Path, pred: Any, label: str | None, threshold: float | None) -> str:
    """The answer on the first line, then one "score  label" line per class: labels may hold
    commas (ImageNet's "red fox, Vulpes vulpes"), so nothing else separates them."""
    if label is None and threshold is not None:
        head = f"{path}: none of these (nothing reaches {threshold:g})"
    else:
        head = f"{path}: {label}"
    return "\n".join([head, *(f"  {s.score:.4f}  {s.label}" for s in pred.top)])


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise EdgeError("--top must be at least 1")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise EdgeError("--threshold must be between 0 and 1")
    from edge.classifiers.image import read_image

    clf = _load(args)
    taught = None
    if args.taught:
        from edge.commands.teach import taught_for

        taught = taught_for(clf, args)
    status = 0
    for path, error in _expand(args.paths):
        try:
            if error is not None:
                raise error
            pred = clf.classify(read_image(path), args.top)
            if taught is not None:
                pred = taught.step(pred)
        except EdgeError as exc:
            print(f"edge image: error: {exc}", file=sys.stderr, flush=True)
            status = 2
            continue
        said = pred.extra.get("label")  # the model's (or the taught classes') answer
        label = said if isinstance(said, str) else None
        if args.json:
            line = {
                "path": str(path),
                "top": [s.as_dict() for s in pred.top],
                "model": clf.name,
                "label": label,
            }
            print(json.dumps(line), flush=True)
        else:
            threshold = clf.threshold if taught is None else taught.taught.threshold
            print(_text(path, pred, label, threshold), flush=True)
    return status
