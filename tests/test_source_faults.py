"""Sources that vanish, never existed or are damaged: stalls that heal, one clear line, no noise."""

from __future__ import annotations

import shutil

import pytest

from tests.support.assets import require
from tests.support.broker import (  # noqa: F401
    broker_factory_fixture,
    broker_fixture,
    free_port,
    wait_until,
)
from tests.support.cli import run_cli
from tests.support.daemon import DaemonProcess
from tests.support.paths import A0, K600_LABELS, VIDEOS
from tests.test_daemon import events

CLIP = VIDEOS / "carving_ice.mp4"
NATIVE_NOISE = ("[ WARN:", "[ERROR:", "[tcp @", "[h264 @", "[mov,", "global cap")


@pytest.fixture
def daemons(tmp_path):
    made: list[DaemonProcess] = []

    def make(config: dict) -> DaemonProcess:
        made.append(DaemonProcess(tmp_path / f"d{len(made)}", config))
        return made[-1]

    yield make
    for d in made:
        d.close()


def test_a_looping_file_deleted_while_playing_is_a_stall_that_heals(
    broker, daemons, tmp_path, config_for
):
    """Before: exit 0 with "set source.loop to play it again", which systemd does not restart."""
    clip = tmp_path / "clip.mp4"
    shutil.copy(CLIP, clip)
    sub = broker.subscriber("edge/dev1/#")
    try:
        cfg = config_for(
            tmp_path,
            broker.port,
            source={"uri": str(clip), "loop": True, "frame_timeout_s": 1, "backoff_max_s": 1},
        )
        d = daemons(cfg)
        d.start()
        sub.wait_for(lambda ms: [m for m in ms if m.topic.endswith("/state")], 60, "a state")
        clip.unlink()
        sub.wait_for(events("camera", state="stalled"), 60, "a camera stalled event")
        assert d.alive(), d.log()
        shutil.copy(CLIP, clip)
        sub.wait_for(events("camera", state="ok"), 60, "frames again once the file is back")
        code, _ = d.stop()
        assert code == 0, d.log()
        assert "set source.loop" not in d.log()
    finally:
        sub.close()


def test_a_named_camera_that_does_not_exist_exits_3(tmp_path):
    require(A0, K600_LABELS)
    proc = run_cli(
        "run",
        "--source",
        "/dev/video97",
        "--no-mqtt",
        "--state-dir",
        str(tmp_path),
        "--model",
        str(A0),
        "--duration",
        "5",
    )
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "/dev/video97 does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unreachable_stream_logs_in_edges_words_without_native_noise(tmp_path):
    require(A0, K600_LABELS)
    url = f"http://127.0.0.1:{free_port()}/video"
    proc = run_cli(
        "run",
        "--source",
        url,
        "--no-mqtt",
        "--state-dir",
        str(tmp_path),
        "--model",
        str(A0),
        "--duration",
        "6",
        "-c",
        str(_config(tmp_path)),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert not [n for n in NATIVE_NOISE if n in out], out
    cannot = [line for line in out.splitlines() if "edge.sources" in line and "cannot open" in line]
    assert len(cannot) == 1, out  # the first failure; retries are not repeated at INFO


def _config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        f"model: {{path: {A0}, labels: {K600_LABELS}}}\n"
        "source: {backoff_initial_s: 0.2, backoff_max_s: 0.5, frame_timeout_s: 1}\n"
    )
    return path


def test_a_truncated_video_is_classified_up_to_the_break_with_one_warning(tmp_path):
    require(A0, K600_LABELS, CLIP)
    broken = tmp_path / "broken.mp4"
    data = CLIP.read_bytes()
    broken.write_bytes(data[: len(data) * 6 // 10])
    proc = run_cli("classify", str(broken), "--model", str(A0), "--labels", str(K600_LABELS))
    assert proc.returncode == 0, proc.stderr
    assert not [n for n in NATIVE_NOISE if n in proc.stderr], proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and "decoding stops at frame" in warnings[0]
    assert "carving ice" in proc.stdout


def test_a_whole_video_gives_no_damage_warning(tmp_path):
    require(A0, K600_LABELS, CLIP)
    proc = run_cli("classify", str(CLIP), "--model", str(A0), "--labels", str(K600_LABELS))
    assert proc.returncode == 0 and "damaged" not in proc.stderr, proc.stderr


class HangingServer:
    """Accepts TCP connections on loopback and never answers: a stream that hangs."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_source_that_never_delivers_a_first_frame_is_reported_stalled(
    broker, daemons, tmp_path, config_for
):
    """Before: only `online`, no state and no camera event, until systemd's start timeout."""
    server = HangingServer()
    sub = broker.subscriber("edge/dev1/#")
    try:
        cfg = config_for(
            tmp_path,
            broker.port,
            source={
                "uri": f"http://127.0.0.1:{server.port}/video",
                "loop": False,
                "frame_timeout_s": 1,
            },
        )
        d = daemons(cfg)
        d.start()
        sub.wait_for(events("camera", state="stalled"), 60, "a camera stalled event")
        states = sub.wait_for(
            lambda ms: [m.json() for m in ms if m.topic == "edge/dev1/state" and m.payload],
            30,
            "a state",
        )
        assert states[-1]["camera"] == "stalled" and states[-1]["label"] is None
        assert "no first frame within 1 s" in d.log()
        code, _ = d.stop()
        assert code == 0, d.log()
    finally:
        sub.close()
        server.close()
