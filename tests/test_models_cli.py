"""``edge models`` as a user runs it: list, fetch (mirror dir and URL), path, import, errors."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import catalogue as cat
from tests.conftest import (
    A0,
    CV_FRUITS,
    MOBILENET,
    MODELS,
    assert_one_line_error,
    require,
    run_cli,
)

IN_MIRROR = {
    "movinet-a0-stream-int8",
    "mobilenet-v2-quant",
    "customvision-fruits",
    "movinet-custom-cattle-int8",
    "movinet-custom-cattle-dynamic",
}

DEAD_PROXY = "http://127.0.0.1:9"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No test may fall back to the user's real models directory."""
    e = dict(os.environ)
    e[cat.MODELS_DIR_ENV] = str(tmp_path / "default-models")
    e.pop(cat.CATALOGUE_ENV, None)
    e.pop("EDGE_MODEL_MIRROR", None)
    # Anything but the local test servers goes to a dead proxy: no test reaches the internet.
    e.update(http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, no_proxy="127.0.0.1,localhost")
    return e


@pytest.fixture
def mirror_url() -> Iterator[str]:
    require(MODELS)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(MODELS), **kw)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _list(models: Path, env: dict[str, str]) -> dict[str, dict]:
    proc = run_cli("models", "list", "--json", "--models-dir", str(models), env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["models_dir"] == str(models)
    return {row["name"]: row for row in data["models"]}


def test_fetch_all_available_from_mirror_then_list(tmp_path, env) -> None:
    require(A0, MOBILENET, CV_FRUITS)
    models = tmp_path / "models"
    before = _list(models, env)
    assert not any(row["installed"] for row in before.values())
    assert before["movinet-a0-stream-int8"]["size"] == A0.stat().st_size + 9209

    proc = run_cli(
        "models",
        "fetch",
        "--all-available",
        "--test-models",
        "--from",
        str(MODELS),
        "--models-dir",
        str(models),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    after = _list(models, env)
    assert {n for n, row in after.items() if row["installed"]} == IN_MIRROR
    assert after["movinet-a1-stream-int8"]["installed"] is False
    assert after["mobilenet-v2-quant"]["kind"] == "image"

    proc = run_cli("models", "path", "mobilenet-v2-quant", "--models-dir", str(models), env=env)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.parent == models / "mobilenet-v2-quant"
    assert path.read_bytes() == MOBILENET.read_bytes()
    proc = run_cli(
        "models", "path", "customvision-fruits", "--labels", "--models-dir", str(models), env=env
    )
    assert Path(proc.stdout.strip()).read_text() == (CV_FRUITS / "labels.txt").read_text()

    again = run_cli(
        "models", "fetch", "mobilenet-v2-quant", "--models-dir", str(models), env=env
    )  # no --from: must not touch the network because it is already installed
    assert again.returncode == 0 and "already installed" in again.stdout


def test_fetch_from_mirror_url_uses_default_models_dir(tmp_path, env, mirror_url) -> None:
    require(A0)
    proc = run_cli("models", "fetch", "movinet-a0-stream-int8", "--from", mirror_url, env=env)
    assert proc.returncode == 0, proc.stderr
    installed = Path(env[cat.MODELS_DIR_ENV]) / "movinet-a0-stream-int8"
    assert (installed / "movinet_a0_stream_int8.tflite").read_bytes() == A0.read_bytes()
    assert json.loads((installed / "installed.json").read_text())["source"] == mirror_url


def test_unknown_model_is_a_one_line_error(tmp_path, env) -> None:
    proc = run_cli(
        "models", "fetch", "movinet-a0-stream-int", "--models-dir", str(tmp_path), env=env
    )
    assert_one_line_error(proc, "unknown model 'movinet-a0-stream-int'", "movinet-a0-stream-int8")
    assert list(tmp_path.iterdir()) == []


def test_path_of_uninstalled_model_says_how_to_fetch(tmp_path, env) -> None:
    proc = run_cli(
        "models", "path", "movinet-a2-stream-int8", "--models-dir", str(tmp_path), env=env
    )
    assert_one_line_error(proc, "not installed", "edge models fetch movinet-a2-stream-int8")


def test_all_available_needs_a_mirror_directory(tmp_path, env) -> None:
    proc = run_cli("models", "fetch", "--all-available", "--models-dir", str(tmp_path), env=env)
    assert_one_line_error(proc, "--all-available needs a mirror folder", "EDGE_MODEL_MIRROR")
    absent = tmp_path / "absent"
    for args in (["--all-available"], ["mobilenet-v2-quant"]):
        proc = run_cli(
            "models", "fetch", *args, "--from", str(absent), "--models-dir", str(tmp_path), env=env
        )
        assert_one_line_error(proc, f"--from {absent}: the mirror is not there")
    env["EDGE_MODEL_MIRROR"] = str(absent)
    proc = run_cli("models", "fetch", "--all-available", "--models-dir", str(tmp_path), env=env)
    assert_one_line_error(proc, f"EDGE_MODEL_MIRROR={absent}: the mirror is not there")
    assert list(tmp_path.iterdir()) == []


def test_all_available_leaves_test_models_out_and_says_what_it_skipped(tmp_path, env) -> None:
    require(A0, MOBILENET, CV_FRUITS)
    models = tmp_path / "models"
    proc = run_cli(
        "models",
        "fetch",
        "--all-available",
        "--from",
        str(MODELS),
        "--models-dir",
        str(models),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    tests_only = {n for n in IN_MIRROR if cat.get_entry(n).test_only}
    assert tests_only
    assert set(cat.installed_names(models)) == IN_MIRROR - tests_only
    assert "skipped, for tests only (--test-models installs them): " in proc.stdout
    assert "movinet-a1-stream-int8" in proc.stdout  # named as not in the mirror


def test_fetch_name_takes_it_from_the_mirror_in_the_environment(tmp_path, env) -> None:
    require(A0)
    env["EDGE_MODEL_MIRROR"] = str(MODELS)
    models = tmp_path / "models"
    proc = run_cli(
        "models", "fetch", "movinet-a0-stream-int8", "--models-dir", str(models), env=env
    )
    assert proc.returncode == 0, proc.stderr
    marker = json.loads((models / "movinet-a0-stream-int8" / "installed.json").read_text())
    assert marker["source"] == str(MODELS.resolve())


def test_fetch_offline_with_an_absent_mirror_says_both_ways_out(tmp_path, env) -> None:
    env["EDGE_MODEL_MIRROR"] = str(tmp_path / "absent")
    proc = run_cli("models", "fetch", "mobilenet-v2-quant", "--models-dir", str(tmp_path), env=env)
    assert proc.returncode == 2
    first, error = proc.stderr.strip().splitlines()
    assert first.startswith(f"EDGE_MODEL_MIRROR={tmp_path / 'absent'}: the mirror is not there")
    assert "download failed" in error and "network" in error
    assert "EDGE_MODEL_MIRROR=" in error and "--from DIR" in error
    assert "Traceback" not in proc.stderr


def test_sha_mismatch_over_http_is_a_one_line_error(tmp_path, env, mirror_url) -> None:
    require(A0)
    # A catalogue whose digest for the real A0 file is wrong: the download must be refused.
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        "models:\n"
        "  - name: a0-wrong\n"
        "    kind: stream\n"
        "    files:\n"
        "      - role: model\n"
        "        filename: a0.tflite\n"
        f"        url: {mirror_url}movinet_kinetics600/movinet_a0_stream_int8.tflite\n"
        f"        sha256: {'ab' * 32}\n",
        encoding="utf-8",
    )
    env[cat.CATALOGUE_ENV] = str(catalogue)
    models = tmp_path / "models"
    proc = run_cli("models", "fetch", "a0-wrong", "--models-dir", str(models), env=env)
    assert_one_line_error(proc, "a0.tflite", "sha256 mismatch", "ab" * 32)
    assert list(models.iterdir()) == []


def test_import_custom_vision_folder(tmp_path, env) -> None:
    require(CV_FRUITS)
    models = tmp_path / "models"
    proc = run_cli(
        "models",
        "import",
        str(CV_FRUITS),
        "--name",
        "fruits",
        "--models-dir",
        str(models),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert _list(models, env)["fruits"]["installed"] is True
    resolved = cat.resolve_model("fruits", models)
    assert resolved.kind == "image" and resolved.labels is not None
    assert resolved.path.read_bytes() == (CV_FRUITS / "model.tflite").read_bytes()


def test_import_missing_source_is_a_one_line_error(tmp_path, env) -> None:
    proc = run_cli(
        "models", "import", str(tmp_path / "nope.zip"), "--models-dir", str(tmp_path), env=env
    )
    assert_one_line_error(proc, "nope.zip")


def test_import_under_a_catalogue_name_is_refused(tmp_path, env) -> None:
    require(CV_FRUITS)
    proc = run_cli(
        "models",
        "import",
        str(CV_FRUITS),
        "--name",
        "movinet-a0-stream-int8",
        "--replace",
        "--models-dir",
        str(tmp_path),
        env=env,
    )
    assert_one_line_error(proc, "catalogue model")
    assert not (tmp_path / "movinet-a0-stream-int8").exists()
