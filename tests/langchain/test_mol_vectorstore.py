"""Contract tests for the LangChain MoLVectorStore beyond the standard suite: filters as
pre-filtering, relevance scores, MMR, retriever search types, trained heads, persistence,
validation and concurrency."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from langchain_core.documents import Document

from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
from rag_relax_plugins.embedders.hashing import HashingEncoder
from rag_relax_plugins.langchain.vectorstore import MoLVectorStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lc_helpers import DIM, HashingEmbeddings

TEXTS = ["the cat sat on the mat", "a dog barked at the mailman", "stock markets fell today", "the kitten chased a cat toy"]
METAS = [{"animal": "cat", "n": 0}, {"animal": "dog", "n": 1}, {"topic": "finance", "n": 2}, {"animal": "cat", "n": 3}]


@pytest.fixture()
def store() -> MoLVectorStore:
    return MoLVectorStore.from_texts(TEXTS, HashingEmbeddings(), metadatas=METAS, ids=["a", "b", "c", "d"])


def test_self_match_raw_score_and_relevance(store: MoLVectorStore) -> None:
    (doc, score), *_ = store.similarity_search_with_score(TEXTS[1], k=4)
    assert doc == Document(page_content=TEXTS[1], metadata=METAS[1], id="b")
    assert score == pytest.approx(1.0, abs=1e-5)  # cosine head: raw score is the cosine
    rel = store.similarity_search_with_relevance_scores(TEXTS[1], k=4)
    raw = store.similarity_search_with_score(TEXTS[1], k=4)
    assert [r for _, r in rel] == pytest.approx([(1 + s) / 2 for _, s in raw])
    assert all(0.0 <= r <= 1.0 for _, r in rel)


def test_by_vector_equals_by_text(store: MoLVectorStore) -> None:
    emb = store.embeddings.embed_query("cat")
    assert store.similarity_search_by_vector(emb, k=3) == store.similarity_search("cat", k=3)


def test_dict_and_callable_filters(store: MoLVectorStore) -> None:
    docs = store.similarity_search("stock markets", k=4, filter={"animal": "cat"})
    assert sorted(str(d.id) for d in docs) == ["a", "d"]
    docs = store.similarity_search("cat", k=4, filter=lambda d: d.metadata["n"] >= 2)
    assert sorted(str(d.id) for d in docs) == ["c", "d"]
    assert store.similarity_search("cat", k=2, filter={"animal": "bird"}) == []


@pytest.mark.parametrize("mmr", [False, True])
def test_a_callable_filter_runs_outside_the_store_lock(store: MoLVectorStore, mmr: bool) -> None:
    """A predicate is user code: run under the store's lock, one taking an application lock held by
    a thread waiting to search the store deadlocked both (review 2026-12-05)."""
    other_done: list[bool] = []

    def predicate(doc: Document) -> bool:
        if not other_done:  # another thread's search, started from inside the filter
            t = threading.Thread(target=lambda: store.similarity_search("cat", k=1))
            t.start()
            t.join(5)
            other_done.append(not t.is_alive())
        return doc.metadata["n"] >= 2

    search = store.max_marginal_relevance_search if mmr else store.similarity_search
    docs = search("cat", k=4, filter=predicate)
    assert sorted(str(d.id) for d in docs) == ["c", "d"] and other_done == [True]


def test_a_document_replaced_while_a_callable_filter_runs_is_not_returned(store: MoLVectorStore) -> None:
    """The predicate passed "d" as it was; an upsert of "d" meanwhile made it fail, yet it was
    returned (review of the outside-the-lock filter, 2026-12-05)."""
    seen: list[int] = []

    def predicate(doc: Document) -> bool:
        if not seen:
            seen.append(1)
            t = threading.Thread(target=lambda: store.add_texts(["now about dogs"], [{"animal": "dog", "n": 9}],
                                                                ids=["d"]))
            t.start()
            t.join(5)
        return doc.metadata.get("animal") == "cat"

    assert [d.id for d in store.similarity_search("cat", k=4, filter=predicate)] == ["a"]
    with pytest.raises(TypeError, match="filter must be a dict of metadata values or a callable, got frozenset"):
        store.similarity_search("cat", k=4, filter=frozenset({"a"}))  # not an id whitelist


def test_filter_is_prefiltering_not_a_fixed_fetch() -> None:
    text = "the quick brown fox"
    store = MoLVectorStore(HashingEmbeddings())
    store.add_texts([text] * 200, [{"keep": False}] * 200)
    store.add_texts(["zebra"], [{"keep": True}], ids=["far"])
    assert [d.id for d in store.similarity_search(text, k=1, filter={"keep": True})] == ["far"]


def test_inputs_not_mutated_and_results_are_copies(store: MoLVectorStore) -> None:
    meta = {"tags": ["x"]}
    docs = [Document(page_content="new text", metadata=meta)]
    (new_id,) = store.add_documents(docs)
    assert docs[0].id is None and meta == {"tags": ["x"]}
    meta["tags"].append("changed-after-add")
    got = store.get_by_ids([new_id])[0]
    assert got.metadata == {"tags": ["x"]}
    got.metadata["tags"].append("changed-result")
    assert store.get_by_ids([new_id])[0].metadata == {"tags": ["x"]}


def test_upsert_and_generated_ids(store: MoLVectorStore) -> None:
    store.add_texts(["a new text for a"], [{"animal": "bird"}], ids=["a"])
    assert len(store) == 4 and len(store.index) == 4  # type: ignore[arg-type]
    assert store.get_by_ids(["a"]) == [Document(page_content="a new text for a", metadata={"animal": "bird"}, id="a")]
    ids = store.add_texts(["x", "y"])
    assert len(set(ids)) == 2 and all(len(i) == 36 for i in ids)  # uuid4 strings


def test_delete_all(store: MoLVectorStore) -> None:
    assert store.delete() is True
    assert len(store) == 0 and store.similarity_search("cat") == []


async def test_mmr_takes_exactly_fetch_k_candidates() -> None:
    """fetch_k < k searched max(k, fetch_k) documents and returned k, where the docstring, the docs
    and InMemoryVectorStore take fetch_k (review)."""
    from langchain_core.vectorstores import InMemoryVectorStore

    texts, ids = ["a cat", "a dog", "a bird"], ["1", "2", "3"]
    ours, ref = MoLVectorStore(HashingEmbeddings()), InMemoryVectorStore(HashingEmbeddings())
    for st in (ours, ref):
        st.add_texts(texts, ids=ids)
    got = [d.id for d in ours.max_marginal_relevance_search("cat", k=2, fetch_k=1)]
    assert got == [d.id for d in ref.max_marginal_relevance_search("cat", k=2, fetch_k=1)] == ["1"]
    assert [d.id for d in await ours.amax_marginal_relevance_search("cat", k=2, fetch_k=1)] == ["1"]
    retriever = ours.as_retriever(search_type="mmr", search_kwargs={"k": 3, "fetch_k": 2})
    assert len(retriever.invoke("cat")) == 2


def test_mmr_prefers_diverse_results() -> None:
    store = MoLVectorStore(HashingEmbeddings())
    store.add_texts(["red apples and green apples", "red apples and green apples", "apples are fruit"], ids=["a", "b", "c"])
    plain = [d.id for d in store.similarity_search("red apples", k=2)]
    mmr = [d.id for d in store.max_marginal_relevance_search("red apples", k=2, fetch_k=3, lambda_mult=0.3)]
    assert set(plain) == {"a", "b"}
    assert mmr[0] in {"a", "b"} and mmr[1] == "c"
    assert [d.id for d in store.max_marginal_relevance_search("red apples", k=3, lambda_mult=1.0)] == [d.id for d in store.similarity_search("red apples", k=3)]
    assert [d.id for d in store.max_marginal_relevance_search("red apples", k=2, filter=lambda d: d.id != "a")] in (["b", "c"], ["c", "b"])


def test_mmr_relevance_is_on_the_cosine_scale_for_any_tau() -> None:
    # the cosine head with temperature tau scores cos / tau; MMR must rescale it (tau * phi) so
    # that lambda_mult weighs it against the cosine redundancy as it does for tau = 1
    texts = ["red apples and green apples", "red apples and green apples", "apples are fruit"]
    ids = ["a", "b", "c"]
    emb = HashingEmbeddings()
    unit = MoLVectorStore.from_texts(texts, emb, ids=ids, similarity=MoLSimilarity.cosine(DIM))
    hot = MoLVectorStore.from_texts(texts, emb, ids=ids, similarity=MoLSimilarity.cosine(DIM, tau=0.05))
    assert set(d.id for d in hot.similarity_search("red apples", k=2)) == {"a", "b"}
    mmr = [d.id for d in hot.max_marginal_relevance_search("red apples", k=2, fetch_k=3, lambda_mult=0.5)]
    assert mmr[0] in {"a", "b"} and mmr[1] == "c"  # raw phi (~16.6 vs 8.0) would have picked the duplicate
    for lam in (0.0, 0.2, 0.5, 0.8, 1.0):
        got = [d.id for d in hot.max_marginal_relevance_search("red apples", k=3, fetch_k=3, lambda_mult=lam)]
        assert got == [d.id for d in unit.max_marginal_relevance_search("red apples", k=3, fetch_k=3, lambda_mult=lam)]


def test_mmr_with_a_trained_head_matches_the_reference_on_tau_phi() -> None:
    from rag_relax_plugins.core.mmr import mmr_select_reference

    torch.manual_seed(1)
    sim = MoLSimilarity(MoLConfig(query_dim=DIM, item_dim=DIM, num_query_embeddings=2, num_item_embeddings=3, component_dim=8)).eval()
    assert sim.config.tau != 1.0
    emb = HashingEmbeddings()
    texts = [f"{w} {v}" for w in ("cat", "dog", "fish", "bird") for v in ("runs", "sleeps", "eats")]
    store = MoLVectorStore.from_texts(texts, emb, similarity=sim, ids=[str(i) for i in range(len(texts))])
    hits = store.similarity_search_with_score("a cat eats", k=len(texts))
    tau = sim.config.tau
    vecs = torch.tensor(store.embeddings.embed_documents([d.page_content for d, _ in hits]), dtype=torch.float64)
    unit = torch.nn.functional.normalize(vecs, dim=-1)
    cos = (unit @ unit.T).tolist()
    raw = [s for _, s in hits]
    for lam in (0.2, 0.5, 0.8):
        want = mmr_select_reference([tau * s for s in raw], cos, 5, lam)
        got = [d.id for d in store.max_marginal_relevance_search("a cat eats", k=5, fetch_k=len(texts), lambda_mult=lam)]
        assert got == [hits[i][0].id for i in want]
    # at lambda 0.5 the choice differs from the similarity order and from MMR on the raw phi
    want = mmr_select_reference([tau * s for s in raw], cos, 5, 0.5)
    assert want != list(range(5)) and want != mmr_select_reference(raw, cos, 5, 0.5)


def test_unclipped_tau_phi_of_a_random_head_lies_in_minus_one_one() -> None:
    # the relevance map clips (1 + tau * phi) / 2 to [0, 1] only against rounding: tau * phi
    # itself must already lie in [-1, 1] (a softmax mix of cosines), so the clip is a no-op
    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=DIM, item_dim=DIM, num_query_embeddings=4, num_item_embeddings=4, component_dim=8)).eval()
    with torch.no_grad():
        phi = sim(10 * torch.randn(40, DIM), 10 * torch.randn(300, DIM))[0]
    scaled = sim.config.tau * phi
    assert sim.config.tau < 1 and phi.abs().max() > 1.0  # raw scores leave [-1, 1] ...
    assert scaled.min() >= -1.0 - 1e-6 and scaled.max() <= 1.0 + 1e-6  # ... tau * phi does not
    emb = HashingEmbeddings()
    store = MoLVectorStore.from_texts(TEXTS, emb, similarity=sim, ids=["a", "b", "c", "d"])
    fn = store._select_relevance_score_fn()
    for _, score in store.similarity_search_with_score("cat", k=4):
        assert -1.0 <= sim.config.tau * score <= 1.0
        assert fn(score) == pytest.approx((1 + sim.config.tau * score) / 2, abs=1e-12)  # not clipped


def test_similarity_search_accepts_and_ignores_mmr_kwargs(store: MoLVectorStore) -> None:
    plain = store.similarity_search("cat", k=2)
    assert store.as_retriever(search_kwargs={"k": 2, "fetch_k": 10}).invoke("cat") == plain
    assert store.as_retriever(search_kwargs={"k": 2, "fetch_k": 10, "lambda_mult": 0.3}).invoke("cat") == plain
    assert store.similarity_search_with_score("cat", k=2, fetch_k=3) == store.similarity_search_with_score("cat", k=2)
    with pytest.raises(TypeError, match=r"unexpected search keyword arguments \['bogus'\]"):
        store.as_retriever(search_kwargs={"k": 2, "bogus": 1}).invoke("cat")


def test_empty_self_built_store_accepts_a_new_width(tmp_path: Path) -> None:
    class Narrow(HashingEmbeddings):
        def __init__(self) -> None:
            super().__init__()
            self.enc = HashingEncoder(dim=32, normalize=True)

    store = MoLVectorStore.from_texts(["a cat", "a dog"], HashingEmbeddings(), ids=["a", "b"])
    with pytest.raises(ValueError, match="item_dim=64"):  # not empty: the width is fixed
        store._embedding = Narrow()
        store.add_texts(["x"])
    store.delete()
    store.add_texts(["a fish", "a bird"], ids=["f", "g"])  # empty again: 32-d vectors are fine
    assert store.index is not None and store.index.similarity.config.item_dim == 32
    assert store.similarity_search("a fish", k=1)[0].id == "f"
    store.delete(["f", "g"])
    store.save_local(tmp_path / "s")  # the flag survives save / load
    loaded = MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings())
    loaded.add_texts(["a cat"], ids=["c"])
    assert loaded.index is not None and loaded.index.similarity.config.item_dim == 64
    given = MoLVectorStore(HashingEmbeddings(), similarity=MoLSimilarity.cosine(DIM))
    given.add_texts(["x"])
    given.delete()
    given._embedding = Narrow()
    with pytest.raises(ValueError, match="item_dim=64"):  # a given head keeps its width
        given.add_texts(["y"])


def test_retriever_search_types(store: MoLVectorStore) -> None:
    sim = store.as_retriever(search_kwargs={"k": 2}).invoke("cat")
    assert len(sim) == 2
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 4}).invoke("cat")
    assert len(mmr) == 2
    thr = store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"k": 4, "score_threshold": 0.99})
    assert [d.id for d in thr.invoke(TEXTS[3])] == ["d"]
    filt = store.as_retriever(search_kwargs={"k": 4, "filter": {"animal": "dog"}}).invoke("cat")
    assert [d.id for d in filt] == ["b"]


async def test_async_variants(store: MoLVectorStore) -> None:
    ids = await store.aadd_texts(["async text"], [{"x": 1}], ids=["z"])
    assert ids == ["z"]
    assert (await store.asimilarity_search("async text", k=1))[0].id == "z"
    assert (await store.asimilarity_search_with_relevance_scores("async text", k=1))[0][1] == pytest.approx(1.0, abs=1e-5)
    assert len(await store.amax_marginal_relevance_search("cat", k=2)) == 2
    assert [d.id for d in await store.aget_by_ids(["z"])] == ["z"]
    await store.adelete(["z"])
    assert await store.aget_by_ids(["z"]) == []
    docs = await store.as_retriever(search_kwargs={"k": 1}).ainvoke(TEXTS[0])
    assert docs[0].id == "a"


async def test_concurrent_adds_and_searches_stay_consistent() -> None:
    store = MoLVectorStore(HashingEmbeddings())
    await asyncio.gather(
        *[store.aadd_texts([f"text {i}"], ids=[f"id{i}"]) for i in range(20)],
        *[store.asimilarity_search("text", k=3) for _ in range(10)],
    )
    assert len(store) == 20 and sorted(store.index.ids) == sorted(f"id{i}" for i in range(20))  # type: ignore[union-attr]


def test_trained_head_matches_brute_force_mol() -> None:
    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=DIM, item_dim=DIM, num_query_embeddings=2, num_item_embeddings=3, component_dim=8)).eval()
    emb = HashingEmbeddings()
    store = MoLVectorStore.from_texts(TEXTS, emb, similarity=sim, ids=["a", "b", "c", "d"])
    got = store.similarity_search_with_score("cat toys", k=4)
    with torch.no_grad():
        ref = sim(torch.tensor([emb.embed_query("cat toys")]), torch.tensor(emb.embed_documents(TEXTS)))[0][0]
    order = torch.argsort(ref, descending=True).tolist()
    assert [d.id for d, _ in got] == [["a", "b", "c", "d"][i] for i in order]
    assert [s for _, s in got] == pytest.approx(ref[order].tolist(), abs=1e-5)
    rel = store.similarity_search_with_relevance_scores("cat toys", k=4)
    tau = sim.config.tau
    assert [r for _, r in rel] == pytest.approx([(1 + tau * s) / 2 for _, s in got], abs=1e-6)
    assert all(0.0 <= r <= 1.0 for _, r in rel)


def test_save_load_roundtrip_atomic_and_no_pickle(store: MoLVectorStore, tmp_path: Path) -> None:
    folder = tmp_path / "store"
    store.save_local(folder)
    store.save_local(folder)  # overwrite in place
    assert {p.suffix for p in folder.rglob("*") if p.is_file()} <= {".json", ".safetensors"}
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no temp folders left behind
    loaded = MoLVectorStore.load_local(folder, HashingEmbeddings())
    assert loaded.similarity_search_with_score("cat", k=4) == store.similarity_search_with_score("cat", k=4)
    assert loaded.get_by_ids(["c"]) == store.get_by_ids(["c"])
    loaded.add_texts(["after load"], ids=["e"])
    assert loaded.similarity_search("after load", k=1)[0].id == "e"


def test_load_rejects_wrong_format(tmp_path: Path) -> None:
    (tmp_path / "store.json").write_text(json.dumps({"format": "other", "format_version": 1}))
    with pytest.raises(ValueError, match="rag-relax-mol-langchain-store"):
        MoLVectorStore.load_local(tmp_path, HashingEmbeddings())
    with pytest.raises(FileNotFoundError):
        MoLVectorStore.load_local(tmp_path / "missing", HashingEmbeddings())



def test_load_names_the_kind_of_a_save_of_another_kind(store: MoLVectorStore, tmp_path: Path) -> None:
    """The store's folder read as an index (and its index read as a store) says what it holds."""
    from rag_relax_plugins.index.mol_index import MoLIndex

    folder = tmp_path / "store"
    store.save_local(folder)
    inner = [p for p in folder.iterdir() if p.is_dir()]
    assert len(inner) == 1  # the index folder inside the store's
    with pytest.raises(ValueError, match=f"holds a saved mol-langchain-store, not a mol-index; load {inner[0]}$"):
        MoLIndex.load(folder)
    with pytest.raises(ValueError, match=r"holds a saved mol-index, not a mol-langchain-store$"):
        MoLVectorStore.load_local(inner[0], HashingEmbeddings())
    assert len(MoLIndex.load(inner[0])) == len(TEXTS)


