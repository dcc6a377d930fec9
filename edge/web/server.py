"""The daemon's small web server: the live page, its JSON API, Server-Sent Events and /metrics.

aiohttp runs on its own thread with its own event loop, so the daemon's loop and the frame path
never wait for a browser. Commands posted here go through the same validation and the same
handlers as MQTT commands and get the same replies. State-changing calls are POST only; with a
token configured every API call needs it; no CORS headers are sent, and a POST from another
origin is refused, so another site open in the same browser cannot drive the device.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from concurrent.futures import Future
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from edge.errors import ConfigError
from edge.metrics import CONTENT_TYPE, Metrics
from edge.mqtt.payloads import encode, reply_payload
from edge.web.hub import Hub

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 90.0  # a teach command records for its seconds before it answers
PREDICTIONS_HZ = 5.0  # per page: smoothed bars move without flooding a phone
KEEPALIVE_S = 15.0
_STREAM_QUEUE = 256


class Controls(Protocol):
    """What the server needs from the daemon."""

    def submit(self, name: str, payload: bytes) -> Future[dict[str, Any]]:
        """Validate a raw command as MQTT does and run it on the daemon's loop; its reply."""

    def snapshot_jpeg(self) -> bytes | None: ...

    def stats(self) -> dict[str, Any]: ...


def read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"web.token_file: cannot read {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise ConfigError(f"web.token_file: the token in {path} is shorter than 16 characters")
    return token


def _sse(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + encode(payload) + b"\n\n"


class WebServer:
    def __init__(
        self,
        host: str,
        port: int,
        hub: Hub,
        controls: Controls,
        metrics: Metrics | None,
        *,
        token: str | None = None,
        max_command_bytes: int = 4096,
    ) -> None:
        self._host, self._port = host, port
        self._hub, self._controls, self._metrics = hub, controls, metrics
        self._token = token
        self._max_command_bytes = max_command_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve; a port in use or a bad host is a ConfigError, raised here."""
        self._thread = threading.Thread(target=self._run, name="edge-web", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"web: the server did not start within {timeout:.0f} s")
        if self._error is not None:
            raise ConfigError(f"web: cannot listen on {self._host}:{self._port}: {self._error}")
        log.info("web: live page on http://%s:%d/", self._host, self.port)

    def stop(self, timeout: float = 2.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start(); the daemon goes on without the page
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=self._max_command_bytes, middlewares=[self._guard])
        app.add_routes(
            [
                web.get("/", self._index),
                web.get("/static/{name}", self._static),
                web.get("/metrics", self._metrics_text),
                web.get("/api/state", self._state),
                web.get("/api/stats", self._stats),
                web.get("/api/events", self._events),
                web.get("/api/results", self._results),
                web.get("/api/snapshot.jpg", self._snapshot),
                web.get("/api/stream", self._stream),
                web.post("/api/cmd/{name}", self._command),
            ]
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            self._error = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._ready.set()
        await self._stopping.wait()
        await runner.shutdown()
        await runner.cleanup()

    # ------------------------------------------------------------------ guard
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if self._token is not None and (path.startswith("/api/") or path == "/metrics"):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            given = given or request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self._token.encode()):
                return web.json_response(
                    reply_payload(False, error="a valid token is required"), status=401
                )
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                return web.json_response(
                    reply_payload(False, error="cross-origin requests are refused"), status=403
                )
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    # ------------------------------------------------------------------ page
    async def _index(self, request: web.Request) -> web.Response:
        return self._asset("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        return self._asset(request.match_info["name"])

    def _asset(self, name: str) -> web.Response:
        types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
        suffix = Path(name).suffix
        if "/" in name or suffix not in types:
            raise web.HTTPNotFound()
        try:
            body = resources.files("edge.web").joinpath("static").joinpath(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise web.HTTPNotFound() from None
        return web.Response(body=body, content_type=types[suffix], charset="utf-8")

    # ------------------------------------------------------------------ API
    async def _metrics_text(self, request: web.Request) -> web.Response:
        if self._metrics is None:
            raise web.HTTPNotFound()
        body = await asyncio.get_running_loop().run_in_executor(None, self._metrics.text)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self._hub.latest("state") or {}, dumps=_dumps)

    async def _stats(self, request: web.Request) -> web.Response:
        stats = await asyncio.get_running_loop().run_in_executor(None, self._controls.stats)
        return web.json_response(stats, dumps=_dumps)

    async def _events(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return web.json_response(
                reply_payload(False, error="since: must be an integer"), status=400
            )
        return web.json_response(self._hub.events_since(since), dumps=_dumps)

    async def _results(self, request: web.Request) -> web.Response:
        return web.json_response(self._hub.results(), dumps=_dumps)

    async def _snapshot(self, request: web.Request) -> web.Response:
        jpeg = await asyncio.get_running_loop().run_in_executor(None, self._controls.snapshot_jpeg)
        if jpeg is None:
            return web.json_response(reply_payload(False, error="no frame yet"), status=404)
        return web.Response(body=jpeg, content_type="image/jpeg")

    async def _command(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(
                reply_payload(False, error=f"payload too large (> {self._max_command_bytes})"),
                status=413,
            )
        try:
            answer = await asyncio.wait_for(
                asyncio.wrap_future(self._controls.submit(name, body)), COMMAND_TIMEOUT_S
            )
        except asyncio.TimeoutError:
            answer = reply_payload(False, error="no reply from the daemon in time")
        if not answer.get("ok"):
            log.info("web: command %s: %s", name, answer.get("error"))
        return web.json_response(answer, status=200 if answer.get("ok") else 400, dumps=_dumps)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        await response.write(b": connected\n\n")  # sends the headers: the page is live now
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(_STREAM_QUEUE)
        next_prediction = 0.0

        def offer(item: tuple[str, dict[str, Any]]) -> None:
            if queue.full() and item[0] in ("prediction", "stats"):
                return  # a slow page loses live bars, never events
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(item)

        def listener(kind: str, payload: dict[str, Any]) -> None:
            nonlocal next_prediction
            if kind == "prediction":
                now = time.monotonic()
                if now < next_prediction:
                    return
                next_prediction = now + 1.0 / PREDICTIONS_HZ
            loop.call_soon_threadsafe(offer, (kind, payload))

        unsubscribe = self._hub.subscribe(listener)
        try:
            for kind in ("state", "stats"):
                latest = self._hub.latest(kind)
                if latest is not None:
                    await response.write(_sse(kind, latest))
            while self._stopping is not None and not self._stopping.is_set():
                try:
                    kind, payload = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                await response.write(_sse(kind, payload))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
        return response


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)
