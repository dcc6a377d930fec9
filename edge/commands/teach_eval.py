"""``edge teach eval DIR``: the taught classes against a labelled test set, learner by learner.

DIR holds one folder per class of test images or clips. Each learner is fitted on the
store's examples of the model and scored on every file; the configured learner's figures
are the top-level ``accuracy``, ``n``, ``per_class`` and ``confusion`` of ``--json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge.errors import SourceError


def _test_set(root: Path) -> list[tuple[str, Path]]:
    from edge.teach.embedders import expand

    if not root.is_dir():
        raise SourceError(f"{root}: not a folder (one folder per class of test files)")
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise SourceError(f"{root}: no class folders in it")
    return [(c.name, f) for c in classes for f in expand([str(c)])]


def run(args: argparse.Namespace) -> int:
    from edge.commands.teach import files_of_one_kind, load_embedder, open_store
    from edge.config import find_config, load_config
    from edge.teach.evaluate import LEARNERS, cost, evaluate, training_curve
    from edge.teach.store import StoreError
    from edge.teach.taught import TaughtClasses

    if args.plot:
        from edge import plot

        plot.require_matplotlib()
    tests = _test_set(Path(args.dir).expanduser())
    _, kind = files_of_one_kind([str(f) for _, f in tests])
    store = open_store(args)
    embedder = load_embedder(args.model, kind, args.models_dir)
    examples = store.examples(embedder.key)
    if not len(examples):
        raise StoreError(
            f"{store.path}: no taught classes for model {embedder.key.name}; "
            "teach some first with: edge teach add LABEL PATH..."
        )
    cfg = load_config(args.config) if (args.config or find_config()) else None
    chosen = cfg.teach.learner if cfg else "ncm"
    k = cfg.teach.k if cfg else 3
    threshold = cfg.teach.threshold if cfg else None
    truth, embeddings = [], []
    for label, path in tests:
        truth.append(label)
        embeddings.append(embedder.embedding_of(path))
    results: dict[str, Any] = {}
    for name in LEARNERS:
        taught = TaughtClasses(examples, learner=name, k=k, threshold=threshold)
        results[name] = evaluate(taught, truth, embeddings)
    results["linear"]["epochs"] = training_curve(examples)
    report: dict[str, Any] = dict(results[chosen])
    report["model"] = {
        "name": embedder.key.name,
        "sha256": embedder.key.sha256,
        "tensor": embedder.key.tensor,
    }
    report["examples"] = len(examples)
    report["learners"] = results
    if args.cost:
        report["cost"] = cost(examples.embeddings.shape[1], views=2 if kind == "image" else 0)
    if args.plot:
        from edge import plot

        plot.plot_confusion(
            report["confusion"],
            report["labels"],
            Path(args.plot),
            title=f"{embedder.key.name}: {chosen} {report['accuracy']:.0%}",
        )
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        print(_text(report), flush=True)
    return 0


def _text(report: dict[str, Any]) -> str:
    lines = [
        f"{report['model']['name']}: {report['examples']} taught examples, {report['n']} test files"
    ]
    for name, r in report["learners"].items():
        lines.append(
            f"  {name:<6} accuracy {r['accuracy']:.1%} ({r['correct']}/{r['n']}), "
            f"none {r['none']}, threshold {r['threshold']:.3f} ({r['threshold_source']})"
        )
    lines.append(f"per class ({report['learner']}):")
    for label, r in report["per_class"].items():
        lines.append(f"  {label:<16} {r['correct']}/{r['n']}")
    labels = report["labels"]
    width = max(len(x) for x in labels)
    lines.append("confusion (rows: truth, columns: answer):")
    lines.append(" " * (width + 2) + " ".join(f"{x[:6]:>6}" for x in labels))
    for t, row in report["confusion"].items():
        lines.append(f"  {t:<{width}}" + " ".join(f"{row[x]:>6}" for x in labels))
    epochs = report["learners"]["linear"]["epochs"]
    if epochs:
        last = epochs[-1]
        val = "n/a" if last["val_accuracy"] is None else f"{last['val_accuracy']:.1%}"
        lines.append(
            f"linear head: {len(epochs)} epochs, final loss {last['loss']:.4f}, "
            f"validation {val} (--json has every epoch)"
        )
    if "cost" in report:
        c = report["cost"]
        lines.append(
            f"cost: add {c['add_ms_p50']:.2f} ms/example (max {c['add_ms_max']:.2f}), "
            f"store {c['store_bytes'] / 1e6:.2f} MB for {c['store_examples']}, classify "
            f"{c['classify_ms_ncm']:.3f} ms (ncm) / {c['classify_ms_knn']:.3f} ms (knn) "
            f"against {c['classify_against']}"
        )
    return "\n".join(lines)
