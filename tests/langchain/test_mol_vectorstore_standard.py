"""The langchain-tests standard suites on the LangChain MoLVectorStore (offline, sync and async).

``VectorStoreIntegrationTests`` (25 tests) runs on an empty store per test with the suite's own
``DeterministicFakeEmbedding``; ``RetrieversIntegrationTests`` (5 tests) runs on
``store.as_retriever(search_kwargs={"k": k})`` built by a factory that takes ``k``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from rag_relax_plugins.langchain.vectorstore import MoLVectorStore


class TestMoLVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self) -> Generator[VectorStore, None, None]:  # type: ignore[override]
        """An empty store with the untrained (exactly cosine) MoL."""
        store = MoLVectorStore(self.get_embeddings())
        try:
            yield store
        finally:
            store.delete()  # delete everything


def _retriever_factory(k: int = 4) -> BaseRetriever:
    store = MoLVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(
        [Document(page_content=f"document number {i}", metadata={"i": i}) for i in range(8)]
    )
    return store.as_retriever(search_kwargs={"k": k})


class TestMoLRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> Any:
        return _retriever_factory

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "document number 3"
