"""How an offline pipeline splits the cores between the model and the decoder."""

from __future__ import annotations

import pytest

from edge import cores


@pytest.mark.parametrize(
    ("cpus", "model", "decoder"),
    [(1, 1, 1), (2, 1, 1), (4, 3, 1), (8, 7, 1), (None, 1, 1)],
)
def test_the_model_takes_all_cores_but_the_decoders_one(monkeypatch, cpus, model, decoder):
    monkeypatch.setattr(cores.os, "cpu_count", lambda: cpus)
    assert cores.model_threads() == model
    assert cores.decode_threads(cores.model_threads()) == decoder


def test_the_decoder_gets_what_a_smaller_model_leaves(monkeypatch):
    monkeypatch.setattr(cores.os, "cpu_count", lambda: 4)
    assert cores.decode_threads(1) == 3
    assert cores.decode_threads(4) == 1  # never none
    assert cores.decode_threads(0) == 3  # a model thread is always there
