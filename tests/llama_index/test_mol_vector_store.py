"""Contract tests for the LlamaIndex MoLVectorStore (the equivalent of LangChain's standard suite).

llama-index-core ships no standard vector-store suite; these tests cover what the issue lists:
add, delete by ref_doc_id, query (top_k, MetadataFilters, node_ids), get_nodes, delete_nodes,
clear, persistence, and the integration with VectorStoreIndex / StorageContext / retrievers /
query engines (MockLLM, no OpenAI), sync and async.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest
import torch
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.llama_index.vector_store import MoLVectorStore

DIM = 64


class HashingEmbedding(BaseEmbedding):
    """Deterministic LlamaIndex embedding over the library's hashing encoder (test double)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="hashing", **kwargs)

    def _vec(self, texts: list[str]) -> list[list[float]]:
        enc = HashingEncoder(dim=DIM, normalize=True)
        return [[float(x) for x in row] for row in enc.encode(texts).tolist()]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vec([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vec([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._vec(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


EMB = HashingEmbedding()
TEXTS = {
    "n1": ("the cat sat on the mat", {"animal": "cat", "year": 2020, "tags": ["pet", "small"]}, "docA"),
    "n2": ("a dog barked at the mailman", {"animal": "dog", "year": 2021, "tags": ["pet"]}, "docA"),
    "n3": ("stock markets fell sharply today", {"topic": "finance", "year": 2022}, "docB"),
    "n4": ("the kitten chased a cat toy", {"animal": "cat", "year": 2023}, "docC"),
}


def _nodes() -> list[TextNode]:
    out = []
    for id_, (text, meta, ref) in TEXTS.items():
        node = TextNode(id_=id_, text=text, metadata=dict(meta), embedding=EMB.get_text_embedding(text))
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=ref)
        out.append(node)
    return out


def _q(text: str, k: int = 4, **kw: Any) -> VectorStoreQuery:
    return VectorStoreQuery(query_embedding=EMB.get_query_embedding(text), similarity_top_k=k, **kw)


class Result(NamedTuple):
    ids: list[str]
    similarities: list[float]
    nodes: list[BaseNode]


def run(store: MoLVectorStore, query: VectorStoreQuery, **kwargs: Any) -> Result:
    """``store.query`` with the result's optional fields checked to be present."""
    res = store.query(query, **kwargs)
    assert res.ids is not None and res.similarities is not None and res.nodes is not None
    return Result(res.ids, res.similarities, list(res.nodes))


@pytest.fixture()
def store() -> MoLVectorStore:
    s = MoLVectorStore()
    s.add(_nodes())
    return s


def test_stores_text_and_empty_store() -> None:
    s = MoLVectorStore()
    assert s.stores_text is True
    assert bool(s) and len(s) == 0  # StorageContext.from_defaults tests `if vector_store:`
    res = run(s, _q("cat"))
    assert res.nodes == [] and res.ids == [] and res.similarities == []
    assert s.get_nodes() == []


def test_add_returns_ids_and_does_not_mutate_inputs() -> None:
    nodes = _nodes()
    before = [n.model_dump() for n in nodes]
    s = MoLVectorStore()
    assert s.add(nodes) == list(TEXTS)
    assert [n.model_dump() for n in nodes] == before
    assert len(s) == 4



def test_a_node_json_cannot_hold_is_refused_by_name_and_nothing_is_added() -> None:
    """A numpy value in metadata raised pydantic's bare "Unable to serialize unknown type", naming
    no node."""
    import numpy as np

    nodes = _nodes()
    bad = nodes[2].model_copy(update={"metadata": {"score": np.float32(0.5)}})
    s = MoLVectorStore()
    with pytest.raises(ValueError, match=rf"node {bad.node_id!r} cannot be stored: its fields must be JSON-serialisable"):
        s.add([nodes[0], bad])
    assert len(s) == 0
    assert s.add(nodes) == list(TEXTS)

def test_self_is_best_match_and_scores_are_cosine(store: MoLVectorStore) -> None:
    for id_, (text, _, _) in TEXTS.items():
        res = run(store, _q(text, k=2))
        assert res.ids[0] == id_ and res.nodes[0].get_content() == text
        assert res.similarities[0] == pytest.approx(1.0, abs=1e-5)
        assert res.similarities[0] >= res.similarities[1]
        assert res.nodes[0].embedding is None  # vectors stay in the index


def test_top_k_and_order_match_brute_force_cosine(store: MoLVectorStore) -> None:
    q = EMB.get_query_embedding("a cat and a dog")
    res = run(store, VectorStoreQuery(query_embedding=q, similarity_top_k=3))
    vecs = torch.tensor([EMB.get_text_embedding(t) for t, _, _ in TEXTS.values()])
    cos = torch.nn.functional.cosine_similarity(vecs, torch.tensor([q]), dim=-1)
    order = [list(TEXTS)[i] for i in torch.argsort(cos, descending=True)[:3].tolist()]
    assert res.ids == order
    assert res.similarities == pytest.approx(sorted(cos.tolist(), reverse=True)[:3], abs=1e-5)


def test_upsert_replaces_node(store: MoLVectorStore) -> None:
    new = TextNode(id_="n3", text="a cat on a boat", metadata={"animal": "cat"}, embedding=EMB.get_text_embedding("a cat on a boat"))
    store.add([new])
    assert len(store) == 4
    (got,) = store.get_nodes(["n3"])
    assert got.get_content() == "a cat on a boat" and got.metadata == {"animal": "cat"}
    assert run(store, _q("a cat on a boat", k=1)).ids == ["n3"]


def test_delete_by_ref_doc_id(store: MoLVectorStore) -> None:
    store.delete("docA")
    assert sorted(n.node_id for n in store.get_nodes()) == ["n3", "n4"]
    assert store.client is not None and "n1" not in store.client
    store.delete("no-such-doc")  # no-op
    assert len(store) == 2


def test_get_nodes_by_ids_and_filters(store: MoLVectorStore) -> None:
    assert [n.node_id for n in store.get_nodes(["n4", "missing", "n1"])] == ["n4", "n1"]
    cats = MetadataFilters(filters=[MetadataFilter(key="animal", value="cat")])
    assert sorted(n.node_id for n in store.get_nodes(filters=cats)) == ["n1", "n4"]
    assert [n.node_id for n in store.get_nodes(["n1", "n2"], filters=cats)] == ["n1"]


def test_returned_nodes_are_copies(store: MoLVectorStore) -> None:
    (node,) = store.get_nodes(["n1"])
    node.metadata["animal"] = "changed"
    node.metadata["tags"].append("x")
    (again,) = store.get_nodes(["n1"])
    assert again.metadata == TEXTS["n1"][1]


F = FilterOperator


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (MetadataFilter(key="animal", value="cat", operator=F.EQ), {"n1", "n4"}),
        (MetadataFilter(key="animal", value="cat", operator=F.NE), {"n2", "n3"}),  # missing key matches NE
        (MetadataFilter(key="year", value=2021, operator=F.GT), {"n3", "n4"}),
        (MetadataFilter(key="year", value=2021, operator=F.LT), {"n1"}),
        (MetadataFilter(key="year", value=2021, operator=F.GTE), {"n2", "n3", "n4"}),
        (MetadataFilter(key="year", value=2021, operator=F.LTE), {"n1", "n2"}),
        (MetadataFilter(key="animal", value=["dog", "bird"], operator=F.IN), {"n2"}),
        (MetadataFilter(key="animal", value=["dog"], operator=F.NIN), {"n1", "n3", "n4"}),
        (MetadataFilter(key="tags", value="small", operator=F.CONTAINS), {"n1"}),
        (MetadataFilter(key="animal", value="at", operator=F.CONTAINS), {"n1", "n4"}),  # substring of a str
        (MetadataFilter(key="tags", value=["pet"], operator=F.ANY), {"n1", "n2"}),
        (MetadataFilter(key="tags", value=["pet", "small"], operator=F.ALL), {"n1"}),
        (MetadataFilter(key="topic", value="FIN", operator=F.TEXT_MATCH_INSENSITIVE), {"n3"}),
        (MetadataFilter(key="topic", value=None, operator=F.IS_EMPTY), {"n1", "n2", "n4"}),
    ],
)
def test_filter_operators_prefilter_the_search(store: MoLVectorStore, flt: MetadataFilter, expected: set[str]) -> None:
    res = run(store, _q("stock markets", k=4, filters=MetadataFilters(filters=[flt])))
    assert set(res.ids) == expected  # k=4 >= every subset: all matching nodes come back


@pytest.mark.parametrize(
    "flt",
    [
        MetadataFilter(key="tags", value="pet", operator=F.CONTAINS),
        MetadataFilter(key="animal", value="at", operator=F.CONTAINS),
        MetadataFilter(key="animal", value="cat", operator=F.CONTAINS),
        MetadataFilter(key="animal", value="x", operator=F.CONTAINS),
        # ANY / ALL test each value like CONTAINS: members of a list, substrings of a string
        MetadataFilter(key="tags", value=["pet", "nope"], operator=F.ANY),
        MetadataFilter(key="tags", value=["pet", "small"], operator=F.ALL),
        MetadataFilter(key="animal", value=["ca", "zz"], operator=F.ANY),
        MetadataFilter(key="animal", value=["c", "t"], operator=F.ALL),
        MetadataFilter(key="animal", value=["c", "zz"], operator=F.ALL),
    ],
)
def test_contains_matches_simple_vector_store(store: MoLVectorStore, flt: MetadataFilter) -> None:
    from llama_index.core.vector_stores import SimpleVectorStore

    simple = SimpleVectorStore()
    simple.add(_nodes())
    query = _q("cat", k=4, filters=MetadataFilters(filters=[flt]))
    assert set(run(store, query).ids) == set(simple.query(query).ids or [])


def test_and_or_not_and_nested(store: MoLVectorStore) -> None:
    cat = MetadataFilter(key="animal", value="cat")
    recent = MetadataFilter(key="year", value=2022, operator=F.GTE)
    def ids(filters: MetadataFilters) -> set[str]:
        return set(run(store, _q("cat", k=4, filters=filters)).ids)
    assert ids(MetadataFilters(filters=[cat, recent], condition=FilterCondition.AND)) == {"n4"}
    assert ids(MetadataFilters(filters=[cat, recent], condition=FilterCondition.OR)) == {"n1", "n3", "n4"}
    assert ids(MetadataFilters(filters=[cat], condition=FilterCondition.NOT)) == {"n2", "n3"}
    nested = MetadataFilters(filters=[MetadataFilters(filters=[cat, recent], condition=FilterCondition.AND),
                                      MetadataFilter(key="animal", value="dog")], condition=FilterCondition.OR)
    assert ids(nested) == {"n2", "n4"}


def test_filter_is_prefiltering_not_a_fixed_fetch() -> None:
    # 200 near-duplicates of the query outrank the only matching node: a post-filter over the
    # top fetch would return nothing, pre-filtering returns it.
    s = MoLVectorStore()
    text = "the quick brown fox"
    nodes = [TextNode(id_=f"d{i}", text=text, metadata={"keep": "no"}, embedding=EMB.get_text_embedding(text)) for i in range(200)]
    nodes.append(TextNode(id_="far", text="zebra", metadata={"keep": "yes"}, embedding=EMB.get_text_embedding("zebra")))
    s.add(nodes)
    res = run(s, _q(text, k=1, filters=MetadataFilters(filters=[MetadataFilter(key="keep", value="yes")])))
    assert res.ids == ["far"]


def test_node_ids_and_doc_ids_restrict_and_empty_means_all(store: MoLVectorStore) -> None:
    assert set(run(store, _q("cat", k=4, node_ids=["n2", "n3"])).ids) == {"n2", "n3"}
    assert len(run(store, _q("cat", k=4, node_ids=[])).ids) == 4
    assert set(run(store, _q("cat", k=4, doc_ids=["docA"])).ids) == {"n1", "n2"}


def test_delete_nodes_and_clear(store: MoLVectorStore) -> None:
    store.delete_nodes(["n1"])
    assert "n1" not in {n.node_id for n in store.get_nodes()}
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="animal", value="dog")]))
    assert sorted(n.node_id for n in store.get_nodes()) == ["n3", "n4"]
    store.clear()
    assert len(store) == 0 and run(store, _q("cat")).ids == []


