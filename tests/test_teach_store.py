"""The teaching store: examples tied to their model, carried in one file, never silently lost."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from edge.teach.encoding import LabelError, check_label
from edge.teach.store import ModelKey, Store, StoreError

MODEL_A = ModelKey("a" * 64, "state_head_pool_buffer", "a0")
MODEL_B = ModelKey("b" * 64, "MobilenetV2/Logits/AvgPool", "mobilenet")


def vectors(n: int, dim: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return list(rng.standard_normal((n, dim)).astype(np.float32))


def test_examples_are_kept_per_model_and_survive_reopening(tmp_path):
    path = tmp_path / "teach.sqlite"
    with Store(path) as store:
        store.add_many("feeding", vectors(3), MODEL_A, ["live"] * 3)
        store.add("sofa", vectors(1, seed=1)[0], MODEL_A, "file:dog.jpg", thumbnail=b"\xff\xd8")
        store.add("leaf", vectors(1, dim=8)[0], MODEL_B, "file:leaf.jpg")
    with Store(path) as store:
        assert [(c.label, c.count) for c in store.classes(MODEL_A)] == [("feeding", 3), ("sofa", 1)]
        assert [(c.label, c.count) for c in store.classes(MODEL_B)] == [("leaf", 1)]
        a = store.examples(MODEL_A)
        assert a.labels == ["feeding", "feeding", "feeding", "sofa"]
        assert a.embeddings.shape == (4, 16)
        assert np.allclose(np.linalg.norm(a.embeddings, axis=1), 1.0, atol=1e-3)
        # float16 storage keeps the direction
        want = vectors(3)[0] / np.linalg.norm(vectors(3)[0])
        assert float(a.embeddings[0] @ want) > 0.9999
        # another model's key sees none of them
        other = ModelKey("c" * 64, "state_head_pool_buffer", "a1")
        assert len(store.examples(other)) == 0 and store.classes(other) == []


def test_views_come_back_with_their_example(tmp_path):
    with Store(tmp_path / "t.sqlite") as store:
        e, v1, v2 = vectors(3, dim=32)
        store.add("leaf", e, MODEL_B, "file:x.jpg", views=[v1, v2])
        got = store.examples(MODEL_B).views[0]
    assert got.shape == (3, 32)
    for row, want in zip(got, (e, v1, v2), strict=True):
        cos = float(row @ want) / (np.linalg.norm(row) * np.linalg.norm(want))
        assert cos > 0.999


def test_forget_removes_one_class_of_one_model(tmp_path):
    with Store(tmp_path / "t.sqlite") as store:
        store.add_many("x", vectors(2), MODEL_A, ["live"] * 2)
        store.add_many("x", vectors(2, dim=8), MODEL_B, ["live"] * 2)
        store.add_many("y", vectors(2), MODEL_A, ["live"] * 2)
        assert store.forget("x", MODEL_A) == 2
        assert [c.label for c in store.classes(MODEL_A)] == ["y"]
        assert [c.label for c in store.classes(MODEL_B)] == ["x"]
        assert store.forget("nothing", MODEL_A) == 0


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 65, "longer"),
        ("a\nb", "control"),
        ("a\x00", "control"),
    ],
)
def test_bad_labels_are_refused_and_nothing_is_kept(tmp_path, label, why):
    with pytest.raises(LabelError, match=why):
        check_label(label)
    with Store(tmp_path / "t.sqlite") as store:
        with pytest.raises(LabelError):
            store.add(label, vectors(1)[0], MODEL_A, "live")
        assert store.classes() == []


def test_labels_are_trimmed_and_may_be_any_language():
    assert check_label("  vache qui mange ") == "vache qui mange"
    assert check_label("牛が食べる") == "牛が食べる"


def test_export_and_import_carry_examples_to_another_store_once(tmp_path):
    with Store(tmp_path / "here.sqlite") as here:
        here.add_many("feeding", vectors(3), MODEL_A, ["live"] * 3)
        here.add_many("leaf", vectors(2, dim=8), MODEL_B, ["live"] * 2)
        assert here.export(tmp_path / "out.sqlite", MODEL_A) == 3
    # One self-contained file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.sqlite", "out.sqlite"]
    with Store(tmp_path / "there.sqlite") as there:
        assert there.import_from(tmp_path / "out.sqlite", MODEL_A) == 3
        assert there.import_from(tmp_path / "out.sqlite", MODEL_A) == 0  # already there
        assert [(c.label, c.count) for c in there.classes(MODEL_A)] == [("feeding", 3)]


def test_import_of_another_models_examples_is_refused_whole(tmp_path):
    with Store(tmp_path / "here.sqlite") as here:
        here.add_many("feeding", vectors(3), MODEL_A, ["live"] * 3)
        here.export(tmp_path / "out.sqlite")
    with Store(tmp_path / "there.sqlite") as there:
        there.add("leaf", vectors(1, dim=8)[0], MODEL_B, "live")
        with pytest.raises(StoreError, match=r"made by model a0 .* not by mobilenet.*refused"):
            there.import_from(tmp_path / "out.sqlite", MODEL_B)
        assert [(c.label, c.count) for c in there.classes()] == [("leaf", 1)]


def test_export_never_overwrites(tmp_path):
    (tmp_path / "out.sqlite").write_bytes(b"precious")
    with Store(tmp_path / "here.sqlite") as here:
        here.add("x", vectors(1)[0], MODEL_A, "live")
        with pytest.raises(StoreError, match="already exists"):
            here.export(tmp_path / "out.sqlite")
    assert (tmp_path / "out.sqlite").read_bytes() == b"precious"


def test_a_file_that_is_not_a_store_is_an_error_and_stays_as_it_was(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all, just some bytes" * 100)
    before = junk.read_bytes()
    with pytest.raises(StoreError, match="damaged or not a store"):
        Store(junk)
    assert junk.read_bytes() == before

    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things (x)")
    with pytest.raises(StoreError, match="not a teaching store"):
        Store(other)


def test_a_damaged_store_is_an_error_not_an_empty_store(tmp_path):
    path = tmp_path / "t.sqlite"
    with Store(path) as store:
        store.add_many("x", vectors(400, dim=64), MODEL_A, ["live"] * 400)
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    # Overwrite pages in the middle of the file (the examples' b-tree) with garbage.
    data[4096 * 3 : 4096 * 6] = b"\x5a" * (4096 * 3)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged"), Store(path) as store:
        store.examples(MODEL_A)
    assert path.read_bytes() == bytes(data)
