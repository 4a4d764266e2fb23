"""LlamaIndex MoLVectorStore against ``SimpleVectorStore`` where users rely on core behaviour:
filters on the node fields core stores (doc_id, ref_doc_id, document_id, _node_type), JSON-mode
metadata, queries on an emptied store and an explicit ``strategy=None``."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.schema import IndexNode, TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

from rag_relax_plugins.index import TopKAvg
from rag_relax_plugins.llama_index.vector_store import MoLVectorStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_mol_vector_store import EMB


def _ids(store: Any, filters: MetadataFilters) -> list[str]:
    ctx = StorageContext.from_defaults(vector_store=store)
    docs = [Document(text="Paris is the capital of France", doc_id="fr", metadata={"doc_id": "mine"}),
            Document(text="Berlin is the capital of Germany", doc_id="de")]
    index = VectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=EMB)
    hits = index.as_retriever(similarity_top_k=3, filters=filters).retrieve("capital")
    return sorted(h.node.ref_doc_id or "" for h in hits)


@pytest.mark.parametrize("key", ["doc_id", "ref_doc_id", "document_id"])
def test_filters_on_the_ref_doc_id_keys_match_simple_vector_store(key: str) -> None:
    flt = MetadataFilters(filters=[MetadataFilter(key=key, value="de")])
    assert _ids(MoLVectorStore(), flt) == _ids(SimpleVectorStore(), flt) == ["de"]
    # the node field takes precedence over node metadata of the same name, as upstream
    mine = MetadataFilters(filters=[MetadataFilter(key=key, value="mine")])
    assert _ids(MoLVectorStore(), mine) == _ids(SimpleVectorStore(), mine) == []


def test_node_type_and_nested_filters_read_the_node_fields() -> None:
    store = MoLVectorStore()
    store.add([TextNode(text="t", id_="t", embedding=EMB.get_text_embedding("t")),
               IndexNode(text="i", id_="i", index_id="x", embedding=EMB.get_text_embedding("i"))])
    nested = MetadataFilters(
        filters=[MetadataFilters(filters=[MetadataFilter(key="_node_type", value="IndexNode")]),
                 MetadataFilter(key="doc_id", value="None")],
        condition=FilterCondition.AND,
    )
    assert [n.node_id for n in store.get_nodes(filters=nested)] == ["i"]
    none = MetadataFilters(filters=[MetadataFilter(key="ref_doc_id", value="x", operator=FilterOperator.NE)])
    assert sorted(n.node_id for n in store.get_nodes(filters=none)) == ["i", "t"]
    assert "doc_id" not in store.get_nodes(["t"])[0].metadata  # not added to the node itself


def test_metadata_with_datetime_is_stored_in_json_mode_as_upstream() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    ours, ref = MoLVectorStore(), SimpleVectorStore()
    for store in (ours, ref):
        ctx = StorageContext.from_defaults(vector_store=store)
        VectorStoreIndex.from_documents([Document(text="x", doc_id="d", metadata={"when": when})],
                                        storage_context=ctx, embed_model=EMB)
    node = ours.get_nodes()[0]
    assert node.metadata == {"when": "2024-01-02T03:04:05"}
    result = ours.query(VectorStoreQuery(query_embedding=EMB.get_query_embedding("x"), similarity_top_k=1))
    assert result.nodes is not None and result.nodes[0].metadata == node.metadata


def test_an_emptied_store_answers_a_query_of_any_width_with_nothing() -> None:
    store = MoLVectorStore()
    store.add([TextNode(text="a", id_="a", embedding=[1.0, 0.0, 0.0])])
    store.clear()
    result = store.query(VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=1))
    assert result.ids == [] and result.nodes == []
    store.add([TextNode(text="b", id_="b", embedding=[0.0, 1.0])])  # a self-built head follows
    assert store.query(VectorStoreQuery(query_embedding=[0.0, 1.0], similarity_top_k=1)).ids == ["b"]
    with pytest.raises(ValueError, match="query_dim"):
        store.query(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=1))


def test_explicit_strategy_none_keeps_the_store_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MoLVectorStore(strategy=TopKAvg(2))
    store.add([TextNode(text=t, id_=t, embedding=EMB.get_text_embedding(t)) for t in ("a", "b", "c")])
    seen: list[object] = []
    assert store.client is not None
    search = store.client.search

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("strategy"))
        return search(*args, **kwargs)

    monkeypatch.setattr(store.client, "search", spy)
    store.query(VectorStoreQuery(query_embedding=EMB.get_query_embedding("a"), similarity_top_k=1), strategy=None)
    assert seen == [TopKAvg(2)]


def test_a_non_utf8_file_name_in_metadata_and_doc_id_persists_and_loads(tmp_path: Path) -> None:
    """A lone surrogate (how a non-UTF-8 file name decodes) made every persist() fail with a bare
    UnicodeEncodeError, while the default stores saved it."""
    from llama_index.core import load_index_from_storage

    name = b"caf\xe9.txt".decode("utf-8", errors="surrogateescape")
    docs = [Document(id_="/data/" + name, text="a cafe menu", metadata={"file_name": name},
                     excluded_embed_metadata_keys=["file_name"])]
    ctx = StorageContext.from_defaults(vector_store=MoLVectorStore())
    VectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=EMB)
    ctx.persist(tmp_path)
    back = load_index_from_storage(StorageContext.from_defaults(
        persist_dir=str(tmp_path), vector_store=MoLVectorStore.from_persist_dir(str(tmp_path))), embed_model=EMB)
    hit = back.as_retriever(similarity_top_k=1).retrieve("cafe")[0]
    assert hit.node.metadata["file_name"] == name and hit.node.ref_doc_id == "/data/" + name
    plain = tmp_path / "plain"  # UTF-8 text without surrogates stays as is, unescaped
    store = MoLVectorStore()
    store.add([TextNode(text="é", id_="é", embedding=EMB.get_text_embedding("é"))])
    store.persist(str(plain))
    assert '"é"' in plain.read_text(encoding="utf-8")


def test_delete_ref_doc_none_deletes_nothing() -> None:
    """``delete(None)`` matched, and deleted, every node without a source document."""
    store = MoLVectorStore()
    store.add([TextNode(text=t, id_=t, embedding=EMB.get_text_embedding(t)) for t in ("a", "b")])
    index = VectorStoreIndex.from_vector_store(store, embed_model=EMB)
    index.delete_ref_doc(store.get_nodes(["a"])[0].ref_doc_id)  # None
    assert len(store) == 2 and sorted(n.node_id for n in store.get_nodes()) == ["a", "b"]


def test_one_string_is_not_taken_as_a_list_of_ids() -> None:
    """``get_nodes("abc")`` returned the nodes "a" and "b"; ``delete_nodes("abc")`` deleted them."""
    store = MoLVectorStore()
    store.add([TextNode(text=t, id_=t, embedding=EMB.get_text_embedding(t)) for t in ("a", "b", "abc")])
    with pytest.raises(TypeError, match=r"node_ids must be a list of ids, got a str: pass \['abc'\]"):
        store.get_nodes("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="node_ids must be a list of ids"):
        store.delete_nodes("abc")  # type: ignore[arg-type]
    for field in ("node_ids", "doc_ids"):
        query = VectorStoreQuery(query_embedding=EMB.get_query_embedding("a"), similarity_top_k=2)
        setattr(query, field, "abc")
        with pytest.raises(TypeError, match=f"{field} must be a list of ids"):
            store.query(query)
    assert len(store) == 3


def test_a_numpy_integer_top_k_is_taken() -> None:
    import numpy as np

    store = MoLVectorStore()
    store.add([TextNode(text=t, id_=t, embedding=EMB.get_text_embedding(t)) for t in ("a b", "c d", "a")])
    got = store.query(VectorStoreQuery(query_embedding=EMB.get_query_embedding("a b"), similarity_top_k=np.int64(2)))
    assert len(got.ids or []) == 2 and (got.ids or [])[0] == "a b"


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"embed_modl": None}, TypeError, r"unexpected keyword arguments \['embed_modl'\]"),
    ({"first_stage": "hnws"}, ValueError, "hnws"),
    ({"cache_dtype": "fp8"}, ValueError, "cache_dtype"),
    ({"strategy": "fast"}, TypeError, "strategy must be"),
])
def test_options_are_checked_when_the_store_is_built(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    """They were accepted and failed at the first add (a misspelt keyword: "no embed_model")."""
    with pytest.raises(exc, match=match):
        MoLVectorStore(**kwargs)


def test_a_model_dump_builds_the_store_again() -> None:
    """``model_dump()`` adds ``class_name``; the unknown-keyword check refused it."""
    store = MoLVectorStore()
    again = MoLVectorStore(**store.model_dump())
    assert isinstance(again, MoLVectorStore) and again.stores_text
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['class_name'\]"):
        MoLVectorStore(class_name="SimpleVectorStore")


def test_a_load_overlapping_a_persist_reads_the_new_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A persist from elsewhere deletes the index folder the old manifest named: the load failed
    with "not a complete MoL index" (about 15% of loads beside a saver in a loop)."""
    from rag_relax_plugins.index import MoLIndex

    path = str(tmp_path / "store.json")
    first, second = MoLVectorStore(), MoLVectorStore()
    first.add([TextNode(text="a", id_="a", embedding=EMB.get_text_embedding("a"))])
    second.add([TextNode(text="b", id_="b", embedding=EMB.get_text_embedding("b"))])
    first.persist(path)
    real = MoLIndex.load.__func__  # type: ignore[attr-defined]
    loads: list[str] = []

    def persist_meanwhile(cls: type, folder: Any, **kwargs: Any) -> Any:
        loads.append(str(folder))
        if len(loads) == 1:
            second.persist(path)  # replaces the manifest, deletes the folder being loaded
        return real(cls, folder, **kwargs)

    monkeypatch.setattr(MoLIndex, "load", classmethod(persist_meanwhile))
    back = MoLVectorStore.from_persist_path(path)
    assert [n.node_id for n in back.get_nodes()] == ["b"] and len(loads) == 2