def test_mmr_mode_avoids_duplicates() -> None:
    s = MoLVectorStore()
    texts = {"a": "red apples and green apples", "b": "red apples and green apples", "c": "apples are fruit"}
    s.add([TextNode(id_=i, text=t, embedding=EMB.get_text_embedding(t)) for i, t in texts.items()])
    plain = run(s, _q("red apples", k=2))
    mmr = run(s, _q("red apples", k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.3))
    assert set(plain.ids) == {"a", "b"}
    assert mmr.ids[0] in {"a", "b"} and mmr.ids[1] == "c"


def test_mmr_relevance_is_on_the_cosine_scale_for_any_tau() -> None:
    from rag_relax_plugins.core.mol import MoLSimilarity

    texts = {"a": "red apples and green apples", "b": "red apples and green apples", "c": "apples are fruit"}
    nodes = [TextNode(id_=i, text=t, embedding=EMB.get_text_embedding(t)) for i, t in texts.items()]
    unit, hot = MoLVectorStore(MoLSimilarity.cosine(DIM)), MoLVectorStore(MoLSimilarity.cosine(DIM, tau=0.05))
    unit.add(nodes)
    hot.add(nodes)
    assert set(run(hot, _q("red apples", k=2)).ids) == {"a", "b"}
    mmr = run(hot, _q("red apples", k=2, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.5))
    assert mmr.ids[0] in {"a", "b"} and mmr.ids[1] == "c"  # raw phi (~16.6 vs 8.0) picked the duplicate
    assert mmr.similarities == pytest.approx([s / 0.05 for s in run(unit, _q("red apples", k=3)).similarities[::2]], rel=1e-5)
    for lam in (0.0, 0.2, 0.5, 0.8, 1.0):
        q = _q("red apples", k=3, mode=VectorStoreQueryMode.MMR, mmr_threshold=lam)
        assert run(hot, q).ids == run(unit, q).ids