def test_save_writes_numpy_scalars_as_python_values_and_names_a_bad_id(tmp_path: Path) -> None:
    """Metadata from numpy (``np.float32`` scores, ``np.int64`` counts) failed the save with
    "Object of type float32 is not JSON serializable", naming no document; only at save time."""
    import numpy as np

    metas = [{"score": np.float32(0.5), "n": np.int64(3)}, {"ok": np.bool_(True), "nested": [np.float64(1.25)]}]
    store = MoLVectorStore.from_texts(["first", "second"], HashingEmbeddings(), metadatas=metas, ids=["a", "b"])
    store.save_local(tmp_path / "s")
    loaded = MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings())
    got = {d.id: d.metadata for d in loaded.get_by_ids(["a", "b"])}
    assert got == {"a": {"score": 0.5, "n": 3}, "b": {"ok": True, "nested": [1.25]}}
    assert [type(v) for v in got["a"].values()] == [float, int] and type(got["b"]["ok"]) is bool
    assert type(metas[0]["score"]) is np.float32  # the caller's metadata untouched
    store.add_texts(["third"], [{"vector": np.zeros(2)}], ids=["c"])  # an array is no scalar: refused
    with pytest.raises(ValueError, match=r"the metadata of id 'c' is not JSON-serialisable \(.*ndarray"):
        store.save_local(tmp_path / "s")
    assert MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings()).get_by_ids(["c"]) == []
    store.delete(["c"])
    store.add_texts(["fourth"], [{"x": np.longdouble(1.5)}], ids=["d"])  # .item() gives a longdouble again
    with pytest.raises(ValueError, match=r"the metadata of id 'd' is not JSON-serialisable \(Object of type longdouble"):
        store.save_local(tmp_path / "s")

