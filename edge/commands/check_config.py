"""``edge check-config FILE``: validate a config before a service restart depends on it.

A broken file is one line on stderr and exit 2. Things that are legal but will likely fail at
run time (a model not installed yet, an unreadable password file) are warnings: the config may
be written before the device is provisioned.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edge.config import Config, ModelConfig, load_config
from edge.errors import EdgeError
from edge.netallow import check_env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="config.yaml to validate")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary, only ok/problems")
    parser.add_argument(
        "--ip-allow",
        action="store_true",
        help="print the addresses the service must be allowed to reach (systemd "
        "IPAddressAllow=) for this config, and nothing else",
    )


def _source(cfg: Config) -> str:
    src = cfg.source
    if src.kind == "command":
        return f"command ({src.command})"
    return f"{src.kind} {src.uri}" if src.uri else src.kind


def _models(cfg: Config) -> list[ModelConfig]:
    return cfg.still_model_list if cfg.mode == "still" else [cfg.model]


def _warnings(cfg: Config) -> list[str]:
    from edge.resolve import resolve_model

    found = []
    for m in _models(cfg):
        try:
            resolve_model(m.spec, cfg.resolved_models_dir)
        except EdgeError as exc:
            found.append(str(exc))
    mqtt = cfg.mqtt
    if mqtt.enabled and mqtt.password_file and not os.access(mqtt.password_file, os.R_OK):
        found.append(f"mqtt.password_file: {mqtt.password_file} is not readable by this user")
    if mqtt.enabled and mqtt.tls:
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(mqtt.tls, key)
            if value is not None and not Path(value).is_file():
                found.append(f"mqtt.tls.{key}: {value} not found")
    return found


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.file)
    if args.ip_allow:
        from edge.netallow import allow_list

        entries, warnings = allow_list(cfg)
        for warning in warnings:
            print(f"{args.file}: warning: {warning}", file=sys.stderr)
        print(" ".join(entries))
        return 0
    check_env(cfg, str(args.file))
    print(f"{args.file}: ok")
    if not args.quiet:
        print(f"  mode:    {cfg.mode} (device {cfg.device_id})")
        print(f"  source:  {_source(cfg)}")
        print(f"  model:   {', '.join(m.spec for m in _models(cfg))}")
        mqtt = cfg.mqtt
        broker = f"{mqtt.host}:{mqtt.port}{' (TLS)' if mqtt.tls else ''}"
        print(f"  mqtt:    {broker if mqtt.enabled else 'disabled'}")
        print(f"  models:  {cfg.resolved_models_dir}")
    for warning in _warnings(cfg):
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    return 0