def test_mmr_threshold_from_kwargs_first_then_query_then_default() -> None:
    s = MoLVectorStore()
    texts = ["cat cat cat", "cat cat cat mat", "cat cat dog", "stock market", "cat"]
    s.add([TextNode(id_=f"n{i}", text=t, embedding=EMB.get_text_embedding(t)) for i, t in enumerate(texts)])
    def mmr(query_thr: float | None = None, **kwargs: Any) -> list[str]:
        return run(s, _q("cat", k=3, mode=VectorStoreQueryMode.MMR, mmr_threshold=query_thr), **kwargs).ids
    relevant, diverse = mmr(1.0), mmr(0.0)
    assert relevant == run(s, _q("cat", k=3)).ids and diverse != relevant
    assert mmr(mmr_threshold=1.0) == relevant and mmr(mmr_threshold=0.0) == diverse  # kwargs alone
    assert mmr(1.0, mmr_threshold=0.0) == diverse and mmr(0.0, mmr_threshold=1.0) == relevant  # kwargs win
    assert mmr(0.5, mmr_threshold=None) == mmr(0.5) == mmr()  # None falls through; default 0.5
    with pytest.raises(ValueError, match="mmr_threshold"):
        mmr(mmr_threshold=1.5)
    with pytest.raises(TypeError, match="mmr_threshold"):
        mmr(mmr_threshold="0.5")
    # a misspelt keyword (a retriever's vector_store_kwargs) gave the default weight silently
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['mmr_treshold'\] \(accepted: mmr_prefetch"):
        mmr(mmr_treshold=0.0)
    with pytest.raises(TypeError, match="mmr_treshold"):
        asyncio.run(s.aquery(_q("cat", k=3, mode=VectorStoreQueryMode.MMR), mmr_treshold=0.0))


def test_validation_errors(store: MoLVectorStore) -> None:
    with pytest.raises(ValueError, match="similarity_top_k"):
        run(store, _q("cat", k=-1))
    with pytest.raises(ValueError, match="mode"):
        run(store, _q("cat", mode=VectorStoreQueryMode.SPARSE))
    with pytest.raises(ValueError, match="mmr_threshold"):
        run(store, _q("cat", mode=VectorStoreQueryMode.MMR, mmr_threshold=2.0))
    with pytest.raises(ValueError, match="mmr_prefetch_factor"):
        run(store, _q("cat", mode=VectorStoreQueryMode.MMR), mmr_prefetch_factor=0)
    with pytest.raises(ValueError, match="query_dim"):
        run(store, VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=1))
    with pytest.raises(ValueError, match="query_embedding"):
        run(store, VectorStoreQuery(query_str="cat", similarity_top_k=1))
    with pytest.raises(ValueError, match="no embedding"):
        store.add([TextNode(id_="x", text="no vector")])
    with pytest.raises(ValueError, match="item_dim"):
        store.add([TextNode(id_="x", text="t", embedding=[1.0, 2.0])])
    with pytest.raises(TypeError, match="filters"):
        store.get_nodes(filters={"animal": "cat"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="similarity"):
        MoLVectorStore(similarity="cosine")  # type: ignore[arg-type]
    assert len(store) == 4  # failed adds left the store unchanged


def test_a_query_embedding_that_is_not_a_flat_vector_is_named_as_such(store: MoLVectorStore) -> None:
    """[[1.0, 0.0]] was "has 1 dimensions but the similarity expects query_dim" (its outer
    length); a str failed inside torch ("too many dimensions 'str'") (review)."""
    flat = r"query\.query_embedding must be a flat \(1-D\) vector of numbers"
    for bad, tail in (([[1.0] * DIM], r", got shape \(1, 64\)"), ("ab", ", got str"), ([1.0, "x"], " \\(")):
        with pytest.raises(ValueError, match=flat + tail):
            run(store, VectorStoreQuery(query_embedding=bad, similarity_top_k=1))  # type: ignore[arg-type]
    vec = EMB.get_query_embedding("cat")
    assert run(store, VectorStoreQuery(query_embedding=[int(v > 0) for v in vec], similarity_top_k=1)).ids


def test_embed_model_on_store_embeds_nodes_and_query_str() -> None:
    s = MoLVectorStore(embed_model=EMB)
    s.add([TextNode(id_="x", text="purple elephants"), TextNode(id_="y", text="blue whales")])
    res = run(s, VectorStoreQuery(query_str="purple elephants", similarity_top_k=1))
    assert res.ids == ["x"] and res.similarities[0] == pytest.approx(1.0, abs=1e-5)


def test_trained_head_scores_match_the_similarity() -> None:
    from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity

    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=DIM, item_dim=DIM, num_query_embeddings=2, num_item_embeddings=2, component_dim=8)).eval()
    s = MoLVectorStore(sim)
    s.add(_nodes())
    q = EMB.get_query_embedding("cat")
    res = run(s, VectorStoreQuery(query_embedding=q, similarity_top_k=4))
    items = torch.tensor([EMB.get_text_embedding(t) for t, _, _ in TEXTS.values()])
    with torch.no_grad():
        ref = sim(torch.tensor([q]), items)[0][0]
    assert res.similarities == pytest.approx(sorted(ref.tolist(), reverse=True), abs=1e-5)
    tau = sim.config.tau
    assert [s.relevance(x) for x in res.similarities] == pytest.approx([(1 + tau * x) / 2 for x in res.similarities])
    assert all(0.0 <= s.relevance(x) <= 1.0 for x in res.similarities)


