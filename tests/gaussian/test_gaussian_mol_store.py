"""The Gaussian adapters inside the MoL vector stores (LangChain and LlamaIndex)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")
pytest.importorskip("rag_relax_plugins.langchain.vectorstore")
pytest.importorskip("rag_relax_plugins.llama_index.vector_store")

from rag_relax_plugins.embedders.gaussian import GaussianEmbedder
from rag_relax_plugins.embedders.gaussian_config import GaussianConfig
from rag_relax_plugins.langchain import GaussianEmbeddings, MoLVectorStore
from rag_relax_plugins.llama_index import GaussianEmbedding
from rag_relax_plugins.llama_index import MoLVectorStore as LlamaMoLVectorStore

CORPUS = [f"note {i}: {w}" for i, w in enumerate(["cats purr", "dogs bark", "stocks fell", "rain tomorrow", "python code",
                                                   "paris tower", "bees honey", "lava flows", "chess openings", "coffee beans"])]


def _model() -> GaussianEmbedder:
    torch.manual_seed(1)
    cfg = GaussianConfig(backbone="hashing:64", output_dim=16, dropout=0.0, head_init="random")
    return GaussianEmbedder(cfg, device="cpu")


def test_langchain_mol_store_ranks_by_model_geometry() -> None:
    model = _model()
    store = MoLVectorStore(GaussianEmbeddings(model=model, cosine_max_norm=1e4))
    store.add_texts(CORPUS)
    for query in ("cats and dogs", "weather", "coffee in paris"):
        exact = model.score(model.encode([query]), model.encode(CORPUS))[0]
        want = [CORPUS[i] for i in exact.argsort(descending=True)[:5].tolist()]
        assert [d.page_content for d in store.similarity_search(query, k=5)] == want


def test_llama_index_mol_store_with_gaussian_embedding() -> None:
    from llama_index.core import Document, StorageContext, VectorStoreIndex

    model = _model()
    emb = GaussianEmbedding(model=model, cosine_max_norm=1e4)
    ctx = StorageContext.from_defaults(vector_store=LlamaMoLVectorStore())
    index = VectorStoreIndex.from_documents([Document(text=t) for t in CORPUS], storage_context=ctx, embed_model=emb)
    exact = model.score(model.encode(["weather"]), model.encode(CORPUS))[0]
    want = [CORPUS[i] for i in exact.argsort(descending=True)[:3].tolist()]
    assert [n.node.get_content() for n in index.as_retriever(similarity_top_k=3).retrieve("weather")] == want
