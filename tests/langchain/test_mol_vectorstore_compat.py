"""LangChain MoLVectorStore against ``InMemoryVectorStore`` where users rely on core behaviour:
the indexing API, ``add_documents`` ids, leftover retriever kwargs and dict / callable filters."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.indexing import InMemoryRecordManager, index
from langchain_core.vectorstores import InMemoryVectorStore

from rag_relax_plugins.langchain.vectorstore import MoLVectorStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lc_helpers import HashingEmbeddings


def _docs() -> list[Document]:
    return [Document("a cat on a mat", metadata={"source": "s1"}),
            Document("a dog in the fog", metadata={"source": "s2"})]


@pytest.mark.parametrize("store_cls", [MoLVectorStore, InMemoryVectorStore])
def test_langchain_indexing_api_adds_and_cleans_up(store_cls: type) -> None:
    store = store_cls(HashingEmbeddings())
    rm = InMemoryRecordManager("ns")
    rm.create_schema()
    first = index(_docs(), rm, store, cleanup="full", source_id_key="source", key_encoder="sha256")  # passes batch_size
    assert (first["num_added"], first["num_deleted"]) == (2, 0)
    again = index(_docs()[:1], rm, store, cleanup="full", source_id_key="source", key_encoder="sha256")
    assert (again["num_skipped"], again["num_deleted"]) == (1, 1)
    assert [d.page_content for d in store.similarity_search("cat", k=5)] == ["a cat on a mat"]


async def test_langchain_async_indexing_api() -> None:
    from langchain_core.indexing import aindex

    store = MoLVectorStore(HashingEmbeddings())
    rm = InMemoryRecordManager("ns")
    await rm.acreate_schema()
    res = await aindex(_docs(), rm, store, cleanup="full", source_id_key="source", key_encoder="sha256")
    assert res["num_added"] == 2 and len(store) == 2


def test_batch_size_embeds_in_batches_and_is_checked() -> None:
    emb = HashingEmbeddings()
    store = MoLVectorStore(emb)
    ids = store.add_texts([f"text {i}" for i in range(5)], batch_size=2)
    assert emb.calls == 3 and len(ids) == 5
    ref = MoLVectorStore(HashingEmbeddings())
    ref.add_texts([f"text {i}" for i in range(5)], ids=ids)
    got = store.similarity_search_with_score("text 3", k=5)
    want = ref.similarity_search_with_score("text 3", k=5)
    assert [(d.id, s) for d, s in got] == [(d.id, s) for d, s in want]
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="batch_size"):
            store.add_texts(["x"], batch_size=bad)  # type: ignore[arg-type]
    assert len(store) == 5


@pytest.mark.parametrize("ids", [None, []])
def test_add_documents_uses_document_ids_when_ids_is_empty(ids: list[str] | None) -> None:
    docs = [Document("x", id="X"), Document("y")]
    ours = MoLVectorStore(HashingEmbeddings()).add_documents(docs, ids=ids)
    ref = InMemoryVectorStore(HashingEmbeddings()).add_documents(docs, ids=ids)
    assert ours[0] == ref[0] == "X" and len(ours[1]) == 36  # the id-less document gets a uuid4
    store = MoLVectorStore(HashingEmbeddings())
    assert store.add_documents(docs, ids=["a", "b"]) == ["a", "b"]  # explicit ids win
    with pytest.raises(TypeError, match="documents\\[0\\]"):
        store.add_documents(["x"])  # type: ignore[list-item]


def test_leftover_score_threshold_is_ignored_by_similarity_and_mmr() -> None:
    store = MoLVectorStore.from_texts(["a cat", "a dog"], HashingEmbeddings())
    for search_type in ("similarity", "mmr"):
        retriever = store.as_retriever(search_type=search_type, search_kwargs={"k": 1, "score_threshold": 0.2})
        assert [d.page_content for d in retriever.invoke("a cat")] == ["a cat"]


def _filter_store() -> MoLVectorStore:
    store = MoLVectorStore(HashingEmbeddings())
    store.add_texts(["a", "b", "c", "d"], [{"flag": True}, {"flag": 1}, {"t": (1, 2)}, {"t": [1, 2]}],
                    ids=list("abcd"))
    return store


def test_dict_filters_use_json_equality_before_and_after_a_save(tmp_path: Path) -> None:
    store = _filter_store()
    ids = lambda s, f: sorted(d.id for d in s.similarity_search("a", k=5, filter=f))  # noqa: E731
    assert ids(store, {"flag": True}) == ["a"]  # was ["a", "b"]: Python's True == 1
    assert ids(store, {"flag": 1}) == ["b"]
    assert ids(store, {"t": [1, 2]}) == ["c", "d"]  # the tuple matches the equal list ...
    store.save_local(tmp_path / "s")
    again = MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings())
    assert ids(again, {"t": [1, 2]}) == ["c", "d"]  # ... as it does after a save (JSON lists)
    assert ids(again, {"flag": True}) == ["a"]


@pytest.mark.parametrize("bad", [{"flag": {"$in": [1]}}, {"$and": [{"flag": 1}]}])
def test_operator_dict_filters_are_refused_not_silently_empty(bad: dict) -> None:
    with pytest.raises(TypeError, match="operator filters"):
        _filter_store().similarity_search("a", k=5, filter=bad)


def test_callable_filter_cannot_change_stored_metadata() -> None:
    store = MoLVectorStore(HashingEmbeddings())
    store.add_texts(["x"], [{"tags": ["a"]}], ids=["x"])

    def mutate(doc: Document) -> bool:
        doc.metadata["tags"].append("MUT")
        return True

    assert len(store.similarity_search("x", k=1, filter=mutate)) == 1
    assert store.get_by_ids(["x"])[0].metadata == {"tags": ["a"]}


def test_flat_metadata_copies_are_plain_copies_and_nested_ones_deep() -> None:
    """fresh_metadata copies a flat dict (what a deep copy gives: its values are immutable) and
    deep-copies one with a list or dict inside; the receiver changes neither the store's dict nor
    its nested values, and a filter sees equal metadata either way."""
    import copy

    from rag_relax_plugins.langchain._mol_checks import fresh_metadata

    flat = {"s": "a", "i": 1, "f": 0.5, "b": True, "n": None}
    nested = {**flat, "tags": ["x", {"y": [1]}]}
    for meta in (flat, nested):
        got = fresh_metadata(meta)
        assert got == meta == copy.deepcopy(meta) and got is not meta
        got["s"] = "changed"
        assert meta["s"] == "a"
    deep = fresh_metadata(nested)
    deep["tags"][1]["y"].append(2)
    assert nested["tags"] == ["x", {"y": [1]}]
    shared = [1]
    twice = fresh_metadata({"a": shared, "b": shared})
    assert twice["a"] is twice["b"] and twice["a"] is not shared  # aliasing kept, as deepcopy keeps it

    class Key:  # a mutable, hashable key: the LangChain store keeps non-str keys in memory
        def __init__(self, name: str) -> None:
            self.name = name

        def __hash__(self) -> int:
            return 0

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Key)

    key = Key("stored")
    got = fresh_metadata({key: key})
    (copied,) = got
    assert copied is not key and got[copied] is copied  # key copied, and shared with its value
    copied.name = "changed by a filter"
    assert key.name == "stored"
    store = MoLVectorStore(HashingEmbeddings())
    store.add_texts(["p", "q"], [flat, nested], ids=["p", "q"])
    seen: list[dict] = []
    store.similarity_search("p", k=2, filter=lambda d: seen.append(d.metadata) or True)
    for m in seen:
        m["s"] = "mutated"
    assert [d.metadata for d in store.get_by_ids(["p", "q"])] == [flat, nested]


async def test_time_weighted_retriever_adds_with_current_time() -> None:
    """``TimeWeightedVectorStoreRetriever.add_documents(docs, current_time=...)`` passes
    ``current_time`` on to the store: refused, it left the retriever's memory stream holding
    documents that the store did not."""
    import datetime

    from langchain_classic.retrievers import TimeWeightedVectorStoreRetriever

    store = MoLVectorStore(HashingEmbeddings())
    retriever = TimeWeightedVectorStoreRetriever(vectorstore=store, decay_rate=0.01, k=1)
    yesterday = datetime.datetime.now() - datetime.timedelta(days=1)
    retriever.add_documents(_docs(), current_time=yesterday)
    await retriever.aadd_documents([Document("a bird in a tree", metadata={"source": "s3"})], current_time=yesterday)
    assert len(retriever.memory_stream) == 3
    assert len(store.similarity_search("x", k=5)) == 3  # the store holds what the memory stream does
    assert [d.page_content for d in retriever.invoke("a cat on a mat")] == ["a cat on a mat"]
    # any other keyword is still refused: a misspelt one is not dropped
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['metadata'\]"):
        store.add_documents(_docs(), metadata=[{}, {}], current_time=yesterday)
    assert len(store) == 3


def test_results_and_filter_documents_copy_nested_containers() -> None:
    """Stored metadata is deep-copied, tuples of lists included:
    neither a callable filter nor a caller holding a result can reach the stored lists."""
    store = MoLVectorStore(HashingEmbeddings())
    store.add_texts(["x"], [{"t": ([1],), "d": {"l": [2]}}], ids=["x"])

    def mutate(doc: Document) -> bool:
        doc.metadata["t"][0].append("MUT")
        doc.metadata["d"]["l"].append("MUT")
        return True

    (got,) = store.similarity_search("x", k=1, filter=mutate)
    got.metadata["t"][0].append("MUT2")
    assert store.get_by_ids(["x"])[0].metadata == {"t": ([1],), "d": {"l": [2]}}


def test_other_mutable_metadata_values_are_deep_copied() -> None:
    """The store accepts any metadata until a save: sets, arrays and dict / tuple subclasses are
    deep-copied (a container-by-container copy tried on 2026-12-04 shared them), keeping their types."""
    from collections import OrderedDict, namedtuple

    import numpy as np

    point = namedtuple("point", "x y")
    store = MoLVectorStore(HashingEmbeddings())
    meta = {"s": {"x"}, "a": np.array([1, 2]), "o": OrderedDict(k=[1]), "p": point([1], 2)}
    store.add_texts(["x"], [meta], ids=["x"])

    def mutate(doc: Document) -> bool:
        doc.metadata["s"].add("LEAK")
        doc.metadata["a"][0] = 99
        doc.metadata["o"]["k"].append("LEAK")
        doc.metadata["p"].x.append("LEAK")
        return True

    (got,) = store.similarity_search("x", k=1, filter=mutate)
    mutate(got)
    again = store.get_by_ids(["x"])[0].metadata
    assert again["s"] == {"x"} and again["a"].tolist() == [1, 2] and again["o"] == {"k": [1]}
    assert again["p"].x == [1] and type(again["o"]) is OrderedDict and type(again["p"]) is point


def test_metadata_that_contains_itself_is_still_readable() -> None:
    """The store accepts any metadata until a save; a list holding itself once made every read
    of its document (and every search with a callable filter) a RecursionError."""
    store = MoLVectorStore(HashingEmbeddings())
    loop: list[Any] = []
    loop.append(loop)
    store.add_texts(["x"], [{"l": loop}], ids=["x"])
    got = store.get_by_ids(["x"])[0].metadata["l"]
    assert got[0] is got and got is not loop
    assert len(store.similarity_search("x", k=1, filter=lambda d: True)) == 1
