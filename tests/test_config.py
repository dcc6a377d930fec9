"""Config validation: every mistake is one line naming the key; secrets never live in the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge import catalogue as cat
from edge.catalogue import default_models_dir
from edge.config import Config, load_config, parse_config
from edge.errors import ConfigError
from tests.support.assets import require
from tests.support.cli import assert_one_line_error, isolated_env, run_cli
from tests.support.paths import A0, K600_LABELS, VIDEOS


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def _error(data: object) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "cfg.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------ validation


def test_empty_file_gives_the_defaults(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(cat.MODELS_DIR_ENV, str(tmp_path / "models"))
    cfg = load_config(_write(tmp_path, "# nothing set\n"))
    assert cfg == Config()
    assert cfg.model.name == cat.DEFAULT_STREAM_MODEL
    # The daemon and `edge models` agree on where models live unless config says otherwise.
    assert cfg.resolved_models_dir == default_models_dir() == tmp_path / "models"


def test_unknown_keys_are_named_with_their_path() -> None:
    assert _error({"mqtt": {"hots": "broker"}}) == "cfg.yaml: mqtt.hots: unknown key"
    assert "smoother.tau: unknown key" in _error({"smoother": {"tau": 1}})
    assert "still_models.1.thread: unknown key" in _error(
        {"still_models": [{"name": "a"}, {"name": "b", "thread": 2}]}
    )
    assert "colour: unknown key" in _error({"colour": "blue"})


def test_wrong_types_and_ranges_are_named() -> None:
    assert _error({"mqtt": {"port": "eighteen"}}).startswith("cfg.yaml: mqtt.port: ")
    assert "mqtt.port" in _error({"mqtt": {"port": 70000}})
    assert "source.fps" in _error({"source": {"fps": 0}})
    assert "source.rotate" in _error({"source": {"rotate": 45}})
    assert "mode" in _error({"mode": "audio"})
    assert "model.sha256: must be 64 hexadecimal digits" in _error(
        {"model": {"name": "x", "sha256": "abc"}}
    )
    assert "give exactly one of 'name'" in _error({"model": {"name": "a", "path": "/b.tflite"}})
    assert "mqtt.topic_prefix" in _error({"mqtt": {"topic_prefix": "edge/#"}})
    msg = _error(["not", "a", "mapping"])
    assert msg == "cfg.yaml: top level must be a mapping of keys to values"


def test_several_mistakes_are_reported_together_on_one_line() -> None:
    msg = _error({"mqtt": {"port": 0, "qos": 5}})
    assert "mqtt.port" in msg and "mqtt.qos" in msg


def test_password_is_never_taken_from_the_config_file() -> None:
    secret = "hunter2-do-not-echo"
    msg = _error({"mqtt": {"username": "edge", "password": secret}})
    assert "mqtt.password: unknown key" in msg
    assert secret not in msg  # the error must not leak the secret into logs


def test_password_file_is_read_at_connect_time(tmp_path) -> None:
    secret = tmp_path / "mqtt.pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    cfg = parse_config({"mqtt": {"username": "edge", "password_file": str(secret)}})
    assert cfg.mqtt.password() == "s3cret"
    secret.write_text("rotated\r\n", encoding="utf-8")
    assert cfg.mqtt.password() == "rotated"
    secret.unlink()
    with pytest.raises(ConfigError, match=r"^mqtt\.password_file: cannot read .*mqtt\.pw"):
        cfg.mqtt.password()


def test_password_env_is_read_at_connect_time(monkeypatch) -> None:
    cfg = parse_config({"mqtt": {"password_env": "EDGE_TEST_MQTT_PW"}})
    monkeypatch.setenv("EDGE_TEST_MQTT_PW", "from-env")
    assert cfg.mqtt.password() == "from-env"
    monkeypatch.delenv("EDGE_TEST_MQTT_PW")
    with pytest.raises(ConfigError, match=r"mqtt\.password_env: environment variable"):
        cfg.mqtt.password()
    assert parse_config({}).mqtt.password() is None


def test_yaml_syntax_error_gives_the_line(tmp_path) -> None:
    path = _write(
        tmp_path,
        """
        mode: video
        mqtt:
          host: broker
         port: 1883
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "line 4" in msg and "\n" not in msg


def test_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


# ------------------------------------------------------------------------------ check-config CLI


