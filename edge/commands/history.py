"""``edge history``: the still-image results this device has kept, oldest first."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="only results newer than this: a duration ago (30m, 1h, 2d, 1w) or an ISO time",
    )
    p.add_argument("--limit", type=int, metavar="N", help="only the newest N results")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--state-dir", type=Path, help="the daemon's state directory")
    where.add_argument("--config", "-c", type=Path, help="read state_dir from this config file")


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir is not None:
        return args.state_dir.expanduser()
    from edge.config import load_config

    return load_config(args.config).state_dir


# How each photo came, in words that do not clash with config names (source.kind: command
# is the camera command; a photo asked for over MQTT came by cmd/classify).
_CAME_BY = {"schedule": "schedule", "watch": "watched folder", "command": "cmd/classify"}


def _text(entry: dict) -> str:
    image = entry["image"]
    where = image["path"] or f"sha256:{image['sha256'][:12]}"
    if image["path"] and not image["kept"]:
        where += " (deleted)"
    if entry.get("error"):
        return f"{entry['time']}  {where}  [{image['source']}]  refused: {entry['error']}"
    parts = []
    for r in entry["results"]:
        best = r["top"][0] if r["top"] else None
        shown = r["label"] or "none of these"
        score = f" {best['score']:.4f}" if best and r["label"] else ""
        parts.append(f"{r['model']['name']}: {shown}{score}")
    came = _CAME_BY.get(image["source"], image["source"])
    return f"{entry['time']}  {where}  [{came}]  " + " | ".join(parts)


def run(args: argparse.Namespace) -> int:
    from edge.history import HISTORY_FILENAME, History, parse_since

    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    since = parse_since(args.since) if args.since else None
    db = _state_dir(args) / HISTORY_FILENAME
    if not db.exists():
        print(f"edge history: no still results yet ({db} does not exist)", file=sys.stderr)
        return 0
    with History(db, readonly=True) as history:
        entries = history.query(since=since, limit=args.limit)
    for entry in entries:
        d = entry.as_dict()
        print(json.dumps(d) if args.json else _text(d))
    return 0
