"""The live page's server in-process: API, token, origin rule, commands and the live stream.

The daemon side is a small recorder of submitted commands; the browser test against a real
``edge run`` is in test_web_browser.py.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

pytest.importorskip("aiohttp", reason="the web extra: scripts/setup.sh --test installs it")

from edge.metrics import Metrics
from edge.mqtt.payloads import Command, CommandRejected, parse_command, reply_payload
from edge.web.hub import Hub
from edge.web.server import WebServer

TOKEN = "s3cret-token-0123456789"
# Not urlopen: its opener is built once per process and keeps the proxies of that moment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Recorder:
    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.figures: dict[str, Any] = {"model_fps": 5.0, "outbox_depth": 3, "mode": "video"}

    def submit(self, name: str, payload: bytes) -> Future:
        """Like the daemon's inbox: validated at once, answered later from another thread."""
        done: Future = Future()
        try:
            command = parse_command(name, payload, 4096)
        except CommandRejected as exc:
            done.set_result(reply_payload(False, id=exc.id, error=str(exc)))
            return done
        self.commands.append(command)
        reply = reply_payload(True, id=command.id, did=command.name)
        threading.Thread(target=done.set_result, args=(reply,)).start()
        return done

    def snapshot_jpeg(self) -> bytes | None:
        return b"\xff\xd8fake-jpeg\xff\xd9"

    def stats(self) -> dict[str, Any]:
        return dict(self.figures)


@pytest.fixture
def served(request) -> Iterator[tuple[WebServer, Hub, Recorder]]:
    token = getattr(request, "param", None)
    hub, rec = Hub(), Recorder()
    server = WebServer("127.0.0.1", 0, hub, rec, Metrics(rec.stats), token=token)
    server.start()
    try:
        yield server, hub, rec
    finally:
        server.stop()


def call(
    server: WebServer, path: str, *, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", data=body, headers=headers or {}
    )
    try:
        with _OPENER.open(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


JSON = {"Content-Type": "application/json"}


def test_page_state_events_and_no_cors(served) -> None:
    server, hub, _ = served
    status, body, headers = call(server, "/")
    assert status == 200 and b"<title>edge</title>" in body
    assert "Access-Control-Allow-Origin" not in headers
    assert call(server, "/static/app.js")[0] == 200
    assert call(server, "/static/../config.py")[0] == 404
    hub.push("state", {"label": "squat", "score": 0.9, "ts": 1.0})
    hub.push("event", {"type": "start", "label": "squat"})
    hub.push("event", {"type": "end", "label": "squat"})
    assert json.loads(call(server, "/api/state")[1])["label"] == "squat"
    events = json.loads(call(server, "/api/events?since=1")[1])
    assert [e["type"] for e in events] == ["end"]
    assert call(server, "/api/events?since=x")[0] == 400
    assert call(server, "/api/snapshot.jpg")[1].startswith(b"\xff\xd8")


def test_commands_are_validated_like_mqtt_and_post_only(served) -> None:
    server, _, rec = served
    status, body, _ = call(server, "/api/cmd/reset", body=b'{"id": "r1"}', headers=JSON)
    assert status == 200 and json.loads(body) == {"ok": True, "id": "r1", "did": "reset"}
    assert [c.name for c in rec.commands] == ["reset"]
    status, body, _ = call(server, "/api/cmd/reset", body=b'{"bogus": 1}', headers=JSON)
    assert status == 400 and "unknown key" in json.loads(body)["error"]
    status, body, _ = call(server, "/api/cmd/launch", body=b"{}", headers=JSON)
    assert status == 400 and "unknown command" in json.loads(body)["error"]
    status, _, _ = call(server, "/api/cmd/reset", body=b"x" * 10_000, headers=JSON)
    assert status in (400, 413)
    assert call(server, "/api/cmd/reset")[0] == 405  # GET never changes anything
    other = {**JSON, "Origin": "http://evil.example"}
    assert call(server, "/api/cmd/reset", body=b"{}", headers=other)[0] == 403
    assert [c.name for c in rec.commands] == ["reset"]


@pytest.mark.parametrize("served", [TOKEN], indirect=True)
def test_token_guards_the_api_but_not_the_page(served) -> None:
    server, _, rec = served
    assert call(server, "/")[0] == 200
    assert call(server, "/api/state")[0] == 401
    assert call(server, "/metrics")[0] == 401
    assert call(server, "/api/cmd/reset", body=b"{}", headers=JSON)[0] == 401
    assert not rec.commands
    bearer = {**JSON, "Authorization": f"Bearer {TOKEN}"}
    assert call(server, "/api/cmd/reset", body=b"{}", headers=bearer)[0] == 200
    assert call(server, f"/api/state?token={TOKEN}")[0] == 200


def test_metrics_text_follows_prometheus_names(served) -> None:
    server, _, _ = served
    metrics = server._metrics
    assert metrics is not None
    metrics.observe_step(0.004)
    metrics.label_started("squat")
    status, body, headers = call(server, "/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "edge_model_steps_per_second 5.0" in text
    assert "edge_outbox_messages 3.0" in text
    assert 'edge_label_changes_total{label="squat"} 1.0' in text
    assert "edge_inference_seconds_count 1.0" in text


def test_live_stream_carries_what_the_hub_gets(served) -> None:
    server, hub, _ = served
    hub.push("state", {"label": "squat", "score": 0.9})
    got: list[str] = []
    opened = threading.Event()

    def read() -> None:
        with _OPENER.open(f"http://127.0.0.1:{server.port}/api/stream", timeout=10) as r:
            opened.set()
            for raw in r:
                line = raw.decode().strip()
                if line.startswith("event:"):
                    got.append(line.split(":", 1)[1].strip())
                if got.count("event") >= 1:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(30)
    while hub.watchers == 0:
        threading.Event().wait(0.02)
    hub.push("event", {"type": "start", "label": "squat"})
    reader.join(10)
    assert got[:1] == ["state"] and "event" in got
