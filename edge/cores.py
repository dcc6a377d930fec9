"""How an offline pipeline shares the CPU between the model and the video decoder.

The model steps on one thread while the decoder runs ahead on another (``VideoFile.prepared``).
Measured on 2 cores (``edge bench``, ``--pipeline-threads``): one interpreter thread with the
decoder on the other core beats two interpreter threads that the decoder keeps interrupting,
and FFmpeg's default of a decoding thread per core slows the model's thread as much as it
helps the decoder. So the model gets all cores but one, the decoder what the model leaves.
"""

from __future__ import annotations

import os


def model_threads() -> int:
    """Interpreter threads for a model stepped beside a decoder: all cores but one."""
    return max(1, (os.cpu_count() or 2) - 1)


def decode_threads(model: int) -> int:
    """FFmpeg threads for a file decoded beside a model using ``model`` threads."""
    return max(1, (os.cpu_count() or 1) - max(1, model))
