"""``edge bench``: how fast the streaming pipeline is, against two baselines and the limit.

Four loops (edge/benchloops.py) on the same model and clip, each classifying every frame
(model rate = source rate) so they do the same work, a short clip looped to ``--frames``,
interleaved round by round so the load of a shared machine hits them alike: ``floor`` (the
bare interpreter), ``baseline`` (the TF Lite example's loop), ``lean`` (that loop without
its Python sort) and ``pipeline`` (what ``edge classify`` does). The run ends by judging
its own targets. ``--live`` measures the daemon instead (edge/livebench.py); ``--resize``
compares resize methods on clips (edge/resizebench.py).

The interpreter thread count best for the pipeline is often lower than the best for the
bare floor, because the decode thread needs a core too; it has its own option.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import cores
from edge.commands.classify import add_model_arguments
from edge.errors import ConfigError
from edge.stats import peak_rss_bytes

if TYPE_CHECKING:
    from edge.classifiers.stream import StreamClassifier

LOOPS = ("floor", "baseline", "lean", "pipeline")
# The floor again at the pipeline's thread count, when that differs: it tells how much of the
# gap to ``floor`` is the interpreter thread the pipeline leaves to decoding.
SAME_THREADS_FLOOR = "floor_pipeline_threads"
# (name, numerator, denominator, at least): what the pipeline must reach in one run.
TARGETS = (
    ("pipeline_floor", "pipeline", "floor", 0.85),
    ("pipeline_lean", "pipeline", "lean", 1.5),
)


def default_clip() -> Path | None:
    """The sample clip shipped in the source tree, if this is a source checkout."""
    path = Path(__file__).resolve().parents[2] / "samples" / "carving_ice.mp4"
    return path if path.is_file() else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--video", help="clip to decode (default: samples/carving_ice.mp4)")
    parser.add_argument(
        "--threads", type=int, default=2, help="interpreter threads for floor, baseline and lean"
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
        default=5,
        help="interleaved rounds of the four loops; the median is reported (default 5)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--live",
        action="store_true",
        help="run the daemon (edge run) on the clip against a private Mosquitto and measure "
        "latency, CPU per model step and memory instead",
    )
    parser.add_argument(
        "--page",
        action="store_true",
        help="--live: with the live page open (web enabled, a client on its event stream), "
        "to compare with a run without it",
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="--live: seconds to measure (default 60)"
    )
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="--live: seconds before measuring (default 10)"
    )
    parser.add_argument(
        "--resize",
        nargs="*",
        metavar="CLIP",
        help="compare the resize methods (speed, top-1 and scores) on these clips instead "
        "(default: the sample clip)",
    )


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rates = sorted(r["fps"] for r in rounds)
    mid = len(rates) // 2
    median = rates[mid] if len(rates) % 2 else (rates[mid - 1] + rates[mid]) / 2
    return {**rounds[0], "fps": round(median, 1), "rounds": [r["fps"] for r in rounds]}


def _video(args: argparse.Namespace) -> Path:
    if args.video:
        return Path(args.video)
    clip = default_clip()
    if clip is None:
        raise ConfigError("--video: no sample clip in this installation; give a video file")
    return clip


def _check(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise ConfigError(f"--threads: must be at least 1, not {args.threads}")
    if args.frames < 1:
        raise ConfigError(f"--frames: must be at least 1, not {args.frames}")
    if args.rounds < 1:
        raise ConfigError(f"--rounds: must be at least 1, not {args.rounds}")
    pipeline_threads = args.pipeline_threads or cores.model_threads()
    if pipeline_threads < 1:
        raise ConfigError(f"--pipeline-threads: must be at least 1, not {pipeline_threads}")
    return pipeline_threads


def _load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def run(args: argparse.Namespace) -> int:
    from edge.sources.video_file import VideoFile

    pipeline_threads = _check(args)
    if args.resize is not None:
        return _run_resize(args)
    video = _video(args)
    source = VideoFile(video)  # validates the clip before minutes of work
    if args.live:
        return _run_live(args, video)
    from edge import benchloops
    from edge.runtime import backend_name

    probe = _model(args)
    model, name, labels, sha = probe.path, probe.name, probe.labels, probe.sha256
    del probe
    load_before = _load()
    floors = {"floor": args.threads}
    if pipeline_threads != args.threads:
        floors[SAME_THREADS_FLOOR] = pipeline_threads
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in (*LOOPS, *floors)}
    for _ in range(args.rounds):
        for key, threads in floors.items():
            runs[key].append(benchloops.bench_floor(model, video, threads, args.frames))
        for lean in (False, True):
            runs["lean" if lean else "baseline"].append(
                benchloops.bench_baseline(
                    model, labels, video, args.threads, args.frames, lean=lean
                )
            )
        runs["pipeline"].append(
            benchloops.bench_pipeline(model, labels, video, pipeline_threads, args.frames)
        )
    loops = {k: _median(v) for k, v in runs.items()}

    def ratio(a: str, b: str) -> float:
        fa, fb = loops[a]["fps"], loops[b]["fps"]
        return round(fa / fb, 3) if fb > 0 else 0.0

    ratios = {
        "pipeline_baseline": ratio("pipeline", "baseline"),
        "lean_baseline": ratio("lean", "baseline"),
        **{name: ratio(a, b) for name, a, b, _ in TARGETS},
    }
    if SAME_THREADS_FLOOR in loops:
        ratios["pipeline_floor_same_threads"] = ratio("pipeline", SAME_THREADS_FLOOR)
    report = {
        "model": name,
        "model_path": str(model),
        "sha256": sha,
        "runtime": backend_name(),
        "video": str(video),
        "video_frames": source.frame_count,
        "video_fps": source.fps,
        "frames": args.frames,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load": _load(),
        "load_before": load_before,
        **loops,
        "ratios": ratios,
        "targets": {name: ratios[name] >= least for name, _, _, least in TARGETS},
        "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
    }
    out = sys.stdout
    out.write(json.dumps(report) + "\n" if args.json else _format(report, source, video))
    out.flush()
    return 0


def _format(report: dict[str, Any], source: Any, video: Path) -> str:
    what = {
        "floor": "invoke only, input in memory",
        "baseline": "TF Lite example loop, with decode",
        "lean": "example loop, numpy top-k, with decode",
        "pipeline": "edge classify loop, with decode",
    }
    lines = [
        f"model    {report['model']} ({report['runtime']}, sha256 {report['sha256'][:12]})",
        f"video    {video.name} {source.width}x{source.height}, {source.fps or 0:.2f} fps, "
        f"{source.frame_count} frames, looped to {report['frames']} per run, "
        f"median of {report['rounds']} interleaved rounds",
    ]
    shown = list(LOOPS)
    if SAME_THREADS_FLOOR in report:
        shown.insert(1, SAME_THREADS_FLOOR)
        what[SAME_THREADS_FLOOR] = "the floor at the pipeline's thread count"
    for k in shown:
        r = report[k]
        rounds = " ".join(f"{x:.0f}" for x in r["rounds"])
        name = "floor" if k == SAME_THREADS_FLOOR else k
        lines.append(
            f"{name:<8} {r['fps']:8.1f} frames/s  threads {r['threads']}  "
            f"({what[k]}; rounds {rounds})"
        )
    ratios = report["ratios"]
    lines.append(
        f"pipeline/baseline {ratios['pipeline_baseline']:.2f}x   "
        f"lean/baseline {ratios['lean_baseline']:.2f}x   "
        f"peak RSS {report['peak_rss_mb']:.1f} MB   "
        f"load {report['load_before']} -> {report['load']} on {report['cpus']} CPUs"
    )
    for name, a, b, least in TARGETS:
        met = "met" if report["targets"][name] else "NOT met"
        lines.append(f"target {a}/{b} >= {least:g}x: {ratios[name]:.2f}x  {met}")
    if "pipeline_floor_same_threads" in ratios:
        lines.append(
            f"pipeline/floor at the same {report['pipeline']['threads']} interpreter thread(s): "
            f"{ratios['pipeline_floor_same_threads']:.2f}x (what decoding and the step's "
            "bookkeeping cost beside the model)"
        )
    return "\n".join(lines) + "\n"


def _run_live(args: argparse.Namespace, video: Path) -> int:
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
            page=args.page,
        )
    )
    print(json.dumps(result) if args.json else format_live(result))
    return 0


def _model(args: argparse.Namespace) -> StreamClassifier:
    """The model ``--model``/``--labels`` name, loaded the way every command loads one."""
    from edge.catalogue import DEFAULT_STREAM_MODEL
    from edge.loader import load_stream

    return load_stream(
        args.model or DEFAULT_STREAM_MODEL,
        needed_by="edge bench",
        labels=args.labels,
        threads=1,
        numbered=True,
    )


def _run_resize(args: argparse.Namespace) -> int:
    from edge.resizebench import format_resize, run_resize
    from edge.sources.video_file import VideoFile

    clips = [Path(c) for c in args.resize] or [_video(args)]
    for clip in clips:
        VideoFile(clip)  # one line naming a missing or broken clip, before any work
    probe = _model(args)
    threads = args.pipeline_threads or 1
    report = run_resize(probe.path, probe.labels_path, clips, threads)
    del probe
    report["load"] = _load()
    if args.json:
        rows = [{k: v for k, v in r.items()} for r in report["rows"]]
        print(json.dumps({**report, "rows": rows}))
    else:
        print(format_resize(report) + f"\nload {report['load']}")
    return 0
