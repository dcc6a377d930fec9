"""The rule for real parts a test needs: a skip that says how to get them, a failure in CI.

Fixtures (tests/conftest.py) hand out the real models and media; this module holds only the
rule, so the fixtures and the helpers for other real parts (Mosquitto, systemd) apply it alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

GET_MODELS = (
    "install the test models with `scripts/setup.sh --test` "
    "(or `EDGE_MODEL_MIRROR=DIR scripts/setup.sh --test` from a local mirror)"
)
GET_DATA = "tests/data is part of the repository: restore it with `git checkout -- tests/data`"


def missing(what: str, how: str) -> None:
    """A real part is not here: a failure in CI, else a skip that says how to get it."""
    msg = f"missing {what}: {how}"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def require(*paths: Path, how: str = GET_MODELS) -> None:
    """Every path must exist; see ``missing`` for what happens when one does not."""
    absent = [str(p) for p in paths if not p.exists()]
    if absent:
        missing("real test asset(s) " + ", ".join(absent), how)
