"""MoViNet-Stream: a video classifier that carries its memory from frame to frame in tensors.

Nothing about an export is hard-coded. The signature whose input is one 5-D image
``[1, 1, H, W, 3]`` is used; every other input is state; state outputs are matched to state
inputs by signature name; the one output left over is the logits. The signature runner is
only asked for tensor indices at load time; each step then works on the interpreter by
tensor index with buffers allocated once. The official export passes 30 of its 43 states
straight through (output tensor == input tensor): those are never copied.

Bounded memory horizon
----------------------
MoViNet's pools (``*_pool_buffer`` a running sum, ``*_pool_frame_count`` its count) average
over every frame since the last reset, so on a stream that never resets the output freezes
on the past. The update is additive, so two staggered copies of each pool pair are kept
from the one invoke per step: the model is fed the *mature* copy, and the same delta is
added to a *young* copy started half a horizon later. When the mature copy has seen a whole
horizon it is dropped and the young one takes its place, so the model always averages over
between half a horizon and a whole one, never starts cold, and costs no second invoke.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edge.classifiers.base import Prediction, softmax, top_k
from edge.errors import ModelError
from edge.frame import Frame
from edge.labels import check_label_count, load_labels
from edge.preprocess import InputSpec, Preprocessor
from edge.runtime import file_sha256, open_interpreter

# How frames are scaled to the model's input: chosen by `edge bench --resize` on the sample
# clips (README, "How fast, measured").
RESIZE = "linear"

_POOL_BUFFER = "_pool_buffer"
_POOL_COUNT = "_pool_frame_count"


@dataclass(slots=True)
class _Pool:
    """One pool tensor under the horizon scheme: mature/young copies in a wide dtype."""

    name: str
    in_index: int
    out_fn: Any
    zero_point: int
    mature: np.ndarray
    young: np.ndarray
    delta: np.ndarray
    stage: np.ndarray  # the tensor's dtype, what set_tensor copies from


class StateTensor(NamedTuple):
    """One state the model reads at each step and writes for the next."""

    name: str
    in_index: int
    out_index: int  # the same as in_index when the export passes the state through
    dtype: np.dtype
    shape: tuple[int, ...]
    zero_point: int  # what "empty" is for a quantised state; 0 for float ones


@dataclass(frozen=True, slots=True)
class StreamSignature:
    """What was learnt about an export at load time."""

    key: str
    image_index: int
    image_shape: tuple[int, ...]
    image_dtype: np.dtype
    image_quant: tuple[float, int]
    logits_index: int
    num_classes: int
    states: tuple[StateTensor, ...] = field(default=())

    @property
    def changing(self) -> tuple[StateTensor, ...]:
        """The states the model rewrites: only these are copied from output to input."""
        return tuple(s for s in self.states if s.in_index != s.out_index)


def inspect_signature(interpreter: Any, where: str | Path) -> StreamSignature:
    """Find the image input, the state pairs and the logits of a streaming export."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise ModelError(
            f"{where}: model has no signature, so it is not a streaming video model "
            "(a MoViNet stream export has one with an image and state inputs)"
        )
    for key in signatures:
        runner = interpreter.get_signature_runner(key)
        inputs = runner.get_input_details()
        outputs = runner.get_output_details()
        sub = getattr(runner, "_subgraph_index", 0)
        del runner  # it holds a reference that would make invoke() refuse to run
        images = [
            n
            for n, d in inputs.items()
            if len(d["shape"]) == 5 and tuple(d["shape"][:2]) == (1, 1) and d["shape"][4] == 3
        ]
        if len(images) != 1:
            continue
        if sub != 0:
            raise ModelError(f"{where}: signature {key!r} is not the model's main subgraph")
        image = inputs[images[0]]
        states = []
        for name, d in inputs.items():
            if name == images[0]:
                continue
            out = outputs.get(name)
            if out is None:
                raise ModelError(
                    f"{where}: state input {name!r} of signature {key!r} has no output "
                    "of the same name to feed it from"
                )
            if tuple(out["shape"]) != tuple(d["shape"]) or out["dtype"] != d["dtype"]:
                raise ModelError(
                    f"{where}: state {name!r}: output {tuple(out['shape'])} {out['dtype']} "
                    f"does not match input {tuple(d['shape'])} {d['dtype']}"
                )
            scale, zp = d["quantization"]
            states.append(
                StateTensor(
                    name=name,
                    in_index=int(d["index"]),
                    out_index=int(out["index"]),
                    dtype=np.dtype(d["dtype"]),
                    shape=tuple(int(x) for x in d["shape"]),
                    zero_point=int(zp) if scale else 0,
                )
            )
        rest = [n for n in outputs if n not in inputs]
        if len(rest) != 1:
            raise ModelError(
                f"{where}: signature {key!r} should have exactly one output besides the "
                f"states (the logits), found {len(rest)}: {', '.join(rest) or 'none'}"
            )
        logits = outputs[rest[0]]
        if np.dtype(logits["dtype"]).kind != "f":
            raise ModelError(f"{where}: logits output {rest[0]!r} is not float")
        scale, zp = image["quantization"]
        return StreamSignature(
            key=key,
            image_index=int(image["index"]),
            image_shape=tuple(int(x) for x in image["shape"]),
            image_dtype=np.dtype(image["dtype"]),
            image_quant=(float(scale), int(zp)),
            logits_index=int(logits["index"]),
            num_classes=int(np.prod(logits["shape"])),
            states=tuple(states),
        )
    raise ModelError(
        f"{where}: no signature has a 5-D image input [1, 1, H, W, 3]; "
        "this is not a streaming video model"
    )


