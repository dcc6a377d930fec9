"""Commands as a table: ``{name: Handler(arguments schema, function)}``.

A new command is one function and one line in ``HANDLERS``. Over MQTT the publisher
validates a message against the table's schemas and the daemon runs it with
``execute``; any other caller (a web page) submits raw JSON to the daemon's ``Inbox``
from its own thread, which validates the same way and has the loop run it, so every
caller gets the same replies. A handler returns the reply's fields or raises
``EdgeError`` with the one-line reason for an error reply.
"""

from __future__ import annotations

import base64
import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import cv2
from pydantic import ValidationError

from edge.app import teaching
from edge.app.pipeline import Parts
from edge.config import ModelConfig
from edge.errors import EdgeError
from edge.files import GROUP_READ, write_private
from edge.mqtt.payloads import (
    ClassifyArgs,
    Command,
    CommandArgs,
    CommandRejected,
    ModelArgs,
    ResetArgs,
    SnapshotArgs,
    parse_command,
    reply_payload,
)

if TYPE_CHECKING:
    from edge.app.pipeline import Pipeline
    from edge.app.reporter import Reporter
    from edge.config import Config

log = logging.getLogger("edge.commands")

A = TypeVar("A", bound=CommandArgs)
Reply = dict[str, Any]


class App(Protocol):
    """What a command may touch: the running config, pipeline and reporter."""

    @property
    def cfg(self) -> Config: ...
    @property
    def pipeline(self) -> Pipeline: ...
    @property
    def reporter(self) -> Reporter: ...
    @property
    def file_cfg(self) -> Config:
        """The config as loaded from the file, before a kept model swap."""
        ...

    def build(self, cfg: Config, parts: Parts, *, request: bool = False) -> Pipeline:
        """A pipeline for ``cfg`` from ``parts`` plus whatever they lack (not started)."""
        ...

    def swap(self, pipeline: Pipeline, cfg: Config) -> None:
        """Run ``pipeline`` (built for ``cfg``) instead of the current one, and keep it."""
        ...


@dataclass(frozen=True, slots=True)
class Handler(Generic[A]):
    args: type[A]
    run: Callable[[App, A], Reply]


# ---------------------------------------------------------------------------- handlers


def reset(app: App, args: ResetArgs) -> Reply:
    app.pipeline.reset()
    return {"reset": True}


def snapshot(app: App, args: SnapshotArgs) -> Reply:
    frame = app.pipeline.snapshot()
    if frame is None:
        raise EdgeError("no frame captured yet")
    ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise EdgeError("could not encode the snapshot")
    data = jpeg.tobytes()
    snap_dir = app.cfg.state_dir / "snapshots"
    snap_dir.mkdir(parents=True, exist_ok=True)
    path = snap_dir / "latest.jpg"
    write_private(path, data, GROUP_READ)
    app.reporter.snapshot(data)
    h, w = frame.image.shape[:2]
    return {
        "path": str(path),
        "width": w,
        "height": h,
        "frame_ts": frame.wall_time,
        "jpeg_base64": base64.b64encode(data).decode("ascii"),
    }


def classify(app: App, args: ClassifyArgs) -> Reply:
    return {"result": app.pipeline.classify("command")}


def model(app: App, args: ModelArgs) -> Reply:
    """Load the requested model beside the running one; swap only if it loads and runs."""
    cfg = app.cfg
    source = app.pipeline.parts().source
    if args.clear:  # the file's own model, on the same source (a swap changes no source)
        pipeline = app.build(app.file_cfg, Parts(source=source))
        app.swap(pipeline, app.file_cfg)
        info = pipeline.model_info()
        log.info("model swap cleared: back to %s (%s mode)", info.name, app.file_cfg.mode)
        return {"model": info._asdict(), "mode": app.file_cfg.mode, "cleared": True}
    mode = args.mode or cfg.mode
    fields: dict[str, Any] = {"name": args.name} if args.name else {"path": args.path}
    if args.path and not Path(args.path).is_absolute():
        # Kept as an absolute path, so the swap still resolves after a restart.
        fields["path"] = str(cfg.resolved_models_dir / args.path)
    if args.sha256:
        fields["sha256"] = args.sha256
    base = cfg.model.model_dump(exclude={"name", "path", "sha256", "labels"})
    try:
        model_cfg = ModelConfig(**base, **fields)
    except ValueError as exc:
        raise EdgeError(f"invalid model request: {exc}") from None
    key = "model" if mode == "video" else "still_models"
    value: ModelConfig | list[ModelConfig] = model_cfg if mode == "video" else [model_cfg]
    new_cfg = cfg.model_copy(update={"mode": mode, key: value})
    pipeline = app.build(new_cfg, Parts(source=source), request=True)
    app.swap(pipeline, new_cfg)
    info = pipeline.model_info()
    log.info("model swapped to %s (%s mode)", info.name, mode)
    return {"model": info._asdict(), "mode": mode}


