"""`edge run` end to end: a real clip, the real model, a real Mosquitto, a real process.

Each test starts its own broker on a free loopback port and the daemon as a
subprocess, then watches what a real subscriber receives.
"""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge.config import merge as deep_merge
from edge.mqtt.payloads import ResultPayload
from tests.support.assets import require
from tests.support.broker import (  # noqa: F401
    any_broker_fixture,
    broker_factory_fixture,
    broker_fixture,
    nats_broker_fixture,
    wait_until,
)
from tests.support.cli import assert_one_line_error, run_cli
from tests.support.daemon import DaemonProcess, NotifySocket
from tests.support.hass import check_device_payload
from tests.support.mjpeg_server import MjpegServer

BASE = "edge/dev1"


@pytest.fixture
def daemons(tmp_path):
    made: list[DaemonProcess] = []

    def make(config: dict, env: dict | None = None, name: str = "d") -> DaemonProcess:
        d = DaemonProcess(tmp_path / f"{name}{len(made)}", config, env)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def _states(sub) -> list[dict]:
    return sub.json(f"{BASE}/state")


def events(kind: str, **fields):
    """A wait_for condition: the ``events`` messages of ``kind`` whose fields match."""
    return lambda ms: [
        m.json()
        for m in ms
        if m.topic == f"{BASE}/events"
        and m.json().get("type") == kind
        and all(m.json().get(k) == v for k, v in fields.items())
    ]


def _wait_label(sub, label: str, timeout: float = 60) -> dict:
    return sub.wait_for(
        lambda ms: next(
            (
                m.json()
                for m in ms
                if m.topic == f"{BASE}/state" and m.payload and m.json()["label"] == label
            ),
            None,
        ),
        timeout,
        f"state with label {label!r}",
    )


def test_daemon_publishes_label_events_stats_and_stops_cleanly(
    config_for, a0, broker, daemons, tmp_path
):
    with broker.subscriber(f"{BASE}/#", "homeassistant/#") as sub:
        d = daemons(config_for(tmp_path, broker.port))
        d.start()
        sub.wait_payload(f"{BASE}/availability", "online", timeout=60)
        state = _wait_label(sub, "carving ice")
        assert set(state) >= {"label", "score", "since", "top", "model", "mode", "ts", "seq"}
        assert state["mode"] == "video"
        assert state["model"]["name"] == a0.stem and len(state["model"]["sha256"]) == 64
        assert 0.5 < state["score"] <= 1.0
        assert state["top"][0]["label"] == "carving ice"
        assert state["since"] <= state["ts"]

        start = sub.wait_for(events("start"), what="a start event")[0]
        assert start["label"] == "carving ice" and isinstance(start["seq"], int)

        stats = sub.wait_count(f"{BASE}/stats", 2, timeout=30)[-1].json()
        for key in (
            "camera_fps",
            "model_fps",
            "inference_ms",
            "dropped_frames",
            "reconnects",
            "outbox_depth",
            "uptime_s",
            "cpu_percent",
            "rss_mb",
        ):
            assert key in stats, key
        assert stats["model_fps"] > 0 and stats["inference_ms"]["p50"] > 0

        pred = sub.wait_count(f"{BASE}/predictions", 1)[0].json()
        assert pred["raw"] and pred["smoothed"] and "frame_ts" in pred

        # Home Assistant device discovery, retained for HA's later starts.
        disc = sub.wait_for(
            lambda ms: [m for m in ms if m.topic.startswith("homeassistant/device/") and m.payload],
            what="a discovery config",
        )
        comps = check_device_payload(json.loads(disc[0].payload))["components"]
        assert comps["activity"]["state_topic"] == f"{BASE}/state"
        with broker.subscriber(disc[0].topic) as late:
            assert late.wait_count(disc[0].topic, 1)[0].retain

        code, took = d.stop()
        assert code == 0, d.log()
        assert took < 5, f"took {took:.1f} s to stop"
        sub.wait_payload(f"{BASE}/availability", "stopped")
    with broker.subscriber(f"{BASE}/availability") as late:
        msg = late.wait_count(f"{BASE}/availability", 1)[0]
        assert msg.retain and msg.payload == b"stopped"


