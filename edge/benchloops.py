"""The loops ``edge bench`` times, each classifying every frame of a looped clip.

- ``floor``: the bare interpreter: a preprocessed input (decoded once, kept in memory) set
  and invoked, nothing else. No real loop can beat it.
- ``baseline``: the loop of the TensorFlow Lite Raspberry Pi video-classification example
  (tensorflow/examples, lite/examples/video_classification/raspberry_pi): read a frame,
  BGR→RGB, resize the whole frame, call the signature runner with the full dict of state
  arrays, keep the returned dict as the next state, softmax and sort every label in Python.
- ``lean``: the same loop with the example's one obvious waste removed: the top labels by
  numpy's partial sort instead of a Python sort over every label. What a careful
  straightforward port would run.
- ``pipeline``: what ``edge classify`` does: decode and preprocess on a background thread,
  the model stepped by tensor index with buffers allocated once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.classifiers.base import top_k
from edge.errors import SourceError

WARMUP = 20


class _Timer:
    """Counts frames; the clock starts after the warm-up frames."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.t0 = 0.0
        self.t1 = 0.0

    def tick(self) -> bool:
        """One frame done; False when the measured frames are all done."""
        self.done += 1
        if self.done == WARMUP:
            self.t0 = time.perf_counter()
        if self.done >= WARMUP + self.total:
            self.t1 = time.perf_counter()
            return False
        return True

    @property
    def fps(self) -> float:
        return self.total / (self.t1 - self.t0) if self.t1 > self.t0 else 0.0


def looped_capture(path: Path) -> Iterator[np.ndarray]:
    """Frames of ``path`` for ever, re-opening at the end (as a looping camera would)."""
    while True:
        cap = cv2.VideoCapture(str(path))
        got = False
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            got = True
            yield frame
        cap.release()
        if not got:
            raise SourceError(f"{path}: video has no readable frames")


# --------------------------------------------------------------------------------- floor


def bench_floor(model: Path, video: Path, threads: int, frames: int) -> dict[str, Any]:
    from edge.classifiers.stream import StreamClassifier

    clf = StreamClassifier(model, threads=threads)
    interp = clf.interpreter
    # Decoded and preprocessed once; a few dozen distinct frames is plenty for the cache.
    inputs = []
    for image in looped_capture(video):
        inputs.append(clf.preprocess_into(image, clf.new_input()))
        if len(inputs) == 32:
            break
    index = clf.signature.image_index
    set_tensor, invoke = interp.set_tensor, interp.invoke
    timer = _Timer(frames)
    i = 0
    n = len(inputs)
    while True:
        set_tensor(index, inputs[i % n])
        invoke()
        i += 1
        if not timer.tick():
            break
    return {"fps": round(timer.fps, 1), "threads": threads, "frames": frames}


# ------------------------------------------------------------------------------ baseline


class ExampleLoopClassifier:
    """The TF Lite Raspberry Pi example's classifier, with its per-frame costs kept.

    Only the tensor names are found instead of assumed ('image'/'logits'), so the
    baseline runs on any export the pipeline runs on.
    """

    def __init__(self, model: Path, labels: list[str], threads: int, top: int = 5) -> None:
        from edge.classifiers.stream import inspect_signature
        from edge.runtime import open_interpreter

        interp = open_interpreter(model, threads)
        sig = inspect_signature(interp, model)
        runner = interp.get_signature_runner(sig.key)
        details = runner.get_input_details()
        self._image_name = next(n for n, d in details.items() if d["index"] == sig.image_index)
        outputs = runner.get_output_details()
        self._logits_name = next(n for n in outputs if n not in details)
        self._runner = runner
        self._details = details
        self._height, self._width = sig.image_shape[2], sig.image_shape[3]
        self._labels = labels
        self._top = top
        self._states: dict[str, np.ndarray] = {}
        self._interp = interp  # the runner needs it alive
        self.clear()

    def clear(self) -> None:
        self._states = {
            name: np.zeros(d["shape"], dtype=d["dtype"])
            for name, d in self._details.items()
            if name != self._image_name
        }

    def classify(self, rgb: np.ndarray) -> list[tuple[str, float]]:
        small = cv2.resize(rgb, (self._width, self._height))
        x = np.float32(small[np.newaxis, np.newaxis] - 0) / 255
        outputs = self._runner(**self._states, **{self._image_name: x})
        logits = outputs.pop(self._logits_name)
        self._states = outputs
        e = np.exp(np.squeeze(logits, axis=0))
        return self._rank(e / np.sum(e))

    def _rank(self, probs: np.ndarray) -> list[tuple[str, float]]:
        order = sorted(range(len(probs)), key=lambda k: probs[k], reverse=True)
        ranked = [(self._labels[k], probs[k]) for k in order]
        return ranked[: self._top]


