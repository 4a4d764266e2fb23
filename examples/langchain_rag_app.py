"""A small RAG app with LangChain: MiniLM embeddings -> MoL vector store -> MaxSim reranker -> prompt.

Offline and on CPU (about a minute): the corpus is the paragraphs of the first 25 HotpotQA
distractor questions (``../shared/data`` or ``$RAG_RELAX_DATA``), the embeddings are the offline
MiniLM, the store is :class:`rag_relax_plugins.langchain.MoLVectorStore` (untrained head: exactly
cosine; pass a head trained with ``rag-relax train-mol`` to learn the similarity) and the
reranker is the ColBERT-style :class:`rag_relax_plugins.langchain.MaxSimReranker`. It prints
Recall@2 of the gold paragraphs after retrieval and after reranking, then the prompt a generator
would receive for one question, and saves the store, loads it back and checks that it retrieves
the same paragraphs. ``ContextualCompressionRetriever`` (langchain-classic) wraps the
same two pieces into one retriever if you prefer.

Run: ``python examples/langchain_rag_app.py``
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from rag_relax_plugins.core.metrics import evaluate
from rag_relax_plugins.datasets import load_hotpotqa_distractor
from rag_relax_plugins.embedders.sentence_transformer import SentenceTransformerEncoder
from rag_relax_plugins.langchain import MaxSimReranker, MoLVectorStore


class MiniLMEmbeddings(Embeddings):
    """The offline MiniLM as LangChain embeddings (normalised, plain Python floats)."""

    def __init__(self, encoder: SentenceTransformerEncoder) -> None:
        self.encoder = encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encoder.encode(list(texts), normalize=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def main() -> None:
    questions = load_hotpotqa_distractor(limit=25)
    docs, seen = [], set()
    for ex in questions:
        for title, sentences in ex.paragraphs:
            if title not in seen:
                seen.add(title)
                docs.append(Document(page_content=f"{title}. {' '.join(sentences)}", metadata={"title": title}, id=title))

    encoder = SentenceTransformerEncoder(device="cpu")
    store = MoLVectorStore(MiniLMEmbeddings(encoder))
    store.add_documents(docs)
    retriever = store.as_retriever(search_kwargs={"k": 10})
    reranker = MaxSimReranker(top_n=2, device="cpu")
    print(f"indexed {len(docs)} paragraphs for {len(questions)} questions")

    retrieved, reranked, qrels = [], [], []
    for ex in questions:
        hits = retriever.invoke(ex.question)
        top = reranker.compress_documents(hits, ex.question)
        retrieved.append([d.metadata["title"] for d in hits])
        reranked.append([d.metadata["title"] for d in top])
        # some questions' gold paragraphs are missing from the shared file: judge those present
        qrels.append({t: 1 for t in ex.gold_titles if t in seen})
    before = evaluate(retrieved, qrels, ["recall@2", "recall@10"], skip_empty=True)
    after = evaluate(reranked, qrels, ["recall@2"], skip_empty=True)
    print(f"{sum(1 for q in qrels if q)} questions have a gold paragraph in the corpus")
    print(f"MoL store   Recall@2 {before['recall@2']:.3f}  Recall@10 {before['recall@10']:.3f}")
    print(f"+ MaxSim    Recall@2 {after['recall@2']:.3f}")
    moved = sum(r != h[:2] for r, h in zip(reranked, retrieved, strict=True))
    print(f"MaxSim changed the top 2 of {moved}/{len(questions)} questions")  # an untrained MaxSim: wins and losses

    ex = questions[0]
    top = reranker.compress_documents(retriever.invoke(ex.question), ex.question)
    context = "\n".join(f"- {d.page_content[:160]}... (relevance {d.metadata['relevance_score']:.3f})" for d in top)
    print(f"\nPrompt for the generator:\nAnswer from the context.\nContext:\n{context}\nQuestion: {ex.question}\n"
          f"(gold answer: {ex.answer})")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "store"
        store.save_local(folder)  # atomic: store.json + index/ (the embedding model is not saved)
        loaded = MoLVectorStore.load_local(folder, MiniLMEmbeddings(encoder))
        titles = [d.metadata["title"] for d in loaded.as_retriever(search_kwargs={"k": 10}).invoke(ex.question)]
        assert titles == retrieved[0], (titles, retrieved[0])
        print(f"\nreloaded {len(loaded.get_by_ids([d.id for d in docs]))} paragraphs from {folder.name}/; "
              f"'{ex.question[:60]}...' -> the same top 10")


if __name__ == "__main__":
    main()
