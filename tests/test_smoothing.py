"""Temporal smoother: synthetic sequences (rate independence, hysteresis, dwell, exit,
noise), and a real cut between two clips through the streaming classifier."""

from __future__ import annotations

import math
import tracemalloc

import cv2
import numpy as np
import pytest

from edge.config import SmootherConfig
from edge.smoothing import Smoother

LABELS = ["a", "b", "c", "d", "e", "f"]


def probs(**scores: float) -> np.ndarray:
    """A probability vector over LABELS; the rest of the mass is spread evenly."""
    p = np.zeros(len(LABELS), np.float32)
    for k, v in scores.items():
        p[LABELS.index(k)] = v
    rest = [i for i, name in enumerate(LABELS) if name not in scores]
    p[rest] = (1.0 - p.sum()) / len(rest)
    return p


def run(smoother: Smoother, seq, fps: float, t0: float = 0.0):
    """Feed ``seq`` (list of (duration_s, probs-or-callable)) at ``fps``; return outputs."""
    out = []
    t = t0
    step = 1.0 / fps
    i = 0
    for duration, p in seq:
        end = t + duration
        while t < end - 1e-9:
            vec = p(i) if callable(p) else p
            out.append((t, smoother.update(vec, t)))
            t += step
            i += 1
    return out


def changes(outputs):
    return [(t, s.previous, s.label) for t, s in outputs if s.changed]


def label_at(outputs, when: float):
    return min(outputs, key=lambda o: abs(o[0] - when))[1]


def test_same_tau_gives_the_same_behaviour_at_5_and_15_fps():
    cfg = SmootherConfig(tau_s=1.5, consecutive=3, min_dwell_s=2.0)
    seq = [(8.0, probs(a=0.9)), (8.0, probs(b=0.8, a=0.1)), (8.0, probs())]
    slow = run(Smoother(LABELS, cfg), seq, fps=5.0)
    fast = run(Smoother(LABELS, cfg), seq, fps=15.0)
    assert [c[1:] for c in changes(slow)] == [c[1:] for c in changes(fast)]
    assert [c[1:] for c in changes(slow)] == [(None, "a"), ("a", "b"), ("b", None)]
    for (ts, _, _), (tf, _, _) in zip(changes(slow), changes(fast), strict=True):
        # N steps last longer at a lower rate: at most those steps apart.
        assert abs(ts - tf) <= cfg.consecutive / 5.0 + 0.2
    for when in (3.0, 9.0, 10.5, 12.0, 17.0, 20.0):
        s, f = label_at(slow, when), label_at(fast, when)
        assert s.top[0].label == f.top[0].label
        assert abs(s.top[0].score - f.top[0].score) < 0.05


def test_ema_follows_the_time_constant():
    cfg = SmootherConfig(tau_s=2.0)
    sm = Smoother(LABELS, cfg)
    sm.update(probs(a=1.0), 0.0)
    out = run(sm, [(4.0, probs(b=1.0))], fps=10.0, t0=0.1)
    t_last = out[-1][0]
    # A step input: the old class decays as exp(-t / tau) whatever the step count.
    assert sm.ema[LABELS.index("a")] == pytest.approx(math.exp(-t_last / 2.0), rel=1e-4)


def test_challenger_needs_the_margin():
    cfg = SmootherConfig(tau_s=0.3, enter=0.4, exit=0.2, margin=0.1, consecutive=2, min_dwell_s=0)
    sm = Smoother(LABELS, cfg)
    out = run(sm, [(3.0, probs(a=0.6, b=0.3)), (5.0, probs(a=0.45, b=0.5))], fps=10.0)
    # b leads by 0.05 only: a stays.
    assert changes(out) == [(changes(out)[0][0], None, "a")]
    assert out[-1][1].label == "a"
    out = run(sm, [(3.0, probs(a=0.3, b=0.6))], fps=10.0, t0=8.0)
    assert [c[1:] for c in changes(out)] == [("a", "b")]