def test_save_rejects_non_json_metadata(tmp_path: Path) -> None:
    store = MoLVectorStore.from_texts(["x"], HashingEmbeddings(), metadatas=[{"obj": object()}])
    with pytest.raises(ValueError, match="JSON"):
        store.save_local(tmp_path / "s")
    assert not (tmp_path / "s").exists()
    good = MoLVectorStore.from_texts(["x"], HashingEmbeddings(), metadatas=[{"n": 1}], ids=["x"])
    good.save_local(tmp_path / "s")
    good.add_texts(["y"], [{"obj": object()}], ids=["y"])
    with pytest.raises(ValueError, match="JSON"):
        good.save_local(tmp_path / "s")
    loaded = MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings())  # the earlier save survives
    assert loaded.get_by_ids(["x", "y"]) == [Document(page_content="x", metadata={"n": 1}, id="x")]
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary folder left behind


@pytest.mark.parametrize("meta", [{1: "one"}, {"outer": {2: "x"}}, {"rows": [{None: 1}]}])
def test_save_rejects_non_string_metadata_keys(tmp_path: Path, meta: dict[object, object]) -> None:
    store = MoLVectorStore.from_texts(["x"], HashingEmbeddings(), metadatas=[{"ok": True}], ids=["x"])
    store.save_local(tmp_path / "s")
    store.add_texts(["y"], [meta], ids=["y"])  # type: ignore[list-item]
    assert [d.id for d in store.similarity_search("y", k=2, filter=meta)] == ["y"]  # fine in memory
    with pytest.raises(ValueError, match="keys must be strings"):
        store.save_local(tmp_path / "s")  # JSON would turn the key into a string: refused
    loaded = MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings())
    assert len(loaded) == 1 and loaded.get_by_ids(["x"])[0].metadata == {"ok": True}