HANDLERS: dict[str, Handler[Any]] = {
    "reset": Handler(ResetArgs, reset),
    "snapshot": Handler(SnapshotArgs, snapshot),
    "classify": Handler(ClassifyArgs, classify),
    "model": Handler(ModelArgs, model),
    "teach": Handler(teaching.TeachArgs, teaching.teach),
    "forget": Handler(teaching.ForgetArgs, teaching.forget),
    "classes": Handler(teaching.ClassesArgs, teaching.classes),
}

SCHEMAS: dict[str, type[CommandArgs]] = {name: h.args for name, h in HANDLERS.items()}
"""What the publisher validates incoming commands against."""


# ---------------------------------------------------------------------------- running


def execute(app: App, cmd: Command) -> Reply:
    """Run a validated command; the reply, ok or not. Never raises for a bad request."""
    handler = HANDLERS.get(cmd.name)
    try:
        if handler is None:
            raise EdgeError(f"unknown command {cmd.name!r}")
        try:
            args = handler.args.model_validate(cmd.args)
        except ValidationError as exc:
            raise EdgeError(f"{cmd.name}: {exc.errors(include_url=False)[0]['msg']}") from None
        reply = reply_payload(True, id=cmd.id, **handler.run(app, args))
    except EdgeError as exc:
        log.info("command %s refused: %s", cmd.name, exc)
        return reply_payload(False, id=cmd.id, error=str(exc))
    except Exception as exc:  # a bug or the disk: say so, keep running
        log.exception("command %s failed", cmd.name)
        error = f"internal error: {exc.__class__.__name__}: {exc}"
        return reply_payload(False, id=cmd.id, error=error)
    log.info("command %s accepted", cmd.name)
    return reply


def _parse(name: str, payload: bytes, max_bytes: int) -> Command | Reply:
    try:
        return parse_command(name, payload, max_bytes, SCHEMAS)
    except CommandRejected as exc:
        log.info("command %s refused: %s", name, exc)
        return reply_payload(False, id=exc.id, error=str(exc))


def call(app: App, name: str, payload: bytes, max_bytes: int = 4096) -> Reply:
    """Validate a raw command (JSON bytes) as MQTT does, then run it, in the caller's thread:
    only from the daemon's own loop (pipelines are not thread-safe); other threads submit."""
    cmd = _parse(name, payload, max_bytes)
    return execute(app, cmd) if isinstance(cmd, Command) else cmd


class Inbox:
    """Commands from other threads (a web page) for the daemon's loop, which runs them between
    two pipeline steps; each caller waits on its own future for the reply."""

    def __init__(self, max_bytes: int = 4096, size: int = 64) -> None:
        self.max_bytes = max_bytes
        self._waiting: queue.Queue[tuple[Command, Future[Reply]]] = queue.Queue(size)

    def submit(self, name: str, payload: bytes) -> Future[Reply]:
        """Validated here at once; run by the loop. Thread-safe."""
        done: Future[Reply] = Future()
        cmd = _parse(name, payload, self.max_bytes)
        if not isinstance(cmd, Command):
            done.set_result(cmd)
            return done
        try:
            self._waiting.put_nowait((cmd, done))
        except queue.Full:
            done.set_result(
                reply_payload(False, id=cmd.id, error="busy: too many commands waiting")
            )
        return done

    def run_waiting(self, app: App) -> None:
        """The daemon's loop: run what was submitted since the last call."""
        while True:
            try:
                cmd, done = self._waiting.get_nowait()
            except queue.Empty:
                return
            done.set_result(execute(app, cmd))

    def close(self) -> None:
        """The daemon stops: whoever still waits gets an answer instead of a timeout."""
        while True:
            try:
                cmd, done = self._waiting.get_nowait()
            except queue.Empty:
                return
            done.set_result(reply_payload(False, id=cmd.id, error="the sensor is stopping"))
