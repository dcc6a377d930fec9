"""The "no camera yet" state of ``edge run --wait-for-camera`` (the service).

A fresh install has no source configured and maybe no camera plugged in. Exiting would make
systemd restart the service every few seconds until its start limit and fail the install;
instead the service reports itself started and waiting (one journal line, ``STATUS=``), keeps
feeding the watchdog, and polls for a camera. SIGHUP re-reads the config, so naming a clip or
a stream and ``systemctl reload edge`` ends the wait too.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from edge.config import Config
from edge.errors import EdgeError
from edge.notify import Notifier

log = logging.getLogger("edge.camera")

POLL_S = 5.0
WAITING = "waiting for a camera: none found (no Pi camera, no /dev/video*)"


def needs_detection(cfg: Config) -> bool:
    """True when the config leaves the camera to ``kind: auto`` detection."""
    return cfg.mode == "video" and cfg.source.kind == "auto" and not cfg.source.uri


def wait_for_camera(
    cfg: Config,
    reload: Callable[[], Config],
    config_path: Path | None,
    notifier: Notifier | None = None,
    poll_s: float = POLL_S,
    detect: Callable[[], str | None] | None = None,
) -> Config | None:
    """Return the config to run with once a camera (or a configured source) is there.

    None means a stop signal came while waiting. ``reload`` re-reads the config file.
    """
    if not needs_detection(cfg):
        return cfg
    if detect is None:
        from edge.sources.factory import detect_camera

        detect = detect_camera
    if detect() is not None:
        return cfg
    notifier = notifier or Notifier()
    stop, hup = threading.Event(), threading.Event()
    wake = threading.Event()

    def on_stop(*_: object) -> None:
        stop.set()
        wake.set()

    def on_hup(*_: object) -> None:
        hup.set()
        wake.set()

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    where = config_path or "the config"
    log.warning(
        "%s; checking every %g s. To use a clip or a stream, set source.uri in %s "
        "and reload (systemctl reload edge)",
        WAITING,
        poll_s,
        where,
    )
    notifier.ready(f"{WAITING}; set source.uri in {where} and reload")
    # Fed while waiting: the watchdog watches for a hung process, not for a missing camera.
    step = min(poll_s, notifier.watchdog_s / 3) if notifier.watchdog_s else poll_s
    try:
        waited = 0.0
        while not stop.is_set():
            notifier.watchdog()
            wake.wait(step)
            wake.clear()
            if stop.is_set():
                break
            if hup.is_set():
                hup.clear()
                try:
                    cfg = reload()
                except EdgeError as exc:
                    log.error("config reload refused, still waiting: %s", exc)
                    notifier.status(f"{WAITING}; config reload refused: {exc}")
                    continue
                if not needs_detection(cfg):
                    log.info("config reloaded from %s: source given, starting", where)
                    return cfg
                log.info("config reloaded from %s: still no source, still waiting", where)
            waited += step
            if waited < poll_s:
                continue
            waited = 0.0
            found = detect()
            if found is not None:
                log.info("camera found: %s", found)
                return cfg
        return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
