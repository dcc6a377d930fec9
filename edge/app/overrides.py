"""The kept model swap: ``model-override.json`` in the state directory.

A model swapped in over MQTT outlives restarts and reloads until the config file's own
model settings change; then the file, the operator's newer word, wins. The file records
the file's model settings at the time of the swap to tell the two cases apart.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edge.config import Config, ModelConfig
from edge.files import PRIVATE, write_private

log = logging.getLogger("edge.overrides")

OVERRIDE_FILE = "model-override.json"


def path_for(cfg: Config) -> Path:
    return cfg.state_dir / OVERRIDE_FILE


def model_fields(cfg: Config) -> dict[str, Any]:
    return {
        "mode": cfg.mode,
        "model": cfg.model.model_dump(mode="json"),
        "still_models": [m.model_dump(mode="json") for m in cfg.still_models],
    }


def save(cfg: Config, file_cfg: Config) -> None:
    """Keep ``cfg``'s model settings, swapped in over ``file_cfg`` (the config as loaded).

    Back to the file's own settings, there is nothing to keep: the file is removed.
    """
    path = path_for(cfg)
    if model_fields(cfg) == model_fields(file_cfg):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("%s: cannot remove the kept model swap: %s", path, exc)
        return
    data = {"file": model_fields(file_cfg), **model_fields(cfg)}
    try:
        write_private(path, json.dumps(data, indent=1).encode(), PRIVATE)
    except OSError as exc:
        log.warning("%s: cannot keep the model swap across restarts: %s", path, exc)


def apply(cfg: Config) -> Config:
    """``cfg`` with a kept swap applied, or ``cfg`` itself when there is none (or it is stale)."""
    path = path_for(cfg)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return cfg
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable, ignored: %s", path, exc)
        return cfg
    if not isinstance(data, dict):
        log.warning("%s: invalid, ignored: not a JSON object", path)
        return cfg
    if data.get("file") != model_fields(cfg):
        log.info("the config's model settings changed since the last swap; using them")
        path.unlink(missing_ok=True)
        return cfg
    try:
        kept = cfg.model_copy(
            update={
                "mode": data["mode"],
                "model": ModelConfig(**data["model"]),
                "still_models": [ModelConfig(**m) for m in data["still_models"]],
            }
        )
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("%s: invalid, ignored: %s", path, exc)
        return cfg
    models = ", ".join(m.spec for m in kept.still_model_list) if kept.mode == "still" else None
    log.info(
        "%s: a model swapped in over MQTT is in force instead of the config file's: "
        '%s mode, model %s. To go back to the file\'s model: cmd/model {"clear": true}, '
        "or delete this file and restart",
        path,
        kept.mode,
        models or kept.model.spec,
    )
    return kept
