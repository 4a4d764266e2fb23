"""Exact retriever over a Gaussian embedder: ``add_documents(texts)`` then ``retrieve(query, top_k)``.

Scores use the model's geometry (minus the Euclidean distance, or the inner product), so the
ranking is the one training optimised. Search is an exact batched scan; for millions of
documents put the vectors in a FAISS index (``IndexFlatL2`` / ``IndexHNSWFlat`` with
``METRIC_L2`` for the Euclidean geometry, ``METRIC_INNER_PRODUCT`` otherwise).
"""

from __future__ import annotations

from typing import Any

import torch

from rag_relax_plugins.core.validation import check_k
from rag_relax_plugins.embedders._texts import check_batch_size, check_texts

__all__ = ["GaussianRetriever"]


class GaussianRetriever:
    """Exact nearest-neighbour retrieval with a :class:`~rag_relax_plugins.embedders.gaussian.GaussianEmbedder`.

    Args:
        model: the embedder (anything with ``encode``, ``score`` and ``dim``).
        batch_size: texts per forward pass when embedding documents.

    Example:
        >>> retriever = GaussianRetriever(GaussianEmbedder(device="cpu"))
        >>> retriever.add_documents(["Paris is in France.", "Bees make honey."])
        >>> retriever.retrieve("Where is Paris?", top_k=1)  # [("Paris is in France.", -12.3)]
    """

    def __init__(self, model: Any, *, batch_size: int = 32) -> None:
        for attr in ("encode", "score", "dim"):
            if not hasattr(model, attr):
                raise TypeError(f"model must be a GaussianEmbedder (missing {attr!r}), got {type(model).__name__}")
        self.model = model
        self.batch_size = check_batch_size(batch_size)
        self.texts: list[str] = []
        self._vectors = torch.zeros(0, int(model.dim))

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def vectors(self) -> torch.Tensor:
        """``(N, D) x float32`` stored document vectors."""
        return self._vectors

    def add_documents(self, texts: list[str]) -> None:
        """Embed and store ``texts`` (appended after the documents already stored).

        Raises:
            TypeError: ``texts`` is not a list of str.
            ValueError: ``texts`` is empty.
        """
        texts = check_texts(texts)
        if not texts:
            raise ValueError("texts must hold at least one document, got an empty list")
        vecs = self.model.encode(texts, batch_size=self.batch_size)
        self._vectors = torch.cat([self._vectors.to(vecs.device), vecs])
        self.texts.extend(texts)

    def retrieve(self, query: str, top_k: int = 5) -> list[tuple[str, float]]:
        """The ``top_k`` stored texts closest to ``query``, best first, with their raw scores.

        ``top_k`` larger than the number of documents returns them all.

        Raises:
            TypeError: ``query`` is not a str or ``top_k`` not an int.
            ValueError: no documents were added, or ``top_k`` < 1.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        return self.retrieve_batch([query], top_k)[0]

    def retrieve_batch(self, queries: list[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """:meth:`retrieve` for several queries at once (one batched encode and scan)."""
        queries = check_texts(queries, "queries")
        check_k("top_k", top_k)
        if not self.texts:
            raise ValueError("the retriever is empty: call add_documents first")
        if not queries:
            return []
        q = self.model.encode(queries, batch_size=self.batch_size)
        scores = self.model.score(q, self._vectors.to(q.device))  # (Q, N)
        vals, idx = torch.topk(scores, min(top_k, scores.shape[1]), dim=1)
        return [
            [(self.texts[i], float(v)) for v, i in zip(vrow, irow, strict=True)]
            for vrow, irow in zip(vals.tolist(), idx.tolist(), strict=True)
        ]
