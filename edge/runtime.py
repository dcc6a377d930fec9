"""Opening a TFLite interpreter: LiteRT first, then tflite-runtime, then TensorFlow's."""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path
from typing import Any

from edge.errors import ModelError
from edge.nativeio import native_stderr

_BACKENDS = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite.python.interpreter", "tensorflow"),
)

_loaded: tuple[Any, str] | None = None


def _interpreter_class() -> tuple[Any, str]:
    global _loaded
    if _loaded is None:
        failures = []
        for module_name, package in _BACKENDS:
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # ImportError, or numpy ABI errors from old wheels
                failures.append(f"{package}: {exc.__class__.__name__}")
                continue
            _loaded = (module.Interpreter, package)
            break
        else:
            raise ModelError(
                "no TFLite interpreter installed; install one of ai-edge-litert (preferred), "
                "tflite-runtime or tensorflow (" + "; ".join(failures) + ")"
            )
    return _loaded


def backend_name() -> str:
    """Name of the package that provides the interpreter."""
    return _interpreter_class()[1]


def check_tflite_file(path: Path) -> None:
    """Refuse files that are missing or not TFLite flatbuffers, with a message naming the file."""
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TFLite model (no TFL3 identifier)")


def open_interpreter(
    path: str | Path, threads: int | None = None, content: bytes | None = None
) -> Any:
    """Load and allocate an interpreter, turning the runtime's errors into one-line ModelErrors.

    ``content``, when given, is the model (e.g. patched in memory) and ``path`` names it.
    """
    path = Path(path)
    if content is None:
        check_tflite_file(path)
    cls, _ = _interpreter_class()
    native: list[str] = []
    try:
        with native_stderr(native):
            if content is None:
                interpreter = cls(model_path=str(path), num_threads=threads)
            else:
                interpreter = cls(model_content=content, num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()] or native
        first = lines[0] if lines else exc.__class__.__name__
        raise ModelError(f"{path}: cannot load model: {first}") from None
    chatter = [ln for ln in native if not ln.startswith("INFO:")]
    if chatter:
        sys.stderr.write("\n".join(chatter) + "\n")
    return interpreter


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so large models don't need their size in RAM."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
