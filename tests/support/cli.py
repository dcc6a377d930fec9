"""``python -m edge`` as a user runs it, in an environment that cannot reach the user's models
or the internet, and the shape of a bad-input answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge import catalogue as cat
from tests.support.assets import ROOT

DEAD_PROXY = "http://127.0.0.1:9"


def isolated_env(models_dir: Path, **extra: str) -> dict[str, str]:
    """The process environment with ``models_dir`` as the default models directory, no
    catalogue override, no model mirror (a test that wants one sets EDGE_MODEL_MIRROR), and
    every connection but to 127.0.0.1 sent to a dead proxy."""
    env = dict(os.environ)
    env[cat.MODELS_DIR_ENV] = str(models_dir)
    env.pop(cat.CATALOGUE_ENV, None)
    env.pop("EDGE_MODEL_MIRROR", None)
    env.update(http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, no_proxy="127.0.0.1,localhost")
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edge`` as a user would, capturing text output."""
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kw.pop("cwd", ROOT),
        **kw,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Bad input: exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
