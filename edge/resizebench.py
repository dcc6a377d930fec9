"""`edge bench --resize`: which resize to feed the stream model, by speed and by accuracy.

Each clip is classified at the model's rate (5 steps/s, the protocol of the sample clips'
verified results) once per resize method. For every method it reports the final top-1,
the score the model gives to the reference label (the top-1 under ``INTER_AREA``, the
preprocessing the sample results were verified with) at the end and on average over the
steps, and the preprocessing time per frame (crop, resize, colour order, scaling).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.preprocess import RESIZE_METHODS

REFERENCE = "area"


def _one(model: Path, labels: Path | None, clip: Path, method: str, threads: int) -> dict:
    from edge.classifiers.stream import StreamClassifier
    from edge.pacing import Pacer
    from edge.sources.video_file import VideoFile

    clf = StreamClassifier(
        model, labels_path=labels, threads=threads, reset_gap_s=float("inf"), resize=method
    )
    buf = clf.new_input()
    prep_ms: list[float] = []
    probs: list[np.ndarray] = []
    top = None
    for frame in VideoFile(clip).frames(Pacer(5.0).take):
        t0 = time.perf_counter()
        clf.preprocess_into(frame.image, buf)
        prep_ms.append((time.perf_counter() - t0) * 1000)
        pred = clf.run(buf, frame.timestamp, frame.epoch)
        probs.append(pred.probs)
        top = pred.top
    assert top is not None  # VideoFile raises on a clip without frames
    return {
        "top1": top[0].label,
        "score": round(top[0].score, 4),
        "probs": np.stack(probs),
        "labels": clf.labels,
        "prep_ms": round(statistics.median(prep_ms), 3),
        "steps": len(probs),
    }


def run_resize(model: Path, labels: Path | None, clips: list[Path], threads: int) -> dict:
    """Every clip under every method; methods interleaved per clip so load hits them alike."""
    rows: list[dict[str, Any]] = []
    for clip in clips:
        runs = {m: _one(model, labels, clip, m, threads) for m in RESIZE_METHODS}
        ref = runs[REFERENCE]
        ref_index = ref["labels"].index(ref["top1"])
        for method, r in runs.items():
            ref_probs = r["probs"][:, ref_index]
            rows.append(
                {
                    "clip": clip.name,
                    "method": method,
                    "top1": r["top1"],
                    "score": r["score"],
                    "reference_label": ref["top1"],
                    "reference_score": round(float(ref_probs[-1]), 4),
                    "reference_mean": round(float(ref_probs.mean()), 4),
                    "reference_top1_share": round(
                        float(np.mean(r["probs"].argmax(axis=1) == ref_index)), 4
                    ),
                    "prep_ms": r["prep_ms"],
                    "steps": r["steps"],
                }
            )
    summary = {}
    for method in RESIZE_METHODS:
        mine = [r for r in rows if r["method"] == method]
        summary[method] = {
            "same_top1_as_reference": sum(r["top1"] == r["reference_label"] for r in mine),
            "clips": len(mine),
            "mean_reference_score": round(statistics.mean(r["reference_score"] for r in mine), 4),
            "mean_reference_mean": round(statistics.mean(r["reference_mean"] for r in mine), 4),
            "mean_reference_top1_share": round(
                statistics.mean(r["reference_top1_share"] for r in mine), 4
            ),
            "mean_prep_ms": round(statistics.mean(r["prep_ms"] for r in mine), 3),
        }
    return {"resize": True, "reference": REFERENCE, "rows": rows, "summary": summary}


def format_resize(report: dict) -> str:
    lines = [
        f"{'clip':<24} {'resize':<7} {'top-1':<28} {'score':>6} "
        f"{'ref end':>8} {'ref mean':>8} {'ref top1':>8} {'prep ms':>8}"
    ]
    for r in report["rows"]:
        lines.append(
            f"{r['clip']:<24} {r['method']:<7} {r['top1'][:28]:<28} {r['score']:6.3f} "
            f"{r['reference_score']:8.3f} {r['reference_mean']:8.3f} "
            f"{r['reference_top1_share']:8.2f} {r['prep_ms']:8.3f}"
        )
    lines.append(
        f"reference label: the final top-1 under {report['reference']!r}; "
        "ref end/mean: its score at the last step / averaged over all steps; "
        "ref top1: share of steps with it as top-1"
    )
    for method, s in report["summary"].items():
        lines.append(
            f"{method:<7} same top-1 {s['same_top1_as_reference']}/{s['clips']}  "
            f"ref score end {s['mean_reference_score']:.3f} mean {s['mean_reference_mean']:.3f} "
            f"top-1 share {s['mean_reference_top1_share']:.2f}  "
            f"prep {s['mean_prep_ms']:.3f} ms/frame"
        )
    return "\n".join(lines)
