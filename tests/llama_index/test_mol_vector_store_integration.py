"""The LlamaIndex MoLVectorStore inside LlamaIndex: VectorStoreIndex, StorageContext persistence,
retrievers (sync and async) and a query engine with MockLLM (no OpenAI), plus the persist format."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex, load_index_from_storage
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import ImageNode, IndexNode, TextNode
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, VectorStoreQuery

from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.llama_index.vector_store import MoLVectorStore


class HashingEmbedding(BaseEmbedding):
    """Deterministic LlamaIndex embedding over the library's hashing encoder (test double)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="hashing", **kwargs)

    def _vec(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in r] for r in HashingEncoder(dim=64, normalize=True).encode(texts).tolist()]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vec([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vec([text])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


@pytest.fixture(autouse=True)
def _no_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any OpenAI import fail, whether or not the package is installed here."""
    for name in ("openai", "llama_index.llms.openai", "llama_index.embeddings.openai"):
        monkeypatch.setitem(sys.modules, name, None)


EMB = HashingEmbedding()
DOCS = [
    Document(text="Paris is the capital of France.", doc_id="fr", metadata={"country": "France"}),
    Document(text="Berlin is the capital of Germany.", doc_id="de", metadata={"country": "Germany"}),
    Document(text="Madrid is the capital of Spain.", doc_id="es", metadata={"country": "Spain"}),
]


def _index() -> tuple[VectorStoreIndex, MoLVectorStore]:
    store = MoLVectorStore()
    ctx = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex.from_documents(DOCS, storage_context=ctx, embed_model=EMB)
    return index, store


def test_from_documents_and_retriever_top_k() -> None:
    index, store = _index()
    assert len(store) == 3
    nodes = index.as_retriever(similarity_top_k=2).retrieve("Berlin is the capital of Germany.")
    assert len(nodes) == 2
    assert nodes[0].node.ref_doc_id == "de"  # node text is embedded with its metadata: cos < 1
    assert nodes[0].score is not None and nodes[1].score is not None
    assert 1.0 >= nodes[0].score > nodes[1].score


def test_from_vector_store_over_a_filled_store() -> None:
    _, store = _index()
    index = VectorStoreIndex.from_vector_store(store, embed_model=EMB)
    nodes = index.as_retriever(similarity_top_k=1).retrieve("Madrid Spain")
    assert [n.node.ref_doc_id for n in nodes] == ["es"]


def test_retriever_metadata_filters() -> None:
    index, _ = _index()
    flt = MetadataFilters(filters=[MetadataFilter(key="country", value="Spain")])
    nodes = index.as_retriever(similarity_top_k=3, filters=flt).retrieve("Paris France")
    assert [n.node.metadata["country"] for n in nodes] == ["Spain"]


def test_strategy_through_vector_store_kwargs() -> None:
    from rag_relax_plugins.index import ExactTwoPass

    index, _ = _index()
    plain = index.as_retriever(similarity_top_k=2).retrieve("capital of Spain")
    exact = index.as_retriever(similarity_top_k=2, vector_store_kwargs={"strategy": ExactTwoPass(budget=10)}).retrieve("capital of Spain")
    assert [n.node.node_id for n in exact] == [n.node.node_id for n in plain]
    with pytest.raises(TypeError, match="strategy"):  # the kwarg really reaches the index
        index.as_retriever(vector_store_kwargs={"strategy": "bogus"}).retrieve("capital")


async def test_aretrieve() -> None:
    index, _ = _index()
    nodes = await index.as_retriever(similarity_top_k=2).aretrieve("Paris is the capital of France.")
    assert len(nodes) == 2 and nodes[0].node.ref_doc_id == "fr"


def test_query_engine_with_mock_llm() -> None:
    index, _ = _index()
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=1)
    response = engine.query("capital of Spain")
    assert [n.node.ref_doc_id for n in response.source_nodes] == ["es"]
    assert isinstance(str(response), str)


def test_insert_and_delete_ref_doc() -> None:
    index, store = _index()
    index.insert(Document(text="Rome is the capital of Italy.", doc_id="it"))
    assert len(store) == 4
    index.delete_ref_doc("fr")
    assert len(store) == 3
    refs = {n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=5).retrieve("capital")}
    assert refs == {"de", "es", "it"}


def test_storage_context_persist_and_load_index(tmp_path: Path) -> None:
    index, _ = _index()
    before = [(n.node.node_id, n.score) for n in index.as_retriever(similarity_top_k=3).retrieve("capital of Germany")]
    index.storage_context.persist(persist_dir=str(tmp_path))
    assert (tmp_path / "default__vector_store.json").is_file()

    store = MoLVectorStore.from_persist_dir(str(tmp_path))
    ctx = StorageContext.from_defaults(persist_dir=str(tmp_path), vector_store=store)
    loaded = load_index_from_storage(ctx, embed_model=EMB)
    after = [(n.node.node_id, n.score) for n in loaded.as_retriever(similarity_top_k=3).retrieve("capital of Germany")]
    assert [a for a, _ in after] == [b for b, _ in before]
    assert [s for _, s in after] == pytest.approx([s for _, s in before], abs=1e-6)


def test_loading_the_persist_dir_without_vector_store_fails_instead_of_an_empty_index(tmp_path: Path) -> None:
    # LlamaIndex's default loader reads default__vector_store.json as a SimpleVectorStore: our
    # manifest was parsed as an empty one and every query answered nothing, without an error
    index, _ = _index()
    index.storage_context.persist(persist_dir=str(tmp_path))
    with pytest.raises(AttributeError):
        StorageContext.from_defaults(persist_dir=str(tmp_path))
    ctx = StorageContext.from_defaults(persist_dir=str(tmp_path), vector_store=MoLVectorStore.from_persist_dir(str(tmp_path)))
    assert load_index_from_storage(ctx, embed_model=EMB).as_retriever(similarity_top_k=1).retrieve("capital of Germany")


def test_persist_layout_is_json_and_safetensors_and_replaces_old_folder(tmp_path: Path) -> None:
    _, store = _index()
    path = tmp_path / "vs.json"
    store.persist(str(path))
    first = json.loads(path.read_text())["index_folder"]
    store.add([TextNode(id_="extra", text="Lisbon", embedding=EMB.get_text_embedding("Lisbon"))])
    store.persist(str(path))
    second = json.loads(path.read_text())["index_folder"]
    assert first != second and not (tmp_path / first).exists() and (tmp_path / second).is_dir()
    files = {p.suffix for p in tmp_path.rglob("*") if p.is_file()}
    assert files <= {".json", ".safetensors"}  # no pickle anywhere
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    loaded = MoLVectorStore.from_persist_path(str(path))
    assert len(loaded) == 4 and loaded.get_nodes(["extra"])[0].get_content() == "Lisbon"
    spain = MetadataFilters(filters=[MetadataFilter(key="country", value="Spain")])
    assert [n.ref_doc_id for n in loaded.get_nodes(filters=spain)] == ["es"]  # metadata survives
    loaded.delete("es")  # ref doc ids survive
    assert len(loaded) == 3


def test_failed_persist_keeps_previous_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest write fails after the new index folder was saved: the old manifest and its
    folder stay, and the new folder is removed (it patched json.dump before, which failed inside
    the index save and never reached this clean-up)."""
    from rag_relax_plugins.llama_index import _mol_persist

    _, store = _index()
    path = tmp_path / "vs.json"
    store.persist(str(path))
    good = path.read_text()
    saved_index: list[Path] = []

    def boom(target: Path, text: str) -> None:
        saved_index.extend(p for p in tmp_path.iterdir() if p.is_dir() and p.name not in folders_before)
        raise OSError("disk full")

    folders_before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setattr(_mol_persist, "atomic_write_text", boom)
    store.add([TextNode(id_="extra", text="Lisbon", embedding=EMB.get_text_embedding("Lisbon"))])
    with pytest.raises(OSError, match="disk full"):
        store.persist(str(path))
    monkeypatch.undo()
    assert len(saved_index) == 1  # the new index folder existed when the manifest write failed
    assert path.read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == folders_before  # new folder cleaned up
    assert len(MoLVectorStore.from_persist_path(str(path))) == 3


def test_an_interrupt_after_the_manifest_rename_keeps_its_index_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt while the folder is flushed comes after the manifest's rename: the clean-up
    deleted the new index folder the new manifest named, and the store no longer loaded (review)."""
    from rag_relax_plugins import _io
    from rag_relax_plugins.llama_index import _mol_persist

    _, store = _index()
    path = tmp_path / "vs.json"
    store.persist(str(path))
    real = _io.atomic_write_text

    def renamed_then_interrupted(target: Path, text: str) -> None:
        real(target, text)
        raise KeyboardInterrupt

    monkeypatch.setattr(_mol_persist, "atomic_write_text", renamed_then_interrupted)
    store.add([TextNode(id_="extra", text="Lisbon", embedding=EMB.get_text_embedding("Lisbon"))])
    with pytest.raises(KeyboardInterrupt):
        store.persist(str(path))
    monkeypatch.undo()
    assert len(MoLVectorStore.from_persist_path(str(path))) == 4  # the new manifest with its folder


def test_persisting_a_copied_manifest_keeps_the_originals_index_folder(tmp_path: Path) -> None:
    """b.json copied from a.json names a.json's index folder; persisting b.json deleted it, and
    a.json no longer loaded (review). Only a folder of the manifest's own name is deleted."""
    import shutil

    _, store = _index()
    store.persist(str(tmp_path / "a.json"))
    shutil.copy(tmp_path / "a.json", tmp_path / "b.json")
    copy = MoLVectorStore.from_persist_path(str(tmp_path / "b.json"))
    copy.add([TextNode(id_="extra", text="Lisbon", embedding=EMB.get_text_embedding("Lisbon"))])
    copy.persist(str(tmp_path / "b.json"))
    assert len(MoLVectorStore.from_persist_path(str(tmp_path / "a.json"))) == 3
    assert len(MoLVectorStore.from_persist_path(str(tmp_path / "b.json"))) == 4
    copy.persist(str(tmp_path / "b.json"))  # b.json's own earlier folder is replaced
    assert sorted(p.name.split(".index-")[0] for p in tmp_path.iterdir() if p.is_dir()) == ["a.json", "b.json"]


def test_a_manifest_reached_through_a_symlink_persists_and_loads_both_ways(tmp_path: Path) -> None:
    """Persisting through a link replaced the link with a file and put the index folder beside
    the link; a load of the real manifest missed it (review). The manifest the link points to is
    written, with its folder beside it."""
    _, store = _index()
    real_dir = tmp_path / "v1"
    real_dir.mkdir()
    store.persist(str(real_dir / "vs.json"))
    link = tmp_path / "current.json"
    link.symlink_to(real_dir / "vs.json")
    store.add([TextNode(id_="extra", text="Lisbon", embedding=EMB.get_text_embedding("Lisbon"))])
    store.persist(str(link))
    assert link.is_symlink()
    for path in (link, real_dir / "vs.json"):
        assert len(MoLVectorStore.from_persist_path(str(path))) == 4
    assert sorted(p.name.split(".index-")[0] for p in real_dir.iterdir()) == ["vs.json", "vs.json"]


def test_documents_added_as_they_are_persist_and_load(tmp_path: Path) -> None:
    """An IngestionPipeline (or insert_nodes) hands Document objects to the store: it saved them
    as type "Document", which the loader refused, and the save had replaced the loadable one."""
    from llama_index.core.ingestion import IngestionPipeline

    store = MoLVectorStore()
    path = tmp_path / "vs.json"
    IngestionPipeline(transformations=[EMB], vector_store=store).run(documents=DOCS[:2])
    store.persist(str(path))
    store.add([Document(text="Madrid is the capital of Spain.", doc_id="es", metadata={"country": "Spain"},
                        embedding=EMB.get_text_embedding("Madrid is the capital of Spain."))])
    store.persist(str(path))  # over a good save
    loaded = MoLVectorStore.from_persist_path(str(path), embed_model=EMB)
    assert len(loaded) == 3
    res = loaded.query(VectorStoreQuery(query_str="capital of Spain", similarity_top_k=1))
    assert res.nodes is not None and res.nodes[0].get_content() == "Madrid is the capital of Spain."
    assert type(res.nodes[0]) is TextNode and res.nodes[0].metadata["country"] == "Spain"
    before = store.query(VectorStoreQuery(query_embedding=EMB.get_query_embedding("capital of Spain"),
                                          similarity_top_k=3))
    after = loaded.query(VectorStoreQuery(query_embedding=EMB.get_query_embedding("capital of Spain"),
                                          similarity_top_k=3))
    assert before.ids == after.ids and before.similarities == after.similarities
    assert [type(n) for n in before.nodes or []] == [type(n) for n in after.nodes or []]


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    bad = tmp_path / "default__vector_store.json"
    bad.write_text(json.dumps({"embedding_dict": {}}))
    with pytest.raises(ValueError, match="manifest"):
        MoLVectorStore.from_persist_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        MoLVectorStore.from_persist_path(str(tmp_path / "missing.json"))


def _mmr_index() -> VectorStoreIndex:
    texts = ["cat cat cat", "cat cat cat mat", "cat cat dog", "stock market", "cat"]
    store = MoLVectorStore()
    store.add([TextNode(id_=f"n{i}", text=t, embedding=EMB.get_text_embedding(t)) for i, t in enumerate(texts)])
    return VectorStoreIndex.from_vector_store(store, embed_model=EMB)


def test_retriever_mmr_threshold_through_vector_store_kwargs() -> None:
    # VectorIndexRetriever hands vector_store_kwargs to query() as **kwargs (SimpleVectorStore
    # reads kwargs["mmr_threshold"]); the threshold must reach the MMR selection
    index = _mmr_index()
    def ids(thr: float) -> list[str]:
        retriever = index.as_retriever(similarity_top_k=3, vector_store_query_mode="mmr", vector_store_kwargs={"mmr_threshold": thr})
        return [n.node.node_id for n in retriever.retrieve("cat")]
    plain = [n.node.node_id for n in index.as_retriever(similarity_top_k=3).retrieve("cat")]
    assert ids(1.0) == plain  # all relevance: the similarity order
    assert ids(0.0) != plain and len(set(ids(0.0))) == 3  # all diversity: another choice
    with pytest.raises(ValueError, match="mmr_threshold"):
        ids(2.0)


async def test_aretrieve_mmr_threshold_through_vector_store_kwargs() -> None:
    index = _mmr_index()
    async def ids(thr: float) -> list[str]:
        retriever = index.as_retriever(similarity_top_k=3, vector_store_query_mode="mmr", vector_store_kwargs={"mmr_threshold": thr})
        return [n.node.node_id for n in await retriever.aretrieve("cat")]
    sync = index.as_retriever(similarity_top_k=3, vector_store_query_mode="mmr", vector_store_kwargs={"mmr_threshold": 0.0})
    assert await ids(0.0) == [n.node.node_id for n in sync.retrieve("cat")]
    assert await ids(0.0) != await ids(1.0)


@pytest.mark.parametrize("crafted", ["../victim", "victim", "/abs/victim", "sub/vs.json.index-0123456789ab", ".."])
def test_crafted_manifest_index_folder_is_refused(tmp_path: Path, crafted: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "victim").mkdir()  # a plain sibling that is not ours is refused too
    path = tmp_path / "store" / "vs.json"
    manifest = {"format": "rag-relax-mol-llamaindex-store", "format_version": 1,
                "index_folder": crafted, "ids": [], "records": []}
    path.write_text(json.dumps(manifest))
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="index_folder"):
        MoLVectorStore.from_persist_path(str(path))
    _, store = _index()
    with pytest.raises(ValueError, match="index_folder"):
        store.persist(str(path))
    assert (victim / "keep.txt").read_text() == "x"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before  # nothing written or deleted
    assert json.loads(path.read_text()) == manifest


def test_loaded_store_needs_embed_model_again_for_text_queries(tmp_path: Path) -> None:
    from llama_index.core.vector_stores.types import VectorStoreQuery

    _, store = _index()
    store.persist(str(tmp_path / "vs.json"))
    bare = MoLVectorStore.from_persist_path(str(tmp_path / "vs.json"))
    with pytest.raises(ValueError, match="embed_model"):
        bare.query(VectorStoreQuery(query_str="capital of Spain", similarity_top_k=1))
    again = MoLVectorStore.from_persist_path(str(tmp_path / "vs.json"), embed_model=EMB)
    res = again.query(VectorStoreQuery(query_str="capital of Spain", similarity_top_k=1))
    assert res.nodes is not None and [n.ref_doc_id for n in res.nodes] == ["es"]


@pytest.mark.parametrize("corrupt", ["no_records", "no_type", "node_not_json", "ids_reversed", "node_of_another_id"])
def test_load_names_a_corrupt_manifest(tmp_path: Path, corrupt: str) -> None:
    """A malformed manifest raised KeyError on load, or JSONDecodeError at the first query; ids
    that disagree with their records loaded, and queries answered with the wrong nodes (review)."""
    store = MoLVectorStore()
    store.add([TextNode(id_=f"n{i}", text=t, embedding=EMB.get_text_embedding(t)) for i, t in enumerate(["a b", "c d"])])
    path = tmp_path / "store.json"
    store.persist(str(path))
    data = json.loads(path.read_text())
    if corrupt == "no_records":
        del data["records"]
    elif corrupt == "no_type":
        del data["records"][0]["type"]
    elif corrupt == "node_not_json":
        data["records"][0]["node"] = "not json"
    elif corrupt == "ids_reversed":
        data["ids"].reverse()
    else:
        data["records"][0]["node"] = data["records"][1]["node"]
    path.write_text(json.dumps(data))
    message = {"no_records": "corrupt manifest", "no_type": "is not a stored node",
               "node_not_json": r"records\[0\] holds no readable node JSON",
               "ids_reversed": r"records\[0\] holds the node 'n0', but ids\[0\] is 'n1'",
               "node_of_another_id": r"records\[0\] holds the node 'n1', but ids\[0\] is 'n0'"}[corrupt]
    with pytest.raises(ValueError, match=rf"{path.name}: .*{message}" if corrupt != "no_records" else message):
        MoLVectorStore.from_persist_path(str(path))


def test_manifest_rename_is_flushed_before_the_old_index_is_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest was renamed without flushing its folder, then the old index folder deleted: a
    power loss in between could leave a manifest naming a deleted folder."""
    import rag_relax_plugins._io as io_module
    import rag_relax_plugins.llama_index._mol_persist as persist

    store = MoLVectorStore()
    store.add([TextNode(id_="n0", text="a b", embedding=EMB.get_text_embedding("a b"))])
    path = tmp_path / "store.json"
    store.persist(str(path))
    import os

    events: list[str] = []
    flush, rmtree, replace = io_module._fsync_dir, persist.shutil.rmtree, os.replace
    monkeypatch.setattr(io_module, "_fsync_dir", lambda folder: (events.append(f"flush {Path(folder).name}"), flush(folder)))
    monkeypatch.setattr(persist.shutil, "rmtree", lambda p, **kw: (events.append("delete old index"), rmtree(p, **kw)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(f"rename to {Path(b).name}"), replace(a, b)))
    store.persist(str(path))
    renamed, deleted = events.index("rename to store.json"), events.index("delete old index")
    assert f"flush {tmp_path.name}" in events[renamed:deleted], events


def _texts() -> list[TextNode]:
    return [TextNode(text=f"paris france capital {i}", id_=f"t{i}") for i in range(4)]


@pytest.mark.parametrize("how", ["objects", "insert_image", "reloaded"])
def test_an_image_or_index_node_does_not_hide_the_text_nodes(tmp_path: Path, how: str) -> None:
    """VectorStoreIndex.as_retriever passes node_ids=the ids its index struct lists: for a store
    that keeps text, only the ImageNode / IndexNode ones. Taken as a restriction, one such node
    hid every text node (the retriever returned only it), in the objects= (recursive retrieval)
    pattern, after insert_nodes and after a reload."""
    store = MoLVectorStore()
    ctx = StorageContext.from_defaults(vector_store=store)
    if how == "insert_image":
        index = VectorStoreIndex(_texts(), storage_context=ctx, embed_model=EMB)
        index.insert_nodes([ImageNode(text="a photo", image="aGVsbG8=", id_="other")])
    else:
        objects = [IndexNode(text="summary of a sub index", id_="other", index_id="sub")]
        index = VectorStoreIndex(_texts(), objects=objects, storage_context=ctx, embed_model=EMB)
    if how == "reloaded":
        ctx.persist(str(tmp_path))
        loaded = MoLVectorStore.from_persist_dir(str(tmp_path))
        index = load_index_from_storage(StorageContext.from_defaults(persist_dir=str(tmp_path), vector_store=loaded),
                                        embed_model=EMB)
        store = loaded
    got = {n.node.node_id for n in index.as_retriever(similarity_top_k=5).retrieve("paris france capital")}
    assert got == {"t0", "t1", "t2", "t3", "other"}
    # an explicit restriction that names a text node still restricts; a _node_type filter picks the others
    vec = EMB.get_query_embedding("paris")
    both = store.query(VectorStoreQuery(query_embedding=vec, similarity_top_k=5, node_ids=["t1", "other"]))
    assert set(both.ids or []) == {"t1", "other"}
    kind = ImageNode.class_name() if how == "insert_image" else IndexNode.class_name()
    only = MetadataFilters(filters=[MetadataFilter(key="_node_type", value=kind)])
    assert store.query(VectorStoreQuery(query_embedding=vec, similarity_top_k=5, filters=only)).ids == ["other"]
    # the index struct of a store that keeps text keeps a deleted node's id: the texts stay found
    index.delete_nodes(["other"])
    got = {n.node.node_id for n in index.as_retriever(similarity_top_k=5).retrieve("paris france capital")}
    assert got == {"t0", "t1", "t2", "t3"}
    ctx = index.storage_context
    ctx.persist(str(tmp_path / "after"))
    again = load_index_from_storage(StorageContext.from_defaults(
        persist_dir=str(tmp_path / "after"), vector_store=MoLVectorStore.from_persist_dir(str(tmp_path / "after"))),
        embed_model=EMB)
    got = {n.node.node_id for n in again.as_retriever(similarity_top_k=5).retrieve("paris france capital")}
    assert got == {"t0", "t1", "t2", "t3"}


class _LinkNode(IndexNode):
    """A user's IndexNode subclass with its own serialisation key, as LlamaIndex subclasses do."""

    @classmethod
    def class_name(cls) -> str:
        return "LinkNode"


def test_an_index_node_subclass_does_not_hide_the_text_nodes(tmp_path: Path) -> None:
    """VectorStoreIndex lists a node in its index struct by isinstance(ImageNode, IndexNode); the
    store recorded such ids by class_name(), so a subclass named otherwise was a restriction: the
    retriever returned only it, and nothing once it was deleted (review)."""
    store = MoLVectorStore()
    nodes = [*_texts(), _LinkNode(text="bananas are yellow", id_="l1", index_id="fruit")]
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=EMB)
    assert "l1" in index.index_struct.nodes_dict
    got = {n.node.node_id for n in index.as_retriever(similarity_top_k=4).retrieve("paris france capital")}
    assert got == {"t0", "t1", "t2", "t3"}
    store.persist(str(tmp_path / "s.json"))  # the id is recorded in the manifest too
    store = MoLVectorStore.from_persist_path(str(tmp_path / "s.json"))
    store.delete_nodes(["l1"])
    vec = EMB.get_query_embedding("paris france capital")
    assert len(store.query(VectorStoreQuery(query_embedding=vec, similarity_top_k=3, node_ids=["l1"])).ids or []) == 3