def test_kill_9_leaves_the_last_will(config_for, broker, daemons, tmp_path):
    with broker.subscriber(f"{BASE}/availability") as sub:
        d = daemons(config_for(tmp_path, broker.port, mqtt={"keepalive_s": 5}))
        d.start()
        sub.wait_payload(f"{BASE}/availability", "online", timeout=60)
        d.kill()
        sub.wait_payload(f"{BASE}/availability", "offline", timeout=30)


def test_outbox_survives_kill_9_while_the_broker_is_down(config_for, any_broker, daemons, tmp_path):
    """Events and state made while the broker is away, then a kill -9: nothing is lost.

    On Mosquitto with MQTT 5 and 3.1.1, and on NATS (3.1.1 through protocol: auto)."""
    broker = any_broker
    port = broker.port
    broker.stop()
    d = daemons(config_for(tmp_path, port, mqtt={"protocol": broker.protocol}))
    d.start()
    outbox = tmp_path / "state" / "outbox.sqlite"
    # Wait until the start event is durable in the outbox, then crash.

    def queued() -> int:
        if not outbox.exists():
            return 0
        try:
            with sqlite3.connect(outbox, timeout=1) as db:
                return db.execute("select count(*) from outbox where kind = 'event'").fetchone()[0]
        except sqlite3.Error:
            return 0

    wait_until(lambda: queued() >= 1, timeout=60, what="an event queued in the outbox")
    d.kill()
    assert not d.alive()

    broker.start()
    with broker.subscriber(f"{BASE}/events", f"{BASE}/state") as sub:
        d.start()  # same state dir: delivers what the killed process left
        events = sub.wait_for(
            lambda ms: (ev := [m.json() for m in ms if m.topic == f"{BASE}/events"]) and ev,
            timeout=60,
            what="events after restart",
        )
        seqs = [e["seq"] for e in events]
        assert seqs[0] == 1, seqs  # the event queued before the crash arrives first
        assert seqs == sorted(seqs) and len(set(seqs)) == seqs[-1] - seqs[0] + 1
        assert events[0]["type"] == "start" and events[0]["label"] == "carving ice"
        _wait_label(sub, "carving ice")