def test_check_config_ok_prints_a_summary(mobilenet, mirror, tmp_path) -> None:
    models = tmp_path / "models"
    cat.fetch("mobilenet-v2-quant", models, str(mirror), progress=False)
    path = _write(
        tmp_path,
        f"""
        mode: still
        source: {{kind: opencv, uri: /dev/video0}}
        model: {{name: mobilenet-v2-quant}}
        mqtt: {{host: broker.example, port: 8883}}
        models_dir: {models}
        """,
    )
    proc = run_cli("check-config", str(path), env=isolated_env(tmp_path / "unused-models"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{path}: ok"
    out = proc.stdout
    assert "still" in out and "/dev/video0" in out and "mobilenet-v2-quant" in out
    assert "broker.example:8883" in out
    assert proc.stderr == ""  # the model is installed: nothing to warn about


def test_check_config_fails_when_the_model_is_not_installed(tmp_path) -> None:
    path = _write(
        tmp_path,
        f"""
        model: {{name: movinet-a1-stream-int8}}
        models_dir: {tmp_path / "empty"}
        """,
    )
    proc = run_cli("check-config", str(path), env=isolated_env(tmp_path / "unused-models"))
    assert_one_line_error(proc, str(path), "model:", "edge models fetch movinet-a1-stream-int8")
    assert proc.stdout == ""


def _installed_video(tmp_path: Path) -> str:
    require(A0, K600_LABELS, VIDEOS / "carving_ice.mp4")
    return (
        f"model: {{path: {A0}, labels: {K600_LABELS}}}\nmodels_dir: {tmp_path / 'm'}\n"
        f"source: {{uri: {VIDEOS / 'carving_ice.mp4'}}}\n"
    )


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ("mqtt: {username: u, password_file: /nonexistent/pw}\n", ("mqtt.password_file",)),
        ("mqtt: {tls: {ca_file: /nonexistent/ca.pem}}\n", ("mqtt.tls.ca_file",)),
        ("mode: still\n", ("model:", "still_models")),
    ],
)
def test_check_config_fails_on_what_edge_run_refuses(tmp_path, extra, needles) -> None:
    """Each of these made check-config say "ok" and then `edge run` exit 2."""
    path = tmp_path / "c.yaml"
    path.write_text(_installed_video(tmp_path) + extra, encoding="utf-8")
    proc = run_cli("check-config", str(path), env=isolated_env(tmp_path / "unused-models"))
    assert_one_line_error(proc, str(path), *needles)
    run = run_cli(
        "run",
        "--config",
        str(path),
        "--duration",
        "3",
        env=isolated_env(tmp_path / "unused-models"),
    )
    assert run.returncode == 2, run.stderr


def test_check_config_fails_on_a_missing_video_file(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(_installed_video(tmp_path).replace("carving_ice.mp4", "absent.mp4"))
    proc = run_cli("check-config", str(path), env=isolated_env(tmp_path / "unused-models"))
    assert_one_line_error(proc, "source.uri", "absent.mp4", "not found")


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("source:\n  frame_timeout_s: .inf\n", ("source.frame_timeout_s", "finite")),
        ("still:\n  interval_s: .nan\n", ("still.interval_s", "finite")),
        ("mqtt:\n  heartbeat_s: .inf\n", ("mqtt.heartbeat_s", "finite")),
        ("mqtt:\n  port: 1883\n  host: a\n  port: 1884\n", ("duplicate key 'port'", "line 4")),
        ("mode: video\nmode: still\n", ("duplicate key 'mode'", "line 2")),
    ],
)
def test_infinities_nan_and_duplicate_keys_are_refused(tmp_path, text, needles) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    assert_one_line_error(
        run_cli("check-config", str(path), env=isolated_env(tmp_path / "unused-models")), *needles
    )


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("mqtt:\n  hots: broker\n", ("mqtt.hots: unknown key",)),
        ("mqtt:\n  password: hunter2\n", ("mqtt.password: unknown key",)),
        ("source:\n  fps: fast\n", ("source.fps",)),
        ("mode: video\nmqtt:\n  host: a\n port: 1\n", ("line 4",)),
        ("model:\n  name: a\n  path: b\n", ("model", "exactly one of")),
    ],
)
def test_check_config_invalid_is_one_line_exit_2(tmp_path, text, needles) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    proc = run_cli("check-config", str(path), env=isolated_env(tmp_path / "unused-models"))
    assert_one_line_error(proc, str(path), *needles)
    assert "hunter2" not in proc.stderr
    assert proc.stdout == ""


def test_check_config_missing_file(tmp_path) -> None:
    proc = run_cli(
        "check-config", str(tmp_path / "absent.yaml"), env=isolated_env(tmp_path / "unused-models")
    )
    assert_one_line_error(proc, "absent.yaml", "not found")


def test_cross_field_rules_are_checked_by_check_config(tmp_path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("mode: video\nsource: {kind: command, command: 'rpicam-still -o {path}'}\n")
    assert_one_line_error(run_cli("check-config", str(bad)), "mode 'still'")
    bad.write_text("mqtt: {reconnect_min_s: 10, reconnect_max_s: 1}\n")
    assert_one_line_error(run_cli("check-config", str(bad)), "reconnect_max_s")


@pytest.mark.parametrize(
    ("source", "needles"),
    [
        ("{uri: 'rtsp://cam:secret@10.0.0.2/s', loop: true}", ("source.loop", "stream")),
        ("{kind: opencv, uri: 'http://phone:8080/video', loop: true}", ("source.loop", "stream")),
        ("{kind: opencv, uri: '0', loop: true}", ("source.loop", "camera")),
        ("{kind: auto, loop: true}", ("source.loop", "camera")),
        ("{kind: picamera2, loop: true}", ("source.loop", "camera")),
        ("{kind: opencv}", ("source.uri", "needs a device")),
        ("{kind: opencv, uri: ' '}", ("source.uri", "empty")),
        ("{kind: picamera2, uri: /dev/video0}", ("source.uri", "camera number")),
    ],
)
def test_source_mistakes_are_config_errors_for_check_config_and_run(
    tmp_path, source, needles
) -> None:
    # Found at run time these would exit 3, which systemd restarts every 10 s.
    bad = tmp_path / "c.yaml"
    bad.write_text(f"source: {source}\n")
    proc = run_cli("check-config", str(bad), env=isolated_env(tmp_path / "unused-models"))
    assert_one_line_error(proc, str(bad), *needles)
    assert "secret" not in proc.stderr


def test_run_refuses_looping_a_stream_as_bad_config(tmp_path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("source: {kind: opencv, uri: 'http://127.0.0.1:9/video', loop: true}\n")
    assert_one_line_error(run_cli("run", "--config", str(bad)), "source.loop")
    for clip in ("clip.mp4", "file:///srv/clip.mp4"):
        assert parse_config({"source": {"uri": clip, "loop": True}}).source.loop