def test_which_node_ids_still_restrict() -> None:
    """Ids that were all added as ImageNode / IndexNode read as the index struct's list, not as a
    restriction; an id never added as one (a text node, an unknown id) keeps the restriction."""
    store = MoLVectorStore(embed_model=EMB)
    objects = [IndexNode(text=f"summary {i}", id_=f"o{i}", index_id=f"sub{i}") for i in range(2)]
    VectorStoreIndex(_texts(), objects=objects, storage_context=StorageContext.from_defaults(vector_store=store),
                     embed_model=EMB)

    def ids(node_ids: list[str]) -> set[str]:
        query = VectorStoreQuery(query_embedding=EMB.get_query_embedding("summary"), similarity_top_k=9,
                                 node_ids=node_ids)
        return set(store.query(query).ids or [])

    assert ids(["t1"]) == {"t1"} and ids(["t1", "o1"]) == {"t1", "o1"} and ids(["gone"]) == set()
    assert len(ids(["o1"])) == 6  # documented: read as the index struct's list (filter on _node_type instead)


def test_two_indexes_over_one_store_each_find_every_text() -> None:
    """Each index struct lists only its own IndexNode: reading "every stored such node must be
    listed" as the sign of an index struct hid the texts from both."""
    store = MoLVectorStore()
    found = []
    for name in ("a", "b"):
        index = VectorStoreIndex(_texts() if name == "a" else [], objects=[IndexNode(text=f"sub {name}", id_=f"o{name}",
                                 index_id=name)], storage_context=StorageContext.from_defaults(vector_store=store),
                                 embed_model=EMB)
        found.append(index)
    for index in found:
        got = {n.node.node_id for n in index.as_retriever(similarity_top_k=9).retrieve("paris france capital")}
        assert {"t0", "t1", "t2", "t3"} <= got


