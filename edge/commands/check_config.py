"""``edge check-config FILE``: validate a config before a service restart depends on it.

A broken file is one line on stderr and exit 2, and so is everything ``edge run`` would refuse
at start with exit 2: a model that is not installed or does not fit the mode, a password file
or TLS file that cannot be read, a video file that is not there. A camera that is missing is
not an error here: ``edge run`` waits for one that enumerates late (exit 3, restarted).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edge.config import Config, ModelConfig, load_config
from edge.errors import ConfigError, EdgeError
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


def _problems(cfg: Config) -> list[str]:
    """What ``edge run`` would refuse with exit 2, each naming its key."""
    from edge.loader import load_still_model, load_video_model
    from edge.sources.opencv import classify_uri

    found = []
    key = "still_models" if cfg.mode == "still" and cfg.still_models else "model"
    for m in _models(cfg):
        try:  # loaded as `edge run` loads it: a model that does not fit the mode fails here
            load = load_still_model if cfg.mode == "still" else load_video_model
            load(m, cfg.resolved_models_dir)
        except EdgeError as exc:
            hint = ""
            if cfg.mode == "still" and not cfg.still_models:
                hint = " (mode 'still' runs the image models in still_models)"
            found.append(f"{key}: {exc}{hint}")
    mqtt = cfg.mqtt
    if mqtt.enabled and (mqtt.username or mqtt.password_file or mqtt.password_env):
        try:
            mqtt.password()
        except EdgeError as exc:
            found.append(str(exc))
    if mqtt.enabled and mqtt.tls:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(mqtt.tls, name)
            if value is not None and not os.access(value, os.R_OK):
                found.append(f"mqtt.tls.{name}: {value} not found or not readable")
    src = cfg.source
    if src.kind in ("auto", "opencv") and src.uri:
        target, value = classify_uri(src.uri)
        if target == "file" and not Path(str(value)).is_file():
            found.append(f"source.uri: video file not found: {value}")
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
    problems = _problems(cfg)
    if problems:
        raise ConfigError(f"{args.file}: " + "; ".join(problems))
    print(f"{args.file}: ok")
    if not args.quiet:
        print(f"  mode:    {cfg.mode} (device {cfg.device_id})")
        print(f"  source:  {_source(cfg)}")
        print(f"  model:   {', '.join(m.spec for m in _models(cfg))}")
        mqtt = cfg.mqtt
        broker = f"{mqtt.host}:{mqtt.port}{' (TLS)' if mqtt.tls else ''}"
        print(f"  mqtt:    {broker if mqtt.enabled else 'disabled'}")
        print(f"  models:  {cfg.resolved_models_dir}")
    return 0
