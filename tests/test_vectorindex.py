"""The sqlite-vec index (sdk/vectorindex.py): a memory is there with its vector or not at
all, an add is an upsert by key, and the file reopens to the same index."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cleancut.sdk.vectorindex import VectorIndex, hashed_embedding

DIM = 16
WORDS = st.sampled_from(["tea", "coffee", "bob", "alice", "paid", "remember", "blue"])
TEXT = st.lists(WORDS, min_size=1, max_size=5).map(" ".join)
KEY = st.sampled_from([f"k{i}" for i in range(6)])
OPS = st.lists(st.tuples(st.sampled_from(["add", "remove"]), KEY, TEXT), max_size=25)


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_the_index_holds_what_was_added_and_not_removed(ops: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "memory.sqlite"
        index = VectorIndex(path, hashed_embedding(DIM), DIM)
        model: dict[str, str] = {}
        for op, key, text in ops:
            if op == "add":
                index.add(key, text, {"n": len(model)})
                model[key] = text
            else:
                index.remove(key)
                model.pop(key, None)
        assert index.keys() == set(model)
        index.close()
        reopened = VectorIndex(path, hashed_embedding(DIM), DIM)
        assert reopened.keys() == set(model)
        hits = reopened.query("tea", k=len(model) or 1)
        assert {h.key: h.text for h in hits} == model
        reopened.close()


def test_the_nearest_memory_comes_first(tmp_path: Path) -> None:
    index = VectorIndex(tmp_path / "memory.sqlite", hashed_embedding(64), 64)
    index.add("a", "alice drinks green tea")
    index.add("b", "bob paid the invoice")
    index.add("c", "the sky is blue")
    assert index.query("invoice paid by bob", k=1)[0].key == "b"
    index.flush()
    index.close()
