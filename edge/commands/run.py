"""`edge run`: the sensor daemon."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from edge.config import Config, find_config, load_config
from edge.errors import ConfigError, SourceError
from edge.netallow import check_env

# What config.yaml's device_id pattern allows, in words: it is part of every MQTT topic.
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEVICE_ID_RULE = "1 to 64 letters, digits, '-' or '_'; no spaces, '/', '#' or '+'"

NO_SOURCE_EXIT = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        help="config file (default: /etc/edge/config.yaml, then ./config.yaml)",
    )
    p.add_argument(
        "--source",
        help="camera or clip: auto, picamera2, a device (0, /dev/video0), a video file, "
        "or an rtsp:// / http:// stream URL",
    )
    p.add_argument("--loop", action="store_true", help="play a video file source in a loop")
    p.add_argument("--model", help="model: catalogue name or .tflite path")
    p.add_argument(
        "--mode",
        choices=["video", "still"],
        help="video: classify what the camera sees as it happens; "
        "still: classify photos (schedule, command, watched folder)",
    )
    p.add_argument(
        "--device-id",
        metavar="ID",
        help=f"this device's name in MQTT topics ({DEVICE_ID_RULE})",
    )
    p.add_argument(
        "--state-dir", type=Path, metavar="DIR", help="where the outbox and history are kept"
    )
    p.add_argument("--mqtt-host", metavar="HOST", help="MQTT broker host name or address")
    p.add_argument("--mqtt-port", type=int, metavar="PORT", help="MQTT broker port")
    p.add_argument("--no-mqtt", action="store_true", help="run without publishing (log only)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument(
        "--wait-for-camera",
        action="store_true",
        help="with source.kind auto and no camera, wait for one instead of exiting 3 "
        "(the service does: a fresh install has no camera yet)",
    )


def overrides_from(args: argparse.Namespace) -> dict:
    o: dict = {}
    if args.source:
        if args.source in ("auto", "picamera2"):
            o["source"] = {"kind": args.source, "uri": None}
        else:
            o["source"] = {"kind": "opencv", "uri": args.source}
    if args.loop:
        o.setdefault("source", {})["loop"] = True
    if args.model:
        is_path = Path(args.model).exists() or args.model.endswith((".tflite", ".zip"))
        o["model"] = (
            {"path": args.model, "name": None} if is_path else {"name": args.model, "path": None}
        )
    if args.mode:
        o["mode"] = args.mode
    if args.device_id:
        if not DEVICE_ID.fullmatch(args.device_id):
            raise ConfigError(f"--device-id {args.device_id!r}: use {DEVICE_ID_RULE}")
        o["device_id"] = args.device_id
    if args.state_dir:
        o["state_dir"] = str(args.state_dir)
    mqtt: dict = {}
    if args.mqtt_host:
        mqtt["host"] = args.mqtt_host
    if args.mqtt_port is not None:
        mqtt["port"] = args.mqtt_port
    if args.no_mqtt:
        mqtt["enabled"] = False
    if mqtt:
        o["mqtt"] = mqtt
    return o


def run(args: argparse.Namespace) -> int:
    from edge.nativeio import quiet_video_libraries

    if not args.verbose:
        quiet_video_libraries()  # the capture logs each state change in its own words
    from edge.app.daemon import Daemon

    path = args.config or find_config()
    overrides = overrides_from(args)

    def load() -> Config:
        cfg = load_config(path, overrides)
        check_env(cfg, str(path or "config"))
        return cfg

    cfg = load()
    logging.getLogger().setLevel("DEBUG" if args.verbose else cfg.log_level.upper())
    if args.wait_for_camera:
        from edge.camera_wait import wait_for_camera

        waited = wait_for_camera(cfg, load, path)
        if waited is None:
            return 0  # stopped while waiting
        cfg = waited
    daemon = Daemon(cfg, path, overrides)
    daemon.install_signals()
    try:
        return daemon.run(duration_s=args.duration)
    except SourceError as exc:
        # Exit 3, not 2: a camera missing at boot may still appear (a USB camera that
        # enumerates late), so systemd restarts on this one; bad config it does not.
        print(f"edge run: error: {exc}", file=sys.stderr)
        return NO_SOURCE_EXIT
