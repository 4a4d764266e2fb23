"""Documented behaviour of the LangChain MoLVectorStore that hand mutants changed unnoticed (review 2026-12-05).

Each test fails on one mutant and passes on the code.
"""

from __future__ import annotations

import random
import warnings

from langchain_core.embeddings import Embeddings

from rag_relax_plugins.index import BruteForce
from rag_relax_plugins.langchain import MoLVectorStore


class _Rand3(Embeddings):
    """3-d random vectors (rounding of the self-cosine above 1 is frequent at small widths)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        r = random.Random(text)
        return [r.uniform(-1, 1) for _ in range(3)]


def test_relevance_of_a_self_match_stays_in_unit_interval() -> None:
    texts = [f"t{i}" for i in range(200)]
    store = MoLVectorStore(_Rand3(), device="cpu")
    store.add_texts(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # LangChain warns on relevance outside [0, 1]
        rels = [store.similarity_search_with_relevance_scores(t, k=1)[0][1] for t in texts]
    assert all(0.0 <= r <= 1.0 for r in rels)
    assert max(rels) == 1.0


def test_the_store_strategy_is_used_by_its_searches() -> None:
    import torch

    from rag_relax_plugins.core.mol import MoLConfig, MoLSimilarity
    from rag_relax_plugins.index import TopKAvg

    class _Gauss10(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [self.embed_query(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            r = random.Random(text)
            return [r.gauss(0, 1) for _ in range(10)]

    torch.manual_seed(0)
    sim = MoLSimilarity(MoLConfig(query_dim=10, item_dim=10, num_query_embeddings=2, num_item_embeddings=3,
                                  component_dim=6, gate_hidden_dim=8))
    texts = [f"doc{i}" for i in range(300)]
    store = MoLVectorStore(_Gauss10(), similarity=sim, device="cpu", strategy=TopKAvg(n=1))
    store.add_texts(texts, ids=texts)
    for q in (f"q{i}" for i in range(20)):
        assert [d.id for d in store.similarity_search(q, k=5)] == [
            d.id for d in store.similarity_search(q, k=5, strategy=TopKAvg(n=1))
        ]
    # and the approximate strategy does differ from the exact default here (the test can fail)
    assert any([d.id for d in store.similarity_search(f"q{i}", k=5)] != [
        d.id for d in store.similarity_search(f"q{i}", k=5, strategy=BruteForce())] for i in range(20))


def test_zero_width_embeddings_are_refused_by_name() -> None:
    import pytest

    class _Empty(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[] for _ in texts]

        def embed_query(self, text: str) -> list[float]:
            return []

    store = MoLVectorStore(_Empty(), device="cpu")
    with pytest.raises(ValueError, match="embed_documents must give non-empty vectors"):
        store.add_texts(["a"])
    assert len(store) == 0


def test_a_store_file_missing_an_indexed_id_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import pytest

    MoLVectorStore.from_texts(["cat", "dog"], _Rand3(), ids=["a", "b"], device="cpu").save_local(tmp_path / "s")
    file = tmp_path / "s" / "store.json"
    data = json.loads(file.read_text(encoding="utf-8"))
    for key in ("ids", "texts", "metadatas"):
        data[key] = data[key][:1]  # index/ still holds "b"
    file.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="disagree on the stored ids"):
        MoLVectorStore.load_local(tmp_path / "s", _Rand3())
