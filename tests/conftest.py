"""Shared paths and the rule for missing real parts: skip on a developer's machine, fail in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_SHARED", ROOT.parent / "shared"))


def _mirror_from_installed() -> Path:
    """Without a model mirror, lay the models setup.sh installed out in the mirror's layout."""
    from edge.catalogue import is_installed, load_catalogue
    from edge.config import default_models_dir

    installed = default_models_dir()
    view = ROOT / ".pytest_cache" / "model-mirror"
    for entry in load_catalogue().values():
        if not is_installed(entry, installed):
            continue
        for f in entry.files:
            if not f.mirror:
                continue
            link = view / f.mirror
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(installed / entry.name / f.filename)
    return view


MODELS = Path(os.environ.get("EDGE_MODEL_MIRROR", SHARED / "models"))
if not MODELS.is_dir():
    MODELS = _mirror_from_installed()
DATA = SHARED / "data"
VIDEOS = DATA / "videos"
IMAGES = DATA / "images"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

A0 = MODELS / "movinet_kinetics600" / "movinet_a0_stream_int8.tflite"
K600_LABELS = MODELS / "movinet_kinetics600" / "kinetics600_label_map.txt"
BERLIN_INT8 = MODELS / "movinet_custom_berlin0308" / "a0_int8.tflite"
BERLIN_LABELS = MODELS / "movinet_custom_berlin0308" / "label_map.txt"
CV_FRUITS = MODELS / "customvision_fruits"
MOBILENET = MODELS / "imagenet_mobilenet_v2_quant" / "mobilenet_v2_1.0_224_quant.tflite"
MOBILENET_LABELS = MODELS / "imagenet_mobilenet_v2_quant" / "imagenet_labels.txt"


def require(*paths: Path) -> None:
    """A missing real model or clip is a failure in CI and a skip elsewhere."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        msg = "missing real test asset(s): " + ", ".join(missing)
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def run_cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m edge`` as a user would, capturing text output."""
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kw.pop("cwd", ROOT),
        **kw,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Bad input: exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
