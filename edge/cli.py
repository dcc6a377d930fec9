"""Command line: a thin face over the same pieces the daemon uses.

Each sub-command lives in ``edge.commands.<name>`` and exposes ``add_arguments(parser)``
and ``run(args) -> int``; it is imported only when used, so ``edge --help`` stays fast
on a Pi Zero.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge import __version__
from edge.errors import EdgeError

COMMANDS: dict[str, str] = {
    "run": "run the sensor daemon (capture, classify, smooth, publish over MQTT)",
    "classify": "classify a video file offline with a streaming model",
    "image": "classify still images offline",
    "models": "list, fetch and import models",
    "bench": "measure inference speed against a baseline and the bare interpreter",
    "history": "list still-image results kept on this device",
    "teach": "teach this device new classes from a few photos or clips",
    "check-config": "validate a config file and print what is wrong, key by key",
}


def _module(name: str):
    return importlib.import_module("edge.commands." + name.replace("-", "_"))


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge", description="Headless video-understanding sensor."
    )
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen command's module is imported.
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, helptext in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        if name == chosen:
            _module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(_module(args.command).run(args) or 0)
    except EdgeError as exc:
        print(f"edge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