def test_an_index_node_upserted_as_a_text_node_does_not_restrict() -> None:
    store = MoLVectorStore()
    index = VectorStoreIndex(_texts(), objects=[IndexNode(text="sub", id_="x", index_id="s")],
                             storage_context=StorageContext.from_defaults(vector_store=store), embed_model=EMB)
    index.insert_nodes([TextNode(text="now a text", id_="x")])  # the index struct still lists x
    got = {n.node.node_id for n in index.as_retriever(similarity_top_k=9).retrieve("paris france capital")}
    assert got == {"t0", "t1", "t2", "t3", "x"}


def test_a_manifest_without_the_image_or_index_ids_reads_deleted_ids_as_such(tmp_path: Path) -> None:
    """A manifest written before the ids were recorded: its deleted IndexNode ids are unknown,
    and an id the store does not hold is taken as one (it hid every text node)."""
    store = MoLVectorStore()
    ctx = StorageContext.from_defaults(vector_store=store)
    objects = [IndexNode(text=f"summary {i}", id_=f"o{i}", index_id=f"sub{i}") for i in range(2)]
    index = VectorStoreIndex(_texts(), objects=objects, storage_context=ctx, embed_model=EMB)
    index.delete_nodes(["o0"])
    ctx.persist(str(tmp_path))
    manifest = tmp_path / "default__vector_store.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    assert data.pop("image_or_index_ids") == ["o0", "o1"]
    manifest.write_text(json.dumps(data), encoding="utf-8")
    for _ in range(2):  # and again after a persist of the loaded store (null: still unknown)
        loaded = MoLVectorStore.from_persist_dir(str(tmp_path))
        again = load_index_from_storage(StorageContext.from_defaults(persist_dir=str(tmp_path), vector_store=loaded),
                                        embed_model=EMB)
        got = {n.node.node_id for n in again.as_retriever(similarity_top_k=9).retrieve("paris france capital")}
        assert got == {"t0", "t1", "t2", "t3", "o1"}
        again.storage_context.persist(str(tmp_path))
    assert json.loads(manifest.read_text(encoding="utf-8"))["image_or_index_ids"] is None