def test_load_recovers_a_crash_between_the_two_renames(tmp_path: Path) -> None:
    store = MoLVectorStore.from_texts(TEXTS, HashingEmbeddings(), metadatas=METAS, ids=["a", "b", "c", "d"])
    store.save_local(tmp_path / "st")
    # atomic_folder moves the old folder aside before renaming the new one in: a crash between
    # the two renames leaves only the hidden backup
    (tmp_path / "st").rename(tmp_path / ".st.old-abc123")
    loaded = MoLVectorStore.load_local(tmp_path / "st", HashingEmbeddings())
    assert loaded.similarity_search_with_score("cat", k=4) == store.similarity_search_with_score("cat", k=4)
    assert loaded.get_by_ids(["b"]) == store.get_by_ids(["b"])


def test_validation_names_the_argument(store: MoLVectorStore) -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        store.similarity_search("cat", k=0)
    with pytest.raises(TypeError, match="fetch_k"):
        store.max_marginal_relevance_search("cat", fetch_k=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metadatas"):
        store.add_texts(["a", "b"], [{}])
    with pytest.raises(ValueError, match="ids"):
        store.add_texts(["a", "b"], ids=["1"])
    with pytest.raises(TypeError, match=r"texts must be a list of str, got a str"):
        store.add_texts("hello")  # list("hello") added five one-letter documents
    with pytest.raises(TypeError, match=r"metadatas must be a list of dicts"):
        store.add_texts(["a"], metadatas={"k": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"metadatas\[0\] cannot be copied"):
        store.add_texts(["a"], metadatas=[{"lock": threading.Lock()}])
    with pytest.raises(TypeError, match=r"ids\[0\]"):
        store.add_texts(["a"], ids=[3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        store.add_texts(["a", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="unexpected search keyword"):
        store.similarity_search("cat", fliter={"animal": "cat"})
    with pytest.raises(TypeError, match="filter"):
        store.similarity_search("cat", filter=["a"])
    with pytest.raises(ValueError, match="query_dim"):
        store.similarity_search_by_vector([1.0, 0.0], k=1)
    with pytest.raises(ValueError, match="item_dim"):
        MoLVectorStore(HashingEmbeddings(), similarity=MoLSimilarity.cosine(8)).add_texts(["x"])
    with pytest.raises(TypeError, match="embedding"):
        MoLVectorStore("not an embedding")  # type: ignore[arg-type]
    assert len(store) == 4  # failed calls changed nothing


def test_repeated_and_empty_ids_behave_as_in_memory_vector_store() -> None:
    """An id given twice in one call keeps its last text (it raised); ``""`` gets a uuid like
    ``None`` (it raised, while ``from_documents`` turned all-empty ids into uuids)."""
    from langchain_core.vectorstores import InMemoryVectorStore

    for cls in (InMemoryVectorStore, MoLVectorStore):
        store = cls(HashingEmbeddings())
        assert store.add_texts(["v1", "v2", "w"], ids=["x", "x", "y"]) == ["x", "x", "y"]
        assert [d.page_content for d in store.get_by_ids(["x", "y"])] == ["v2", "w"], cls
        empty = store.add_texts(["e"], ids=[""])
        assert len(empty) == 1 and empty[0] and store.get_by_ids(empty)[0].page_content == "e"
        assert len(store.similarity_search("v2", k=10)) == 3


def test_embedding_rows_may_be_numpy_or_tensors_and_nested_ones_are_refused() -> None:
    import numpy as np

    class ArrayEmbeddings(HashingEmbeddings):
        def embed_documents(self, texts):  # type: ignore[no-untyped-def]
            return [np.asarray(v, dtype=np.float32) for v in super().embed_documents(texts)]

    store, plain = MoLVectorStore(ArrayEmbeddings()), MoLVectorStore(HashingEmbeddings())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warned that a list of numpy rows is extremely slow
        store.add_texts(TEXTS, ids=["a", "b", "c", "d"])
    plain.add_texts(TEXTS, ids=["a", "b", "c", "d"])
    q = HashingEmbeddings().embed_query("cat")
    assert store.similarity_search_with_score_by_vector(q, k=4) == plain.similarity_search_with_score_by_vector(q, k=4)
    assert store.similarity_search_by_vector(torch.tensor(q), k=2) == plain.similarity_search_by_vector(q, k=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flat vectors of floats, got vectors of shape"):
        store.similarity_search_by_vector([q], k=1)  # type: ignore[list-item]


def test_strategy_per_call_matches_brute_force(store: MoLVectorStore) -> None:
    from rag_relax_plugins.index import ExactTwoPass

    exact = store.similarity_search_with_score("cat", k=3, strategy=ExactTwoPass(budget=100))
    brute = store.similarity_search_with_score("cat", k=3)
    assert [d for d, _ in exact] == [d for d, _ in brute]
    assert [s for _, s in exact] == pytest.approx([s for _, s in brute], abs=1e-6)
    with pytest.raises(TypeError, match="strategy"):  # the kwarg really reaches the index
        store.similarity_search("cat", strategy="bogus")


@pytest.mark.slow
def test_adapter_overhead_benchmark_smoke() -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_mol_adapters.py"
    out = subprocess.run([sys.executable, str(script), "--docs", "2000", "--rounds", "1", "--no-write"],
                         capture_output=True, text=True, check=True, timeout=600)
    assert "langchain" in out.stdout and "llamaindex" in out.stdout and "bar <= 1.2x" in out.stdout


def test_index_argument_must_be_empty_and_is_used() -> None:
    from rag_relax_plugins.index import MoLIndex

    index = MoLIndex(MoLSimilarity.cosine(DIM), device="cpu", exact_filter_threshold=5)
    store = MoLVectorStore(HashingEmbeddings(), index=index)
    store.add_texts(TEXTS, ids=["a", "b", "c", "d"])
    assert store.index is index and len(index) == 4
    with pytest.raises(ValueError, match="empty"):
        MoLVectorStore(HashingEmbeddings(), index=index)
    with pytest.raises(ValueError, match="not both"):
        MoLVectorStore(HashingEmbeddings(), index=index, similarity=MoLSimilarity.cosine(DIM))


def test_one_index_serves_one_living_store() -> None:
    # two stores given one empty index both added to it: each store's searches met the other's
    # ids and failed with KeyError (review 2026-12-05)
    import copy
    import gc

    from rag_relax_plugins.index import MoLIndex

    index = MoLIndex(MoLSimilarity.cosine(DIM), device="cpu")
    first = MoLVectorStore(HashingEmbeddings(), index=index)
    with pytest.raises(ValueError, match=r"already used by another MoLVectorStore.*empty_like"):
        MoLVectorStore(HashingEmbeddings(), index=index)
    other = MoLVectorStore(HashingEmbeddings(), index=index.empty_like(index.similarity))
    other.add_texts(["dogs bark"], ids=["b1"])
    first.add_texts(["cats purr"], ids=["a1"])
    assert [d.id for d in first.similarity_search("cats", k=2)] == ["a1"]
    del first
    gc.collect()
    index.delete(["a1"])  # emptied: the collected store's index may serve a new one
    MoLVectorStore(HashingEmbeddings(), index=index)

    # an index the store built, or read by load_local, and a store's shallow copy (diff review)
    built = MoLVectorStore(HashingEmbeddings(), similarity=MoLSimilarity.cosine(DIM))
    with pytest.raises(ValueError, match="already used by another MoLVectorStore"):
        MoLVectorStore(HashingEmbeddings(), index=built.index)
    added = MoLVectorStore(HashingEmbeddings())
    added.add_texts(["x"])
    added.delete()
    with pytest.raises(ValueError, match="already used by another MoLVectorStore"):
        MoLVectorStore(HashingEmbeddings(), index=added.index)
    fresh = MoLIndex(MoLSimilarity.cosine(DIM), device="cpu")
    original = MoLVectorStore(HashingEmbeddings(), index=fresh)
    twin = copy.copy(original)
    del original
    gc.collect()
    with pytest.raises(ValueError, match="already used by another MoLVectorStore"):
        MoLVectorStore(HashingEmbeddings(), index=fresh)
    assert twin.index is fresh
    # an index a LlamaIndex store holds (its client): both stores wrote into it (diff review)
    pytest.importorskip("llama_index.core")
    from rag_relax_plugins.llama_index import MoLVectorStore as LlamaStore

    llama = LlamaStore(MoLSimilarity.cosine(DIM))
    with pytest.raises(ValueError, match="already used by another MoLVectorStore"):
        MoLVectorStore(HashingEmbeddings(), index=llama.client)


def test_options_an_index_argument_would_ignore_are_refused(tmp_path: Path) -> None:
    """With index= the store's device / first_stage / cache_dtype were ignored, silently (a
    cache_dtype="bf16" store searched an fp32 cache), and a bad value passed (review)."""
    from rag_relax_plugins.index import MoLIndex

    def index() -> MoLIndex:
        return MoLIndex(MoLSimilarity.cosine(DIM), device="cpu", first_stage="flat", cache_dtype="fp16")

    with pytest.raises(ValueError, match=r"cache_dtype='bf16' \(the index's: 'fp16'\): with index= the index's own"):
        MoLVectorStore(HashingEmbeddings(), index=index(), cache_dtype="bf16")
    with pytest.raises(ValueError, match=r"^first_stage='hnsw' \(the index's"):
        MoLVectorStore(HashingEmbeddings(), index=index(), first_stage="hnsw")
    with pytest.raises(ValueError, match="kind must be one of"):
        MoLVectorStore(HashingEmbeddings(), index=index(), first_stage="bogus")
    store = MoLVectorStore(HashingEmbeddings(), index=index(), cache_dtype="fp16", first_stage="flat", device="cpu")
    store.add_texts(TEXTS, ids=["a", "b", "c", "d"])
    store.save_local(str(tmp_path / "s"))  # the index's own options travel with its folder
    again = MoLVectorStore.load_local(str(tmp_path / "s"), HashingEmbeddings())
    assert again.index is not None and (again.index.cache_dtype, again.index.first_stage.kind) == ("fp16", "flat")
    assert again.similarity_search("cat", k=2) == store.similarity_search("cat", k=2)


def test_mmr_select_mol_rescales_by_tau_and_validates_it() -> None:
    from rag_relax_plugins.core.mmr import mmr_select_by_embeddings, mmr_select_mol

    g = torch.Generator().manual_seed(0)
    emb = torch.randn(10, 6, generator=g)
    cos = torch.rand(10, generator=g) * 2 - 1
    for tau in (1.0, 0.05):
        got = mmr_select_mol(cos / tau, emb, 5, 0.5, tau=tau).tolist()
        assert got == mmr_select_by_embeddings(cos, emb, 5, 0.5).tolist()  # invariant to tau
    with pytest.raises(ValueError, match="tau"):
        mmr_select_mol(cos, emb, 5, 0.5, tau=0.0)
    with pytest.raises(TypeError, match="tau"):
        mmr_select_mol(cos, emb, 5, 0.5, tau=True)


def test_delete_with_a_repeated_id(store: MoLVectorStore) -> None:
    """delete(["a", "a"]) raised KeyError after deleting 'a' (missing ids are ignored, as documented)."""
    assert store.delete(["a", "a", "zz"]) is True
    assert [d.id for d in store.get_by_ids(["a", "b", "c", "d"])] == ["b", "c", "d"]


@pytest.mark.parametrize(("kw", "exc"), [({"lambda_mult": 5.0}, ValueError), ({"fetch_k": 0}, ValueError),
                                         ({"foo": 1}, TypeError)])
def test_mmr_checks_its_arguments_on_an_empty_store_too(kw: dict[str, Any], exc: type[Exception]) -> None:
    """An empty store (or a filter matching nothing) returned [] without looking at the arguments."""
    empty = MoLVectorStore(HashingEmbeddings())
    with pytest.raises(exc):
        empty.max_marginal_relevance_search("cat", k=2, **kw)
    full = MoLVectorStore.from_texts(TEXTS, HashingEmbeddings())
    with pytest.raises(exc):
        full.max_marginal_relevance_search("cat", k=2, filter={"animal": "none"}, **kw)


@pytest.mark.parametrize("change", [{"ids": None}, {"ids": 3}, {"texts": [1, 2, 3, 4]}, {"metadatas": [[], [], [], []]}])
def test_load_names_a_corrupt_store_json(store: MoLVectorStore, tmp_path: Path, change: dict[str, Any]) -> None:
    """A malformed store.json raised KeyError / TypeError, or a pydantic error at the first search."""
    store.save_local(tmp_path / "s")
    data = json.loads((tmp_path / "s" / "store.json").read_text())
    data.update(change)
    if change.get("ids", 0) is None:
        del data["ids"]
    (tmp_path / "s" / "store.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"store\.json: 'ids' and 'texts' must be lists"):
        MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings())


def test_add_texts_takes_empty_ids_and_metadatas_as_none_given() -> None:
    """As InMemoryVectorStore and the base VectorStore: [] was a count error here."""
    from langchain_core.vectorstores import InMemoryVectorStore

    ours, theirs = MoLVectorStore(HashingEmbeddings()), InMemoryVectorStore(HashingEmbeddings())
    for s in (ours, theirs):
        added = s.add_texts(TEXTS[:2], metadatas=[], ids=[])
        assert len(added) == 2 and len(set(added)) == 2
        assert [d.metadata for d in s.get_by_ids(added)] == [{}, {}]
    assert ours.add_texts([], metadatas=[], ids=[]) == []


class _SurrogateTolerantEmbeddings(HashingEmbeddings):
    """Embeds text UTF-8 cannot encode (as a tokenizer might), so that the store sees it."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return super().embed_documents([t.encode("utf-8", "replace").decode("utf-8") for t in texts])


def test_save_names_a_lone_surrogate_and_keeps_the_earlier_save(tmp_path: Path) -> None:
    store = MoLVectorStore.from_texts(TEXTS, _SurrogateTolerantEmbeddings(), metadatas=METAS, ids=["a", "b", "c", "d"])
    store.save_local(tmp_path / "s")
    before = {p.name: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()}
    store.add_texts(["bytes \udc80 decoded with surrogateescape"], ids=["e"])
    with pytest.raises(ValueError, match=r"lone surrogate.*nothing was written"):
        store.save_local(tmp_path / "s")
    assert {p.name: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()} == before
    assert len(MoLVectorStore.load_local(tmp_path / "s", _SurrogateTolerantEmbeddings())) == 4


def test_add_texts_takes_numpy_arrays_of_ids_and_metadatas() -> None:
    """They worked until the [] handling tested the lists for truth (ambiguous for an array)."""
    import numpy as np

    store = MoLVectorStore(HashingEmbeddings())
    added = store.add_texts(TEXTS[:2], metadatas=np.array([{"n": 1}, {"n": 2}]), ids=np.array(["x", "y"]))
    assert added == ["x", "y"] and [d.metadata for d in store.get_by_ids(["x", "y"])] == [{"n": 1}, {"n": 2}]
    assert all(type(i) is str for i in added)  # not np.str_
    docs = [Document(page_content=t) for t in TEXTS[2:]]  # add_documents took the array for its truth value
    assert store.add_documents(docs, ids=np.array(["z", "w"])) == ["z", "w"]
    assert [d.id for d in store.get_by_ids(["z", "w"])] == ["z", "w"]


@pytest.mark.parametrize("call", ["delete", "get_by_ids"])
def test_one_string_is_not_taken_as_a_list_of_ids(store: MoLVectorStore, call: str) -> None:
    """``delete("abc")`` deleted the ids "a", "b" and "c", one per character."""
    store.add_texts(["abc text"], ids=["abc"])
    with pytest.raises(TypeError, match=r"ids must be a list of ids, got a str: pass \['abc'\]"):
        getattr(store, call)("abc")
    assert len(store) == 5 and [d.id for d in store.get_by_ids(["a", "b", "c", "abc"])] == ["a", "b", "c", "abc"]


def test_save_names_circular_metadata(tmp_path: Path) -> None:
    """A metadata dict that holds itself raised RecursionError, not the documented ValueError."""
    circular: dict[str, Any] = {"name": "x"}
    circular["self"] = circular
    shared = {"k": 1}
    store = MoLVectorStore.from_texts(["x", "y"], HashingEmbeddings(), metadatas=[{"a": shared, "b": [shared]}, circular],
                                      ids=["x", "y"])
    with pytest.raises(ValueError, match=r"the metadata of id 'y'\['self'\] holds itself"):
        store.save_local(tmp_path / "s")
    store.delete(["y"])
    store.save_local(tmp_path / "s")  # a value shared by two keys is no cycle
    assert MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings()).get_by_ids(["x"])[0].metadata == {
        "a": {"k": 1}, "b": [{"k": 1}]}


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"first_stage": "hnws"}, ValueError, "hnws"),
    ({"cache_dtype": "fp8"}, ValueError, "cache_dtype"),
    ({"strategy": "fast"}, TypeError, "strategy must be"),
])
def test_options_are_checked_when_the_store_is_built(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    """Without a head they were only used, and refused, at the first add."""
    with pytest.raises(exc, match=match):
        MoLVectorStore(HashingEmbeddings(), **kwargs)


def test_ids_that_are_str_subclasses_keep_their_text_and_one_string_is_refused_by_add_texts() -> None:
    """``str(given)`` (for numpy ids) turned a ``str`` enum member into 'DocId.INTRO'; and
    ``add_texts(texts, ids="ab")`` gave the ids "a" and "b"."""
    from enum import Enum

    class DocId(str, Enum):
        INTRO = "intro"

    store = MoLVectorStore(HashingEmbeddings())
    assert store.add_texts(["hello"], ids=[DocId.INTRO]) == ["intro"]
    assert [d.id for d in store.get_by_ids(["intro"])] == ["intro"]
    with pytest.raises(TypeError, match="ids must be a list of ids, got a str"):
        store.add_texts(["one", "two"], ids="ab")  # type: ignore[arg-type]
    assert len(store) == 1


def test_the_store_refuses_pickling_and_deep_copies_with_a_way_out(store: MoLVectorStore) -> None:
    """It failed with "cannot pickle '_thread.RLock' object", naming no way out."""
    import copy
    import pickle

    for dump in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match=r"cannot be pickled or deep-copied .*load_local"):
            dump(store)
    shallow = copy.copy(store)  # as before: the same documents
    assert shallow is not store and shallow.get_by_ids(["a"]) == store.get_by_ids(["a"])


def test_a_shallow_copy_shares_the_index_the_store_builds_later(tmp_path: Path) -> None:
    """A copy of an empty store shared the documents but not the index built at the first add:
    the original listed a document that its search never returned, and its save did not load."""
    import copy

    store = MoLVectorStore(HashingEmbeddings())
    other = copy.copy(store)
    other.add_texts(["the cat sat"], ids=["a"])
    store.add_texts(["a dog barks"], ids=["b"])
    for view in (store, other):
        assert view.index is store.index and len(view) == len(view.index) == 2  # type: ignore[arg-type]
        assert view.similarity_search("the cat sat", k=1)[0].id == "a"
    store.save_local(tmp_path / "s")
    assert sorted(str(d.id) for d in MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings()).similarity_search("x", k=5)) == ["a", "b"]


def test_a_load_overlapping_a_save_returns_one_whole_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save between the reads of store.json and index/ gave the texts of one save with the
    vectors of the other (every check passed)."""
    from rag_relax_plugins.index import MoLIndex

    first = MoLVectorStore.from_texts(["cat", "dog"], HashingEmbeddings(), ids=["x", "y"])
    second = MoLVectorStore.from_texts(["stock", "market"], HashingEmbeddings(), ids=["x", "y"])
    first.save_local(tmp_path / "s")
    real = MoLIndex.load.__func__  # type: ignore[attr-defined]
    loads: list[int] = []

    def save_meanwhile(cls: type, folder: Any, **kwargs: Any) -> Any:
        loads.append(1)
        if len(loads) == 1:
            second.save_local(tmp_path / "s")  # after store.json was read
        return real(cls, folder, **kwargs)

    monkeypatch.setattr(MoLIndex, "load", classmethod(save_meanwhile))
    back = MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings())
    assert [d.page_content for d in back.get_by_ids(["x", "y"])] == ["stock", "market"]
    assert back.similarity_search("stock", k=1)[0].page_content == "stock"  # texts match their vectors


def test_a_store_file_repeating_an_id_is_refused(tmp_path: Path) -> None:
    """A damaged store.json listing an id twice loaded, and the later text silently won."""
    import json

    MoLVectorStore.from_texts(["cat", "dog"], HashingEmbeddings(), ids=["a", "b"]).save_local(tmp_path / "s")
    file = tmp_path / "s" / "store.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    for key, extra in (("ids", "a"), ("texts", "injected"), ("metadatas", {})):
        data[key].append(extra)
    file.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="disagree on the stored ids"):
        MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings())


def test_an_interrupt_after_the_index_delete_still_removes_every_document(store: MoLVectorStore, interrupted_at_pop) -> None:  # type: ignore[no-untyped-def]
    """The index drops the ids all at once; the store then dropped its documents one by one, and an
    interrupt left some that the index no longer held (len and get_by_ids disagreed with search)."""
    store._docs = interrupted_at_pop(store._docs)
    with pytest.raises(KeyboardInterrupt):
        store.delete(["a", "b", "c"])
    assert len(store) == 1 and store.get_by_ids(["a", "b", "c", "d"])[0].id == "d"
    assert [d.id for d in store.similarity_search(TEXTS[0], k=4)] == ["d"]


@pytest.mark.parametrize("committed", [True, False])
def test_an_interrupt_around_the_index_add_leaves_store_and_index_in_step(
    store: MoLVectorStore, interrupt_index: Any, committed: bool
) -> None:
    """An interrupt right after the index committed an add (review: it can arrive before the store
    records it) or before: either way the store then knows exactly the ids the index holds."""
    interrupt_index("add", committed)
    with pytest.raises(KeyboardInterrupt):
        store.add_texts(["a new text", "the cat sat on the mat again"], ids=["n", "a"])
    index = store._contents.index
    assert index is not None and sorted(store._docs) == sorted(index.ids)
    assert ("n" in store._docs) == committed
    assert (store.get_by_ids(["a"])[0].page_content == "the cat sat on the mat again") == committed
    assert {d.id for d in store.similarity_search("a new text", k=5)} == set(index.ids)  # no KeyError


@pytest.mark.parametrize("committed", [True, False])
def test_a_first_add_publishes_its_index_only_when_the_index_holds_the_texts(
    interrupt_index: Any, committed: bool
) -> None:
    """The index a first add builds became the store's before the add: a failed first add left
    ``store.index`` set on an empty store (documented as ``None`` until the first add)."""
    store = MoLVectorStore(HashingEmbeddings())
    interrupt_index("add", committed)
    with pytest.raises(KeyboardInterrupt):
        store.add_texts(["a new text"], ids=["n"])
    assert (store.index is not None) == committed and sorted(store._docs) == (["n"] if committed else [])
    if committed:
        assert [d.id for d in store.similarity_search("a new text", k=2)] == ["n"]


def test_a_store_saved_before_its_first_add_keeps_its_index_options(tmp_path: Path) -> None:
    """Without an index folder nothing recorded first_stage / cache_dtype: the reloaded store built
    an fp32 torch-stage index (found in the LlamaIndex store by review; the same here)."""
    MoLVectorStore(HashingEmbeddings(), device="cpu", cache_dtype="bf16", first_stage="flat").save_local(tmp_path / "s")
    back = MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings(), device="cpu")
    back.add_texts(TEXTS)
    assert back.index is not None and back.index.cache_dtype == "bf16" and back.index.first_stage.kind == "flat"
    store_json = tmp_path / "s" / "store.json"
    data = json.loads(store_json.read_text())
    data["index_options"]["cache_dtype"] = "fp8"
    store_json.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"invalid 'index_options'.*cache_dtype"):
        MoLVectorStore.load_local(tmp_path / "s", HashingEmbeddings())


def test_a_first_add_of_non_finite_vectors_builds_no_index() -> None:
    class NaNEmbeddings(HashingEmbeddings):
        def embed_documents(self, texts):  # type: ignore[no-untyped-def]
            return [[float("nan")] * DIM for _ in texts]

    store = MoLVectorStore(NaNEmbeddings())
    with pytest.raises(ValueError, match="NaN"):
        store.add_texts(["x"])
    assert store.index is None and len(store) == 0


def test_an_interrupt_after_the_index_delete_committed_leaves_the_store_in_step(
    store: MoLVectorStore, interrupt_index: Any
) -> None:
    interrupt_index("delete")
    with pytest.raises(KeyboardInterrupt):
        store.delete(["a", "c"])
    assert sorted(store._docs) == ["b", "d"] and [d.id for d in store.similarity_search(TEXTS[0], k=4, filter={"n": 3})] == ["d"]


def test_list_filters_against_numpy_scalar_metadata() -> None:
    """The store keeps numpy scalars in metadata (a value read from a DataFrame); a list filter
    value compared with one raised numpy's "truth value of an array is ambiguous" ({"n": [1, 2]})
    or matched it ({"n": [1]} against np.int64(1))."""
    import numpy as np

    s = MoLVectorStore.from_texts(["a b", "c d"], HashingEmbeddings(), metadatas=[{"n": np.int64(1)}, {"n": [1, 2]}],
                                  ids=["x", "y"])
    assert [d.id for d in s.similarity_search("a b", k=2, filter={"n": [1, 2]})] == ["y"]
    assert [d.id for d in s.similarity_search("a b", k=2, filter={"n": [1]})] == []
    assert [d.id for d in s.similarity_search("a b", k=2, filter={"n": 1})] == ["x"]


def test_non_finite_vectors_are_named_as_the_callers() -> None:
    # a finite 1e39 (beyond float32) was reported as "query_features contains NaN or inf values",
    # the index's internal name (review 2026-12-05)
    class Huge(HashingEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            rows = super().embed_documents(texts)
            rows[-1][0] = 1e39
            return rows

    store = MoLVectorStore(HashingEmbeddings())
    store.add_texts(TEXTS)
    with pytest.raises(ValueError, match=r"embedding: vector 0 holds NaN, inf or values beyond the float32 range"):
        store.similarity_search_by_vector([1e39] + [0.0] * (DIM - 1), k=1)
    with pytest.raises(ValueError, match=r"vector 1 holds NaN"):
        MoLVectorStore(Huge()).add_texts(["a", "b"])
    with pytest.raises(ValueError, match=r"vector 0 holds NaN"):
        store.similarity_search_by_vector([float("nan")] * DIM, k=1)
    assert len(store.get_by_ids(store.index.ids)) == len(TEXTS)  # nothing lost


def test_two_threads_cannot_both_take_one_index() -> None:
    # the check and the registration were two steps: two threads building stores on one empty
    # index both passed (210 of 300 trials at a 1 us switch interval; diff review)
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from rag_relax_plugins.index import MoLIndex

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(40):
            index = MoLIndex(MoLSimilarity.cosine(DIM), device="cpu")
            barrier = threading.Barrier(2)

            def build(_: int, index: MoLIndex = index, barrier: threading.Barrier = barrier) -> MoLVectorStore | None:
                barrier.wait()
                try:
                    return MoLVectorStore(HashingEmbeddings(), index=index)
                except ValueError:
                    return None

            with ThreadPoolExecutor(2) as pool:
                stores = list(pool.map(build, range(2)))
            assert sum(s is not None for s in stores) == 1
    finally:
        sys.setswitchinterval(old)
