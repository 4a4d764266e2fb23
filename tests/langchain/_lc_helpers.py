"""Test doubles shared by the LangChain store tests (no model download)."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from rag_relax_plugins.embedders.hashing import HashingEncoder

DIM = 64


class HashingEmbeddings(Embeddings):
    """Deterministic LangChain embeddings over the library's hashing encoder; counts its calls."""

    def __init__(self) -> None:
        self.enc = HashingEncoder(dim=DIM, normalize=True)
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [[float(x) for x in row] for row in self.enc.encode(list(texts)).tolist()]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
