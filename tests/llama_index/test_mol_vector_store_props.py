"""Property test: any sequence of adds, upserts, deletes by document and by node, and persist /
reload round trips leaves the LlamaIndex MoLVectorStore equal to a plain dict model; its query
equals brute-force cosine over that model, with and without a metadata filter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, VectorStoreQuery

from rag_relax_plugins.llama_index.vector_store import MoLVectorStore

WORDS = ["cat", "dog", "fish", "bird", "stock", "market", "rain", "sun"]


def _vector(text: str) -> list[float]:
    """One dimension per word of ``WORDS`` plus a bias: exact, tiny, deterministic."""
    return [float(text.split().count(w)) for w in WORDS] + [0.5]


def _node(id_: str, text: str, ref: str | None, tag: int) -> TextNode:
    node = TextNode(id_=id_, text=text, metadata={"tag": tag}, embedding=_vector(text))
    if ref is not None:
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=ref)
    return node


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
ids = st.sampled_from([f"n{i}" for i in range(6)])
refs = st.sampled_from(["docA", "docB", None])
op = st.one_of(
    st.tuples(st.just("add"), ids, texts, refs, st.integers(0, 2)),
    st.tuples(st.just("delete_ref"), st.just(""), st.just(""), refs, st.just(0)),
    st.tuples(st.just("delete_nodes"), ids, st.just(""), st.just(None), st.just(0)),
    st.tuples(st.just("reload"), st.just(""), st.just(""), st.just(None), st.just(0)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=12), query=texts, k=st.integers(1, 7))
def test_store_matches_dict_model(
    tmp_path: Path, ops: list[tuple[str, str, str, str | None, int]], query: str, k: int
) -> None:
    store = MoLVectorStore()
    model: dict[str, tuple[str, str | None, int]] = {}
    for step, (kind, id_, text, ref, tag) in enumerate(ops):
        if kind == "add":
            store.add([_node(id_, text, ref, tag)])
            model[id_] = (text, ref, tag)
        elif kind == "delete_ref":
            store.delete(ref)  # type: ignore[arg-type]  # None deletes nothing
            model = {i: v for i, v in model.items() if ref is None or v[1] != ref}
        elif kind == "delete_nodes":
            store.delete_nodes([id_])
            model.pop(id_, None)
        else:
            path = tmp_path / f"store-{step}.json"
            store.persist(str(path))
            store = MoLVectorStore.from_persist_path(str(path))
    assert len(store) == len(model)
    nodes = store.get_nodes(sorted(model))
    assert [(n.node_id, n.get_content(), n.ref_doc_id, n.metadata["tag"]) for n in nodes] == [
        (i, t, r, g) for i, (t, r, g) in sorted(model.items())
    ]
    got = store.query(VectorStoreQuery(query_embedding=_vector(query), similarity_top_k=k))
    hits, scores = got.ids or [], got.similarities or []
    assert len(hits) == min(k, len(model))
    if model:
        keys = list(model)
        vecs = torch.tensor([_vector(model[i][0]) for i in keys])
        cos = torch.nn.functional.cosine_similarity(vecs, torch.tensor([_vector(query)]), dim=-1)
        assert scores == pytest.approx(sorted(cos.tolist(), reverse=True)[: len(hits)], abs=1e-5)
        for id_, score in zip(hits, scores, strict=True):  # each hit's score is its own cosine
            assert abs(score - float(cos[keys.index(id_)])) < 1e-5
    flt = MetadataFilters(filters=[MetadataFilter(key="tag", value=1)])
    filtered = store.query(VectorStoreQuery(query_embedding=_vector(query), similarity_top_k=k, filters=flt)).ids or []
    tagged = {i for i, v in model.items() if v[2] == 1}
    assert set(filtered) <= tagged and len(filtered) == min(k, len(tagged))
