"""Still mode: one photo, every still model, one result message, one history row.

The daemon owns the triggers (schedule, ``cmd/classify``, watched folder) and the MQTT
publisher; this module only needs the classifiers, a ``History`` and a ``publish``
callable, so it can be tested and reused without a broker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import EdgeError, SourceError
from edge.history import History, ModelResult, iso_utc
from edge.imagefile import ImageLimits, load_image

log = logging.getLogger(__name__)

IMAGES_DIRNAME = "images"
JPEG_QUALITY = 90
MAX_ATTEMPTS = 2  # a watched file that stopped the process this often is refused


class StillStation:
    """Classify one image with every model and publish one message for it.

    ``classifiers`` are ``ImageClassifier``-like objects (``name``, ``sha256``,
    ``classify(bgr)``, ``decide(top)``). ``still`` is a ``StillConfig`` (or anything with
    ``keep_images`` and ``keep_days``). ``report`` receives an ``events`` payload for each
    refused file.
    """

    def __init__(
        self,
        classifiers: Sequence[Any],
        history: History,
        publish: Callable[[dict[str, Any]], object],
        *,
        state_dir: str | Path,
        still: Any = None,
        top_k: int | None = None,
        clock: Callable[[], float] = time.time,
        report: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        if not classifiers:
            raise EdgeError("still mode needs at least one image model")
        self.classifiers = list(classifiers)
        self.history = history
        self.publish = publish
        self.state_dir = Path(state_dir)
        self.images_dir = self.state_dir / IMAGES_DIRNAME
        self.keep_images = getattr(still, "keep_images", "all")
        self.keep_days = float(getattr(still, "keep_days", 30.0))
        self.top_k = top_k
        self.clock = clock
        self.report = report
        self.limits = ImageLimits.of(
            float(getattr(still, "max_image_mb", 50.0)),
            float(getattr(still, "max_image_megapixels", 50.0)),
        )
        # Decoded no larger than the largest model input needs (a reduced JPEG decode).
        sides = [max(getattr(c, "input_size", (0, 0))) for c in self.classifiers]
        self.min_side = max(sides) if all(sides) else None
        self._lock = threading.Lock()  # one image at a time: triggers may race
        # Extra fields for a model's result (the taught classes' answer), or None.
        self.taught: Callable[[Any, Any], dict[str, Any] | None] | None = None

    # ------------------------------------------------------------------ entry points
    def classify_path(self, path: str | Path, source: str = "file") -> dict[str, Any]:
        """Classify an image file. Files under ``state_dir/images`` count as the device's own."""
        path = Path(path)
        image = load_image(path, self.limits, min_side=self.min_side)
        owned = self._is_owned(path)
        size = (image.width, image.height)
        return self._run(image.bgr, image.data, path, source, owned, size)

    def classify_image(self, bgr: np.ndarray, source: str = "camera") -> dict[str, Any]:
        """Classify a captured BGR image, saving it as JPEG under ``state_dir/images``."""
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise SourceError("cannot encode the captured image as JPEG")
        data = buf.tobytes()
        path = None
        if self.keep_images != "none":
            path = self._save(data)
        return self._run(bgr, data, path, source, owned=True)

    def new_image_path(self, suffix: str = ".jpg") -> Path:
        """Where a camera should write its next photo (so the file is kept as it is)."""
        self.images_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        for n in range(1000):
            candidate = self.images_dir / f"{stamp}Z-{n:03d}{suffix}"
            if not candidate.exists():
                return candidate
        raise SourceError(f"{self.images_dir}: cannot find a free file name")

    def poll_watch(self, watcher: Any, budget_s: float = 2.0) -> list[dict[str, Any]]:
        """Classify the files the watcher reports ready, for at most ``budget_s``.

        A file counts as done only once its result is in the history and the outbox, so
        a crash re-offers it, but only ``MAX_ATTEMPTS`` times; the rest of a large batch
        waits for the next poll, so the caller's loop (signals, watchdog, commands) keeps
        turning. A file that is refused or fails is recorded, reported and moved to
        ``rejected/``, and the queue goes on.
        """
        out = []
        deadline = time.monotonic() + budget_s
        for path in watcher.poll():
            if time.monotonic() > deadline:
                break
            tries = watcher.attempts(path)
            if tries >= MAX_ATTEMPTS:
                self.reject(
                    path, f"{path}: the daemon stopped {tries} times while classifying it", watcher
                )
                watcher.done(path)
                continue
            watcher.begin(path)
            try:
                out.append(self.classify_path(path, source="watch"))
            except EdgeError as exc:
                self.reject(path, str(exc), watcher)
            watcher.done(path)
        return out

    def reject(self, path: Path, error: str, watcher: Any = None, source: str = "watch") -> None:
        """Record a file that cannot be classified: history row, event, ``rejected/``."""
        log.warning("refused %s", error)
        moved = watcher.reject(path) if watcher is not None else None
        history_id = None
        try:
            history_id = self.history.record(
                ts=self.clock(),
                image_path=moved or path,
                image_sha256="",
                width=None,
                height=None,
                source=source,
                mode="file",
                owned=False,
                results=[],
                error=error,
            )
        except Exception as exc:  # the history's own trouble must not stop the queue
            log.warning("could not record the refused file in the history: %s", exc)
        if self.report is not None:
            event = {
                "type": "rejected",
                "path": str(path),
                "moved_to": None if moved is None else str(moved),
                "error": error,
                "history_id": history_id,
            }
            try:
                self.report(event)
            except Exception as exc:
                log.warning("could not report the refused file: %s", exc)

    def apply_retention(self, now: float | None = None) -> int:
        try:
            return self.history.prune_images(self.keep_images, self.keep_days, now=now)
        except Exception as exc:  # retention must never stop classification
            log.warning("image retention failed: %s", exc)
            return 0

    # ------------------------------------------------------------------ internals
    def _is_owned(self, path: Path) -> bool:
        try:
            return path.resolve().parent.is_relative_to(self.images_dir.resolve())
        except OSError:
            return False

    def _save(self, data: bytes) -> Path:
        path = self.new_image_path()
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SourceError(f"{path}: cannot save image: {exc.strerror or exc}") from None
        return path

    def _run(
        self,
        bgr: np.ndarray,
        data: bytes,
        path: Path | None,
        source: str,
        owned: bool,
        size: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            ts = self.clock()
            sha = hashlib.sha256(data).hexdigest()
            w, h = size or (bgr.shape[1], bgr.shape[0])
            results = []
            records = []
            for clf in self.classifiers:
                pred = clf.classify(bgr) if self.top_k is None else clf.classify(bgr, self.top_k)
                top = [s.as_dict() for s in pred.top]
                label = pred.extra.get("label") if "label" in pred.extra else clf.decide(pred.top)
                results.append(
                    {
                        "model": {"name": clf.name, "sha256": clf.sha256},
                        "top": top,
                        "label": label,
                        "threshold": getattr(clf, "threshold", None),
                        "activation": pred.extra.get("activation"),
                        "inference_ms": round(pred.inference_ms, 3),
                    }
                )
                extra = self.taught(clf, pred) if self.taught is not None else None
                if extra:
                    results[-1]["taught"] = extra
                records.append(ModelResult(clf.name, clf.sha256, label, top))
            kept_path = path
            if owned and self.keep_images == "none" and path is not None:
                kept_path = None
            mode = "camera" if owned else "file"
            seq = self.history.record(
                ts=ts,
                image_path=path,
                image_sha256=sha,
                width=w,
                height=h,
                source=source,
                mode=mode,
                owned=owned,
                results=records,
            )
            message = {
                "ts": round(ts, 3),
                "time": iso_utc(ts),
                "history_id": seq,
                "image": {
                    "path": None if kept_path is None else str(kept_path),
                    "sha256": sha,
                    "width": w,
                    "height": h,
                    "source": source,
                },
                "results": results,
            }
        self.apply_retention(now=ts)
        try:
            self.publish(message)
        except Exception as exc:  # the history row is kept; the publisher logs its own state
            log.warning("could not hand the still result to the publisher: %s", exc)
        return message
