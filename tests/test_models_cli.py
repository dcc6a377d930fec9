"""``edge models`` as a user runs it: list, fetch (mirror dir and URL), path, import, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge import catalogue as cat
from edge import resolve
from tests.support.cli import assert_one_line_error, isolated_env, run_cli

IN_MIRROR = {
    "movinet-a0-stream-int8",
    "mobilenet-v2-quant",
    "customvision-fruits",
    "movinet-custom-cattle-int8",
    "movinet-custom-cattle-dynamic",
}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No test may fall back to the user's real models directory."""
    return isolated_env(tmp_path / "default-models")


def _list(models: Path, env: dict[str, str]) -> dict[str, dict]:
    proc = run_cli("models", "list", "--json", "--models-dir", str(models), env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["models_dir"] == str(models)
    return {row["name"]: row for row in data["models"]}


def test_fetch_all_available_from_mirror_then_list(
    a0, mobilenet, cv_fruits, mirror, tmp_path, env
) -> None:
    models = tmp_path / "models"
    before = _list(models, env)
    assert not any(row["installed"] for row in before.values())
    assert before["movinet-a0-stream-int8"]["size"] == a0.stat().st_size + 9209

    proc = run_cli(
        "models",
        "fetch",
        "--all-available",
        "--test-models",
        "--from",
        str(mirror),
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
    assert path.read_bytes() == mobilenet.read_bytes()
    proc = run_cli(
        "models", "path", "customvision-fruits", "--labels", "--models-dir", str(models), env=env
    )
    assert Path(proc.stdout.strip()).read_text() == (cv_fruits / "labels.txt").read_text()

    again = run_cli(
        "models", "fetch", "mobilenet-v2-quant", "--models-dir", str(models), env=env
    )  # no --from: must not touch the network because it is already installed
    assert again.returncode == 0 and "already installed" in again.stdout


def test_fetch_from_mirror_url_uses_default_models_dir(a0, tmp_path, env, mirror_url) -> None:
    proc = run_cli("models", "fetch", "movinet-a0-stream-int8", "--from", mirror_url, env=env)
    assert proc.returncode == 0, proc.stderr
    installed = Path(env[cat.MODELS_DIR_ENV]) / "movinet-a0-stream-int8"
    assert (installed / "movinet_a0_stream_int8.tflite").read_bytes() == a0.read_bytes()
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


def test_all_available_leaves_test_models_out_and_says_what_it_skipped(
    a0, mobilenet, cv_fruits, mirror, tmp_path, env
) -> None:
    models = tmp_path / "models"
    proc = run_cli(
        "models",
        "fetch",
        "--all-available",
        "--from",
        str(mirror),
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


def test_fetch_name_takes_it_from_the_mirror_in_the_environment(a0, mirror, tmp_path, env) -> None:
    env["EDGE_MODEL_MIRROR"] = str(mirror)
    models = tmp_path / "models"
    proc = run_cli(
        "models", "fetch", "movinet-a0-stream-int8", "--models-dir", str(models), env=env
    )
    assert proc.returncode == 0, proc.stderr
    marker = json.loads((models / "movinet-a0-stream-int8" / "installed.json").read_text())
    assert marker["source"] == str(mirror.resolve())


def test_fetch_offline_with_an_absent_mirror_says_both_ways_out(tmp_path, env) -> None:
    env["EDGE_MODEL_MIRROR"] = str(tmp_path / "absent")
    proc = run_cli("models", "fetch", "mobilenet-v2-quant", "--models-dir", str(tmp_path), env=env)
    assert proc.returncode == 2
    first, error = proc.stderr.strip().splitlines()
    assert first.startswith(f"EDGE_MODEL_MIRROR={tmp_path / 'absent'}: the mirror is not there")
    assert "download failed" in error and "network" in error
    assert "EDGE_MODEL_MIRROR=" in error and "--from DIR" in error
    assert "Traceback" not in proc.stderr


def test_sha_mismatch_over_http_is_a_one_line_error(a0, tmp_path, env, mirror_url) -> None:
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


def test_import_custom_vision_folder(cv_fruits, tmp_path, env) -> None:
    models = tmp_path / "models"
    proc = run_cli(
        "models",
        "import",
        str(cv_fruits),
        "--name",
        "fruits",
        "--models-dir",
        str(models),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    said = (proc.stdout + proc.stderr).strip().splitlines()
    assert said == [f"imported {cv_fruits} as {models / 'fruits'}"]  # once, on stdout
    assert _list(models, env)["fruits"]["installed"] is True
    resolved = resolve.resolve_model("fruits", models)
    assert resolved.kind == "image" and resolved.labels is not None
    assert resolved.path.read_bytes() == (cv_fruits / "model.tflite").read_bytes()


def test_import_missing_source_is_a_one_line_error(tmp_path, env) -> None:
    proc = run_cli(
        "models", "import", str(tmp_path / "nope.zip"), "--models-dir", str(tmp_path), env=env
    )
    assert_one_line_error(proc, "nope.zip")


def test_import_under_a_catalogue_name_is_refused(cv_fruits, tmp_path, env) -> None:
    proc = run_cli(
        "models",
        "import",
        str(cv_fruits),
        "--name",
        "movinet-a0-stream-int8",
        "--replace",
        "--models-dir",
        str(tmp_path),
        env=env,
    )
    assert_one_line_error(proc, "catalogue model")
    assert not (tmp_path / "movinet-a0-stream-int8").exists()


@pytest.mark.parametrize("action", ["fetch", "list", "import", "path"])
def test_each_action_describes_itself_and_its_name(action) -> None:
    proc = run_cli("models", action, "--help")
    assert proc.returncode == 0, proc.stderr
    _, _, rest = proc.stdout.partition("\n\n")
    description = rest.splitlines()[0]
    assert description.endswith(".") and len(description.split()) >= 5, description
    if action in ("fetch", "path"):
        positional = proc.stdout.split("positional arguments:", 1)[1].split("options:", 1)[0]
        assert positional.split()[0] == "NAME" and len(positional.split()) > 3, positional
