"""The value every capture source produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded image.

    ``timestamp`` is seconds on the source's clock: position in the file for
    videos, ``time.monotonic()`` at capture for live sources. ``seq`` is the source
    frame's index (every frame the source gave counts, taken or not), which is what
    "frame" means in edge's output; a model's own count is its "step". ``epoch`` grows
    by one every time the source (re)starts, so a consumer knows when stream
    state must be reset.
    """

    image: np.ndarray  # BGR uint8, H x W x 3
    timestamp: float
    seq: int
    epoch: int = 0
    wall_time: float = 0.0  # time.time() at capture, for latency figures
