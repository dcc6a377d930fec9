"""Teaching over MQTT: ``cmd/teach``, ``cmd/forget`` and ``cmd/classes``.

Each pipeline carries a ``LiveTeacher`` for its model (built here from the config); these
handlers only validate and hand over. Taught examples go to the store at once, so they
take effect on the next step and survive restarts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from edge.errors import EdgeError
from edge.mqtt.payloads import CommandArgs
from edge.teach.live import MAX_SECONDS, LiveTeacher

if TYPE_CHECKING:
    from edge.app.commands import App, Reply
    from edge.app.reporter import Reporter
    from edge.classifiers.base import Classifier
    from edge.config import Config

DEFAULT_SECONDS = 5.0


class TeachArgs(CommandArgs):
    """Video: the next ``seconds`` of frames; still: a photo now, or a past one (``result``)."""

    label: str = Field(max_length=256)
    seconds: float | None = Field(None, gt=0, le=MAX_SECONDS)
    result: int | None = Field(None, ge=1)


class ForgetArgs(CommandArgs):
    """Remove a taught class of the running model."""

    label: str = Field(max_length=256)


class ClassesArgs(CommandArgs):
    """The running model's taught classes and their example counts (``thumbnails``: with the
    newest thumbnail of each, for the live page)."""

    thumbnails: bool = False


def make_teacher(cfg: Config, classifier: Classifier, reporter: Reporter) -> LiveTeacher:
    t = cfg.teach

    def taught(body: dict[str, Any]) -> None:
        reporter.event("taught", **body)

    return LiveTeacher(
        cfg.teach_store,
        classifier,
        learner=t.learner,
        k=t.k,
        threshold=t.threshold,
        publish=t.publish,
        top=cfg.smoother.top_k,
        on_taught=taught,
    )


def teach(app: App, args: TeachArgs) -> Reply:
    pipeline = app.pipeline
    teacher = pipeline.teacher
    if pipeline.mode == "video":
        if args.result is not None:
            raise EdgeError("result: re-labelling a past photo works in still mode")
        if not pipeline.alive():
            raise EdgeError(
                f"the camera is stalled (no frame for {app.cfg.source.frame_timeout_s:g} s): "
                "nothing to teach from"
            )
        return teacher.start_session(args.label, args.seconds or DEFAULT_SECONDS)
    if args.seconds is not None:
        raise EdgeError("seconds: teaching from live video works in video mode")
    if args.result is not None:
        reply = _relabel(app, teacher, args.label, args.result)
    else:
        message = pipeline.classify("teach")  # the photo is published and kept like any other
        image = message["image"]["path"]
        reply = _from_result(teacher, args.label, message["history_id"], image)
    _say(app, teacher)
    return reply


def _say(app: App, teacher: LiveTeacher) -> None:
    """Still mode has no step to carry the change: state says it now."""
    app.reporter.taught = teacher.summary()
    app.reporter.state(app.reporter.clock())


def _relabel(app: App, teacher: LiveTeacher, label: str, result: int) -> Reply:
    from edge.history import History

    with History(app.cfg.state_dir / "history.sqlite") as history:
        entry = history.get(result)
    if entry is None:
        raise EdgeError(f"result: no photo {result} in the history")
    kept = entry.image_path if entry.image_deleted_ts is None else None
    return _from_result(teacher, label, result, kept)


def _from_result(teacher: LiveTeacher, label: str, result: int, path: str | None) -> Reply:
    from edge.classifiers.image import read_image
    from edge.teach.embedders import thumbnail

    if path is None or not Path(path).is_file():
        raise EdgeError(f"photo {result} was not kept (see still.keep_images): nothing to teach")
    bgr = read_image(path)
    reply = teacher.add(label, [teacher.embed_image(bgr)], f"history:{result}", [thumbnail(bgr)])
    return {**reply, "result": result}


def forget(app: App, args: ForgetArgs) -> Reply:
    reply = app.pipeline.teacher.forget(args.label)
    if app.pipeline.mode == "still":
        _say(app, app.pipeline.teacher)
    return reply


def classes(app: App, args: ClassesArgs) -> Reply:
    return app.pipeline.teacher.describe(thumbnails=args.thumbnails)