def test_commands_reset_snapshot_malformed_and_model_swap(
    berlin_int8, berlin_labels, config_for, a0, broker, daemons, tmp_path
):
    models = tmp_path / "models"
    (models / "cattle").mkdir(parents=True)
    cattle = models / "cattle" / "model.tflite"
    cattle.write_bytes(berlin_int8.read_bytes())
    (models / "cattle" / "labels.txt").write_bytes(berlin_labels.read_bytes())
    (tmp_path / "outside.tflite").write_bytes(berlin_int8.read_bytes())

    d = daemons(config_for(tmp_path, broker.port))
    with broker.subscriber(f"{BASE}/#") as sub:
        d.start()
        _wait_label(sub, "carving ice")

        def ask(name: str, payload, n: int) -> dict:
            raw = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
            sub.publish(f"{BASE}/cmd/{name}", raw)
            return sub.wait_count(f"{BASE}/cmd/{name}/result", n, timeout=30)[-1].json()

        assert ask("reset", {"id": "r1"}, 1) == {"ok": True, "reset": True, "id": "r1"}

        snap = ask("snapshot", {}, 1)
        assert snap["ok"] is True
        jpeg = np.frombuffer(base64.b64decode(snap["jpeg_base64"]), np.uint8)
        image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        assert image.shape[:2] == (snap["height"], snap["width"]) == (360, 360)
        assert Path(snap["path"]).stat().st_mode & 0o777 == 0o640  # whatever the umask

        bad = ask("reset", "{not json", 2)
        assert bad["ok"] is False and bad["error"]
        big = ask("snapshot", json.dumps({"pad": "x" * 10_000}), 2)
        assert big["ok"] is False
        assert "large" in big["error"].lower() or "size" in big["error"].lower()

        escape = ask("model", {"path": "../outside.tflite", "id": "m1"}, 1)
        assert escape["ok"] is False and escape["id"] == "m1"
        absolute = ask("model", {"path": str(tmp_path / "outside.tflite")}, 2)
        assert absolute["ok"] is False
        wrong_sha = ask("model", {"path": "cattle/model.tflite", "sha256": "0" * 64}, 3)
        assert wrong_sha["ok"] is False and "sha256" in wrong_sha["error"]
        assert d.alive()

        swapped = ask("model", {"path": "cattle/model.tflite"}, 4)
        assert swapped["ok"] is True, swapped
        assert swapped["model"]["name"] == "cattle"
        cattle_labels = set(berlin_labels.read_text().split())
        state = sub.wait_for(
            lambda ms: next(
                (
                    s
                    for s in (m.json() for m in ms if m.topic == f"{BASE}/state" and m.payload)
                    if s["model"]["name"] == "cattle" and s["top"]
                ),
                None,
            ),
            timeout=60,
            what="state from the swapped model",
        )
        assert {t["label"] for t in state["top"]} <= cattle_labels

        def model_in_new_states(after: int) -> str:
            def newest(ms):
                states = [m.json() for m in ms if m.topic == f"{BASE}/state" and m.payload]
                return states[after:] and states[-1]["model"]["name"]

            return sub.wait_for(newest, timeout=60, what="a new state")

        # The swap outlives a reload of the unchanged file and a restart.
        n = len(_states(sub))
        d.signal(signal.SIGHUP)
        sub.wait_for(events("config"), what="the reload")
        assert model_in_new_states(n) == "cattle"
        code, _ = d.stop()
        assert code == 0, d.log()
        n = len(_states(sub))
        d.start()
        assert model_in_new_states(n) == "cattle"
        # A changed model section in the file wins over the kept swap.
        n = len(_states(sub))
        d.write_config(deep_merge(d.config, {"model": {"top_k": 4}}))
        d.signal(signal.SIGHUP)
        sub.wait_for(
            lambda ms: any(s["model"]["name"] == a0.stem for s in _states(sub)[n:]),
            timeout=60,
            what="the file's model back",
        )
        code, _ = d.stop()
        assert code == 0, d.log()


def test_sighup_keeps_running_on_a_bad_config_and_applies_a_good_one(
    config_for, broker, daemons, tmp_path
):
    cfg = config_for(tmp_path, broker.port)
    d = daemons(cfg)
    with broker.subscriber(f"{BASE}/#") as sub:
        d.start()
        _wait_label(sub, "carving ice")
        d.config_path.write_text("mqtt:\n  prot: 1\n")
        d.signal(signal.SIGHUP)
        err = sub.wait_for(events("config"), what="a config event")[0]
        assert err["ok"] is False and "mqtt.prot" in err["error"]
        assert d.alive()
        n_states = len(_states(sub))
        sub.wait_for(lambda ms: len(_states(sub)) > n_states + 1, what="state still flowing")

        # Valid keys, but a password file that cannot be read: refused before the running
        # MQTT connection is touched.
        d.write_config(
            deep_merge(cfg, {"mqtt": {"username": "u", "password_file": "/nonexistent/pw"}})
        )
        d.signal(signal.SIGHUP)
        refused = sub.wait_for(
            lambda ms: [e for e in events("config")(ms) if "password_file" in e.get("error", "")],
            what="the unreadable password file refused",
        )
        assert refused[0]["ok"] is False
        n_states = len(_states(sub))
        sub.wait_for(lambda ms: len(_states(sub)) > n_states + 1, what="MQTT still working")

        # A good config that changes the model and the MQTT settings (a new connection).
        good = deep_merge(cfg, {"model": {"top_k": 3}, "mqtt": {"stats_interval_s": 0.5}})
        d.write_config(good)
        d.signal(signal.SIGHUP)
        sub.wait_for(events("config", ok=True), what="the reload accepted")
        n_states = len(_states(sub))
        sub.wait_for(lambda ms: len(_states(sub)) > n_states + 1, what="state after the reload")
        assert d.alive()
        code, _ = d.stop()
        assert code == 0, d.log()


