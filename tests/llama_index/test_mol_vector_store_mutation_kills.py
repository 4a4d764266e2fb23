"""Documented behaviour of the LlamaIndex MoLVectorStore that hand mutants changed unnoticed (review 2026-12-05).

Each test fails on one mutant and passes on the code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from llama_index.core.schema import TextNode

from rag_relax_plugins.llama_index import MoLVectorStore


def _emb(text: str, dim: int = 8) -> list[float]:
    r = random.Random(text)
    return [r.gauss(0, 1) for _ in range(dim)]


def test_a_manifest_missing_an_indexed_id_is_refused(tmp_path: Path) -> None:
    store = MoLVectorStore(device="cpu")
    store.add([TextNode(id_=i, text=i, embedding=_emb(i)) for i in ("n1", "n2")])
    store.persist(str(tmp_path / "m.json"))
    data = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    data["ids"], data["records"] = data["ids"][:1], data["records"][:1]  # the index folder still holds n2
    (tmp_path / "m.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="disagree on the stored ids"):
        MoLVectorStore.from_persist_path(str(tmp_path / "m.json"))


def _two_node_store() -> MoLVectorStore:
    store = MoLVectorStore(device="cpu")
    store.add([
        TextNode(id_="a", text="a", embedding=_emb("a"), metadata={"tags": [], "lang": "en", "year": 2020}),
        TextNode(id_="b", text="b", embedding=_emb("b"), metadata={"tags": ["x"], "lang": "fr", "year": 2021}),
    ])
    return store


def _ids(store: MoLVectorStore, filters: object) -> list[str]:
    from llama_index.core.vector_stores.types import VectorStoreQuery

    return sorted(store.query(VectorStoreQuery(query_embedding=_emb("q"), similarity_top_k=5, filters=filters)).ids)


def test_is_empty_or_of_nothing_and_not_follow_the_documented_semantics() -> None:
    from llama_index.core.vector_stores.types import (
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )

    store = _two_node_store()
    is_empty = MetadataFilters(filters=[MetadataFilter(key="tags", value=None, operator=FilterOperator.IS_EMPTY)])
    assert _ids(store, is_empty) == ["a"]  # [] is empty
    assert _ids(store, MetadataFilters(filters=[], condition=FilterCondition.OR)) == ["a", "b"]  # matches all
    en_or_2021 = [MetadataFilter(key="lang", value="en"), MetadataFilter(key="year", value=2021)]
    assert _ids(store, MetadataFilters(filters=en_or_2021, condition=FilterCondition.NOT)) == []  # none of them
    only_en = [MetadataFilter(key="lang", value="en")]
    assert _ids(store, MetadataFilters(filters=only_en, condition=FilterCondition.NOT)) == ["b"]


def test_text_match_insensitive_ignores_case_on_both_sides() -> None:
    from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

    from rag_relax_plugins.llama_index._mol_filters import matches

    for value in ("paris", "Paris", "PARIS"):
        flt = MetadataFilters(filters=[MetadataFilter(key="t", value=value, operator=FilterOperator.TEXT_MATCH_INSENSITIVE)])
        assert matches(flt, {"t": "Visit Paris"}) and matches(flt, {"t": "visit paris"})
        assert not matches(flt, {"t": "Lyon"})


def test_an_ordering_between_incomparable_types_is_a_non_match() -> None:
    from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

    from rag_relax_plugins.llama_index._mol_filters import matches

    for op in (FilterOperator.GT, FilterOperator.GTE, FilterOperator.LT, FilterOperator.LTE):
        flt = MetadataFilters(filters=[MetadataFilter(key="year", value=2000, operator=op)])
        assert not matches(flt, {"year": "n/a"})


def test_index_and_text_nodes_come_back_as_their_own_class(tmp_path: Path) -> None:
    from llama_index.core.schema import IndexNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    store = MoLVectorStore(device="cpu")
    store.add([IndexNode(id_="i", text="i", index_id="other", embedding=_emb("i")),
               TextNode(id_="t", text="t", embedding=_emb("t"))])
    store.persist(str(tmp_path / "m.json"))
    for s in (store, MoLVectorStore.from_persist_path(str(tmp_path / "m.json"))):
        res = s.query(VectorStoreQuery(query_embedding=_emb("i"), similarity_top_k=2))
        assert {n.node_id: type(n).__name__ for n in res.nodes} == {"i": "IndexNode", "t": "TextNode"}
        assert type(s.get_nodes(["i"])[0]) is IndexNode


def test_relevance_of_a_self_match_stays_in_unit_interval() -> None:
    from llama_index.core.vector_stores.types import VectorStoreQuery

    store = MoLVectorStore(device="cpu")
    store.add([TextNode(id_=f"n{j}", text="x", embedding=_emb(f"n{j}", 3)) for j in range(200)])
    rels = [store.relevance(store.query(VectorStoreQuery(query_embedding=_emb(f"n{j}", 3), similarity_top_k=1)).similarities[0])
            for j in range(200)]
    assert all(0.0 <= r <= 1.0 for r in rels) and max(rels) == 1.0


def test_contains_a_number_on_a_string_field_and_an_explicit_none_value() -> None:
    from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

    from rag_relax_plugins.llama_index._mol_filters import matches

    contains = MetadataFilters(filters=[MetadataFilter(key="title", value=5, operator=FilterOperator.CONTAINS)])
    assert not matches(contains, {"title": "abc 5"})  # a non-match, not a TypeError
    for op, want in ((FilterOperator.EQ, False), (FilterOperator.NE, True), (FilterOperator.GT, False)):
        flt = MetadataFilters(filters=[MetadataFilter(key="x", value=None if op != FilterOperator.GT else 1, operator=op)])
        assert matches(flt, {"x": None}) is want  # a None value reads as a missing key