def test_unclipped_tau_phi_of_a_random_head_lies_in_minus_one_one() -> None:
    from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity

    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=DIM, item_dim=DIM, num_query_embeddings=3, num_item_embeddings=4, component_dim=8)).eval()
    s = MoLVectorStore(sim)
    g = torch.Generator().manual_seed(1)
    s.add([TextNode(id_=f"r{i}", text="r", embedding=(5 * torch.randn(DIM, generator=g)).tolist()) for i in range(200)])
    tau = sim.config.tau
    for _ in range(5):
        res = run(s, VectorStoreQuery(query_embedding=(5 * torch.randn(DIM, generator=g)).tolist(), similarity_top_k=200))
        assert tau < 1 and max(abs(x) for x in res.similarities) > 1.0  # raw scores leave [-1, 1] ...
        assert all(-1.0 <= tau * x <= 1.0 for x in res.similarities)  # ... tau * phi does not
        assert [s.relevance(x) for x in res.similarities] == pytest.approx([(1 + tau * x) / 2 for x in res.similarities], abs=1e-12)


def test_empty_self_built_store_accepts_a_new_width(tmp_path: Any) -> None:
    from rag_relax_plugins.core.mol import MoLSimilarity

    s = MoLVectorStore()
    s.add(_nodes())
    narrow = [TextNode(id_=f"w{i}", text="t", embedding=[float(i + 1)] + [0.0] * 31) for i in range(2)]
    with pytest.raises(ValueError, match="item_dim=64"):  # not empty: the width is fixed
        s.add(narrow)
    s.clear()
    assert s.add(narrow) == ["w0", "w1"]  # empty again: a 32-d cosine head is built
    assert s.client is not None and s.client.similarity.config.item_dim == 32
    assert run(s, VectorStoreQuery(query_embedding=[1.0] + [0.0] * 31, similarity_top_k=1)).ids == ["w0"]
    s.delete_nodes(["w0", "w1"])
    s.persist(str(tmp_path / "vs.json"))  # the flag survives persist / load
    loaded = MoLVectorStore.from_persist_path(str(tmp_path / "vs.json"))
    loaded.add(_nodes()[:1])
    assert loaded.client is not None and loaded.client.similarity.config.item_dim == DIM
    given = MoLVectorStore(MoLSimilarity.cosine(DIM))
    given.add(_nodes())
    given.clear()
    with pytest.raises(ValueError, match="item_dim=64"):  # a given head keeps its width
        given.add(narrow)


