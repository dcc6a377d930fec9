"""``edge models``: list, fetch, import and locate models.

The models directory is ``--models-dir``, else the one a ``--config`` file names, else
``$EDGE_MODELS_DIR`` or the user's data directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edge import catalogue as cat
from edge.errors import ConfigError, DownloadError, ModelError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", type=Path, metavar="DIR", help="models directory")
    common.add_argument(
        "--config", metavar="FILE", help="take the models directory from this config file"
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")

    what = "list the catalogue's models and which are installed"
    p = sub.add_parser("list", parents=[common], help=what, description=what + ".")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    what = "download catalogue models (or copy them from a mirror), checking each sha256"
    p = sub.add_parser("fetch", parents=[common], help=what, description=what + ".")
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="catalogue model names (see 'edge models list')"
    )
    p.add_argument(
        "--from",
        dest="source",
        metavar="DIR_OR_URL",
        help="a mirror directory or mirror base URL instead of the official addresses",
    )
    p.add_argument(
        "--all-available",
        action="store_true",
        help="every catalogue model the mirror folder (--from or $EDGE_MODEL_MIRROR) holds, "
        "except those for tests only",
    )
    p.add_argument(
        "--test-models",
        action="store_true",
        help="with --all-available: also the models only the tests use",
    )
    p.add_argument("--force", action="store_true", help="fetch again even if installed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    what = "install an Azure Custom Vision export (.zip or folder) as a model"
    p = sub.add_parser("import", parents=[common], help=what, description=what + ".")
    p.add_argument("src", metavar="PATH", help="export .zip or unpacked folder")
    p.add_argument("--name", help="name to install it under (default: from the export)")
    p.add_argument("--replace", action="store_true", help="replace a model of the same name")

    what = "print an installed model's file path (or its label file's, with --labels)"
    p = sub.add_parser("path", parents=[common], help=what, description=what + ".")
    p.add_argument("name", metavar="NAME", help="an installed model's name")
    p.add_argument("--labels", action="store_true", help="print the label file's path instead")


def _models_dir(args: argparse.Namespace) -> Path:
    if args.models_dir is not None:
        return args.models_dir
    if getattr(args, "config", None):
        from edge.config import load_config

        return load_config(args.config).resolved_models_dir
    return cat.default_models_dir()


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None) or "list"
    if action == "list":
        if not hasattr(args, "models_dir"):  # bare `edge models`
            args = argparse.Namespace(models_dir=None, config=None, json=False)
        return _list(args)
    return {"fetch": _fetch, "import": _import, "path": _path}[action](args)


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _dir_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def _list(args: argparse.Namespace) -> int:
    models_dir = _models_dir(args)
    rows: list[dict[str, Any]] = []
    catalogue = cat.load_catalogue()
    for entry in catalogue.values():
        installed = cat.is_installed(entry, models_dir)
        size = _dir_size(models_dir / entry.name) if installed else entry.size
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "installed": installed,
                "size": size,
                "description": entry.description,
                "test_only": entry.test_only,
                "downloadable": all(f.url for f in entry.files),
            }
        )
    for name in cat.installed_names(models_dir):
        if name in catalogue:
            continue
        marker = cat.read_marker(models_dir / name) or {}
        rows.append(
            {
                "name": name,
                "kind": str(marker.get("kind") or "image"),
                "installed": True,
                "size": _dir_size(models_dir / name),
                "description": str(marker.get("description") or "imported model"),
                "test_only": False,
                "downloadable": False,
            }
        )
    if args.json:
        print(json.dumps({"models_dir": str(models_dir), "models": rows}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"models directory: {models_dir}")
    for r in rows:
        mark = "installed" if r["installed"] else "-"
        print(
            f"{r['name']:<{width}}  {r['kind']:<6}  {mark:<9}  {_human(r['size']):>8}  "
            f"{r['description']}"
        )
    return 0


MIRROR_ENV = "EDGE_MODEL_MIRROR"
_WAYS_OUT = (
    "connect to a network, or copy the models from a mirror folder: "
    f"{MIRROR_ENV}=/path/to/models or --from DIR"
)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _mirror(args: argparse.Namespace) -> tuple[str | None, str]:
    """The mirror to copy from and how it was named; a folder named on the command line must be
    there, one from the environment only may be missing (an unplugged stick: say so, go on)."""
    if args.source:
        where = f"--from {args.source}"
        if not _is_url(args.source) and not Path(args.source).expanduser().is_dir():
            raise ModelError(f"{where}: the mirror is not there (no such folder)")
        return args.source, where
    env = os.environ.get(MIRROR_ENV, "")
    if not env:
        return None, ""
    where = f"{MIRROR_ENV}={env}"
    if not _is_url(env) and not Path(env).expanduser().is_dir():
        if args.all_available:
            raise ModelError(f"{where}: the mirror is not there (no such folder)")
        print(
            f"{where}: the mirror is not there (no such folder); using the catalogue addresses",
            file=sys.stderr,
        )
        return None, ""
    return env, where


def _fetch(args: argparse.Namespace) -> int:
    models_dir = _models_dir(args)
    names = list(dict.fromkeys(args.names))
    source, where = _mirror(args)
    catalogue = cat.load_catalogue()
    if args.all_available:
        if source is None:
            raise ConfigError(f"--all-available needs a mirror folder: --from DIR or {MIRROR_ENV}")
        if _is_url(source):
            raise ConfigError(f"--all-available needs a mirror folder, not a URL ({where})")
        mirror = Path(source).expanduser()
        held = [e for e in catalogue.values() if cat.mirror_has(e, mirror)]
        if not held:
            raise ModelError(f"{mirror}: the mirror holds no complete catalogue model")
        wanted = [e.name for e in held if args.test_models or not e.test_only or e.name in names]
        names += [n for n in wanted if n not in names]
        lacking = [
            e.name
            for e in catalogue.values()
            if e not in held and e.name not in names and (args.test_models or not e.test_only)
        ]
        tests_only = [e.name for e in held if e.name not in names]
        if lacking:
            print(f"skipped, not in the mirror {mirror}: {', '.join(lacking)}")
        if tests_only:
            print(f"skipped, for tests only (--test-models installs them): {', '.join(tests_only)}")
    if not names:
        raise ConfigError("edge models fetch: name at least one model, or --all-available")
    for name in names:
        entry = cat.get_entry(name, catalogue)  # unknown names fail before anything is fetched
        if not args.force and cat.is_installed(entry, models_dir):
            print(f"{name}: already installed in {models_dir / name}")
            continue
        origin = source
        # A mirror from the environment serves what it holds; the rest is downloaded.
        from_env = origin is not None and not args.source and not _is_url(origin)
        if from_env and not cat.mirror_has(entry, Path(str(origin)).expanduser()):
            origin = None
        try:
            path = cat.fetch(name, models_dir, origin, progress=not args.quiet, force=args.force)
        except DownloadError as exc:
            raise DownloadError(f"{exc}: {_WAYS_OUT}") from None
        print(f"{name}: installed {path}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from edge.exports import import_export

    models_dir = _models_dir(args)
    src = Path(args.src).expanduser()
    if not src.exists():
        raise ModelError(f"{src}: no such file or directory")
    if args.name and args.name in cat.load_catalogue():
        raise ModelError(
            f"--name {args.name}: that is a catalogue model's name; choose another for an import"
        )
    installed = import_export(src, models_dir, args.name, replace=args.replace)
    print(f"imported {src} as {installed}")
    return 0


def _path(args: argparse.Namespace) -> int:
    from edge.resolve import resolve_model

    resolved = resolve_model(args.name, _models_dir(args))
    if args.labels:
        if resolved.labels is None:
            raise ModelError(f"model {resolved.name} has no label file")
        print(resolved.labels)
    else:
        print(resolved.path)
    sys.stdout.flush()
    return 0
