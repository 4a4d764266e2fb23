"""A small RAG app with LlamaIndex: MoL vector store + MaxSim postprocessor inside a query engine.

Offline and on CPU (about a minute): the paragraphs of the first 25 HotpotQA distractor questions
(``../shared/data`` or ``$RAG_RELAX_DATA``) go into a ``VectorStoreIndex`` backed by
:class:`rag_relax_plugins.llama_index.MoLVectorStore`, embedded with the offline MiniLM; the query
engine retrieves 10 nodes and :class:`rag_relax_plugins.llama_index.MaxSimRerank` keeps 2. The
LLM is LlamaIndex's ``MockLLM`` (no key, no network), which answers with the prompt it was given,
so the answer printed for the first question shows the reranked context the engine sent: swap in
any local LLM for real answers. The index is persisted and loaded back, and the reloaded engine
gives the same answer.

Run: ``python examples/llamaindex_rag_app.py``
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from llama_index.core import (
    Document,
    Settings,
    StorageContext,
    VectorStoreIndex,
    load_index_from_storage,
)
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import MockLLM
from pydantic import PrivateAttr

from rag_relax_plugins.core.metrics import evaluate
from rag_relax_plugins.datasets import load_hotpotqa_distractor
from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder
from rag_relax_plugins.llama_index import MaxSimRerank, MoLVectorStore


class MiniLMEmbedding(BaseEmbedding):
    """The offline MiniLM as a LlamaIndex embedding (normalised vectors)."""

    _encoder: Any = PrivateAttr()

    def __init__(self, encoder: SentenceTransformerEncoder, **kwargs: Any) -> None:
        super().__init__(model_name="offline-minilm", **kwargs)
        self._encoder = encoder

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.encode(list(texts), normalize=True).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def main() -> None:
    questions = load_hotpotqa_distractor(limit=25)
    docs, seen = [], set()
    for ex in questions:
        for title, sentences in ex.paragraphs:
            if title not in seen:
                seen.add(title)
                docs.append(Document(text=f"{title}. {' '.join(sentences)}", metadata={"title": title}, doc_id=title))

    Settings.llm = MockLLM()  # never a hosted model
    embed = MiniLMEmbedding(SentenceTransformerEncoder(device="cpu"))
    storage = StorageContext.from_defaults(vector_store=MoLVectorStore())
    index = VectorStoreIndex.from_documents(docs, storage_context=storage, embed_model=embed)
    rerank = MaxSimRerank(top_n=2, device="cpu")
    engine = index.as_query_engine(similarity_top_k=10, node_postprocessors=[rerank], llm=MockLLM())
    print(f"indexed {len(docs)} paragraphs for {len(questions)} questions")

    ranked, qrels, answers = [], [], []
    for ex in questions:
        response = engine.query(ex.question)
        ranked.append([n.node.metadata["title"] for n in response.source_nodes])
        answers.append(str(response))
        qrels.append({t: 1 for t in ex.gold_titles if t in seen})  # gold paragraphs present in the data
    print(f"retrieve 10 + MaxSim top 2: Recall@2 {evaluate(ranked, qrels, ['recall@2'], skip_empty=True)['recall@2']:.3f}")
    # the answer step ran on the two reranked nodes: MockLLM's answer is the prompt holding them
    assert all(title in answers[0] for title in ranked[0]), answers[0][:500]
    print(f"answer to '{questions[0].question[:60]}...' (MockLLM: the prompt it got):\n{answers[0][:300]}...")

    with tempfile.TemporaryDirectory() as folder:
        storage.persist(folder)
        loaded = load_index_from_storage(
            StorageContext.from_defaults(vector_store=MoLVectorStore.from_persist_dir(folder), persist_dir=folder),
            embed_model=embed,
        )
        again = loaded.as_query_engine(similarity_top_k=10, node_postprocessors=[rerank], llm=MockLLM())
        ex = questions[0]
        response = again.query(ex.question)
        titles = [n.node.metadata["title"] for n in response.source_nodes]
        assert titles == ranked[0] and str(response) == answers[0], (titles, ranked[0])
        print(f"reloaded from {len(list(Path(folder).iterdir()))} files; "
              f"'{ex.question[:60]}...' -> {titles}, the same answer")


if __name__ == "__main__":
    main()