async def test_async_variants() -> None:
    s = MoLVectorStore()
    assert await s.async_add(_nodes()) == list(TEXTS)
    assert (await s.aquery(_q("the cat sat on the mat", k=1))).ids == ["n1"]
    assert [n.node_id for n in await s.aget_nodes(["n2"])] == ["n2"]
    await s.adelete("docB")
    await s.adelete_nodes(["n2"])
    assert sorted(n.node_id for n in await s.aget_nodes()) == ["n1", "n4"]
    await s.aclear()
    assert len(s) == 0


async def test_concurrent_adds_and_queries_stay_consistent() -> None:
    import asyncio

    s = MoLVectorStore()
    nodes = [TextNode(id_=f"id{i}", text=f"text {i}", embedding=EMB.get_text_embedding(f"text {i}")) for i in range(20)]
    await asyncio.gather(
        *[s.async_add([n]) for n in nodes],
        *[s.aquery(_q("text", k=3)) for _ in range(10)],
    )
    assert len(s) == 20 and sorted(s.client.ids) == sorted(n.node_id for n in nodes)  # type: ignore[union-attr]


def test_an_interrupt_after_the_index_delete_still_removes_every_node(store: MoLVectorStore, interrupted_at_pop) -> None:  # type: ignore[no-untyped-def]
    """The index drops the ids all at once; the store then popped its nodes one by one, and an
    interrupt left some that the index no longer held."""
    store._nodes = interrupted_at_pop(store._nodes)
    with pytest.raises(KeyboardInterrupt):
        store.delete_nodes(["n1", "n2", "n3"])
    assert sorted(store._nodes) == ["n4"] and run(store, _q(TEXTS["n4"][0])).ids == ["n4"]