def test_the_store_refuses_pickling_and_deep_copies_with_a_way_out() -> None:
    """LlamaIndex's pickling kept only the public fields: the copy came back empty, silently."""
    import copy
    import pickle

    store = MoLVectorStore()
    store.add([TextNode(text="a", id_="a", embedding=EMB.get_text_embedding("a"))])
    for dump in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match=r"cannot be pickled or deep-copied .*from_persist_path"):
            dump(store)
    assert len(store.model_copy()) == 1  # a shallow copy shares the nodes, as before


def test_a_load_beside_a_persist_at_every_read_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It gave up after 5 reads with "no MoL index found ... (config.json missing)", which reads
    like a damaged store."""
    from rag_relax_plugins.index import MoLIndex

    path = str(tmp_path / "store.json")
    store = MoLVectorStore()
    store.add([TextNode(text="a", id_="a", embedding=EMB.get_text_embedding("a"))])
    store.persist(path)
    real = MoLIndex.load.__func__  # type: ignore[attr-defined]

    def persist_meanwhile(cls: type, folder: Any, **kwargs: Any) -> Any:
        store.persist(path)  # every read overlaps a persist
        return real(cls, folder, **kwargs)

    monkeypatch.setattr(MoLIndex, "load", classmethod(persist_meanwhile))
    with pytest.raises(OSError, match="replaced by other persists during each of 10 reads; load it again"):
        MoLVectorStore.from_persist_path(path)


def _orphans_and_one_child() -> list[TextNode]:
    """Two nodes without a source document (ref_doc_id None) and one of document "d"."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo

    nodes = [TextNode(text=t, id_=t, embedding=EMB.get_text_embedding(t)) for t in ("a b", "c d", "e f")]
    nodes[2].relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="d")
    return nodes