def test_ready_and_watchdog_follow_frames(videos, config_for, broker, daemons, tmp_path):
    """READY=1 after the first frame; while the camera stalls the watchdog is not fed and
    the label is ended (state says so); both come back with the frames."""
    notify = NotifySocket(tmp_path / "notify.sock")
    server = MjpegServer(videos / "carving_ice.mp4", fps=10)
    server.start()
    sub = broker.subscriber(f"{BASE}/#")
    try:
        cfg = config_for(
            tmp_path,
            broker.port,
            source={"uri": server.url, "loop": False, "frame_timeout_s": 2},
        )
        d = daemons(cfg, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "10000000"})
        d.start()
        wait_until(lambda: notify.lines("READY=1"), timeout=60, what="READY=1")
        wait_until(lambda: len(notify.lines("WATCHDOG=1")) > 5, timeout=30, what="watchdog pings")
        _wait_label(sub, "carving ice")
        server.stall()
        time.sleep(2.5)  # longer than frame_timeout_s: frames have stopped
        stalled_at = time.monotonic()
        time.sleep(3)
        pings = [t for t in notify.lines("WATCHDOG=1") if t > stalled_at]
        assert pings == [], "watchdog was fed while no frame arrived"

        sub.wait_for(events("camera", state="stalled"), what="a camera stalled event")
        ended = sub.wait_for(events("end", label="carving ice"), what="the label ended")
        assert ended[0]["reason"] == "camera stalled"
        last_state = _states(sub)[-1]
        assert last_state["label"] is None and last_state["camera"] == "stalled"

        server.resume()
        wait_until(
            lambda: [t for t in notify.lines("WATCHDOG=1") if t > stalled_at],
            timeout=60,
            what="watchdog pings after the camera came back",
        )
        sub.wait_for(events("camera", state="ok"), what="a camera ok event")
        code, _ = d.stop()
        assert code == 0, d.log()
        assert notify.lines("STOPPING=1")
    finally:
        sub.close()
        server.stop()
        notify.close()


def test_no_camera_says_so_in_one_line(a0, tmp_path):
    if list(Path("/dev").glob("video*")):
        pytest.skip("this machine has a camera")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"state_dir: {tmp_path}\nmqtt: {{enabled: false}}\n")
    proc = run_cli("run", "--config", str(cfg), "--model", str(a0), timeout=120, env=_env(tmp_path))
    # Exit 3, which systemd restarts (a camera may enumerate late); one line, no traceback.
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "no camera" in proc.stderr
    assert "--source" in proc.stderr or "source.uri" in proc.stderr


