"""A failed ``MoLIndex.add`` (out of memory while a cache grows, an interrupt) leaves the index as
it was: ids, metadata, cached rows and search results, with the first stages consistent (torch
and flat stages here: a dropped IVF stage is retrained at its next use, with other cells).

Before, the append path registered the new ids before the caches grew (a ``MemoryError`` in the
second cache left ids without cache rows and the three caches of different lengths), and an
upsert that failed part-way kept the rows it had already written."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.index import BruteForce, MoLIndex, TopKAvg, TopKPerEmbd
from rag_relax_plugins.index._storage import RowBuffer
from rag_relax_plugins.index.stages import FirstStages

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss not installed")
KINDS = ["torch", pytest.param("flat", marks=needs_faiss)]


def _index(kind: str) -> MoLIndex:
    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=16, item_dim=16, num_query_embeddings=2, num_item_embeddings=3,
                                  component_dim=8))
    index = MoLIndex(sim, first_stage=kind, device="cpu")
    index.add([f"d{i}" for i in range(40)], torch.randn(40, 16), [{"i": i} for i in range(40)])
    index.build()  # the stages exist before the failed add
    return index


def _snapshot(index: MoLIndex, q: torch.Tensor) -> dict[str, Any]:
    store = index._store
    return {
        "ids": list(index.ids),
        "rows": dict(index._table.rows),
        "metadata": index.get_metadata(index.ids),
        "features": index.get_features(index.ids).clone(),
        "lengths": (len(store.features), len(store.components), len(store.gate)),
        # budgets of k: the ids are the first stages' candidates themselves
        "search": [index.search(q, 6, strategy=s) for s in (BruteForce(), TopKAvg(6), TopKPerEmbd(6))],
    }


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["ids"] == b["ids"] and a["rows"] == b["rows"] and a["metadata"] == b["metadata"]
    assert torch.equal(a["features"], b["features"]) and a["lengths"] == b["lengths"]
    for (s1, i1), (s2, i2) in zip(a["search"], b["search"], strict=True):
        assert i1 == i2 and torch.equal(s1, s2)


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, call: int, exc: BaseException,
                  only: tuple[object, ...] = ()) -> None:
    """Make ``owner.name`` raise ``exc`` at its ``call``-th call (1-based) from now on, counting
    only the calls on the instances ``only`` when given."""
    original, calls = getattr(owner, name), [0]

    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not only or any(self is o for o in only):
            calls[0] += 1
            if calls[0] == call:
                raise exc
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("call", [1, 2, 3])
def test_out_of_memory_in_any_cache_append_leaves_the_index_as_it_was(monkeypatch, kind: str, call: int) -> None:
    """The caches grow one after another (features, components, gate): a ``MemoryError`` in any
    of them undoes the others and registers no id; the same add then succeeds."""
    index, q = _index(kind), torch.randn(20, 16)
    before = _snapshot(index, q)
    new_ids, feats = ["n0", "n1", "d3"], torch.randn(3, 16)  # two new ids and an upsert
    with monkeypatch.context() as m:
        store = index._store  # the label maps of the FAISS stages are RowBuffers too
        _fail_on_call(m, RowBuffer, "append", call, MemoryError("cannot grow"),
                      only=(store.features, store.components, store.gate))
        with pytest.raises(MemoryError):
            index.add(new_ids, feats, [{"new": 0}, {"new": 1}, {"new": 3}])
    _assert_same(_snapshot(index, q), before)
    index.add(new_ids, feats, [{"new": 0}, {"new": 1}, {"new": 3}])
    assert len(index) == 42 and index.get_metadata(["d3", "n1"]) == [{"new": 3}, {"new": 1}]
    fresh = index.empty_like(index.similarity)
    fresh.add(index.ids, index.get_features(index.ids), index.get_metadata(index.ids))
    for strategy in (TopKAvg(10), TopKPerEmbd(10)):
        assert index.search(q, 6, strategy=strategy)[1] == fresh.search(q, 6, strategy=strategy)[1]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["replace", "append"])
def test_an_interrupt_in_a_first_stage_edit_undoes_the_whole_add(monkeypatch, kind: str, where: str) -> None:
    """``KeyboardInterrupt`` inside the first stages' upsert or append: the rows already
    written are put back, the new ids are dropped, and the stages (which may hold the new
    vectors) are rebuilt from the restored cache at the next search."""
    index, q = _index(kind), torch.randn(20, 16)
    before = _snapshot(index, q)
    with monkeypatch.context() as m:
        _fail_on_call(m, FirstStages, where, 1, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            index.add(["d5", "d7", "n0"], torch.randn(3, 16) * 3, [{}, {}, {}])
    _assert_same(_snapshot(index, q), before)


def test_an_interrupt_while_upserted_rows_are_written_puts_them_back(monkeypatch) -> None:
    """An interrupt after the features were overwritten but before the components were: the
    replaced rows hold their old features, components, gate and metadata again."""
    index, q = _index("torch"), torch.randn(20, 16)
    before = _snapshot(index, q)
    comps = index._items.components.clone()
    original, store, row = RowBuffer.data, index._store, index._table.rows["d1"]
    old_features = store.features.data[row].clone()

    class Interrupting:  # the components cache, read once the features were overwritten
        def __get__(self, obj: RowBuffer, owner: type) -> torch.Tensor:
            if obj is store.components and not torch.equal(original.__get__(store.features)[row], old_features):
                raise KeyboardInterrupt
            return original.__get__(obj, owner)  # type: ignore[no-any-return]

    with monkeypatch.context() as m:
        m.setattr(RowBuffer, "data", Interrupting())
        with pytest.raises(KeyboardInterrupt):
            index.add(["d1", "d2"], torch.randn(2, 16) * 5, [{"x": 1}, {"x": 2}])
    _assert_same(_snapshot(index, q), before)
    assert torch.equal(index._items.components, comps)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("after", [1, 3, 20])
def test_an_interrupt_inside_a_delete_leaves_the_index_as_it_was(kind: str, after: int, interrupted_at_write) -> None:  # type: ignore[no-untyped-def]
    """A delete compacts the caches, then renumbers the ids after the first deleted row: an
    interrupt in between left the caches compacted and the ids half renumbered (rows of other
    items: wrong results, or an IndexError past the end). Now the caches and ids are put back."""
    index, q = _index(kind), torch.randn(20, 16)
    before = _snapshot(index, q)
    rows = index._table.rows
    index._table.rows = interrupted_at_write(rows, after)
    with pytest.raises(KeyboardInterrupt):
        index.delete(["d4", "d17", "d30"])
    index._table.rows = dict(index._table.rows)
    _assert_same(_snapshot(index, q), before)
    index.delete(["d4", "d17", "d30"])
    assert len(index) == 37 and "d17" not in index and index.search(q, 37)[1][0].count("d18") == 1


@pytest.mark.parametrize("kind", KINDS)
def test_an_interrupt_in_the_first_stages_delete_undoes_the_delete(monkeypatch, kind: str) -> None:
    index, q = _index(kind), torch.randn(20, 16)
    before = _snapshot(index, q)
    with monkeypatch.context() as m:
        _fail_on_call(m, FirstStages, "delete", 1, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            index.delete(["d0", "d39"])
    _assert_same(_snapshot(index, q), before)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("call", [1, 2, 3])
def test_an_interrupt_while_the_compacted_caches_are_installed_undoes_the_delete(monkeypatch, kind: str, call: int) -> None:
    """A delete installs its three compacted caches one after another: an interrupt after the
    first left caches of different lengths (found by review with a real SIGINT)."""
    index, q = _index(kind), torch.randn(20, 16)
    before = _snapshot(index, q)
    store = index._store
    original, calls = RowBuffer.replace, [0]

    def replace_then_interrupt(self: RowBuffer, data: torch.Tensor, n: int | None = None) -> None:
        original(self, data, n)
        if any(self is b for b in (store.features, store.components, store.gate)):
            calls[0] += 1
            if calls[0] == call:
                raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(RowBuffer, "replace", replace_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            index.delete(["d4", "d17"])
    _assert_same(_snapshot(index, q), before)