def test_the_string_none_names_the_nodes_without_a_source_document_as_in_simple_vector_store() -> None:
    """The doc_id filter key read a missing ref doc as "None" (as core does), but delete("None")
    and doc_ids=["None"] compared with the raw None and reached nothing (review). SimpleVectorStore
    ignores doc_ids; this store restricts to them, and "None" now names the same nodes there."""
    mol, simple = MoLVectorStore(), SimpleVectorStore()
    for store in (mol, simple):
        store.add(_orphans_and_one_child())
    q = VectorStoreQuery(query_embedding=EMB.get_query_embedding("a b"), similarity_top_k=3, doc_ids=["None"])
    by_filter = VectorStoreQuery(query_embedding=EMB.get_query_embedding("a b"), similarity_top_k=3,
                                 filters=MetadataFilters(filters=[MetadataFilter(key="doc_id", value="None")]))
    assert sorted(mol.query(q).ids or []) == sorted(mol.query(by_filter).ids or []) == ["a b", "c d"]
    for store in (mol, simple):
        store.delete("None")
    q = VectorStoreQuery(query_embedding=EMB.get_query_embedding("a b"), similarity_top_k=3)
    assert mol.query(q).ids == simple.query(q).ids == ["e f"]


@pytest.mark.parametrize("top_k", [None, 0])
def test_similarity_top_k_none_or_zero_returns_every_node_as_simple_vector_store(top_k: int | None) -> None:
    """They raised; core's get_top_k_embeddings reads them as "every node"."""
    mol, simple = MoLVectorStore(), SimpleVectorStore()
    for store in (mol, simple):
        store.add(_orphans_and_one_child())
    for mode in ("default", "mmr"):
        q = VectorStoreQuery(query_embedding=EMB.get_query_embedding("a b"), similarity_top_k=top_k, mode=mode)
        got, want = mol.query(q), simple.query(q)
        assert sorted(got.ids or []) == sorted(want.ids or []) == ["a b", "c d", "e f"], mode
    q = VectorStoreQuery(query_embedding=EMB.get_query_embedding("a b"), similarity_top_k=top_k)
    assert mol.query(q).ids == simple.query(q).ids  # the same order: the exact scores


