"""LangChain ``Embeddings`` over the isotropic Gaussian embedder."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from langchain_core.embeddings import Embeddings

__all__ = ["GaussianEmbeddings"]


class GaussianEmbeddings(Embeddings):
    """LangChain embeddings backed by a :class:`~rag_relax_plugins.embedders.gaussian.GaussianEmbedder`.

    Vectors are lists of plain Python ``float``. Their retrieval geometry is :attr:`geometry`
    (``"euclidean"`` or ``"inner_product"``, from the model config):

    - by default the raw, un-normalised vectors are returned: use a store with the matching
      distance (FAISS with :attr:`distance_strategy`), or score them with :meth:`similarity`;
    - with ``cosine_max_norm=M`` the vectors are transformed
      (:mod:`rag_relax_plugins.embedders.gaussian_transforms`) so that a store that ranks by
      angle ranks exactly like the model's geometry: ``InMemoryVectorStore``, and the MoL store
      too (its heads normalise their components, so raw vectors would be ranked by angle).
      ``M`` must bound every document's transformed norm, ``|[d, -|d|^2/2]|`` (Euclidean) or
      ``|d|`` (inner product); an error gives the largest one otherwise. For a model trained
      toward ``N(0, I_D)``, e.g. ``4 * D`` Euclidean, ``4 * sqrt(D)`` inner product.
      The transform keeps the *ranking*, not the size of the scores: the cosines of transformed
      vectors all lie close to 0, so relevance scores sit near the middle of their range, a
      ``similarity_score_threshold`` retriever's threshold does not mean what it usually does,
      and MMR, which measures redundancy as the cosine between two stored vectors, sees every
      pair as near duplicates. Use similarity search with these vectors.

    Caching: give LangChain's ``CacheBackedEmbeddings`` ``namespace=emb.cache_namespace`` (not
    ``emb.model``), and leave ``query_embedding_cache`` off when query and document vectors differ
    (a ``query_instruction`` or ``document_instruction``, or ``cosine_max_norm``): that cache
    shares the document store's keys, so a query equal to a stored text gets the text's vector.

    Setup:
        ``pip install "rag-relax-plugins[langchain,st]"``

    Key init args:
        model_path: folder written by ``GaussianEmbedder.save`` / ``rag-relax train``.
        model: an already loaded ``GaussianEmbedder`` (instead of ``model_path``).
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``None`` (best available) to load ``model_path``
            on; beside ``model`` it must name the model's device.
        batch_size: texts per forward pass.
        query_instruction / document_instruction: prefixes added before encoding.
        cosine_max_norm: enable the cosine-compatible transform (see above).

    Instantiate:
        .. code-block:: python

            from rag_relax_plugins.langchain import GaussianEmbeddings
            emb = GaussianEmbeddings(model_path="runs/g/best_model", device="cpu")

    Usage:
        .. code-block:: python

            vectors = emb.embed_documents(["a passage", "another"])
            query = emb.embed_query("a question")
            scores = emb.similarity(query, vectors)  # minus Euclidean distances

            from langchain_core.vectorstores import InMemoryVectorStore
            cos = GaussianEmbeddings(model_path="runs/g/best_model", cosine_max_norm=1536.0)
            store = InMemoryVectorStore.from_texts(["a passage", "another"], cos)
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        model: Any = None,
        device: str | None = None,
        batch_size: int = 32,
        query_instruction: str = "",
        document_instruction: str = "",
        cosine_max_norm: float | None = None,
    ) -> None:
        from rag_relax_plugins.core.validation import check_positive
        from rag_relax_plugins.embedders._texts import check_batch_size
        from rag_relax_plugins.embedders._wrapper_checks import check_model_arguments

        self.batch_size = check_batch_size(batch_size)
        check_model_arguments(model, model_path, device)
        for name, value in (("query_instruction", query_instruction), ("document_instruction", document_instruction)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        self.cosine_max_norm = None if cosine_max_norm is None else check_positive("cosine_max_norm", cosine_max_norm)
        if model is None:
            if model_path is None:
                raise ValueError("pass model_path (a saved Gaussian embedder folder) or model")
            from rag_relax_plugins.embedders.gaussian import GaussianEmbedder

            model = GaussianEmbedder.load(model_path, device=device)
        elif not all(hasattr(model, a) for a in ("encode", "score", "geometry")):
            raise TypeError(f"model must be a GaussianEmbedder, got {type(model).__name__}")
        if callable(getattr(model, "eval", None)):
            # inference only: eval mode once, so that encode's own eval/train switch is a no-op and
            # concurrent async calls cannot turn dropout back on for each other
            model.eval()
        self.model = model
        self.query_instruction = query_instruction
        self.document_instruction = document_instruction

    @property
    def geometry(self) -> str:
        """The model's retrieval geometry: ``"euclidean"`` or ``"inner_product"``."""
        return str(self.model.geometry)

    @property
    def model_name(self) -> str:
        """``gaussian-embedder@<16 hex>``: a digest of the model's config and weights, which tells two
        trained models apart (the LlamaIndex ``GaussianEmbedding``'s default ``model_name``).
        Computed on each read: a few hundred ms for MiniLM on a CPU."""
        from rag_relax_plugins.embedders._wrapper_checks import model_digest_name

        return model_digest_name(self.model)

    @property
    def cache_namespace(self) -> str:
        """The ``namespace`` for LangChain's ``CacheBackedEmbeddings``: :attr:`model_name` and a
        digest of the options that change document vectors (``document_instruction``,
        ``cosine_max_norm``). LangChain's examples use ``namespace=embeddings.model``: here that
        is the model object, whose text is the same for two trained models of one architecture,
        so they would share cache entries."""
        import hashlib
        import json

        options = json.dumps([self.document_instruction, self.cosine_max_norm]).encode()
        return f"{self.model_name}/{hashlib.sha256(options).hexdigest()[:8]}"

    @property
    def distance_strategy(self) -> str:
        """The matching LangChain ``DistanceStrategy`` name (for FAISS-like stores)."""
        return "EUCLIDEAN_DISTANCE" if self.geometry == "euclidean" else "MAX_INNER_PRODUCT"

    def _embed(self, texts: list[str], prefix: str, *, query: bool) -> list[list[float]]:
        from rag_relax_plugins.embedders._texts import check_texts

        texts = check_texts(texts)
        if not texts:
            return []
        vecs = self.model.encode([prefix + t for t in texts], batch_size=self.batch_size)
        if self.cosine_max_norm is not None:
            from rag_relax_plugins.embedders import gaussian_transforms as tf

            vecs = (tf.cosine_compatible_queries(vecs, self.geometry) if query
                    else tf.cosine_compatible_documents(vecs, self.geometry, self.cosine_max_norm))
        return [[float(x) for x in row] for row in vecs.cpu().tolist()]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector (list of ``float``) per text."""
        return self._embed(texts, self.document_instruction, query=False)

    def embed_query(self, text: str) -> list[float]:
        """The query vector as a list of ``float``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        from rag_relax_plugins.core.validation import check_unicode

        check_unicode("text", text)  # not "texts[0]"
        return self._embed([text], self.query_instruction, query=True)[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents` (runs in a worker thread)."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query` (runs in a worker thread)."""
        return await asyncio.to_thread(self.embed_query, text)

    def similarity(self, query: list[float], documents: list[list[float]]) -> list[float]:
        """Scores of raw ``documents`` vectors for a raw ``query`` vector under :attr:`geometry`."""
        if self.cosine_max_norm is not None:
            raise ValueError("similarity expects raw vectors; this instance returns cosine-compatible ones")
        from rag_relax_plugins.embedders._wrapper_checks import raw_vectors

        q = raw_vectors("query", query, self.model.dim, one=True)
        d = raw_vectors("documents", documents, self.model.dim)
        return [float(s) for s in self.model.score(q, d)[0].tolist()]
