"""LlamaIndex ``BaseEmbedding`` over the isotropic Gaussian embedder."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding, SimilarityMode
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from rag_relax_plugins.core.validation import check_unicode
from rag_relax_plugins.embedders._texts import check_texts
from rag_relax_plugins.llama_index._class_name import without_own_class_name

__all__ = ["GaussianEmbedding"]


def _named(query: bool, texts: list[str], i: int) -> str:
    """How an error names ``texts[i]``: the query, the one text, or its place in a batch."""
    return "query" if query else "text" if len(texts) == 1 else f"texts[{i}]"


def _checked_texts(texts: object) -> list[str]:
    """``texts`` (any iterable of str but a str, as LlamaIndex iterates it) as a list, checked by
    :func:`~rag_relax_plugins.embedders._texts.check_texts`: a bad text is named by its place."""
    if isinstance(texts, Iterable) and not isinstance(texts, (str, bytes, Sequence)):
        texts = list(texts)  # a generator
    return check_texts(texts)

_DIGEST_NAME = re.compile(r"gaussian-embedder@[0-9a-f]{16}")  # what model_digest_name writes
_UNSET = object()


class _NoModelMode(ValueError, AttributeError):
    """No :class:`SimilarityMode` gives the model's score of cosine-compatible vectors."""


