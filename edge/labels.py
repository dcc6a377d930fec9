"""Label files: one label per line, line i naming output i."""

from __future__ import annotations

from pathlib import Path

from edge.errors import ModelError


def load_labels(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ModelError(f"{path}: label file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read label file: {exc}") from None
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise ModelError(f"{path}: label file is empty")
    return labels


def check_label_count(labels: list[str], outputs: int, where: str) -> None:
    if len(labels) != outputs:
        raise ModelError(
            f"{where}: label file has {len(labels)} labels but the model has {outputs} outputs"
        )