def test_a_node_id_repeated_in_one_add_is_an_upsert_as_in_simple_vector_store() -> None:
    """It was refused; an IngestionPipeline fed one document twice (no docstore, or a docstore
    that records hashes before the add) then failed, and its retry left the store stale."""
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.storage.docstore import SimpleDocumentStore

    docs = [Document(text="apple v1", doc_id="d1"), Document(text="apple v2", doc_id="d1"),
            Document(text="banana", doc_id="d2")]
    store = MoLVectorStore()
    IngestionPipeline(transformations=[EMB], vector_store=store, docstore=SimpleDocumentStore(),
                      docstore_strategy=DocstoreStrategy.DUPLICATES_ONLY).run(documents=docs)
    found = VectorStoreIndex.from_vector_store(store, embed_model=EMB).as_retriever(similarity_top_k=5).retrieve("apple")
    assert sorted((n.node.node_id, n.node.get_content()) for n in found) == [("d1", "apple v2"), ("d2", "banana")]
    nodes = [TextNode(id_=i, text=t, embedding=EMB.get_text_embedding(t)) for i, t in (("a", "x"), ("b", "y"), ("a", "z"))]
    store = MoLVectorStore()
    assert store.add(nodes) == ["a", "b", "a"]  # one id per node, as upstream
    assert len(store) == 2 and store.get_nodes(["a"])[0].get_content() == "z"
    with pytest.raises(ValueError, match=r"nodes\[2\] has no embedding"):  # the caller's position
        store.add([*nodes[:2], TextNode(id_="a", text="no vector")])


