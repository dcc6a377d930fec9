"""``edge classify VIDEO``: run a streaming model over a video file, offline.

Decoding and preprocessing run on a background thread while the model steps on the main
thread, so the command is about as fast as the slower of the two. Frames are chosen at the
model's rate from the file's timestamps; a rate at or above the file's classifies every
frame.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, ModelError

log = logging.getLogger(__name__)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="PATH_OR_NAME", help="a .tflite file or a catalogue name"
    )
    parser.add_argument(
        "--labels", metavar="FILE", help="label file (default: the catalogue's or one beside it)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="video file (mp4, avi, ...)")
    add_model_arguments(parser)
    parser.add_argument(
        "--fps",
        type=float,
        default=5.0,
        help="model steps per second of video (default 5); at or above the file's rate, "
        "every frame is classified",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="interpreter threads (default: one fewer than the CPU count, at least 1, leaving "
        "a core to decoding)",
    )
    parser.add_argument("--top", type=int, default=5, help="labels to show (default 5)")
    parser.add_argument(
        "--horizon",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="memory horizon; 0 = remember the whole clip (default)",
    )
    parser.add_argument(
        "--rotate", type=int, choices=(0, 90, 180, 270), default=0, help="rotate clockwise"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON line per model step (t, frame: the source frame's index, step, top), "
        "then a summary line",
    )
    parser.add_argument("--plot", metavar="OUT.png", help="save the top labels over time")
    parser.add_argument(
        "--taught", action="store_true", help="report the classes taught to this model instead"
    )
    parser.add_argument("--store", metavar="FILE", help="the taught examples (with --taught)")


def check_numbers(args: argparse.Namespace) -> None:
    if not (args.fps > 0 and math.isfinite(args.fps)):
        raise ConfigError(f"--fps: must be a positive number, not {args.fps}")
    if args.threads < 1:
        raise ConfigError(f"--threads: must be at least 1, not {args.threads}")
    if getattr(args, "top", 1) < 1:
        raise ConfigError(f"--top: must be at least 1, not {args.top}")
    horizon = getattr(args, "horizon", 0.0)
    if not (horizon >= 0 and math.isfinite(horizon)):
        raise ConfigError(f"--horizon: must be 0 or a positive number of seconds, not {horizon}")


def run(args: argparse.Namespace) -> int:
    from edge import cores
    from edge.catalogue import DEFAULT_STREAM_MODEL
    from edge.imagefile import IMAGE_SUFFIXES
    from edge.loader import load_stream
    from edge.pacing import Pacer, takes_every_frame
    from edge.sources.orientation import Orientation
    from edge.sources.video_file import VideoFile

    if args.threads is None:
        args.threads = cores.model_threads()
    check_numbers(args)
    plot_out = Path(args.plot) if args.plot else None
    if plot_out is not None:
        from edge import plot

        plot.require_matplotlib()
    if Path(args.video).suffix.lower() in IMAGE_SUFFIXES:
        raise ConfigError(
            f"{args.video}: is an image, not a video; classify photos with: edge image {args.video}"
        )
    video = VideoFile(
        args.video,
        Orientation(rotate=args.rotate),
        decode_threads=cores.decode_threads(args.threads),
    )
    clf = load_stream(
        args.model or DEFAULT_STREAM_MODEL,
        needed_by="edge classify",
        hint="use edge image for photos",
        labels=args.labels,
        threads=args.threads,
        top_k=args.top,
        horizon_s=args.horizon,
        fps=args.fps,
        reset_gap_s=math.inf,  # a file is one continuous stream, whatever its timestamps
        numbered=True,
    )
    taught = None
    if args.taught:
        from edge.commands.teach import taught_for

        taught = taught_for(clf, args)

    every = takes_every_frame(args.fps, video.fps)
    select = None if every else Pacer(args.fps).take
    expected = None
    if video.frame_count:
        ratio = 1.0 if every or not video.fps else min(1.0, args.fps / video.fps)
        expected = max(1, math.ceil(video.frame_count * ratio))

    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=expected, unit="step", file=sys.stderr, leave=False)

    out = sys.stdout
    times: list[float] = []
    history = []
    smoothed: list[str | None] = []  # what the daemon would have published, for the plot
    if plot_out is not None:
        from edge.config import SmootherConfig
        from edge.smoothing import Smoother

        smoother = Smoother(clf.labels if taught is None else taught.classes, SmootherConfig())
    last = None
    steps = 0
    started = time.perf_counter()
    frames = video.prepared(
        clf.preprocess_into, clf.signature.image_shape, clf.signature.image_dtype, select
    )
    try:
        for item in frames:
            pred = clf.run(item.data, item.timestamp, item.epoch)
            if taught is not None:
                pred = taught.step(pred)
            steps += 1
            last = pred
            if args.json:
                line: dict[str, Any] = {
                    "t": round(item.timestamp, 3),
                    "frame": item.seq,
                    "step": steps,
                    "top": [s.as_dict() for s in pred.top],
                }
                if taught is not None:
                    line["label"] = pred.extra.get("label")
                out.write(json.dumps(line) + "\n")
            if plot_out is not None:
                times.append(item.timestamp)
                history.append(pred.probs)
                smoothed.append(smoother.update(pred.probs, item.timestamp).label)
            if bar is not None:
                bar.update(1)
    finally:
        frames.close()
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - started
    rate = steps / wall if wall > 0 else 0.0
    if last is None:  # the source raises on an empty file; this is a belt for odd containers
        raise ModelError(f"{args.video}: no frame was classified")

    if plot_out is not None:
        from edge import plot

        plot.plot_timeline(
            times,
            history,
            clf.labels if taught is None else taught.classes,
            plot_out,
            smoothed=smoothed,
            horizon_s=args.horizon,
            title=f"{Path(args.video).name} - {clf.name}",
        )

    if args.json:
        out.write(
            json.dumps(
                {
                    "final": _final(last, taught),
                    "steps": steps,
                    "steps_per_s": round(rate, 2),
                    "labels": str(clf.labels_path) if clf.labels_path else None,
                }
            )
            + "\n"
        )
    else:
        width = max(len(s.label) for s in last.top)
        labels = clf.labels_path.name if clf.labels_path else "none: class numbers"
        out.write(
            f"{Path(args.video).name}: {steps} steps of {clf.name} "
            f"({rate:.1f} steps/s; labels {labels})\n"
        )
        for i, s in enumerate(last.top, 1):
            out.write(f"{i:>3}. {s.label:<{width}}  {s.score:.3f}\n")
        if taught is not None:
            out.write(f"taught class: {last.extra.get('label') or 'none of them'}\n")
    out.flush()
    return 0


def _final(last: Any, taught: Any) -> dict[str, Any]:
    final: dict[str, Any] = {"top": [s.as_dict() for s in last.top]}
    if taught is not None:
        final["label"] = last.extra.get("label")
    return final
