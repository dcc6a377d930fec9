"""``edge bench``: how fast the streaming pipeline is, against a baseline and against the limit.

Three loops on the same model and clip, each classifying every frame (model rate = source
rate) so they do the same work; a short clip is looped to reach ``--frames``:

- ``floor``: the bare interpreter — a preprocessed input (decoded once, kept in memory) set
  and invoked, nothing else. No real loop can beat it.
- ``baseline``: the loop of the TensorFlow Lite Raspberry Pi video-classification example
  (tensorflow/examples, lite/examples/video_classification/raspberry_pi): read a frame,
  BGR→RGB, resize the whole frame, call the signature runner with the full dict of state
  arrays, keep the returned dict as the next state, softmax and sort every label in Python.
- ``pipeline``: what ``edge classify`` does — decode and preprocess on a background thread,
  the model stepped by tensor index with buffers allocated once.

The interpreter thread count best for the pipeline is often lower than the best for the
bare floor, because the decode thread needs a core too; it has its own option.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.commands.classify import add_model_arguments, resolve_stream_model
from edge.errors import ConfigError, SourceError
from edge.stats import peak_rss_bytes

WARMUP = 20


def default_clip() -> Path | None:
    """The sample clip shipped in the source tree, if this is a source checkout."""
    path = Path(__file__).resolve().parents[2] / "samples" / "carving_ice.mp4"
    return path if path.is_file() else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--video", help="clip to decode (default: samples/carving_ice.mp4)")
    parser.add_argument(
        "--threads", type=int, default=2, help="interpreter threads for floor and baseline"
    )
    parser.add_argument(
        "--pipeline-threads",
        type=int,
        default=None,
        help="interpreter threads for the pipeline (default: one fewer than the CPU count, "
        "at least 1, leaving a core to the decode thread)",
    )
    parser.add_argument(
        "--frames", type=int, default=1000, help="frames per loop, the clip looped (default 1000)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of the three loops; the median is reported (default 3)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--live",
        action="store_true",
        help="run the daemon (edge run) on the clip against a private Mosquitto and measure "
        "frame-to-delivery latency and memory instead",
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="--live: seconds to measure (default 60)"
    )
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="--live: seconds before measuring (default 10)"
    )


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


def _looped_capture(path: Path):
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
    for image in _looped_capture(video):
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
        x = cv2.resize(rgb, (self._width, self._height))
        x = np.float32(x[np.newaxis, np.newaxis] - 0) / 255
        outputs = self._runner(**self._states, **{self._image_name: x})
        logits = outputs.pop(self._logits_name)
        self._states = outputs
        e = np.exp(np.squeeze(logits, axis=0))
        probs = e / np.sum(e)
        order = sorted(range(len(probs)), key=lambda k: probs[k], reverse=True)
        ranked = [(self._labels[k], probs[k]) for k in order]
        return ranked[: self._top]


def bench_baseline(
    model: Path, labels: list[str], video: Path, threads: int, frames: int
) -> dict[str, Any]:
    clf = ExampleLoopClassifier(model, labels, threads)
    timer = _Timer(frames)
    for bgr in _looped_capture(video):
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
    from edge.sources.video_file import VideoFile

    clf = StreamClassifier(model, labels, threads=threads, reset_gap_s=math.inf)
    source = VideoFile(video)
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


# ----------------------------------------------------------------------------------- run


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rates = sorted(r["fps"] for r in rounds)
    mid = len(rates) // 2
    median = rates[mid] if len(rates) % 2 else (rates[mid - 1] + rates[mid]) / 2
    return {**rounds[0], "fps": round(median, 1), "rounds": [r["fps"] for r in rounds]}


def run(args: argparse.Namespace) -> int:
    from edge.classifiers.stream import StreamClassifier
    from edge.runtime import backend_name
    from edge.sources.video_file import VideoFile

    if args.threads < 1:
        raise ConfigError(f"--threads: must be at least 1, not {args.threads}")
    if args.frames < 1:
        raise ConfigError(f"--frames: must be at least 1, not {args.frames}")
    if args.rounds < 1:
        raise ConfigError(f"--rounds: must be at least 1, not {args.rounds}")
    pipeline_threads = args.pipeline_threads or max(1, (os.cpu_count() or 2) - 1)
    if pipeline_threads < 1:
        raise ConfigError(f"--pipeline-threads: must be at least 1, not {pipeline_threads}")
    if args.video:
        video = Path(args.video)
    else:
        clip = default_clip()
        if clip is None:
            raise ConfigError("--video: no sample clip in this installation; give a video file")
        video = clip
    source = VideoFile(video)  # validates the clip before minutes of work
    if args.live:
        from edge.livebench import format_live, judge, run_live

        if args.duration <= 0 or args.warmup < 0:
            raise ConfigError("--duration must be positive and --warmup not negative")
        result = judge(
            run_live(
                model=args.model,
                labels=args.labels,
                video=video.resolve(),
                duration_s=args.duration,
                warmup_s=args.warmup,
            )
        )
        print(json.dumps(result) if args.json else format_live(result))
        return 0
    choice = resolve_stream_model(args.model, args.labels)
    probe = StreamClassifier(choice.path, labels_path=choice.labels, threads=1)
    labels = probe.labels
    sha = probe.sha256
    del probe

    # Interleaved rounds, median per loop: on a shared machine the load changes under a
    # run, and interleaving spreads it over all three loops alike.
    runs: dict[str, list[dict[str, Any]]] = {"floor": [], "baseline": [], "pipeline": []}
    for _ in range(args.rounds):
        runs["floor"].append(bench_floor(choice.path, video, args.threads, args.frames))
        runs["baseline"].append(
            bench_baseline(choice.path, labels, video, args.threads, args.frames)
        )
        runs["pipeline"].append(
            bench_pipeline(choice.path, labels, video, pipeline_threads, args.frames)
        )
    floor, baseline, pipeline = (_median(runs[k]) for k in ("floor", "baseline", "pipeline"))

    def ratio(a: float, b: float) -> float:
        return round(a / b, 3) if b > 0 else 0.0

    report = {
        "model": choice.name,
        "model_path": str(choice.path),
        "sha256": sha,
        "runtime": backend_name(),
        "video": str(video),
        "video_frames": source.frame_count,
        "video_fps": source.fps,
        "frames": args.frames,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "floor": floor,
        "baseline": baseline,
        "pipeline": pipeline,
        "ratios": {
            "pipeline_baseline": ratio(pipeline["fps"], baseline["fps"]),
            "pipeline_floor": ratio(pipeline["fps"], floor["fps"]),
        },
        "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
    }
    out = sys.stdout
    if args.json:
        out.write(json.dumps(report) + "\n")
    else:
        size = f"{source.width}x{source.height}"
        out.write(
            f"model    {report['model']} ({report['runtime']}, sha256 {sha[:12]})\n"
            f"video    {video.name} {size}, {source.fps or 0:.2f} fps, "
            f"{source.frame_count} frames, looped to {args.frames} per run, "
            f"median of {args.rounds} interleaved rounds\n"
            f"floor    {floor['fps']:8.1f} frames/s  threads {floor['threads']}  "
            "(invoke only, input in memory)\n"
            f"baseline {baseline['fps']:8.1f} frames/s  threads {baseline['threads']}  "
            "(TF Lite example loop, with decode)\n"
            f"pipeline {pipeline['fps']:8.1f} frames/s  threads {pipeline['threads']}  "
            "(edge classify loop, with decode)\n"
            f"pipeline/baseline {report['ratios']['pipeline_baseline']:.2f}x   "
            f"pipeline/floor {report['ratios']['pipeline_floor']:.2f}x   "
            f"peak RSS {report['peak_rss_mb']:.1f} MB   load {report['load']}\n"
        )
    out.flush()
    return 0