def test_challenger_needs_n_consecutive_steps():
    cfg = SmootherConfig(tau_s=0.05, enter=0.5, exit=0.2, margin=0.1, consecutive=4, min_dwell_s=0)
    sm = Smoother(LABELS, cfg)
    run(sm, [(1.0, probs(a=0.9))], fps=10.0)
    # tau << step: the EMA follows the input. b leads (a stays above exit) for 3 steps,
    # then a returns: no change.
    burst = run(sm, [(0.3, probs(b=0.6, a=0.35)), (0.5, probs(a=0.9))], fps=10.0, t0=1.0)
    assert changes(burst) == []
    longer = run(sm, [(0.4, probs(b=0.6, a=0.35))], fps=10.0, t0=2.0)
    assert [c[1:] for c in changes(longer)] == [("a", "b")]
    assert changes(longer)[0][0] == pytest.approx(2.3)  # the 4th step


def test_minimum_dwell_delays_a_second_change():
    cfg = SmootherConfig(
        tau_s=0.05, enter=0.5, exit=0.2, margin=0.1, consecutive=1, min_dwell_s=2.0
    )
    sm = Smoother(LABELS, cfg)
    # a is named at t=2 (the start, too, is held for min_dwell_s). From t=2.5 b qualifies
    # at every step (and a stays above exit), but a must first have lasted 2 s.
    out = run(sm, [(2.5, probs(a=0.9)), (3.0, probs(b=0.6, a=0.35))], fps=10.0)
    (t_a, _, label_a), (t_b, prev_b, label_b) = changes(out)
    assert label_a == "a" and t_a == pytest.approx(2.0, abs=0.11)
    assert (prev_b, label_b) == ("a", "b")
    assert t_b - t_a == pytest.approx(2.0, abs=0.11)


def test_no_label_in_the_first_min_dwell_after_a_start_or_reset():
    """A stream model is cold for its first frames; the smoother names nothing until it
    has seen min_dwell_s of them, then the activity those frames agree on."""
    cfg = SmootherConfig(tau_s=0.5, consecutive=2, min_dwell_s=1.5)
    sm = Smoother(LABELS, cfg)
    cold_then_b = [(0.4, probs(a=0.95)), (3.0, probs(b=0.9))]  # a wrong, confident start
    out = run(sm, cold_then_b, fps=10.0)
    assert [c[1:] for c in changes(out)] == [(None, "b")]
    assert changes(out)[0][0] >= 1.5
    sm.reset()
    out = run(sm, [(3.0, probs(a=0.9))], fps=10.0, t0=10.0)
    named = [c for c in changes(out) if c[2] is not None]
    assert named[0][2] == "a" and named[0][0] >= 11.5


def test_label_exits_to_none_below_the_exit_threshold():
    cfg = SmootherConfig(
        tau_s=0.5, enter=0.5, exit=0.3, exit_hold_s=0, margin=0.1, consecutive=2, min_dwell_s=1
    )
    sm = Smoother(LABELS, cfg)
    out = run(sm, [(3.0, probs(a=0.9)), (4.0, probs())], fps=10.0)
    assert [c[1:] for c in changes(out)] == [(None, "a"), ("a", None)]
    t_exit = changes(out)[1][0]
    last = out[-1][1]
    assert last.label is None and last.score == 0.0 and last.previous == "a"
    assert last.since == pytest.approx(t_exit)
    # exit happened when the smoothed score of a crossed 0.3, not before
    at_exit = label_at(out, t_exit)
    assert at_exit.top[0].score < 0.3 or at_exit.top[0].label != "a"


def test_no_flicker_on_noisy_alternation():
    rng = np.random.default_rng(7)

    def alternating(i):
        hi, lo = (0.65, 0.25) if i % 2 == 0 else (0.25, 0.65)
        return probs(a=hi + rng.uniform(-0.05, 0.05), b=lo + rng.uniform(-0.05, 0.05))

    for fps in (5.0, 15.0):
        sm = Smoother(LABELS, SmootherConfig())
        out = run(sm, [(30.0, alternating)], fps=fps)
        assert len(changes(out)) <= 1, changes(out)

    def mostly_a(i):
        if i % 3 == 2:  # a one-frame spike of c every third step
            return probs(c=0.8, a=0.1)
        return probs(a=0.7 + rng.uniform(-0.1, 0.1), c=0.1)

    sm = Smoother(LABELS, SmootherConfig())
    out = run(sm, [(30.0, mostly_a)], fps=10.0)
    assert [c[1:] for c in changes(out)] == [(None, "a")]


def test_reset_drops_the_label_and_says_so():
    sm = Smoother(LABELS, SmootherConfig(min_dwell_s=0))
    run(sm, [(5.0, probs(a=0.9))], fps=5.0)
    sm.reset()
    s = sm.update(probs(), 100.0)
    assert s.changed and s.label is None and s.previous == "a"
    assert not sm.update(probs(), 100.2).changed