def test_a_numpy_float_mmr_threshold_is_taken() -> None:
    import numpy as np

    store = MoLVectorStore()
    store.add(_orphans_and_one_child())
    q = VectorStoreQuery(query_embedding=EMB.get_query_embedding("a b"), similarity_top_k=2, mode="mmr")
    assert store.query(q, mmr_threshold=np.float32(0.25)).ids == store.query(q, mmr_threshold=0.25).ids


def test_from_dict_and_from_json_are_refused_as_pickling_is() -> None:
    """to_dict() holds only the public fields: from_dict / from_json gave an empty store, silently."""
    store = MoLVectorStore()
    store.add(_orphans_and_one_child())
    assert store.to_dict()["class_name"] == "MoLVectorStore"  # dumping stays possible (callbacks do)
    for rebuild in (lambda: MoLVectorStore.from_dict(store.to_dict()), lambda: MoLVectorStore.from_json(store.to_json())):
        with pytest.raises(TypeError, match=r"cannot be rebuilt from to_dict\(\).*from_persist_path"):
            rebuild()


def test_a_store_persisted_before_its_first_add_keeps_its_index_options(tmp_path: Path) -> None:
    """Nothing recorded first_stage / cache_dtype without an index folder: the reloaded store built
    an fp32 torch-stage index (review)."""
    path = str(tmp_path / "store.json")
    MoLVectorStore(device="cpu", cache_dtype="bf16", first_stage="flat").persist(path)
    back = MoLVectorStore.from_persist_path(path, device="cpu")
    back.add(_orphans_and_one_child())
    assert back.client is not None and back.client.cache_dtype == "bf16" and back.client.first_stage.kind == "flat"


def test_a_failed_first_add_leaves_the_store_without_an_index() -> None:
    store = MoLVectorStore()
    with pytest.raises(ValueError, match="NaN"):
        store.add([TextNode(text="x", id_="x", embedding=[float("nan"), 1.0])])
    assert store.client is None and len(store) == 0


@pytest.mark.parametrize(("op", "want"), [("in", ["en"]), ("nin", ["de", "e", "n"]), ("any", ["en"]), ("all", ["en"])])
def test_a_single_string_filter_value_is_one_value_not_its_characters(op: str, want: list[str]) -> None:
    """The documented departure from build_metadata_filter_fn (upstream: IN "en" matches "e", "n")."""
    store = MoLVectorStore()
    store.add([TextNode(text=t, id_=t, metadata={"lang": t}, embedding=EMB.get_text_embedding(t)) for t in ("en", "e", "n", "de")])
    filters = MetadataFilters(filters=[MetadataFilter(key="lang", value="en", operator=op)])
    q = VectorStoreQuery(query_embedding=EMB.get_query_embedding("en"), similarity_top_k=4, filters=filters)
    assert sorted(store.query(q).ids or []) == want


def test_shallow_copies_share_the_index_a_first_add_builds() -> None:
    """pydantic's shallow copy shares the node dict but copied the index reference: after a first
    add through the copy the original held the nodes and no index (queries found nothing), and
    its next add built a second index holding only its own node (review)."""
    import copy

    for make_copy in (copy.copy, lambda s: s.model_copy()):
        original = MoLVectorStore()
        twin = make_copy(original)
        twin.add(_orphans_and_one_child())
        q = VectorStoreQuery(query_embedding=EMB.get_query_embedding("a b"), similarity_top_k=3)
        assert original.client is twin.client and original.query(q).ids == twin.query(q).ids
        original.add([TextNode(text="g h", id_="g h", embedding=EMB.get_text_embedding("g h"))])
        assert original.client is not None and sorted(original.client.ids) == ["a b", "c d", "e f", "g h"]