class LeanLoopClassifier(ExampleLoopClassifier):
    """The example's loop with the top labels taken by numpy (partial sort), not Python."""

    def _rank(self, probs: np.ndarray) -> list[tuple[str, float]]:
        return [(s.label, s.score) for s in top_k(probs, self._labels, self._top)]


def bench_baseline(
    model: Path, labels: list[str], video: Path, threads: int, frames: int, lean: bool = False
) -> dict[str, Any]:
    """The TF example's loop (``lean``: without its Python sort)."""
    clf = (LeanLoopClassifier if lean else ExampleLoopClassifier)(model, labels, threads)
    timer = _Timer(frames)
    for bgr in looped_capture(video):
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        clf.classify(rgb)
        if not timer.tick():
            break
    return {"fps": round(timer.fps, 1), "threads": threads, "frames": frames}


# ------------------------------------------------------------------------------ pipeline


def bench_pipeline(
    model: Path, labels: list[str], video: Path, threads: int, frames: int
) -> dict[str, Any]:
    from edge.classifiers.stream import StreamClassifier
    from edge.cores import decode_threads
    from edge.sources.video_file import VideoFile

    clf = StreamClassifier(model, labels, threads=threads, reset_gap_s=math.inf)
    source = VideoFile(video, decode_threads=decode_threads(threads))
    clip = source.frame_count or 1
    loops = math.ceil((frames + WARMUP) / clip) + 1
    timer = _Timer(frames)
    items = source.prepared(
        clf.preprocess_into,
        clf.signature.image_shape,
        clf.signature.image_dtype,
        None,
        loops=loops,
    )
    try:
        for item in items:
            clf.run(item.data, item.timestamp, item.epoch)
            if not timer.tick():
                break
    finally:
        items.close()
    if timer.t1 == 0.0:
        raise SourceError(f"{video}: the clip ran out before {frames} frames were classified")
    return {"fps": round(timer.fps, 1), "threads": threads, "frames": frames}


# ------------------------------------------------------------------- end to end, lean


def lean_classify(model: Path, labels: Path, video: Path, threads: int) -> int:
    """The lean loop over every frame of ``video`` once, like ``edge classify --fps 1000``:
    what scripts/bench-classify.sh times against it, start-up included."""
    from edge.labels import load_labels

    clf = LeanLoopClassifier(model, load_labels(labels), threads)
    cap = cv2.VideoCapture(str(video))
    ranked: list[tuple[str, float]] = []
    steps = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        ranked = clf.classify(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        steps += 1
    cap.release()
    if not ranked:
        raise SourceError(f"{video}: video has no readable frames")
    print(f"{video.name}: {steps} frames classified by the lean loop")
    for i, (label, score) in enumerate(ranked, 1):
        print(f"{i:>3}. {label}  {score:.3f}")
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the lean loop over a clip, end to end")
    parser.add_argument("video", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    raise SystemExit(lean_classify(a.model, a.labels, a.video, a.threads))