def test_top_k_is_sorted_and_sized():
    labels = [f"class {i}" for i in range(600)]
    sm = Smoother(labels, SmootherConfig(top_k=5))
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(600)).astype(np.float32)
    s = sm.update(p, 0.0)
    expected = [labels[i] for i in np.argsort(-p)[:5]]
    assert [x.label for x in s.top] == expected
    assert [x.score for x in s.top] == sorted((x.score for x in s.top), reverse=True)
    with pytest.raises(ValueError):
        sm.update(p[:10], 1.0)


def test_a_step_allocates_no_vector_sized_temporaries():
    n = 4096  # a temporary copy of the vector would be 32 KiB
    labels = [f"c{i}" for i in range(n)]
    sm = Smoother(labels, SmootherConfig())
    rng = np.random.default_rng(1)
    inputs = [rng.dirichlet(np.ones(n)).astype(np.float32) for _ in range(20)]
    ema = sm.ema
    for i, p in enumerate(inputs[:5]):
        sm.update(p, i * 0.2)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for i, p in enumerate(inputs[5:], start=5):
            sm.update(p, i * 0.2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 8 * n // 2, peak - base
    assert sm.ema is ema  # the EMA vector is the one allocated at construction


def test_real_cut_between_two_clips_changes_the_label_once_within_3_s(videos, a0, k600_labels):
    from edge.classifiers.stream import StreamClassifier
    from edge.frame import Frame

    clips = [videos / "arm_wrestling.mp4", videos / "carving_ice.mp4"]
    fps = 5.0
    clf = StreamClassifier(a0, labels_path=k600_labels, horizon_s=4.0, fps=fps, threads=2)
    # The daemon's defaults. Label latency = the model's own switch (~1.4 s at a 4 s
    # horizon) + about tau*ln2 of EMA + N steps: a 3 s budget needs tau around 1 s.
    sm = Smoother(clf.labels, SmootherConfig())
    outputs = []
    offset, seq, cut = 0.0, 0, None
    for clip in clips:
        cap = cv2.VideoCapture(str(clip))
        clip_fps = cap.get(cv2.CAP_PROP_FPS)
        i, next_due = 0, 0.0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            t = i / clip_fps
            i += 1
            if t + 0.5 / clip_fps < next_due:
                continue
            next_due += 1.0 / fps
            seq += 1
            pred = clf.step(Frame(image, offset + t, seq))
            outputs.append((offset + t, sm.update(pred.probs, offset + t)))
        cap.release()
        offset += i / clip_fps
        cut = offset if cut is None else cut
    events = changes(outputs)
    # Exactly one change after the first label: no "none" while the model is unsure at
    # the cut, no flicker back.
    assert [(prev, label) for _, prev, label in events] == [
        (None, "arm wrestling"),
        ("arm wrestling", "carving ice"),
    ], events
    assert label_at(outputs, cut - 0.2).label == "arm wrestling"
    t_switch = next(t for t, _, label in events if label == "carving ice")
    assert cut < t_switch <= cut + 3.0, (cut, events)
    assert outputs[-1][1].label == "carving ice"


def test_a_short_dip_below_exit_hands_over_directly_a_long_one_goes_to_none():
    cfg = SmootherConfig(
        tau_s=0.05, enter=0.5, exit=0.3, exit_hold_s=1.0, margin=0.1, consecutive=2, min_dwell_s=0
    )
    # a, then 0.6 s of nothing sure, then b: one change a -> b, no "none" between.
    sm = Smoother(LABELS, cfg)
    out = run(sm, [(2.0, probs(a=0.9)), (0.6, probs()), (2.0, probs(b=0.9))], fps=10.0)
    assert [c[1:] for c in changes(out)] == [(None, "a"), ("a", "b")]
    # the same with 2 s of nothing: a ends (after the hold), then b starts.
    sm = Smoother(LABELS, cfg)
    out = run(sm, [(2.0, probs(a=0.9)), (2.0, probs()), (2.0, probs(b=0.9))], fps=10.0)
    events = changes(out)
    assert [c[1:] for c in events] == [(None, "a"), ("a", None), (None, "b")]
    t_none = events[1][0]
    assert t_none == pytest.approx(2.0 + 1.0, abs=0.15)  # fell below exit at ~2.0 s, held 1 s