class GaussianEmbedding(BaseEmbedding):
    """LlamaIndex embedding backed by a :class:`~rag_relax_plugins.embedders.gaussian.GaussianEmbedder`.

    Texts are embedded in batches of ``embed_batch_size`` (one forward pass per batch, through
    ``_get_text_embeddings``); queries and texts can get instruction prefixes. The geometry is
    :attr:`geometry` (from the model config):

    - raw, un-normalised vectors by default; :meth:`similarity` behaves as in LlamaIndex (the
      default mode is cosine, as LlamaIndex's components expect), and
      ``similarity(a, b, emb.model_similarity_mode)`` is the model's own score;
    - with ``cosine_max_norm=M`` the vectors are transformed so that cosine similarity (what
      ``VectorStoreIndex``'s default ``SimpleVectorStore`` uses) ranks exactly like the model's
      geometry; see :mod:`rag_relax_plugins.embedders.gaussian_transforms`.

    Setup:
        ``pip install "rag-relax-plugins[llamaindex,st]"``

    Key init args:
        model_path: folder written by ``GaussianEmbedder.save`` / ``rag-relax train``.
        model: an already loaded ``GaussianEmbedder`` (instead of ``model_path``).
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``None``, to load ``model_path`` on; beside
            ``model`` it must name the model's device.
        query_instruction / text_instruction: prefixes added before encoding.
        cosine_max_norm: enable the cosine-compatible transform.

    Unknown keyword arguments are an error (a misspelt ``query_instrucion=`` would otherwise be
    dropped). Built from ``model=``, the config records ``model_instance: true`` (``from_dict``
    then asks for ``model=`` again) and ``model_name`` defaults to ``gaussian-embedder@<digest>``
    of the model's config and weights (built from ``model_path`` too: a model retrained into the
    same folder gets a new name), so that caches keyed on the config (an ``IngestionPipeline``'s)
    tell two models apart. ``embeddings_cache`` is refused when query
    and text vectors differ (instructions, ``cosine_max_norm``): LlamaIndex caches both under the
    raw text, so a query equal to a stored text would get the text's vector.

    Instantiate:
        .. code-block:: python

            from llama_index.core import VectorStoreIndex
            from rag_relax_plugins.llama_index import GaussianEmbedding
            embed_model = GaussianEmbedding(model_path="runs/g/best_model", cosine_max_norm=1536.0)
            index = VectorStoreIndex.from_documents(docs, embed_model=embed_model)
    """

    # fixed at construction, when the model is loaded: assigning them later would change nothing
    model_path: str | None = Field(default=None, frozen=True, description="folder of a saved Gaussian embedder")
    device: str | None = Field(default=None, frozen=True, description="cpu, cuda, mps or None (best available)")
    query_instruction: str = Field(default="", description="prefix added to queries")
    text_instruction: str = Field(default="", description="prefix added to documents")
    cosine_max_norm: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="enable the cosine-compatible transform"
    )
    model_instance: bool = Field(
        default=False, frozen=True, description="built around a model= instance, which to_dict cannot hold (set by __init__)"
    )
    # assignments are validated too (see __setattr__)
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    _model: Any = PrivateAttr()

    def __init__(self, model_path: str | None = None, *, model: Any = None, **kwargs: Any) -> None:
        if model is None and model_path is None:
            if kwargs.get("model_instance"):
                raise ValueError(
                    "this GaussianEmbedding configuration was saved from an embedding built around a model "
                    "instance, which is not serialised: pass model= again (from_dict(data, model=...)), or "
                    "build it with model_path= for a self-contained config"
                )
            raise ValueError("pass model_path (a saved Gaussian embedder folder) or model")
        if model is not None and not all(hasattr(model, a) for a in ("encode", "score", "geometry")):
            raise TypeError(f"model must be a GaussianEmbedder, got {type(model).__name__}")
        from rag_relax_plugins.embedders._wrapper_checks import (
            check_model_arguments,
            model_digest_name,
        )

        check_model_arguments(model, model_path, kwargs.get("device"))
        kwargs["model_instance"] = model is not None
        name = kwargs.get("model_name")
        # the default name is a digest of the model's config and weights, from model_path too: the
        # folder's path named a model retrained into the same folder like the old one, and an
        # IngestionPipeline's cache (keyed on the config) served the old model's vectors
        by_digest = bool(name is None or name == "gaussian-embedder" or _DIGEST_NAME.fullmatch(str(name))
                         or (model_path is not None and name == str(model_path)))
        if by_digest:  # also replaces a saved config's digest; a folder's model is named once loaded
            kwargs["model_name"] = model_digest_name(model) if model is not None else "gaussian-embedder"
        # the options are validated before a model_path is loaded (a misspelt option: no load first)
        super().__init__(model_path=None if model_path is None else str(model_path), **kwargs)  # type: ignore[call-arg]
        if model is None:
            from rag_relax_plugins.embedders.gaussian import GaussianEmbedder

            model = GaussianEmbedder.load(str(model_path), device=self.device)
            if by_digest:
                self.model_name = model_digest_name(model)
        if callable(getattr(model, "eval", None)):
            # inference only: eval mode once, so that encode's own eval/train switch is a no-op and
            # LlamaIndex's concurrent async batches cannot turn dropout back on for each other
            model.eval()
        self._model = model

    def __setattr__(self, name: str, value: Any) -> None:
        """Validate an assignment as the constructor would (``emb.embeddings_cache = kv`` beside a
        ``query_instruction``, ``emb.cosine_max_norm = -1``) and, when it is refused, leave the
        field as it was: pydantic has already stored the value when a model validator fails."""
        old = self.__dict__.get(name, _UNSET) if name in type(self).model_fields else _UNSET
        try:
            super().__setattr__(name, value)
        except ValueError:  # pydantic's ValidationError included
            if old is not _UNSET:
                self.__dict__[name] = old
            raise

    @model_validator(mode="before")
    @classmethod
    def _drop_class_name(cls, data: Any) -> Any:
        """``model_dump()`` adds LlamaIndex's ``class_name``: accept it back (it names this class)."""
        return without_own_class_name(cls, data)

    @model_validator(mode="after")
    def _no_shared_query_text_cache(self) -> GaussianEmbedding:
        if self.embeddings_cache is not None and (
            self.query_instruction != self.text_instruction or self.cosine_max_norm is not None
        ):
            raise ValueError(
                "embeddings_cache is not supported with query_instruction / text_instruction that differ "
                "or with cosine_max_norm: LlamaIndex caches query and text vectors under the same raw "
                "text, and here they differ (cache at the IngestionPipeline instead; to change both "
                "instructions of a cached embedding, set embeddings_cache = None first)"
            )
        return self

    @field_validator("device", mode="before")
    @classmethod
    def _device_name(cls, value: object) -> object:
        from rag_relax_plugins.rerankers.base import device_name

        return device_name(value)

    @classmethod
    def class_name(cls) -> str:
        """Name used in LlamaIndex serialisation."""
        return "GaussianEmbedding"

    @property
    def geometry(self) -> str:
        """The model's retrieval geometry: ``"euclidean"`` or ``"inner_product"``."""
        return str(self._model.geometry)

    def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False, **kwargs: Any) -> list[Embedding]:
        """LlamaIndex's batch embedding, with every text checked first: a non-text is named by
        its position in ``texts`` (the batches it is cut into named it by its place in one)."""
        return super().get_text_embedding_batch(_checked_texts(texts), show_progress=show_progress, **kwargs)

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Async :meth:`get_text_embedding_batch`."""
        return await super().aget_text_embedding_batch(_checked_texts(texts), show_progress=show_progress, **kwargs)

    def _encode(self, texts: list[str], prefix: str, *, query: bool) -> list[list[float]]:
        if not texts:
            return []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"{_named(query, texts, i)} must be a str, got {type(t).__name__}")
            check_unicode(_named(query, texts, i), t)
        vecs = self._model.encode([prefix + t for t in texts], batch_size=self.embed_batch_size)
        if self.cosine_max_norm is not None:
            from rag_relax_plugins.embedders import gaussian_transforms as tf

            vecs = (tf.cosine_compatible_queries(vecs, self.geometry) if query
                    else tf.cosine_compatible_documents(vecs, self.geometry, self.cosine_max_norm))
        return [[float(x) for x in row] for row in vecs.cpu().tolist()]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query], self.query_instruction, query=True)[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode([text], self.text_instruction, query=False)[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(list(texts), self.text_instruction, query=False)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    @property
    def model_similarity_mode(self) -> SimilarityMode:
        """The :class:`SimilarityMode` whose :meth:`similarity` of raw vectors is the model's own
        score: ``EUCLIDEAN`` (minus the L2 distance) for a ``"euclidean"`` model, ``DOT_PRODUCT``
        for ``"inner_product"``. Not with ``cosine_max_norm`` (transformed vectors: their default
        cosine ranks like the model, but no mode gives its score): a ``ValueError`` then."""
        if self.cosine_max_norm is not None:  # an AttributeError too: hasattr() / introspection see no mode
            raise _NoModelMode("model_similarity_mode applies to raw vectors; this instance returns cosine-compatible "
                             "ones (cosine_max_norm), whose default cosine ranks like the model")
        return SimilarityMode.EUCLIDEAN if self.geometry == "euclidean" else SimilarityMode.DOT_PRODUCT

    def similarity(
        self,
        embedding1: list[float],
        embedding2: list[float],
        mode: SimilarityMode = SimilarityMode.DEFAULT,
    ) -> float:
        """LlamaIndex's similarity of two vectors: ``DEFAULT`` is cosine, the scale LlamaIndex's
        components assume (``SentenceEmbeddingOptimizer``'s ``threshold_cutoff``, the semantic
        splitters); ``mode=self.model_similarity_mode`` gives the model's own score. Raw vectors
        (no ``cosine_max_norm``) must have the model's width and be finite."""
        if self.cosine_max_norm is None:
            from rag_relax_plugins.embedders._wrapper_checks import raw_vectors

            raw_vectors("embedding1", embedding1, self._model.dim, one=True)
            raw_vectors("embedding2", embedding2, self._model.dim, one=True)
        return super().similarity(embedding1, embedding2, mode)
