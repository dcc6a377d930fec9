"""`edge bench --live` runs the real daemon against a private broker and reports its figures."""

from __future__ import annotations

import json

import pytest

from tests.support.broker import require_mosquitto
from tests.support.cli import run_cli


def test_live_bench_reports_latency_against_inference_and_memory(a0, k600_labels, videos):
    require_mosquitto()
    proc = run_cli(
        "bench",
        "--live",
        "--json",
        "--duration",
        "4",
        "--warmup",
        "3",
        "--model",
        str(a0),
        "--labels",
        str(k600_labels),
        "--video",
        str(videos / "carving_ice_small.mp4"),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["steps"] >= 5  # about 5 steps/s were delivered and paired
    lat, inf = r["latency_ms"]["p50"], r["inference_ms"]["p50"]
    assert lat > 0 and inf > 0
    assert lat >= inf  # delivery includes the inference of that very frame
    cpu = r["cpu"]
    assert cpu["ms_per_step"] > 0 and cpu["percent"] > 0
    # One measurement seen two ways: CPU per step times steps per second is the CPU share.
    # (Not against the inference time: that is wall time, longer than CPU time on a busy machine.)
    assert cpu["percent"] == pytest.approx(cpu["ms_per_step"] * cpu["steps_per_s"] / 10, rel=0.05)
    mem = r["memory_mb"]
    for key in ("rss_anon_mb", "pss_mb", "rss_mb"):
        assert mem[key]["max"] >= mem[key]["steady_median"] > 10, key
    assert mem["rss_anon_mb"]["max"] < mem["rss_mb"]["max"]  # shared libraries are not anon
    assert set(r["targets"]) == {
        "latency_p50_le_inference_plus_3ms",
        "rss_anon_le_64mb",
        "rss_anon_flat",
        "rss_le_120mb",
    }
    assert r["targets"]["rss_le_120mb"] == (mem["rss_mb"]["max"] <= 120)
