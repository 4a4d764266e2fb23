"""LangChain document compressors over any :class:`~rag_relax_plugins.rerankers.base.BaseReranker`.

One implementation (:class:`RerankerCompressor`) does the LangChain side; :class:`MaxSimReranker`
and :class:`GumbelReranker` only say how to build their reranker from a saved folder. The
adapters hold no math: they validate, call ``reranker.rerank`` and copy documents.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

from rag_relax_plugins.rerankers.base import (
    ADAPTER_FIELDS,
    BaseReranker,
    adapter_field,
    check_unused_build_fields,
    reranker_own_fields,
)

__all__ = ["GumbelReranker", "MaxSimReranker", "RerankerCompressor"]

SCORE_KEY = "relevance_score"
RAW_SCORE_KEY = "rerank_score"


class RerankerCompressor(BaseDocumentCompressor):
    """Reorder documents with a reranker and keep the best ``top_n``.

    Each returned document is a new ``Document`` (same ``page_content`` and ``id``) whose metadata
    is a copy of the input's plus ``relevance_score`` (in ``[0, 1]``: the wrapped reranker's
    ``relevance_of``, the sigmoid unless it knows its score's range) and ``rerank_score`` (the
    reranker's raw score). Input documents are never mutated.

    Setup:
        ``pip install "rag-relax-plugins[langchain,st]"``

    Key init args:
        reranker: a ready :class:`~rag_relax_plugins.rerankers.base.BaseReranker`.
        top_n: documents kept (``None``: all, reordered). Default 3.

    Instantiate:
        .. code-block:: python

            from rag_relax_plugins.langchain.compressors import RerankerCompressor
            compressor = RerankerCompressor(reranker=my_reranker, top_n=3)

    Usage (``ContextualCompressionRetriever`` is in ``langchain-classic``: ``pip install
    langchain-classic``; no extra of this package installs it):
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever
            retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
            docs = retriever.invoke("a question")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", validate_assignment=True)

    _build_fields: ClassVar[tuple[str, ...]] = ()  # fields read only by _build_reranker
    top_n: int | None = Field(default=3, description="documents kept after reranking (None: all)")
    _reranker: BaseReranker = PrivateAttr()

    def __init__(self, *, reranker: BaseReranker | None = None, **kwargs: Any) -> None:
        own = {} if reranker is None else reranker_own_fields(reranker, self._build_fields)
        super().__init__(**{**own, **kwargs})  # the field reports the reranker's own batch size
        if reranker is None:
            reranker = self._build_reranker()
        else:
            check_unused_build_fields(self, self._build_fields, own)
        if not isinstance(reranker, BaseReranker):
            raise TypeError(f"reranker must be a BaseReranker, got {type(reranker).__name__}")
        self._reranker = reranker

    @field_validator(*ADAPTER_FIELDS, mode="before", check_fields=False)  # some on subclasses only
    @classmethod
    def _shared_field(cls, value: object, info: ValidationInfo) -> object:
        return adapter_field(info.field_name or "", value)

    def _build_reranker(self) -> BaseReranker:
        raise ValueError(f"{type(self).__name__} needs reranker= (a BaseReranker instance)")

    @property
    def reranker(self) -> BaseReranker:
        """The wrapped reranker."""
        return self._reranker

    def relevance(self, score: float) -> float:
        """Map a raw score to ``[0, 1]``: the wrapped reranker's ``relevance_of(score)``."""
        return self._reranker.relevance_of(score)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``; best first, at most ``top_n``.

        Raises:
            TypeError: ``query`` not a str, ``documents`` not a sequence of ``Document`` or an entry
                whose ``page_content`` is not a str (the message gives its position).
        """
        if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
            raise TypeError(f"documents must be a sequence of Document, got {type(documents).__name__}")
        texts: list[str] = []
        for i, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise TypeError(f"documents[{i}] must be a langchain Document, got {type(doc).__name__}")
            if not isinstance(doc.page_content, str):
                raise TypeError(f"documents[{i}].page_content must be a str, got {type(doc.page_content).__name__}")
            texts.append(doc.page_content)
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if not texts:
            return []
        out = []
        for r in self._reranker.rerank(query, texts, top_n=self.top_n):
            src = documents[r.index]
            meta = {**src.metadata, SCORE_KEY: self.relevance(r.score), RAW_SCORE_KEY: r.score}
            out.append(Document(page_content=src.page_content, metadata=meta, id=src.id))
        return out

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents` (scoring runs in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)


class MaxSimReranker(RerankerCompressor):
    """ColBERT-style late-interaction reranking (:class:`rag_relax_plugins.rerankers.maxsim.MaxSimReranker`).

    ``relevance_score = (s + 1) / 2`` where ``s`` in ``[-1, 1]`` is the mean over query tokens of
    the best cosine to a document token.

    Key init args:
        model_path: folder written by ``MaxSimReranker.save`` / ``rag-relax train-maxsim``
            (``None`` with no ``reranker``: untrained MaxSim over the offline MiniLM, no projection).
        reranker: a ready reranker instead of ``model_path``.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``None`` (best available).
        batch_size: texts per backbone forward pass.
        top_n: documents kept (default 3).

    Instantiate:
        .. code-block:: python

            from rag_relax_plugins.langchain import MaxSimReranker
            compressor = MaxSimReranker(model_path="runs/maxsim/best_model", top_n=3)
    """

    # build fields: read once, to build the reranker, so frozen (a later assignment would not reach it)
    model_path: str | None = Field(default=None, frozen=True, description="saved MaxSim reranker folder")
    device: str | None = Field(default=None, frozen=True, description="cpu, cuda, mps or None")
    batch_size: int = Field(default=32, ge=1, strict=True, frozen=True, description="texts per forward pass")
    _build_fields: ClassVar[tuple[str, ...]] = ("model_path", "device", "batch_size")

    def __init__(self, model_path: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(model_path=None if model_path is None else str(model_path), **kwargs)

    def _build_reranker(self) -> BaseReranker:
        from rag_relax_plugins.rerankers.maxsim import MaxSimConfig
        from rag_relax_plugins.rerankers.maxsim import MaxSimReranker as _MaxSim

        if self.model_path is None:
            return _MaxSim(MaxSimConfig(projection_dim=None), device=self.device, batch_size=self.batch_size)
        return _MaxSim.load(self.model_path, device=self.device, batch_size=self.batch_size)


class GumbelReranker(RerankerCompressor):
    """Reranking with a (G-Rerank trained) Gumbel reranker's scorer, deterministic at inference.

    ``relevance_score`` is the wrapped reranker's own mapping (``GumbelReranker.relevance``):
    ``sigmoid(logit)`` for the cross-encoder scorer, ``(cos + 1) / 2`` for the bi-encoder scorer;
    ``sigmoid`` for any other ``BaseReranker``.

    Key init args:
        model_path: folder written by ``GumbelReranker.save_pretrained`` /
            ``rag-relax train-reranker`` (``None`` with no ``reranker``: an untrained
            cross-encoder scorer over the offline MiniLM, only useful for tests).
        reranker: a ready :class:`rag_relax_plugins.rerankers.gumbel.GumbelReranker` (or any
            ``BaseReranker``).
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``None``.
        top_n: documents kept (default 3).

    Instantiate:
        .. code-block:: python

            from rag_relax_plugins.langchain import GumbelReranker
            compressor = GumbelReranker(model_path="runs/grerank/final_model", top_n=3)
    """

    model_path: str | None = Field(default=None, frozen=True, description="saved Gumbel reranker folder")
    device: str | None = Field(default=None, frozen=True, description="cpu, cuda, mps or None")
    _build_fields: ClassVar[tuple[str, ...]] = ("model_path", "device")

    def __init__(self, model_path: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(model_path=None if model_path is None else str(model_path), **kwargs)

    def _build_reranker(self) -> BaseReranker:
        from rag_relax_plugins.rerankers.gumbel import GumbelReranker as _Gumbel

        if self.model_path is None:
            return _Gumbel(device=self.device)
        return _Gumbel.from_pretrained(self.model_path, device=self.device)