@pytest.mark.parametrize("committed", [True, False])
def test_an_interrupt_around_the_index_add_leaves_store_and_index_in_step(
    store: MoLVectorStore, interrupt_index: Any, committed: bool
) -> None:
    """An interrupt right after the index committed an add (it can arrive before the store records
    it) or before: either way the store then holds exactly the ids the index holds."""
    interrupt_index("add", committed)
    node = TextNode(id_="n9", text="a brand new text", embedding=EMB.get_text_embedding("a brand new text"))
    with pytest.raises(KeyboardInterrupt):
        store.add([node])
    assert store._held.index is not None and sorted(store._nodes) == sorted(store._held.index.ids)
    assert ("n9" in store._nodes) == committed
    assert set(run(store, _q("a brand new text", k=10)).ids) == set(store._held.index.ids)  # no KeyError


def test_an_interrupt_after_the_index_delete_committed_leaves_the_store_in_step(
    store: MoLVectorStore, interrupt_index: Any
) -> None:
    interrupt_index("delete")
    with pytest.raises(KeyboardInterrupt):
        store.delete_nodes(["n1", "n2"])
    assert sorted(store._nodes) == ["n3", "n4"] and sorted(run(store, _q("cat", k=10)).ids) == ["n3", "n4"]


def test_non_finite_vectors_are_named_as_the_callers() -> None:
    # NaN or a finite 1e39 (beyond float32) was reported by the index as "query_features" /
    # "item_features contains NaN or inf values" (review 2026-12-05)
    s = MoLVectorStore()
    s.add(_nodes())
    huge = [1e39] + [0.0] * (len(EMB.get_query_embedding("x")) - 1)
    with pytest.raises(ValueError, match=r"^query.query_embedding holds NaN, inf or values beyond the float32 range"):
        s.query(VectorStoreQuery(query_embedding=huge, similarity_top_k=1))
    bad = TextNode(id_="bad", text="x", embedding=[float("nan")] * len(huge))
    with pytest.raises(ValueError, match=r"^nodes\[1\] embedding holds NaN"):
        s.add([TextNode(id_="ok", text="y", embedding=EMB.get_text_embedding("y")), bad])
    assert len(s.get_nodes()) == len(_nodes())  # nothing added