@pytest.mark.parametrize(
    "flag", ["--mode", "--device-id", "--state-dir", "--mqtt-host", "--mqtt-port"]
)
def test_run_help_describes_every_option(flag):
    proc = run_cli("run", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    after = text.split(f" {flag} ", 1)[1]
    words = after.split(" --", 1)[0].split()
    assert len(words) >= 4, (flag, words)  # a metavar and a description, not the bare flag


def test_a_bad_device_id_names_the_flag_and_says_what_is_allowed(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("mqtt: {enabled: false}\n")
    proc = run_cli("run", "--config", str(cfg), "--device-id", "bad id/#", timeout=60)
    assert_one_line_error(proc, "--device-id", "'bad id/#'", "letters, digits")
    assert "config.yaml" not in proc.stderr and "[A-Za-z" not in proc.stderr


def test_bad_config_key_is_one_line_with_its_path(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("source:\n  kind: opencv\n  urii: x.mp4\n")
    proc = run_cli("run", "--config", str(cfg), timeout=60)
    assert_one_line_error(proc, "source.urii", "unknown key")


def _env(tmp_path: Path) -> dict:
    import os

    return {**os.environ, "EDGE_MODELS_DIR": str(tmp_path / "models")}


def test_still_mode_command_camera_watch_folder_results_and_history(
    mobilenet, cv_fruits, images, config_for, mobilenet_labels, broker, daemons, tmp_path
):

    watch = tmp_path / "watch"
    watch.mkdir()
    cfg = config_for(
        tmp_path,
        broker.port,
        mode="still",
        source={"kind": "command", "command": f"cp {images / 'fruit_apple.jpg'} {{path}}"},
        still_models=[
            {"path": str(cv_fruits)},
            {"path": str(mobilenet), "labels": str(mobilenet_labels)},
        ],
        still={"watch_dir": str(watch), "watch_poll_s": 0.2},
    )
    d = daemons(cfg)
    with broker.subscriber(f"{BASE}/#") as sub:
        d.start()
        sub.wait_payload(f"{BASE}/availability", "online", timeout=60)
        sub.publish(f"{BASE}/cmd/classify", json.dumps({"id": "c1"}))
        reply = sub.wait_count(f"{BASE}/cmd/classify/result", 1, timeout=60)[0].json()
        assert reply["ok"] is True and reply["id"] == "c1", reply
        first = sub.wait_count(f"{BASE}/results", 1, timeout=30)[0].json()
        # The published schema describes the message a real still-mode run sends.
        checked = ResultPayload.model_validate(first)
        assert checked.results[0].label == "Apple" and checked.image.source == "command"
        assert checked.history_id >= 1 and checked.image.path is not None
        fruits, imagenet = first["results"]
        assert fruits["top"][0]["label"] == "Apple" and fruits["label"] == "Apple"
        assert imagenet["model"]["name"] != fruits["model"]["name"]
        assert first["image"]["source"] == "command" and len(first["image"]["sha256"]) == 64

        staged = tmp_path / "banana.tmp"
        staged.write_bytes((images / "fruit_banana.jpg").read_bytes())
        staged.rename(watch / "banana.jpg")  # moved in: complete at once
        second = sub.wait_count(f"{BASE}/results", 2, timeout=60)[1].json()
        assert ResultPayload.model_validate(second).image.source == "watch"
        assert second["image"]["source"] == "watch"
        assert second["results"][0]["label"] == "Banana"
        assert second["seq"] == first["seq"] + 1
        code, _ = d.stop()
        assert code == 0, d.log()

    proc = run_cli("history", "--state-dir", str(tmp_path / "state"), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["image"]["source"] for r in rows] == ["command", "watch"]
    for row in rows:  # both models' answers are kept with each photo
        assert len({res["model"]["name"] for res in row["results"]}) == 2
    assert rows[1]["results"][0]["label"] == "Banana"


def test_swap_from_video_to_a_still_model_at_runtime(
    cv_fruits, config_for, broker, daemons, tmp_path
):
    import shutil

    shutil.copytree(cv_fruits, tmp_path / "models" / "fruits")
    d = daemons(config_for(tmp_path, broker.port))
    with broker.subscriber(f"{BASE}/#") as sub:
        d.start()
        _wait_label(sub, "carving ice")
        sub.publish(f"{BASE}/cmd/model", json.dumps({"path": "fruits", "mode": "still"}))
        reply = sub.wait_count(f"{BASE}/cmd/model/result", 1, timeout=60)[0].json()
        assert reply["ok"] is True and reply["mode"] == "still", reply
        assert reply["model"]["name"] == "fruits"
        sub.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/state" and m.payload and m.json()["mode"] == "still" for m in ms
            ),
            what="state in still mode",
        )
        sub.publish(f"{BASE}/cmd/classify", "{}")
        done = sub.wait_count(f"{BASE}/cmd/classify/result", 1, timeout=60)[0].json()
        assert done["ok"] is True, done
        result = sub.wait_count(f"{BASE}/results", 1, timeout=30)[0].json()
        (only,) = result["results"]
        assert only["model"]["name"] == "fruits"
        assert {t["label"] for t in only["top"]} <= {
            "Apple",
            "Banana",
            "Coconut",
            "Orange",
            "Passionfruit",
            "Pineapple",
            "Strawberry",
        }
        assert d.alive()
        code, _ = d.stop()
        assert code == 0, d.log()


def test_run_on_a_clip_without_mqtt_logs_labels_and_ends_with_the_clip(videos, a0, tmp_path):
    clip = videos / "carving_ice_small.mp4"
    require(clip)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\nmqtt: {{enabled: false}}\n")
    proc = run_cli(
        "run",
        "--config",
        str(cfg),
        "--source",
        str(clip),
        "--model",
        str(a0),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "label: carving ice" in proc.stderr
    assert "end of" in proc.stderr


@pytest.fixture
def folder_only(config_for: Callable[..., dict], cv_fruits: Path) -> Callable[..., dict]:
    """Still mode on a watched folder alone: no camera, no schedule."""

    def make(tmp_path: Path, port: int, **extra) -> dict:
        watch = tmp_path / "watch"
        watch.mkdir(exist_ok=True)
        base = config_for(
            tmp_path,
            port,
            mode="still",
            source={"kind": "none", "uri": None, "loop": False},
            still_models=[{"path": str(cv_fruits)}],
            still={"watch_dir": str(watch), "watch_poll_s": 0.2},
        )
        return deep_merge(base, extra)

    return make


def test_still_mode_on_a_watched_folder_alone_runs_without_a_camera(
    folder_only, images, broker, daemons, tmp_path
):

    cfg = folder_only(tmp_path, broker.port)
    d = daemons(cfg)
    check = run_cli("check-config", str(d.config_path), timeout=60)
    assert check.returncode == 0, check.stderr
    assert "source:  none" in check.stdout
    with broker.subscriber(f"{BASE}/#") as sub:
        d.start()
        sub.wait_payload(f"{BASE}/availability", "online", timeout=60)
        staged = tmp_path / "apple.tmp"
        staged.write_bytes((images / "fruit_apple.jpg").read_bytes())
        staged.rename(tmp_path / "watch" / "apple.jpg")
        result = ResultPayload.model_validate(
            sub.wait_count(f"{BASE}/results", 1, timeout=60)[0].json()
        )
        assert result.image.source == "watch" and result.results[0].label == "Apple"
        # No camera to take a photo with: a clear refusal, and the daemon runs on.
        sub.publish(f"{BASE}/cmd/classify", "{}")
        reply = sub.wait_count(f"{BASE}/cmd/classify/result", 1, timeout=30)[0].json()
        assert reply["ok"] is False and "watched folder" in reply["error"]
        assert d.alive()
        code, _ = d.stop()
        assert code == 0, d.log()
    assert "source none" in d.log()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"mode": "video"}, "video mode needs a camera"),
        ({"still": {"watch_dir": None}}, "still.watch_dir"),
        ({"still": {"interval_s": 60}}, "still.interval_s"),
    ],
    ids=["video", "no-folder", "schedule"],
)
def test_source_none_is_refused_alike_by_check_config_and_run(folder_only, tmp_path, extra, needle):
    cfg = folder_only(tmp_path, 1, mqtt={"enabled": False}, **extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    checked = run_cli("check-config", str(path), timeout=60)
    assert_one_line_error(checked, needle)
    ran = run_cli("run", "--config", str(path), timeout=120)
    assert_one_line_error(ran, needle)
    # The same words from both: the one rule lives in the config's validation.
    assert ran.stderr.split("config.yaml: ")[1] == checked.stderr.split("config.yaml: ")[1]