class StreamClassifier:
    """One MoViNet-Stream model stepped one frame at a time; not thread-safe.

    ``step(frame)`` preprocesses into the input tensor and runs. A pipelined loop instead
    calls ``preprocess_into(bgr, buf)`` on a decode thread (``buf`` from ``new_input()``)
    and ``run(buf, timestamp, epoch)`` on the model thread. ``Prediction.inference_ms`` is
    the model's part (invoke, state carry, softmax), not preprocessing.
    """

    kind = "stream"

    def __init__(
        self,
        model_path: str | Path,
        labels: list[str] | None = None,
        *,
        labels_path: str | Path | None = None,
        threads: int = 2,
        top_k: int = 5,
        horizon_s: float = 0.0,
        fps: float = 5.0,
        reset_gap_s: float = 2.0,
        name: str | None = None,
        resize: str = RESIZE,
        sha256: str | None = None,
    ) -> None:
        if not fps > 0:
            raise ModelError(f"model rate must be positive, not {fps}")
        if horizon_s < 0 or not math.isfinite(horizon_s):
            raise ModelError(f"horizon must be 0 (unbounded) or a positive time, not {horizon_s}")
        self.path = Path(model_path)
        self._interp = open_interpreter(self.path, threads)
        self.signature = sig = inspect_signature(self._interp, self.path)
        self.name = name or self.path.stem
        self.sha256 = sha256 or file_sha256(self.path)
        self.labels_path = Path(labels_path) if labels_path is not None else None
        if labels is None and labels_path is not None:
            labels = load_labels(labels_path)
            where = str(labels_path)
        else:
            where = str(self.path)
        if labels is None:
            labels = [str(i) for i in range(sig.num_classes)]
        check_label_count(labels, sig.num_classes, where)
        self.labels = list(labels)
        self.top_k = top_k
        self.fps = float(fps)
        self.reset_gap_s = float(reset_gap_s)
        self.horizon_s = float(horizon_s)
        self.horizon_steps = max(2, round(horizon_s * fps)) if horizon_s > 0 else 0
        h, w = sig.image_shape[2], sig.image_shape[3]
        self.input_size = (h, w)
        scale, zp = sig.image_quant
        quantised = sig.image_dtype.kind in "iu"
        if quantised and scale <= 0:
            raise ModelError(f"{self.path}: integer image input without quantisation parameters")
        self._pre = Preprocessor(
            InputSpec(
                height=h,
                width=w,
                dtype=sig.image_dtype.type,
                channel_order="RGB",
                value_range=(0.0, 1.0),
                scale=scale if quantised else 0.0,
                zero_point=zp if quantised else 0,
                resize=resize,
            )
        )
        self._pre_async = Preprocessor(self._pre.spec)
        interp = self._interp
        self._invoke = interp.invoke
        self._set = interp.set_tensor
        self._image_fn = interp.tensor(sig.image_index)
        self._logits_fn = interp.tensor(sig.logits_index)
        self._all_states = [(interp.tensor(s.in_index), s.zero_point) for s in sig.states]
        pool_names = self._pool_names(sig) if self.horizon_steps else set()
        self._carry = [
            (s.in_index, interp.tensor(s.out_index))
            for s in sig.changing
            if s.name not in pool_names
        ]
        self._pools: list[_Pool] = []
        for s in sig.changing:
            if s.name not in pool_names:
                continue
            wide = np.float64 if s.dtype.kind == "f" else np.int64
            self._pools.append(
                _Pool(
                    name=s.name,
                    in_index=s.in_index,
                    out_fn=interp.tensor(s.out_index),
                    zero_point=s.zero_point,
                    mature=np.full(s.shape, s.zero_point, wide),
                    young=np.full(s.shape, s.zero_point, wide),
                    delta=np.zeros(s.shape, wide),
                    stage=np.full(s.shape, s.zero_point, s.dtype),
                )
            )
        # The horizon is kept in seconds of the frames' own timestamps, so a camera slower
        # than ``fps`` (or a file classified at every frame) still remembers horizon_s.
        self._mature_t0: float | None = None
        self._young_t0: float | None = None
        self._prev_t: float | None = None
        self._period = 1.0 / self.fps
        self._last_t: float | None = None
        self._epoch: int | None = None
        self.steps = 0
        self.resets = 0
        self.reset()  # the arena's initial contents are not guaranteed to be zero
        self.resets = 0  # count only resets after load: restarts, gaps, explicit calls

    @staticmethod
    def _pool_names(sig: StreamSignature) -> set[str]:
        """Names of changing pool tensors that come as a buffer/count pair."""
        changing = {s.name for s in sig.changing}
        names: set[str] = set()
        for n in changing:
            if n.endswith(_POOL_BUFFER):
                count = n[: -len(_POOL_BUFFER)] + _POOL_COUNT
                if count in changing:
                    names.update((n, count))
        return names

    @property
    def interpreter(self) -> Any:
        """The underlying interpreter (for benchmarks); hold no tensor views across steps."""
        return self._interp

    @property
    def num_classes(self) -> int:
        return self.signature.num_classes

    def reset(self) -> None:
        """Zero every state (the zero point for quantised ones): the model starts afresh."""
        for fn, zp in self._all_states:
            view = fn()
            view.fill(zp)
            del view
        for p in self._pools:
            p.mature.fill(p.zero_point)
            p.young.fill(p.zero_point)
        self._mature_t0 = self._young_t0 = self._prev_t = None
        self.resets += 1

    # -- per frame -------------------------------------------------------------------------

    def new_input(self) -> np.ndarray:
        """A buffer shaped like the image input, for ``preprocess_into`` and ``run``."""
        return np.zeros(self.signature.image_shape, self.signature.image_dtype)

    def preprocess_into(self, bgr: np.ndarray, buf: np.ndarray) -> np.ndarray:
        """Centre-crop, resize, RGB, scale (or quantise) ``bgr`` into ``buf``.

        Has its own scratch buffers, so one other thread may call it while ``step``/``run``
        run on the model thread.
        """
        h, w = self.input_size
        self._pre_async(bgr, buf.reshape(h, w, 3))
        return buf

    def step(self, frame: Frame) -> Prediction:
        """Classify the next frame of the stream (resetting first on a new epoch or a gap)."""
        reset = self._check_reset(frame.timestamp, frame.epoch)
        self._fill_image(frame.image)
        return self._finish(frame.timestamp, time.perf_counter(), reset)

    def run(self, buf: np.ndarray, timestamp: float, epoch: int = 0) -> Prediction:
        """Like ``step`` for an input already made by ``preprocess_into``."""
        reset = self._check_reset(timestamp, epoch)
        start = time.perf_counter()
        self._set(self.signature.image_index, buf)
        return self._finish(timestamp, start, reset)

    def _fill_image(self, bgr: np.ndarray) -> None:
        # The view must be gone before invoke(), which refuses to run while one exists.
        h, w = self.input_size
        self._pre(bgr, self._image_fn().reshape(h, w, 3))

    def _check_reset(self, timestamp: float, epoch: int) -> bool:
        last = self._last_t
        reset = last is not None and (
            epoch != self._epoch or timestamp < last or timestamp - last > self.reset_gap_s
        )
        if reset:
            self.reset()
        self._last_t = timestamp
        self._epoch = epoch
        return reset

    def _finish(self, timestamp: float, start: float, reset: bool) -> Prediction:
        self._invoke()
        set_tensor = self._set
        for in_index, out_fn in self._carry:
            set_tensor(in_index, out_fn())
        if self._pools:
            self._advance_pools(timestamp)
        probs = softmax(self._logits_fn())
        elapsed = (time.perf_counter() - start) * 1000.0
        self.steps += 1
        top = top_k(probs, self.labels, self.top_k)
        if reset:
            return Prediction(probs, top, self.name, timestamp, elapsed, {"reset": True})
        return Prediction(probs, top, self.name, timestamp, elapsed)

    def _advance_pools(self, t: float) -> None:
        """Fold this step's pool delta into both copies; swap when the mature one is full.

        The mature copy covers frames since ``_mature_t0``; the young one starts half a
        horizon later. A frame counts for the time up to the next one (``_period``), so
        at the nominal rate a copy holds exactly horizon_s × fps steps when it is swapped.
        """
        if self._prev_t is not None and t > self._prev_t:
            self._period = t - self._prev_t
        self._prev_t = t
        if self._mature_t0 is None:
            self._mature_t0 = t
        span = t - self._mature_t0 + self._period  # what the mature copy covers with this frame
        if self._young_t0 is None and span > self.horizon_s - self.horizon_s / 2 + 1e-9:
            self._young_t0 = t
        young = self._young_t0 is not None
        for p in self._pools:
            out = p.out_fn()
            np.subtract(out, p.mature, out=p.delta)
            np.copyto(p.mature, out)
            del out
            if young:
                p.young += p.delta
        if span >= self.horizon_s - 1e-9:
            for p in self._pools:
                p.mature, p.young = p.young, p.mature
                p.young.fill(p.zero_point)
            self._mature_t0, self._young_t0 = self._young_t0, None
        set_tensor = self._set
        for p in self._pools:
            np.copyto(p.stage, p.mature, casting="unsafe")
            set_tensor(p.in_index, p.stage)
