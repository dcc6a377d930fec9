"""Still-image TFLite classifiers: generic models and Azure Custom Vision exports, and reading
the photos they classify.

One class covers float and 8-bit quantised models. The input is quantised and the output
dequantised with the tensors' own scale and zero point; how the output must be read
(softmax probabilities, independent sigmoids, or raw logits) is taken from the op that
produces it, because renormalising sigmoids would turn "none of these" into a confident
wrong answer.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge.classifiers.base import Prediction, Scored, softmax, top_k
from edge.classifiers.customvision import ExportPreprocess
from edge.errors import ModelError
from edge.imagefile import DEFAULT_LIMITS, ImageLimits, load_image
from edge.labels import check_label_count
from edge.preprocess import InputSpec, Preprocessor
from edge.runtime import file_sha256, open_interpreter

if TYPE_CHECKING:
    from edge.teach.embedding import EmbeddingTensor

log = logging.getLogger(__name__)

# With sigmoid outputs every class can be near 0; below this nothing is named.
DEFAULT_SIGMOID_THRESHOLD = 0.5
BACKGROUND_LABELS = ("background", "???")

# Ops that pass values through unchanged in meaning, looked through to find the activation.
_PASS_THROUGH = {"DEQUANTIZE", "QUANTIZE", "RESHAPE", "SQUEEZE", "IDENTITY"}


def read_image_bytes(
    path: str | Path, limits: ImageLimits = DEFAULT_LIMITS
) -> tuple[bytes, np.ndarray]:
    """The file's bytes (for hashing) and its decoded BGR pixels, from one read.

    The file's size and declared pixel count are checked against ``limits`` first.
    """
    image = load_image(path, limits)
    return image.data, image.bgr


def read_image(path: str | Path, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """BGR uint8 pixels of an image file; SourceError with the path if unreadable or corrupt."""
    return load_image(path, limits).bgr


def _output_activation(interpreter: Any, tensor_index: int) -> str:
    """'softmax', 'sigmoid', 'logits', or 'unknown', from the op that produces the output."""
    try:
        ops = interpreter._get_ops_details()
    except Exception:  # older runtimes without the introspection call
        return "unknown"
    producers: dict[int, dict[str, Any]] = {}
    for op in ops:
        if op.get("op_name") == "DELEGATE":
            continue
        for t in op.get("outputs", ()):
            producers[int(t)] = op
    index = tensor_index
    for _ in range(8):
        op = producers.get(index)
        if op is None:
            return "unknown"
        name = op["op_name"]
        if name == "SOFTMAX":
            return "softmax"
        if name == "LOGISTIC":
            return "sigmoid"
        if name in _PASS_THROUGH and len(op["inputs"]):
            index = int(op["inputs"][0])
            continue
        return "logits"
    return "unknown"


class ImageClassifier:
    """A TFLite classifier for single images. ``classify`` is safe to call from several threads."""

    kind = "image"

    def __init__(
        self,
        model_path: str | Path,
        labels: list[str],
        *,
        labels_where: str | Path = "labels",
        name: str | None = None,
        sha256: str | None = None,
        threads: int = 2,
        top_k: int = 5,
        threshold: float | None = None,
        preprocess: ExportPreprocess | None = None,
        channel_order: str | None = None,
        value_range: tuple[float, float] | None = None,
        keepalive: object = None,
    ) -> None:
        model_path = Path(model_path)
        self.path = model_path
        self.name = name or model_path.stem
        self.sha256 = sha256 or file_sha256(model_path)
        self.labels_path: Path | None = Path(labels_where)
        self.top_k = top_k
        self._keepalive = keepalive  # e.g. the temporary folder an export zip was unpacked into
        self._lock = threading.Lock()
        it = open_interpreter(model_path, threads)
        self._interpreter = it
        inputs, outputs = it.get_input_details(), it.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{model_path}: has {len(inputs)} inputs and {len(outputs)} outputs; "
                "an image classifier has one of each"
            )
        inp, out = inputs[0], outputs[0]
        shape = [int(v) for v in inp["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or min(shape) <= 0:
            raise ModelError(
                f"{model_path}: input shape {shape} is not an image [1, height, width, 3]"
            )
        self.input_size = (shape[1], shape[2])
        self._in_index = int(inp["index"])
        self._out_index = int(out["index"])
        self._input = np.zeros(shape, dtype=inp["dtype"])
        self.input_spec = self._input_spec(inp, preprocess, channel_order, value_range)
        self._pre = Preprocessor(self.input_spec)
        n_out = int(np.prod(out["shape"]))
        check_label_count(labels, n_out, str(labels_where))
        self.labels = list(labels)
        self._first = 1 if labels and labels[0].strip().lower() in BACKGROUND_LABELS else 0
        self._out_dtype = np.dtype(out["dtype"])
        scale, zero = out.get("quantization", (0.0, 0))
        self._out_scale = float(scale) if self._out_dtype.kind in "iu" and scale else 0.0
        self._out_zero = float(zero)
        self._scores = np.empty(n_out, np.float32)
        self.activation = _output_activation(it, self._out_index)
        self.embedding: EmbeddingTensor | None = None
        self._threads = threads
        if threshold is None and self.activation == "sigmoid":
            threshold = DEFAULT_SIGMOID_THRESHOLD
        self.threshold = threshold

    def enable_embedding(self) -> EmbeddingTensor:
        """Also read the pooled features feeding the logits, from the same invoke.

        The model is reopened with that tensor as a second output; each ``classify`` then
        carries it as ``extra["embedding"]`` (float32). A ModelError when there is none.
        """
        from edge.teach.embedding import find_image_embedding, with_output

        with self._lock:
            if self.embedding is None:
                found = find_image_embedding(self._interpreter, self._out_index, self.path)
                patched = with_output(self.path.read_bytes(), found.index, self.path)
                self._interpreter = open_interpreter(self.path, self._threads, content=patched)
                self.embedding = found
            return self.embedding

    def _input_spec(
        self,
        inp: dict[str, Any],
        preprocess: ExportPreprocess | None,
        channel_order: str | None,
        value_range: tuple[float, float] | None,
    ) -> InputSpec:
        dtype = np.dtype(inp["dtype"])
        if (
            dtype.kind not in "fiu"
            or dtype.itemsize > 4
            or (dtype.kind in "iu" and dtype.itemsize > 1)
        ):
            raise ModelError(
                f"{self.path}: input type {dtype} is not supported (float, uint8, int8)"
            )
        scale, zero = inp.get("quantization", (0.0, 0))
        order = channel_order or (preprocess.channel_order if preprocess else "RGB")
        if order not in ("RGB", "BGR"):
            raise ModelError(f"channel order must be RGB or BGR, not {order!r}")
        crop = preprocess.crop if preprocess else "center"
        h, w = self.input_size
        if value_range is not None:
            lo, hi = (float(v) for v in value_range)
            if not hi > lo:
                raise ModelError(f"value range must be low < high, not {value_range!r}")
            vrange: tuple[float, float] | None = (lo, hi)
        else:
            vrange = preprocess.value_range if preprocess else None
        if dtype.kind == "f":
            return InputSpec(h, w, dtype.type, order, vrange or (0.0, 1.0), crop=crop)
        if vrange is None or not scale:
            # 8-bit input fed as the pixel itself: the tensor's integer range is the pixel range.
            if dtype == np.uint8:
                return InputSpec(h, w, np.uint8, order, raw_pixels=True, crop=crop)
            if not scale:
                raise ModelError(f"{self.path}: int8 input without quantisation is not supported")
            info = np.iinfo(dtype)
            vrange = ((info.min - zero) * scale, (info.max - zero) * scale)
        return InputSpec(h, w, dtype.type, order, vrange, float(scale), int(zero), crop=crop)

    # ------------------------------------------------------------------ running
    def classify(self, bgr: np.ndarray, top_k: int | None = None) -> Prediction:
        """Scores for one BGR uint8 image, as the model gives them (sigmoids are not rescaled)."""
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8 or bgr.size == 0:
            raise ValueError(f"expected a BGR uint8 image, got {bgr.dtype} {bgr.shape}")
        with self._lock:
            t0 = time.perf_counter()
            self._pre(bgr, self._input[0])
            it = self._interpreter
            it.set_tensor(self._in_index, self._input)
            it.invoke()
            raw = it.get_tensor(self._out_index).reshape(-1)
            ms = (time.perf_counter() - t0) * 1000.0
            scores = self._scores
            if self._out_scale:
                np.subtract(raw, self._out_zero, out=scores, casting="unsafe")
                scores *= self._out_scale
            else:
                np.copyto(scores, raw, casting="unsafe")
            activation = self.activation
            if activation == "unknown":
                activation = _guess_activation(scores)
            if activation == "logits":
                softmax(scores, out=scores)
                activation = "softmax"
            probs = scores.copy()
            features = self.embedding.read(it) if self.embedding is not None else None
        first = self._first
        top = top_k_with_offset(probs, self.labels, self.top_k if top_k is None else top_k, first)
        label = self.decide(top)
        extra: dict[str, object] = {
            "activation": activation,
            "label": label,
            "threshold": self.threshold,
        }
        if features is not None:
            extra["embedding"] = features
        return Prediction(probs, top, self.name, time.time(), ms, extra)

    def decide(self, top: tuple[Scored, ...]) -> str | None:
        """The best label, or None when nothing reaches the threshold ("none of these")."""
        if not top:
            return None
        best = top[0]
        if self.threshold is not None and best.score < self.threshold:
            return None
        return best.label

    def describe(self) -> dict[str, Any]:
        spec = self.input_spec
        return {
            "name": self.name,
            "sha256": self.sha256,
            "path": str(self.path),
            "labels": len(self.labels),
            "background": bool(self._first),
            "input": [spec.height, spec.width],
            "channel_order": spec.channel_order,
            "value_range": None if spec.raw_pixels else list(spec.value_range),
            "activation": self.activation,
            "threshold": self.threshold,
        }


def top_k_with_offset(
    probs: np.ndarray, labels: list[str], k: int, first: int
) -> tuple[Scored, ...]:
    """Top k, leaving out a background class at index 0 when ``first`` is 1."""
    return top_k(probs[first:], labels[first:], k) if first else top_k(probs, labels, k)


def _guess_activation(scores: np.ndarray) -> str:
    """For runtimes that cannot show the graph: probabilities stay, anything else is logits."""
    if scores.size and scores.min() >= 0.0 and scores.max() <= 1.0:
        return "softmax" if abs(float(scores.sum()) - 1.0) < 0.02 else "sigmoid"
    return "logits"
