"""Property test: any sequence of adds, upserts, deletes and save / load round trips leaves the
LangChain MoLVectorStore equal to a plain dict model, and its search equal to brute-force cosine
over that model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from rag_relax_plugins.langchain.vectorstore import MoLVectorStore

WORDS = ["cat", "dog", "fish", "bird", "stock", "market", "rain", "sun"]


class BagOfWords(Embeddings):
    """One dimension per word of ``WORDS`` plus a bias: exact, tiny, deterministic."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(t.split().count(w)) for w in WORDS] + [0.5] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
ids = st.sampled_from([f"id{i}" for i in range(6)])
op = st.one_of(
    st.tuples(st.just("add"), ids, texts, st.integers(0, 3)),
    st.tuples(st.just("delete"), ids, st.just(""), st.just(0)),
    st.tuples(st.just("reload"), st.just(""), st.just(""), st.just(0)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=12), query=texts, k=st.integers(1, 7))
def test_store_matches_dict_model(tmp_path: Path, ops: list[tuple[str, str, str, int]], query: str, k: int) -> None:
    emb = BagOfWords()
    store = MoLVectorStore(emb)
    model: dict[str, tuple[str, dict[str, int]]] = {}
    for kind, id_, text, tag in ops:
        if kind == "add":
            store.add_documents([Document(page_content=text, metadata={"tag": tag}, id=id_)])
            model[id_] = (text, {"tag": tag})
        elif kind == "delete":
            store.delete([id_])
            model.pop(id_, None)
        else:
            store.save_local(tmp_path / "store")  # replaces the previous example's save
            store = MoLVectorStore.load_local(tmp_path / "store", emb)
    assert len(store) == len(model)
    assert store.get_by_ids(sorted(model)) == [
        Document(page_content=t, metadata=m, id=i) for i, (t, m) in sorted(model.items())
    ]
    got = store.similarity_search_with_score(query, k=k)
    assert len(got) == min(k, len(model))
    if model:
        keys = list(model)
        vecs = torch.tensor(emb.embed_documents([model[i][0] for i in keys]))
        cos = torch.nn.functional.cosine_similarity(vecs, torch.tensor([emb.embed_query(query)]), dim=-1)
        expected = sorted(cos.tolist(), reverse=True)[: len(got)]
        assert [s for _, s in got] == pytest.approx(expected, abs=1e-5)
        for doc, score in got:  # every hit's score is its own brute-force cosine
            assert abs(score - float(cos[keys.index(str(doc.id))])) < 1e-5
    filtered = store.similarity_search(query, k=k, filter={"tag": 1})
    assert {d.id for d in filtered} <= {i for i, (_, m) in model.items() if m["tag"] == 1}
    assert len(filtered) == min(k, sum(1 for _, m in model.values() if m["tag"] == 1))
