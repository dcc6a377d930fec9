"""``scripts/setup.sh`` as a user runs it: its help, and the models step with and without a mirror.

The environment step is not repeated here (``scripts/test.sh`` has just run it): each run takes
``--models-only`` with the environment these tests run in (``--venv``), a models directory of its
own, and a dead proxy, so nothing reaches the internet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge import catalogue as cat
from tests.support.assets import ROOT

SETUP = ROOT / "scripts" / "setup.sh"
DEAD_PROXY = "http://127.0.0.1:9"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "ANDROID_", "TERMUX_"))}
    e[cat.MODELS_DIR_ENV] = str(tmp_path / "models")
    e.update(http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, no_proxy="127.0.0.1,localhost")
    return e


def setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SETUP), "--models-only", "--venv", sys.prefix, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )


def installed(env: dict[str, str]) -> set[str]:
    return set(cat.installed_names(Path(env[cat.MODELS_DIR_ENV])))


def user_models_in_mirror(mirror: Path) -> set[str]:
    return {e.name for e in cat.load_catalogue().values() if cat.mirror_has(e, mirror)}


def test_help_is_a_usage_text_naming_every_option() -> None:
    proc = subprocess.run(["bash", str(SETUP), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: scripts/setup.sh [OPTIONS]\n")
    assert "set -e" not in proc.stdout and "cd " not in proc.stdout
    patterns = re.findall(r"^\s+(-[-a-z|=*]+)\)", SETUP.read_text(), re.M)
    options = {o.removesuffix("=*") for p in patterns for o in p.split("|") if o.startswith("--")}
    assert {"--test", "--plot", "--models-from", "--no-models", "--venv"} <= options
    for option in options:
        assert re.search(rf"^  (-[a-z], )?{option}\b", proc.stdout, re.M), option


def test_offline_without_mirror_says_what_failed_and_the_ways_out(env) -> None:
    proc = setup(env)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "ready" not in out and "Traceback" not in out
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1, proc.stderr
    line = errors[0]
    assert "movinet-a0-stream-int8" in line and "download failed" in line
    assert "network" in line and "EDGE_MODEL_MIRROR=" in line and "--from DIR" in line
    assert installed(env) == set()


def test_missing_mirror_is_named_and_the_installed_models_kept(
    a0, mobilenet, mirror, env, tmp_path
) -> None:
    for name in ("movinet-a0-stream-int8", "mobilenet-v2-quant"):
        cat.fetch(name, Path(env[cat.MODELS_DIR_ENV]), str(mirror), progress=False)
    env["EDGE_MODEL_MIRROR"] = str(tmp_path / "unplugged-stick")
    proc = setup(env)
    assert proc.returncode == 0, proc.stderr
    assert f"model mirror {tmp_path / 'unplugged-stick'} is not there" in proc.stderr
    assert "error" not in proc.stderr
    assert installed(env) == {"movinet-a0-stream-int8", "mobilenet-v2-quant"}


def test_mirror_installs_what_a_user_needs_and_says_what_it_skipped(
    a0, mobilenet, cv_fruits, mirror, env
) -> None:
    catalogue = cat.load_catalogue()
    tests_only = {n for n in user_models_in_mirror(mirror) if catalogue[n].test_only}
    lacking = sorted(set(catalogue) - user_models_in_mirror(mirror) - tests_only)
    assert tests_only and lacking  # the mirror holds test models and lacks some catalogue ones
    env["EDGE_MODEL_MIRROR"] = str(mirror)
    proc = setup(env)
    assert proc.returncode == 0, proc.stderr
    assert installed(env) == user_models_in_mirror(mirror) - tests_only
    skipped = {
        kind: set(names.split(", "))
        for kind, names in re.findall(r"^skipped, (.+?): (.+)$", proc.stdout, re.M)
    }
    (where,) = [k for k in skipped if k.startswith("not in the mirror ")]
    assert Path(where.removeprefix("not in the mirror ")).resolve() == mirror.resolve()
    assert skipped[where] == set(lacking)
    assert skipped["for tests only (--test-models installs them)"] == tests_only
    assert "setup: ready" in proc.stderr

    again = setup(env, "--test")
    assert again.returncode == 0, again.stderr
    assert installed(env) == user_models_in_mirror(mirror)
    marker = json.loads(
        (Path(env[cat.MODELS_DIR_ENV]) / sorted(tests_only)[0] / "installed.json").read_text()
    )
    assert marker["source"] == str(mirror.resolve())


def test_android_proot_says_how_to_start_without_systemd(a0, mobilenet, mirror, env) -> None:
    env.update(EDGE_MODEL_MIRROR=str(mirror), ANDROID_ROOT="/system", ANDROID_DATA="/data")
    proc = setup(env)
    assert proc.returncode == 0, proc.stderr
    assert "no systemd" in proc.stderr
    assert "termux-wake-lock" in proc.stderr
    assert re.search(r"nohup proot-distro login debian -- .*scripts/run\.sh", proc.stderr)


def test_termux_own_environment_is_sent_to_proot_distro(env) -> None:
    env["TERMUX_VERSION"] = "0.118.1"
    proc = setup(env)
    assert proc.returncode == 2
    assert "proot-distro install debian" in proc.stderr
    assert installed(env) == set()


def test_system_site_requirements_leave_out_the_runtime_and_the_system_packages() -> None:
    helper = ROOT / "scripts" / "unprovided-requirements.py"

    def names(*extras: str) -> set[str]:
        proc = subprocess.run(
            [sys.executable, str(helper), *extras], capture_output=True, text=True, check=True
        )
        return {re.match(r"[A-Za-z0-9._-]+", line).group(0).lower() for line in proc.stdout.split()}

    core = names()
    # Everything importable here counts as provided: numpy, cv2, yaml, psutil, matplotlib are.
    assert core.isdisjoint({"ai-edge-litert", "numpy", "opencv-python-headless", "pyyaml"})
    assert {"pydantic", "paho-mqtt", "tqdm"} <= core
    assert "pytest" not in core
    with_tests = names("test")
    assert {"pytest", "ruff"} <= with_tests and with_tests > core
    assert with_tests.isdisjoint({"psutil", "matplotlib"})
