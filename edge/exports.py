"""``edge models import``: install an Azure Custom Vision export into ``models_dir``.

The export (folder or the portal's ``.zip``) becomes ``models_dir/<name>/`` with the
catalogue's ``installed.json`` marker, so it is listed and resolved by name like a fetched
model. The files are staged in a temporary folder inside ``models_dir``, loaded once to prove
they work, then renamed into place, so a failed import leaves nothing behind and a running
daemon never sees half a model.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from edge.catalogue import fsync_dir, write_marker
from edge.classifiers.customvision import read_export, renamed_errors, safe_extract
from edge.errors import ModelError
from edge.runtime import file_sha256

_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


def install_name(src: Path, name: str | None) -> str:
    """The model name an import gets: the one given, else the zip's or folder's name."""
    raw = name if name is not None else (src.stem if src.suffix.lower() == ".zip" else src.name)
    clean = _NAME_RE.sub("-", raw).strip("-.")
    if not clean:
        raise ModelError(f"{src}: cannot make a model name from {raw!r}; give a name")
    return clean[:64]


def import_export(
    src: str | Path,
    models_dir: str | Path,
    name: str | None = None,
    *,
    replace: bool = False,
) -> Path:
    """Install an export (folder or zip) as ``models_dir/<name>/`` and return that folder."""
    from edge.loader import load_image

    src, models_dir = Path(src).expanduser(), Path(models_dir).expanduser()
    if not src.exists():
        raise ModelError(f"{src}: no such file or folder")
    is_zip = src.is_file() and zipfile.is_zipfile(src)
    if src.is_file() and not is_zip:
        raise ModelError(f"{src}: not a zip file or an export folder")
    name = install_name(src, name)
    final = models_dir / name
    if final.exists() and not replace:
        raise ModelError(f"{final}: already exists; remove it or import under another name")
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        stage_root = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=models_dir))
    except OSError as exc:
        raise ModelError(f"{models_dir}: cannot write models here: {exc.strerror}") from None
    staged = stage_root / name
    unpacked = stage_root / "unpacked"
    shown = {staged: src, unpacked: src}
    try:
        root = safe_extract(src, unpacked) if is_zip else src
        shown[root] = src
        with renamed_errors(shown):
            export = read_export(root)
        staged.mkdir()
        records = []
        for role, path in export.files():
            target = staged / path.name
            shutil.copyfile(path, target)
            records.append(
                {
                    "role": role,
                    "filename": path.name,
                    "sha256": file_sha256(target),
                    "size": target.stat().st_size,
                    "mtime_ns": target.stat().st_mtime_ns,
                }
            )
        with renamed_errors(shown):
            load_image(str(staged), models_dir, name=name)  # a ModelError if it does not load
        write_marker(staged, _marker(name, records, src))
        if final.exists():
            os.rename(final, stage_root / "replaced")
        os.rename(staged, final)
        fsync_dir(models_dir)
    except OSError as exc:
        raise ModelError(
            f"{src}: cannot install into {models_dir}: {exc.strerror or exc}"
        ) from None
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
    return final


def _marker(name: str, records: list[dict[str, Any]], src: Path) -> dict[str, Any]:
    model = next(r for r in records if r["role"] == "model")
    return {
        "name": name,
        "kind": "image",
        "sha256": model["sha256"],
        "source": str(src.resolve()),
        "imported_from": "customvision",
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": records,
    }
