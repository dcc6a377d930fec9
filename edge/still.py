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

from edge.classifiers.image import read_image_bytes
from edge.errors import EdgeError, SourceError
from edge.history import History, ModelResult, iso_utc

log = logging.getLogger(__name__)

IMAGES_DIRNAME = "images"
JPEG_QUALITY = 90


class StillStation:
    """Classify one image with every model and publish one message for it.

    ``classifiers`` are ``ImageClassifier``-like objects (``name``, ``sha256``,
    ``classify(bgr)``, ``decide(top)``). ``still`` is a ``StillConfig`` (or anything with
    ``keep_images`` and ``keep_days``).
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
        self._lock = threading.Lock()  # one image at a time: triggers may race
        # Extra fields for a model's result (the taught classes' answer), or None.
        self.taught: Callable[[Any, Any], dict[str, Any] | None] | None = None

    # ------------------------------------------------------------------ entry points
    def classify_path(self, path: str | Path, source: str = "file") -> dict[str, Any]:
        """Classify an image file. Files under ``state_dir/images`` count as the device's own."""
        path = Path(path)
        data, bgr = read_image_bytes(path)
        owned = self._is_owned(path)
        return self._run(bgr, data, path, source, owned)

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
        a crash re-offers it; the rest of a large batch waits for the next poll, so the
        caller's loop (signals, watchdog, commands) keeps turning. A bad file is logged
        and not offered again.
        """
        out = []
        deadline = time.monotonic() + budget_s
        for path in watcher.poll():
            if time.monotonic() > deadline:
                break
            try:
                out.append(self.classify_path(path, source="watch"))
            except EdgeError as exc:
                log.warning("%s", exc)
            watcher.done(path)
        return out

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
        self, bgr: np.ndarray, data: bytes, path: Path | None, source: str, owned: bool
    ) -> dict[str, Any]:
        with self._lock:
            ts = self.clock()
            sha = hashlib.sha256(data).hexdigest()
            h, w = bgr.shape[:2]
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