def test_a_manifest_repeating_an_id_is_refused(tmp_path: Path) -> None:
    """A damaged manifest listing an id twice loaded, and a query returned that node twice."""
    store = MoLVectorStore()
    store.add([TextNode(id_=i, text=i, embedding=EMB.get_text_embedding(i)) for i in ("n1", "n2")])
    store.persist(str(tmp_path / "m.json"))
    data = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    data["ids"].append("n2")
    data["records"].append(data["records"][1])
    (tmp_path / "m.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="disagree on the stored ids"):
        MoLVectorStore.from_persist_path(str(tmp_path / "m.json"))


def test_refresh_after_delete_ref_doc_needs_the_docstore_hash_removed() -> None:
    """llama-index-core's VectorStoreIndex.delete_ref_doc(..., delete_from_docstore=True) leaves the
    document's hash in the docstore for a store that keeps text (stores_text=True, as ours): a
    later refresh_ref_docs of the same document skipped it and the document stayed missing. Pinned
    here (upstream behaviour) with the workaround docs/mol_adapters.md gives."""
    from llama_index.core.embeddings import MockEmbedding

    emb = MockEmbedding(embed_dim=8)
    index = VectorStoreIndex.from_documents([], storage_context=StorageContext.from_defaults(
        vector_store=MoLVectorStore()), embed_model=emb)
    assert index.refresh_ref_docs([Document(text="dog", doc_id="doc0")]) == [True]
    index.delete_ref_doc("doc0", delete_from_docstore=True)
    assert index.docstore.get_document_hash("doc0") is not None  # upstream: left behind
    index.docstore.delete_document("doc0", raise_error=False)  # the workaround
    assert index.refresh_ref_docs([Document(text="dog", doc_id="doc0")]) == [True]
    assert [n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=2).retrieve("dog")] == ["doc0"]
