"""LangChain ``CacheBackedEmbeddings`` over ``GaussianEmbeddings``: the usual
``namespace=embeddings.model`` is the model object here, whose text is the same for two trained
models of one architecture, so a second model was served the first one's cached vectors."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("langchain_classic")

from langchain_classic.embeddings import CacheBackedEmbeddings
from langchain_core.stores import InMemoryByteStore

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.langchain import GaussianEmbeddings


def _model(seed: int) -> GaussianEmbedder:
    torch.manual_seed(seed)  # a random head: two seeds, two "trained" models of one architecture
    cfg = GaussianConfig(backbone="hashing:32", output_dim=8, dropout=0.0, head_init="random")
    return GaussianEmbedder(cfg, device="cpu")


def test_the_cache_namespace_tells_models_and_document_options_apart() -> None:
    from rag_relax_plugins.llama_index import GaussianEmbedding

    a, b = GaussianEmbeddings(model=_model(0)), GaussianEmbeddings(model=_model(1))
    assert str(a.model) == str(b.model)  # the trap: LangChain's usual namespace
    assert a.model_name != b.model_name and a.cache_namespace != b.cache_namespace
    assert a.model_name.startswith("gaussian-embedder@")
    assert a.model_name == GaussianEmbedding(model=a.model).model_name  # one name in both frameworks
    assert GaussianEmbeddings(model=_model(0)).cache_namespace == a.cache_namespace  # same weights
    assert GaussianEmbeddings(model=a.model, query_instruction="q: ").cache_namespace == a.cache_namespace
    for other in (GaussianEmbeddings(model=a.model, document_instruction="passage: "),
                  GaussianEmbeddings(model=a.model, cosine_max_norm=100.0)):
        assert other.cache_namespace != a.cache_namespace  # their document vectors differ


def test_cache_backed_embeddings_keep_each_models_vectors_apart() -> None:
    store = InMemoryByteStore()
    texts = ["Paris is the capital of France.", "Bees make honey."]
    for seed in (0, 1):
        emb = GaussianEmbeddings(model=_model(seed))
        cached = CacheBackedEmbeddings.from_bytes_store(emb, store, namespace=emb.cache_namespace,
                                                          key_encoder="sha256")
        assert cached.embed_documents(texts) == emb.embed_documents(texts)
        assert cached.embed_documents(texts) == emb.embed_documents(texts)  # read back from the cache
    assert len(list(store.yield_keys())) == 4
