"""Turning per-step class probabilities into a stable label.

Two stages. An exponential moving average with a time constant ``tau_s`` weights
each step by the time it covers, ``alpha = 1 - exp(-dt / tau)``, so the same config
behaves the same at 5 or 15 steps per second and a long gap simply forgets the past.
Then a hysteresis gate on the label: a challenger must reach ``enter``, beat the
current label by ``margin``, and do so for ``consecutive`` steps in a row, and a
current label must have been held for ``min_dwell_s`` before it is replaced; a label
whose smoothed score falls below ``exit`` gives way to none at once (``exit`` <
``enter`` keeps that from flickering). All arrays are allocated once; a step
allocates only its small result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.classifiers.base import Scored
from edge.config import SmootherConfig


@dataclass(frozen=True, slots=True)
class Stable:
    label: str | None  # None: nothing is confidently going on
    score: float  # smoothed score of ``label`` (0.0 when there is none)
    top: tuple[Scored, ...]  # smoothed top-k
    since: float | None  # time the current label (or none) took over; None before any change
    changed: bool  # this step changed the label
    previous: str | None  # the label before the last change


class Smoother:
    def __init__(self, labels: list[str], cfg: SmootherConfig) -> None:
        if not labels:
            raise ValueError("no labels")
        self.labels = list(labels)
        self.cfg = cfg
        n = len(self.labels)
        self._k = min(cfg.top_k, n)
        self._ema = np.zeros(n, np.float64)
        self._scratch = np.empty(n, np.float64)
        self._input = np.empty(n, np.float64)  # probs cast here: a mixed-dtype ufunc buffers
        self.reset()

    def reset(self) -> None:
        """Forget everything (new stream); the next step reports a drop of the label held."""
        had = getattr(self, "_current", -1)
        self._ema.fill(0.0)
        self._t: float | None = None
        self._current = -1
        self._since: float | None = None
        self._candidate = -1
        self._count = 0
        self._low_since: float | None = None  # when the held label fell below exit
        self._previous: str | None = getattr(self, "_previous", None)
        self._dropped_on_reset = self.labels[had] if had >= 0 else None

    @property
    def ema(self) -> np.ndarray:
        """The smoothed probabilities (a view; do not modify)."""
        return self._ema

    def update(self, probs: np.ndarray, t: float) -> Stable:
        probs = np.asarray(probs).reshape(-1)
        if probs.shape[0] != self._ema.shape[0]:
            raise ValueError(f"expected {self._ema.shape[0]} scores, got {probs.shape[0]}")
        cfg = self.cfg
        ema, tmp, x = self._ema, self._scratch, self._input
        np.copyto(x, probs)
        if self._t is None:
            np.copyto(ema, x)
            if self._since is None:
                self._since = t  # "none" starts now: the first label also waits min_dwell_s
        else:
            dt = t - self._t
            alpha = 1.0 - math.exp(-dt / cfg.tau_s) if dt > 0 else 0.0
            # ema += alpha * (probs - ema), in place
            np.subtract(x, ema, out=tmp)
            tmp *= alpha
            ema += tmp
        if self._t is None or t > self._t:
            self._t = t

        best = int(ema.argmax())
        best_score = float(ema[best])
        cur = self._current
        cur_score = float(ema[cur]) if cur >= 0 else 0.0
        changed = False
        previous_label = self.labels[cur] if cur >= 0 else None
        if self._dropped_on_reset is not None:
            changed, previous_label = True, self._dropped_on_reset
            self._previous, self._dropped_on_reset = previous_label, None
            self._since = t

        if cur >= 0 and cur_score < cfg.exit:
            if self._low_since is None:
                self._low_since = t
        else:
            self._low_since = None
        if self._low_since is not None and t - self._low_since >= cfg.exit_hold_s:
            # The label lost its support for exit_hold_s: none. Within that time a
            # challenger (the next activity, once the model is sure of it) takes over
            # directly, so a cut between two activities is one change, not two.
            self._low_since = None
            self._previous = previous_label
            self._current, cur, cur_score = -1, -1, 0.0
            self._since, changed = t, True
            self._candidate, self._count = -1, 0

        if best != cur and best_score >= cfg.enter and best_score >= cur_score + cfg.margin:
            if best == self._candidate:
                self._count += 1
            else:
                self._candidate, self._count = best, 1
        else:
            self._candidate, self._count = -1, 0

        # Dwell protects a label from being replaced; none has nothing to protect.
        # Dwell holds every state, "none" included: the first frames after a (re)start,
        # when a stream model is still cold, cannot name an activity at once.
        dwelt = self._since is None or t - self._since >= cfg.min_dwell_s
        if self._count >= cfg.consecutive and dwelt and not changed:
            self._previous = self.labels[cur] if cur >= 0 else None
            self._current = cur = self._candidate
            self._since, changed = t, True
            self._candidate, self._count, self._low_since = -1, 0, None

        return Stable(
            label=self.labels[cur] if cur >= 0 else None,
            score=float(ema[cur]) if cur >= 0 else 0.0,
            top=self._top(),
            since=self._since,
            changed=changed,
            previous=self._previous,
        )

    def _top(self) -> tuple[Scored, ...]:
        """Top-k by repeated argmax on a scratch copy: no index arrays per step."""
        tmp = self._scratch
        np.copyto(tmp, self._ema)
        out = []
        for _ in range(self._k):
            i = int(tmp.argmax())
            out.append(Scored(self.labels[i], float(self._ema[i])))
            tmp[i] = -np.inf
        return tuple(out)
