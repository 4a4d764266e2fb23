"""LangChain ``VectorStore`` over the MoL / RAILS index.

The store keeps ``id -> (text, metadata)`` next to a :class:`~rag_relax_plugins.index.MoLIndex`
that holds the document vectors. It converts ``Document`` objects to texts and metadata, embeds
texts with a LangChain ``Embeddings``, and delegates scoring, filtering (as an id subset handed to
the index before scoring) and persistence of the vectors to the index. It holds no math.

Scores. ``similarity_search_with_score`` returns the raw MoL score ``phi`` (higher is better).
With no trained head the store uses ``MoLSimilarity.cosine(dim)``, so ``phi`` is the cosine in
``[-1, 1]`` and a stored text is its own best match. Relevance in ``[0, 1]``
(``similarity_search_with_relevance_scores`` and the ``similarity_score_threshold`` retriever) is
``(1 + tau * phi) / 2``: for the cosine head (``tau = 1``) the usual ``(1 + cos) / 2``; for a
trained head ``tau * phi`` is a convex mix of cosines (the gate is a softmax), so it also lies in
``[-1, 1]`` and the mapping is exact and monotone, not a heuristic squashing.

Private modules next to this one hold the parts of the store: ``_mol_checks`` (argument checks,
the ``filter=`` evaluation), ``_mol_inputs`` (reading an ``add_texts`` call and embedding its
texts), ``_mol_search`` (one query vector's search, the MMR choice) and ``_mol_store_io`` (the
on-disk layout).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from rag_relax_plugins.core.mol import MoLSimilarity
from rag_relax_plugins.core.validation import check_k
from rag_relax_plugins.index import MoLIndex, Strategy
from rag_relax_plugins.index.filters import id_list
from rag_relax_plugins.index.store_sync import delete_in_step, hold
from rag_relax_plugins.index.strategies import check_strategy
from rag_relax_plugins.langchain._mol_checks import (
    check_mmr_args,
    check_search_kwargs,
    fresh_metadata,
)
from rag_relax_plugins.langchain._mol_inputs import embed_texts, read_add_args
from rag_relax_plugins.langchain._mol_search import (
    DocFilter,
    Passed,
    mmr_picks,
    resolve_callable,
    search,
)
from rag_relax_plugins.langchain._mol_store_io import read_store, write_store

__all__ = ["MoLVectorStore"]


def _given_index_options(index: MoLIndex, asked: dict[str, Any]) -> dict[str, Any]:
    """``index``'s own device / first stage / cache dtype; an option of the constructor set to
    something else is refused (they configure an index the store builds: with ``index=`` a
    ``cache_dtype="bf16"`` or ``device="cuda"`` was ignored, silently).

    Raises:
        ValueError: an option other than its default that differs from the index's (or is bad).
    """
    own = {"device": index.device, "first_stage": index.first_stage, "cache_dtype": index.cache_dtype}
    config, device = MoLIndex.check_options(asked["first_stage"], asked["cache_dtype"], asked["device"])
    differ = [name for name, changed, same in (
        ("device", asked["device"] is not None, device == index.device),
        ("first_stage", asked["first_stage"] != "torch", config == index.first_stage),
        ("cache_dtype", asked["cache_dtype"] != "fp32", asked["cache_dtype"] == index.cache_dtype),
    ) if changed and not same]
    if differ:
        said = ", ".join(f"{n}={asked[n]!r} (the index's: {own[n]!r})" for n in differ)
        raise ValueError(f"{said}: with index= the index's own options are used; set them on the MoLIndex")
    return own


class MoLVectorStore(VectorStore):
    """A LangChain vector store scored by a Mixture-of-Logits similarity (RAILS index).

    Setup:
        ``pip install "rag-relax-plugins[langchain]"``

    Key init args:
        embedding: the LangChain ``Embeddings`` for documents (``embed_documents``) and queries
            (``embed_query``). Its dimension must match the similarity's ``item_dim`` /
            ``query_dim``.
        similarity: a (trained) :class:`~rag_relax_plugins.core.mol.MoLSimilarity`; ``None``
            builds ``MoLSimilarity.cosine(dim)`` at the first ``add`` (exactly cosine).
        index: an *empty* :class:`~rag_relax_plugins.index.MoLIndex` to use instead of building
            one (e.g. with a FAISS first stage or a custom ``exact_filter_threshold``); to reopen
            a saved store use :meth:`load_local`. An index serves one store (a second store given
            it while the first lives is a ``ValueError``: ``index.empty_like(index.similarity)``).
        strategy: the index's retrieval strategy (default ``BruteForce()``, exact).
        device / first_stage / cache_dtype: passed to the ``MoLIndex`` the store builds; with
            ``index=`` the index's own stand, and a value other than the default that differs
            from the index's is a ``ValueError``.

    Instantiate:
        .. code-block:: python

            from rag_relax_plugins.langchain import MoLVectorStore
            store = MoLVectorStore(embeddings)                      # untrained: cosine
            store = MoLVectorStore(embeddings, similarity=trained)  # a trained MoL head

    Usage:
        .. code-block:: python

            ids = store.add_texts(["a cat", "a dog"], metadatas=[{"k": 1}, {"k": 2}])
            store.similarity_search("cat", k=1, filter={"k": 1})
            store.as_retriever(search_type="mmr", search_kwargs={"k": 2}).invoke("cat")
            store.save_local("my_store"); MoLVectorStore.load_local("my_store", embeddings)

    Filters (``filter=``): a dict of metadata equalities (every key must be present and equal as
    JSON values: ``True`` does not match ``1``, a tuple matches the equal list, as after a
    save/load round trip; operator dicts such as ``{"$in": [...]}`` raise ``TypeError``) or a
    callable ``Document -> bool`` (it receives copies: it cannot change the store). They select
    an id subset that the index searches; the result has ``k`` documents whenever at least ``k``
    pass, with the default exact search (or an approximate strategy over a subset of at most the
    index's ``exact_filter_threshold`` items, scored exactly); an approximate strategy over a
    FAISS IVF / HNSW first stage may return fewer for a larger subset (``index.strategies``).

    ``k`` (and ``fetch_k``) must be ``>= 1``: ``k=0`` is a ``ValueError`` (``InMemoryVectorStore``
    returns ``[]``).

    Search keyword arguments: ``filter`` and ``strategy`` (the index's retrieval strategy for one
    call). ``fetch_k``, ``lambda_mult`` and ``score_threshold`` are accepted and ignored by the
    similarity searches (drop-in for ``as_retriever(search_kwargs={"k": 2, "fetch_k": 10})``);
    any other keyword is a ``TypeError``.

    Embedding width: a head built by the store (no ``similarity=`` / ``index=``) follows the
    embedding; once the store is empty again (``delete()``), vectors of another width may be
    added and a new cosine head is built. A given head keeps its width.
    """

    def __init__(
        self,
        embedding: Embeddings,
        *,
        similarity: MoLSimilarity | None = None,
        index: MoLIndex | None = None,
        strategy: Strategy | None = None,
        device: str | torch.device | None = None,
        first_stage: str = "torch",
        cache_dtype: str = "fp32",
    ) -> None:
        if not isinstance(embedding, Embeddings):
            raise TypeError(f"embedding must be a langchain Embeddings, got {type(embedding).__name__}")
        if similarity is not None and index is not None:
            raise ValueError("pass either similarity or index, not both")
        if similarity is not None and not isinstance(similarity, MoLSimilarity):
            raise TypeError(f"similarity must be a MoLSimilarity, got {type(similarity).__name__}")
        if index is not None and not isinstance(index, MoLIndex):
            raise TypeError(f"index must be a MoLIndex, got {type(index).__name__}")
        if index is not None and len(index):
            raise ValueError("index must be empty (use load_local to reopen a saved store)")
        self._embedding = embedding
        self._strategy = None if strategy is None else check_strategy(strategy)
        self._index_kwargs: dict[str, Any] = {
            "device": device, "first_stage": first_stage, "cache_dtype": cache_dtype,
        }
        if index is not None:  # its own options stand (the saved index/ folder records them)
            self._index_kwargs = _given_index_options(index, self._index_kwargs)
        # the index and whether the store built its head live in one holder, which a shallow
        # copy shares: a new index (the first add, a new width after delete()) reaches both
        self._contents = hold(index)  # refuses an index another living store holds
        if similarity is not None:
            self._contents.index = MoLIndex(similarity, **self._index_kwargs)
        elif index is None:  # the head is built at the first add: its options are checked now
            MoLIndex.check_options(first_stage, cache_dtype, device)
        self._docs: dict[str, tuple[str, dict[str, Any]]] = {}
        self._lock = threading.RLock()

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickling is refused with a way out (it failed on the lock: "cannot pickle '_thread.RLock'")."""
        raise TypeError(
            "a MoLVectorStore cannot be pickled or deep-copied (it holds a lock and a MoL index): "
            "save_local(folder) it and load MoLVectorStore.load_local(folder, embedding) where it is needed"
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> MoLVectorStore:
        return self.__reduce_ex__(4)  # type: ignore[no-any-return]  # raises

    def __copy__(self) -> MoLVectorStore:
        """A shallow copy, as before: the same documents, index and lock (one store, two names)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    # ------------------------------------------------------------------ properties
    @property
    def embeddings(self) -> Embeddings:
        """The embedding model used for documents and queries."""
        return self._embedding

    @property
    def index(self) -> MoLIndex | None:
        """The underlying MoL index (``None`` until the first add when no head was given)."""
        return self._contents.index

    def __len__(self) -> int:
        """Number of stored documents."""
        return len(self._docs)

    def __bool__(self) -> bool:
        """Always true: an empty store is still a store (frameworks test ``if vector_store:``)."""
        return True

    # ------------------------------------------------------------------ writing
    def add_texts(  # type: ignore[override]
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str | None] | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and add ``texts``; an existing id is replaced (upsert).

        Args:
            texts: ``N`` strings.
            metadatas: ``N`` dicts (deep-copied; the caller's are never mutated), or ``None`` /
                ``[]`` (empty metadata, as ``InMemoryVectorStore``).
            ids: ``N`` ids; ``None`` or ``""`` entries (or ``ids=None`` / ``[]``, as
                ``InMemoryVectorStore``) get a fresh ``uuid4``. An id given twice keeps its last
                text and metadata (as ``InMemoryVectorStore``; only that one is embedded).
            batch_size: texts per ``embed_documents`` call (``None``: one call); every text is
                embedded before anything is added, so a failing batch adds nothing.
                ``langchain_core.indexing.index`` passes it.
            **kwargs: only ``current_time``, which ``TimeWeightedVectorStoreRetriever`` passes to
                its store (the time is in the metadata it adds), is accepted, and unused; any
                other keyword is an error, so that a misspelt ``metadata=`` is not dropped.

        Returns:
            The ``N`` ids, in input order (a repeated id as often as given).
        """
        texts, metas, out, batch = read_add_args(texts, metadatas, ids, batch_size, kwargs)
        if not texts:
            return []
        last = sorted({id_: i for i, id_ in enumerate(out)}.values())  # a repeated id: the last wins
        kept_ids = [out[i] for i in last]
        vectors = embed_texts(self._embedding, [texts[i] for i in last], batch)
        with self._lock:
            new = {out[i]: (texts[i], metas[i]) for i in last}
            self._contents.add(kept_ids, vectors, has_docs=bool(self._docs), index_kwargs=self._index_kwargs,
                               record=lambda: self._docs.update(new))  # one update, in step
        return out

    def add_documents(
        self, documents: list[Document], ids: list[str | None] | None = None, **kwargs: Any
    ) -> list[str]:
        """Add ``documents`` (upsert); ids from ``ids``, else each ``Document.id``, else a ``uuid4``.

        As ``InMemoryVectorStore``: ``ids=None`` (or ``[]``) uses the documents' own ids.
        Other keyword arguments (``batch_size``) go to :meth:`add_texts`.
        """
        documents = list(documents)
        for i, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise TypeError(f"documents[{i}] must be a langchain Document, got {type(doc).__name__}")
        given = None if ids is None else list(id_list("ids", ids))  # an array's truth value is ambiguous
        chosen: list[str | None] = given if given else [doc.id for doc in documents]
        return self.add_texts(
            [doc.page_content for doc in documents],
            [doc.metadata for doc in documents],
            ids=chosen,
            **kwargs,
        )

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete ``ids`` (missing ids are ignored); ``ids=None`` deletes everything."""
        if kwargs:
            raise TypeError(f"delete got unexpected keyword arguments {sorted(kwargs)}")
        ids = None if ids is None else id_list("ids", ids)
        with self._lock:
            targets = list(self._docs) if ids is None else [i for i in dict.fromkeys(ids) if i in self._docs]
            delete_in_step(self._contents.index, targets, lambda i: self._docs.pop(i, None))
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents of ``ids`` in the given order; unknown ids are skipped."""
        ids = id_list("ids", ids)
        with self._lock:
            return [self._document(i) for i in ids if i in self._docs]

    # ------------------------------------------------------------------ search
    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` documents with the highest MoL score for ``query``."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(  # type: ignore[override]
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, raw MoL score)`` pairs, best first (``filter=`` / ``strategy=`` accepted)."""
        check_k("k", k)
        check_search_kwargs(kwargs)
        if not self._docs:
            return []
        return self.similarity_search_with_score_by_vector(self._embedding.embed_query(query), k, **kwargs)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` best documents for a query vector."""
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, raw MoL score)`` pairs for a query vector, best first."""
        check_k("k", k)
        check_search_kwargs(kwargs)
        resolved = resolve_callable(self._docs, kwargs.get("filter"), self._lock)  # user code: outside the lock
        with self._lock:
            scores, ids = self._search(embedding, k, resolved, kwargs.get("strategy"))
            return [(self._document(i), s) for i, s in zip(ids, scores, strict=True)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """``phi -> (1 + tau * phi) / 2`` in ``[0, 1]`` (see the module docstring)."""
        tau = self._contents.index.similarity.config.tau if self._contents.index is not None else 1.0
        return lambda score: min(1.0, max(0.0, (1.0 + tau * score) / 2.0))

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        """MMR over the ``fetch_k`` best documents (see :meth:`max_marginal_relevance_search_by_vector`)."""
        check_mmr_args(k, fetch_k, lambda_mult, kwargs)  # also on an empty store
        if not self._docs:
            return []
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        **kwargs: Any,
    ) -> list[Document]:
        """Maximal marginal relevance (Carbonell & Goldstein, 1998).

        Relevance is ``tau * phi``, the MoL score of each of the ``fetch_k`` best (filtered)
        documents on the cosine's ``[-1, 1]`` scale (``min(k, fetch_k)`` documents come back, as
        from ``InMemoryVectorStore``); the redundancy between two candidates is the
        cosine of their document embeddings, so ``lambda_mult`` means the same for any ``tau``.
        See :func:`rag_relax_plugins.core.mmr.mmr_select_mol`.
        """
        check_mmr_args(k, fetch_k, lambda_mult, kwargs)  # before any early return
        resolved = resolve_callable(self._docs, kwargs.get("filter"), self._lock)  # user code: outside the lock
        with self._lock:
            # exactly fetch_k candidates, so min(k, fetch_k) documents, as InMemoryVectorStore
            scores, ids = self._search(embedding, fetch_k, resolved, kwargs.get("strategy"))
            if not ids:
                return []
            if self._contents.index is None:  # pragma: no cover - _search returned hits, so it exists
                return []
            picks = mmr_picks(self._contents.index, scores, ids, k, lambda_mult)
            return [self._document(ids[p]) for p in picks]

    def _search(
        self, embedding: Sequence[float], k: int, filter: DocFilter | Passed | None, strategy: Strategy | None
    ) -> tuple[list[float], list[str]]:
        """Raw ``(scores, ids)`` of one query vector, best first (:func:`~._mol_search.search`)."""
        return search(self._contents.index, self._docs, embedding, k, filter=filter,
                      strategy=strategy if strategy is not None else self._strategy)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> MoLVectorStore:
        """A new store holding ``texts`` (``kwargs`` go to the constructor)."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)  # type: ignore[arg-type]
        return store

    # ------------------------------------------------------------------ persistence
    def save_local(self, folder: str | Path) -> None:
        """Write the store to ``folder`` atomically: ``store.json`` (texts, metadata) + ``index/``.

        Metadata must be JSON-serialisable with string keys, else a ``ValueError`` and nothing is
        written (tuples come back as lists). The embedding model and strategy are not saved. See
        :mod:`rag_relax_plugins.langchain._mol_store_io`.
        """
        with self._lock:
            write_store(folder, self._contents.index, self._docs, auto_head=self._contents.auto_head,
                        index_kwargs=self._index_kwargs)

    @classmethod
    def load_local(
        cls,
        folder: str | Path,
        embeddings: Embeddings,
        *,
        device: str | torch.device | None = None,
        strategy: Strategy | None = None,
    ) -> MoLVectorStore:
        """Reopen a store written by :meth:`save_local` (format version checked).

        Neither the embedding model nor the search strategy is saved: pass them again. A crash
        between the two renames of a replacing save is recovered (the previous save is loaded).
        A store saved before its first add builds its index with the ``first_stage`` and
        ``cache_dtype`` it was created with (``device``: this call's).
        """
        store = cls(embeddings, strategy=strategy, device=device)
        store._contents.index, store._docs, store._contents.auto_head, options = read_store(folder, device)
        if options is not None:
            store._index_kwargs.update(options)
        return store

    # ------------------------------------------------------------------ helpers
    def _document(self, id_: str) -> Document:
        text, meta = self._docs[id_]
        return Document(page_content=text, metadata=fresh_metadata(meta), id=id_)
