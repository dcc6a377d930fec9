"""Opening interpreters: the backend order, and clear one-line errors for bad model files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.errors import ModelError
from edge.runtime import backend_name, check_tflite_file, open_interpreter

BLOCK = """
import sys
for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
             "tflite_runtime.interpreter", "tensorflow", "tensorflow.lite",
             "tensorflow.lite.python.interpreter"):
    sys.modules[name] = None  # as if not installed
from edge.runtime import open_interpreter
from edge.errors import ModelError
try:
    open_interpreter(sys.argv[1])
except ModelError as exc:
    print(exc)
"""


def test_litert_is_the_default_backend():
    assert backend_name() == "ai-edge-litert"


def test_no_runtime_installed_names_every_package(a0, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK, str(a0)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout.strip()
    assert "no TFLite interpreter installed" in message
    for package in ("ai-edge-litert", "tflite-runtime", "tensorflow"):
        assert package in message


def test_bad_model_files_are_model_errors(a0, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        check_tflite_file(tmp_path / "missing.tflite")
    text = tmp_path / "notes.tflite"
    text.write_text("not a model")
    with pytest.raises(ModelError, match="not a TFLite model"):
        open_interpreter(text)
    half = tmp_path / "half.tflite"
    half.write_bytes(a0.read_bytes()[: a0.stat().st_size // 2])
    with pytest.raises(ModelError, match="cannot load model") as info:
        open_interpreter(half)
    assert "\n" not in str(info.value)


def test_loading_keeps_the_runtime_banner_off_stderr(a0, capfd):
    open_interpreter(a0, 1)
    assert "XNNPACK" not in capfd.readouterr().err
