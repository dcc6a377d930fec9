"""Embeddings that the classifiers already compute: read, never a second invoke.

Still images: the pooled tensor that feeds the classifier layer (MobileNet-v2's ``AvgPool``,
1280 values; Custom Vision's ``pool10``, 512), found by walking back from the scores through
the activation and the logits op. It is read by adding it to the model's outputs (a small
patch of the flatbuffer, loaded from memory): measured against
``experimental_preserve_all_tensors=True``, that costs no extra time or arena memory, while
preserving every tensor turns off the default delegate and keeps every intermediate
activation alive (+5 MB for MobileNet-v2, +13 MB for the Custom Vision model).

Video: a MoViNet stream model carries its head's running sum (``state_head_pool_buffer``)
and frame count (``state_head_pool_frame_count``) as state; their ratio is the average head
feature over the frames the model remembers (the mature copy under a memory horizon).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.errors import ModelError

# Ops between the logits and the scores that do not change what the scores mean.
_AFTER_LOGITS = {"SOFTMAX", "LOGISTIC", "DEQUANTIZE", "QUANTIZE", "RESHAPE", "SQUEEZE", "IDENTITY"}
_LOGITS_OPS = {"FULLY_CONNECTED", "CONV_2D"}
_POOL_OPS = {"AVERAGE_POOL_2D", "MEAN", "MAX_POOL_2D", "SUM", "REDUCE_MAX"}
_RESHAPES = {"RESHAPE", "SQUEEZE", "DEQUANTIZE", "QUANTIZE"}

STREAM_BUFFER = "state_head_pool_buffer"
STREAM_COUNT = "state_head_pool_frame_count"


@dataclass(frozen=True, slots=True)
class EmbeddingTensor:
    """Where an image model's embedding lives and how to turn it into floats."""

    index: int
    name: str
    size: int
    scale: float  # 0.0: already float
    zero_point: int

    def read(self, interpreter: Any) -> np.ndarray:
        raw = interpreter.get_tensor(self.index).reshape(-1)
        if self.scale:
            return (raw.astype(np.float32) - self.zero_point) * self.scale
        return raw.astype(np.float32)


def _producers(interpreter: Any) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for op in interpreter._get_ops_details():
        if op.get("op_name") == "DELEGATE":
            continue
        for t in op.get("outputs", ()):
            out[int(t)] = op
    return out


def find_image_embedding(interpreter: Any, scores_index: int, where: object) -> EmbeddingTensor:
    """The pooled tensor feeding the logits of an image classifier, or a ModelError."""
    try:
        producers = _producers(interpreter)
    except Exception:  # a runtime without graph introspection
        raise ModelError(
            f"{where}: this TFLite runtime cannot show the model's graph, so no embedding "
            "can be found (install ai-edge-litert)"
        ) from None
    details = {int(d["index"]): d for d in interpreter.get_tensor_details()}
    index = scores_index
    for _ in range(8):
        op = producers.get(index)
        if op is None or op["op_name"] not in _AFTER_LOGITS:
            break
        index = int(op["inputs"][0])
    op = producers.get(index)
    if op is None or op["op_name"] not in _LOGITS_OPS:
        raise ModelError(
            f"{where}: no usable embedding: the scores do not come from a fully connected "
            "or 1x1 convolution layer"
        )
    feature = int(op["inputs"][0])
    # Look through reshapes to the pool itself, so the name shown is the pool's.
    for _ in range(4):
        prev = producers.get(feature)
        if prev is None or prev["op_name"] not in _RESHAPES:
            break
        feature = int(prev["inputs"][0])
    pool = producers.get(feature)
    d = details[feature]
    shape = [int(v) for v in d["shape"]]
    pooled = int(np.prod(shape[:-1])) == 1 if shape else False
    if pool is None or pool["op_name"] not in _POOL_OPS or not pooled:
        raise ModelError(
            f"{where}: no usable embedding: the layer before the logits "
            f"({d['name']}, shape {shape}) is not a pooled feature vector"
        )
    scale, zero = d.get("quantization", (0.0, 0))
    quantised = np.dtype(d["dtype"]).kind in "iu"
    return EmbeddingTensor(
        index=feature,
        name=str(d["name"]),
        size=int(shape[-1]),
        scale=float(scale) if quantised and scale else 0.0,
        zero_point=int(zero) if quantised else 0,
    )


# --- adding an output to a TFLite flatbuffer ------------------------------------------------
# Model: field 2 = subgraphs; SubGraph: field 2 = outputs (a vector of int32 tensor indices).
# Offsets are unsigned and point forward, so a new vector appended at the end can be
# referenced from the old field without moving anything else.


def _field(buf: bytes | bytearray, table: int, k: int) -> int | None:
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vsize = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * k >= vsize:
        return None
    off = struct.unpack_from("<H", buf, vtable + 4 + 2 * k)[0]
    return table + off if off else None


def _deref(buf: bytes | bytearray, at: int) -> int:
    return at + struct.unpack_from("<I", buf, at)[0]


def with_output(model: bytes, tensor_index: int, where: object) -> bytes:
    """The model's bytes with ``tensor_index`` appended to the main subgraph's outputs."""
    buf = bytearray(model)
    try:
        root = _deref(buf, 0)
        subgraphs_at = _field(buf, root, 2)
        if subgraphs_at is None:
            raise ValueError("no subgraphs")
        subgraphs = _deref(buf, subgraphs_at)
        main = _deref(buf, subgraphs + 4)
        outputs_at = _field(buf, main, 2)
        if outputs_at is None:
            raise ValueError("no outputs")
        vec = _deref(buf, outputs_at)
        n = struct.unpack_from("<I", buf, vec)[0]
        outputs = list(struct.unpack_from(f"<{n}i", buf, vec + 4))
    except (struct.error, ValueError) as exc:
        raise ModelError(f"{where}: cannot read the model's outputs ({exc})") from None
    if tensor_index in outputs:
        return model
    buf.extend(b"\0" * (-len(buf) % 16))
    at = len(buf)
    buf.extend(struct.pack(f"<I{n + 1}i", n + 1, *outputs, tensor_index))
    struct.pack_into("<I", buf, outputs_at, at - outputs_at)
    return bytes(buf)


# --- video --------------------------------------------------------------------------------


class StreamEmbedding:
    """The head's average feature of a stream model, read from its state after each step.

    The state inputs hold what the next step will be fed: the carried output, or under a
    memory horizon the mature copy, so reading them gives the embedding the model itself
    is classifying from.
    """

    def __init__(self, classifier: Any) -> None:
        states = {s[0]: s for s in classifier.signature.states}
        buffer, count = states.get(STREAM_BUFFER), states.get(STREAM_COUNT)
        if buffer is None or count is None:
            raise ModelError(
                f"{classifier.path}: no usable embedding: the model has no "
                f"{STREAM_BUFFER}/{STREAM_COUNT} state (not a MoViNet stream head)"
            )
        self._interp = classifier.interpreter
        self._buffer = buffer[1]
        self._count = count[1]
        self.size = int(np.prod(buffer[4]))
        self.name = STREAM_BUFFER

    def read(self) -> np.ndarray:
        """The current embedding (a new float32 array); zeros before the first step."""
        total = self._interp.get_tensor(self._buffer).reshape(-1).astype(np.float32)
        frames = float(self._interp.get_tensor(self._count).reshape(-1)[0])
        if frames > 0:
            total /= frames
        return total
