"""LlamaIndex vector store over the MoL / RAILS index (``stores_text=True``).

The store keeps every node (as JSON, without its embedding) next to a
:class:`~rag_relax_plugins.index.MoLIndex` that holds the node embeddings. It converts nodes to
ids, vectors and metadata, evaluates ``MetadataFilters`` / ``node_ids`` / ``doc_ids`` into an id
subset that the index searches (pre-filtering), and delegates scoring and vector persistence to
the index. It holds no math.

Scores. ``VectorStoreQueryResult.similarities`` are raw MoL scores ``phi`` (higher is better).
With no trained head the store uses ``MoLSimilarity.cosine(dim)``: ``phi`` is the cosine in
``[-1, 1]``, as in LlamaIndex's ``SimpleVectorStore``. ``store.relevance(score)`` maps a score
to ``[0, 1]`` with ``(1 + tau * phi) / 2``, exact for any MoL head (``tau * phi`` is a
softmax-weighted mix of cosines).

Persistence: ``persist(path)`` writes the JSON manifest ``path`` and the index into a sibling
folder; see :mod:`rag_relax_plugins.llama_index._mol_persist` for the layout and crash safety.

Private modules next to this one hold the parts of the store: ``_mol_inputs`` (node vectors, the
MMR weight, the ``node_ids`` of a ``VectorStoreIndex``), ``_mol_query`` (the query vector, and the
id subset that ``node_ids`` / ``doc_ids`` / filters select), ``_mol_filters`` (``MetadataFilters``
on a node's metadata) and ``_mol_persist`` (node records, the on-disk layout).
"""

from __future__ import annotations

import asyncio
import numbers
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import torch
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, ImageNode, IndexNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from pydantic import PrivateAttr

from rag_relax_plugins.core.mmr import mmr_select_mol
from rag_relax_plugins.core.mol import MoLSimilarity
from rag_relax_plugins.core.validation import check_count, check_k
from rag_relax_plugins.index import MoLIndex, Strategy
from rag_relax_plugins.index.store_sync import StoreIndex, delete_in_step
from rag_relax_plugins.index.strategies import check_strategy
from rag_relax_plugins.llama_index._mol_filters import check_filters, doc_key
from rag_relax_plugins.llama_index._mol_inputs import mmr_weight, node_vectors
from rag_relax_plugins.llama_index._mol_persist import (
    Record,
    check_local_fs,
    node_from_record,
    read_store,
    record_of,
    write_store,
)
from rag_relax_plugins.llama_index._mol_query import query_embedding, query_vector, select, subset

__all__ = ["MoLVectorStore"]


DEFAULT_PERSIST_FNAME = "vector_store.json"


_QUERY_KWARGS = frozenset({"mmr_threshold", "mmr_prefetch_factor", "strategy"})


class MoLVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store scored by a Mixture-of-Logits similarity (RAILS index).

    Setup:
        ``pip install "rag-relax-plugins[llamaindex]"``

    Key init args:
        similarity: a (trained) :class:`~rag_relax_plugins.core.mol.MoLSimilarity`; ``None``
            builds ``MoLSimilarity.cosine(dim)`` at the first ``add`` (exactly cosine).
        embed_model: optional LlamaIndex embedding used for nodes added without an embedding and
            for queries that carry only ``query_str``. ``VectorStoreIndex`` embeds for you.
        strategy: the index's retrieval strategy (default ``BruteForce()``, exact).
        device / first_stage / cache_dtype: passed to the ``MoLIndex`` the store builds.

    Usage:
        .. code-block:: python

            from llama_index.core import StorageContext, VectorStoreIndex
            from rag_relax_plugins.llama_index import MoLVectorStore

            store = MoLVectorStore()
            ctx = StorageContext.from_defaults(vector_store=store)
            index = VectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=emb)
            nodes = index.as_retriever(similarity_top_k=3).retrieve("question")
            ctx.persist("storage")
            store = MoLVectorStore.from_persist_dir("storage")

    Query modes: ``DEFAULT`` and ``MMR`` (``mmr_threshold`` is the relevance weight, default 0.5,
    read from ``query(..., mmr_threshold=...)`` first, i.e. ``vector_store_kwargs`` on a retriever
    as ``SimpleVectorStore`` does, then from ``VectorStoreQuery.mmr_threshold``; relevance is
    ``tau * score`` on the cosine's scale; candidates are the
    ``similarity_top_k * mmr_prefetch_factor`` best, factor 4 by default).
    ``query(..., strategy=...)`` (or ``vector_store_kwargs={"strategy": ...}`` on a retriever)
    overrides the store's strategy for one query.
    ``node_ids`` / ``doc_ids`` restrict the search when non-empty (``[]`` means no restriction),
    except the ``node_ids`` that ``VectorStoreIndex.as_retriever`` passes for a store that keeps
    text: its index struct lists only ``ImageNode`` / ``IndexNode`` ids (deleted ones too), and as
    a restriction they hid every text node. Ids that were all added to this store as such nodes
    are read as no restriction; to search some of those nodes alone, use a filter (on
    ``_node_type``, or a metadata key).
    """

    stores_text: bool = True
    flat_metadata: bool = False

    # the index and whether the store built its head, in one holder that shallow copies share
    # (pydantic copies the private attributes' dict, not the objects in it): a first add through
    # a copy reached only the copy, and the original's queries then found nothing
    _held: StoreIndex = PrivateAttr(default_factory=StoreIndex)
    _nodes: dict[str, Record] = PrivateAttr(default_factory=dict)
    _embed_model: BaseEmbedding | None = PrivateAttr(default=None)
    _strategy: Strategy | None = PrivateAttr(default=None)
    _index_kwargs: dict[str, Any] = PrivateAttr(default_factory=dict)
    # every id added as an ImageNode / IndexNode, deleted ones included: what a VectorStoreIndex's
    # index struct lists (it keeps them after a delete when the store keeps text); persisted.
    # None: loaded from a manifest written before it was (its deleted ids are unknown)
    _image_or_index_ids: set[str] | None = PrivateAttr(default_factory=set)
    _lock: Any = PrivateAttr(default_factory=threading.RLock)

    def __init__(
        self,
        similarity: MoLSimilarity | None = None,
        *,
        embed_model: BaseEmbedding | None = None,
        strategy: Strategy | None = None,
        device: str | torch.device | None = None,
        first_stage: str = "torch",
        cache_dtype: str = "fp32",
        **kwargs: Any,
    ) -> None:
        if kwargs.get("class_name") == self.class_name():  # model_dump() adds it: accept it back
            kwargs = {k: v for k, v in kwargs.items() if k != "class_name"}
        unknown = sorted(set(kwargs) - set(type(self).model_fields))
        if unknown:  # pydantic would drop them: a misspelt embed_modl= surfaced at the first add
            raise TypeError(f"MoLVectorStore got unexpected keyword arguments {unknown}")
        super().__init__(**kwargs)
        if similarity is not None and not isinstance(similarity, MoLSimilarity):
            raise TypeError(f"similarity must be a MoLSimilarity, got {type(similarity).__name__}")
        if embed_model is not None and not isinstance(embed_model, BaseEmbedding):
            raise TypeError(f"embed_model must be a llama_index BaseEmbedding, got {type(embed_model).__name__}")
        self._embed_model = embed_model
        self._strategy = None if strategy is None else check_strategy(strategy)
        self._index_kwargs = {"device": device, "first_stage": first_stage, "cache_dtype": cache_dtype}
        if similarity is not None:
            self._held.index = MoLIndex(similarity, **self._index_kwargs)
        else:  # the index is built at the first add: its options are checked now, not then
            MoLIndex.check_options(first_stage, cache_dtype, device)

    @classmethod
    def class_name(cls) -> str:
        return "MoLVectorStore"

    def __getstate__(self) -> dict[str, Any]:
        """Refused: LlamaIndex's pickling keeps only the public fields, so the copy came back
        empty (no nodes, no index) without an error."""
        raise TypeError(
            "a MoLVectorStore cannot be pickled or deep-copied (its nodes and MoL index would be lost): "
            "persist(path) it and load MoLVectorStore.from_persist_path(path) where it is needed"
        )

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> MoLVectorStore:
        return self.__getstate__()  # type: ignore[return-value]  # raises

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> MoLVectorStore:  # type: ignore[override]
        """Refused, as pickling: ``to_dict()`` / ``to_json()`` hold only the public fields, so a
        store rebuilt from them (``from_dict`` / ``from_json``) came back empty without an error."""
        raise TypeError(
            "a MoLVectorStore cannot be rebuilt from to_dict() / to_json() (they hold no nodes and no index): "
            "persist(path) it and load MoLVectorStore.from_persist_path(path)"
        )

    @property
    def client(self) -> MoLIndex | None:
        """The underlying :class:`MoLIndex` (``None`` until the first add when no head was given)."""
        return self._held.index

    def __len__(self) -> int:
        """Number of stored documents."""
        return len(self._nodes)

    def __bool__(self) -> bool:
        """Always true: an empty store is still a store (frameworks test ``if vector_store:``)."""
        return True

    def relevance(self, score: float) -> float:
        """Relevance in ``[0, 1]`` of a raw score: ``(1 + tau * score) / 2`` with the head's ``tau``."""
        tau = self._held.index.similarity.config.tau if self._held.index is not None else 1.0
        return min(1.0, max(0.0, (1.0 + tau * score) / 2.0))

    # ------------------------------------------------------------------ writing
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Add nodes (upsert by ``node_id``); the caller's nodes are not modified.

        Each node needs an embedding, or an ``embed_model`` must be set on the store. A
        ``node_id`` repeated within the call is an upsert too: the last node with it is kept, as
        in ``SimpleVectorStore`` (an ``IngestionPipeline`` fed one document twice does that).

        Returns:
            The ``node_id`` of each node, in input order.
        """
        nodes = list(nodes)
        for i, node in enumerate(nodes):
            if not isinstance(node, BaseNode):
                raise TypeError(f"nodes[{i}] must be a llama_index BaseNode, got {type(node).__name__}")
        ids = [node.node_id for node in nodes]
        if not nodes:
            return []
        positions = sorted({id_: i for i, id_ in enumerate(ids)}.values())  # a repeated node_id: the last wins
        kept = [nodes[i] for i in positions]
        vectors = node_vectors(kept, positions, self._embed_model)
        records = [record_of(node) for node in kept]
        with self._lock:
            new = {node.node_id: rec for node, rec in zip(kept, records, strict=True)}
            # by isinstance, as VectorStoreIndex lists them: a subclass with its own class_name()
            # was not recorded, so its id in the retriever's node_ids hid every text node
            special = [node.node_id for node in kept if isinstance(node, (ImageNode, IndexNode))]

            def record() -> None:  # idempotent, as add_in_step needs
                self._nodes.update(new)
                if self._image_or_index_ids is not None:
                    self._image_or_index_ids.update(special)

            self._held.add(list(new), vectors, has_docs=bool(self._nodes), index_kwargs=self._index_kwargs,
                           record=record)
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node whose ``ref_doc_id`` is ``ref_doc_id`` (none: no-op).

        ``None`` deletes nothing (``index.delete_ref_doc(node.ref_doc_id)`` of a node without a
        source document would otherwise delete every such node), as upstream; the string
        ``"None"`` deletes the nodes without a source document, as in ``SimpleVectorStore``
        (and as the ``doc_id`` filter key reads them).
        """
        if ref_doc_id is None:
            return
        with self._lock:
            self._remove([i for i, rec in self._nodes.items() if doc_key(rec[1]) == ref_doc_id])

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete the nodes in ``node_ids`` that pass ``filters`` (``None`` = no restriction, as upstream)."""
        with self._lock:
            self._remove(subset(self._nodes, node_ids, check_filters(filters)))

    def clear(self) -> None:
        """Remove every node."""
        with self._lock:
            self._remove(list(self._nodes))

    def _remove(self, ids: list[str]) -> None:
        delete_in_step(self._held.index, ids, lambda i: self._nodes.pop(i, None))

    # ------------------------------------------------------------------ reading
    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Nodes in ``node_ids`` (in that order; unknown ids skipped) that pass ``filters``."""
        with self._lock:
            return [node_from_record(self._nodes[i]) for i in subset(self._nodes, node_ids, check_filters(filters))]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Top ``similarity_top_k`` nodes for ``query`` (``DEFAULT`` or ``MMR`` mode); ``None`` or
        ``0`` for every node, as in ``SimpleVectorStore``.

        Keyword arguments (a retriever's ``vector_store_kwargs``): ``mmr_threshold``,
        ``mmr_prefetch_factor`` and ``strategy``; any other is a ``TypeError`` (a misspelt
        ``mmr_treshold`` gave the default weight silently; ``SimpleVectorStore`` ignores them).
        """
        if not isinstance(query, VectorStoreQuery):
            raise TypeError(f"query must be a VectorStoreQuery, got {type(query).__name__}")
        unknown = sorted(set(kwargs) - _QUERY_KWARGS)
        if unknown:
            raise TypeError(f"query got unexpected keyword arguments {unknown} (accepted: "
                            f"{', '.join(sorted(_QUERY_KWARGS))})")
        top_k = query.similarity_top_k  # None or 0: every node, as upstream (get_top_k_embeddings)
        every = top_k is None or (isinstance(top_k, numbers.Integral) and not isinstance(top_k, bool) and top_k == 0)
        k = 0 if every else check_k("query.similarity_top_k", top_k)  # a numpy integer too, as upstream
        if query.mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise ValueError(f"query.mode {query.mode!r} is not supported (DEFAULT or MMR)")
        filters = check_filters(query.filters)
        mmr = query.mode == VectorStoreQueryMode.MMR
        lam = mmr_weight(kwargs.get("mmr_threshold"), query.mmr_threshold) if mmr else 0.5
        prefetch = check_count("mmr_prefetch_factor", kwargs.get("mmr_prefetch_factor", 4), 1)
        vector = query_vector(query_embedding(query, self._embed_model), self._held.index, bool(self._nodes))
        with self._lock:
            if self._held.index is None or not self._nodes:
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
            allowed = select(self._nodes, self._image_or_index_ids, query.node_ids, filters, query.doc_ids)
            if allowed is not None and not allowed:
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
            k = k or len(self._nodes)
            fetch = k * prefetch if mmr else k
            strategy = kwargs.get("strategy")
            strategy = self._strategy if strategy is None else strategy
            scores_t, hits = self._held.index.search(vector, fetch, strategy=strategy, filter=allowed)
            ids = hits[0]
            scores = scores_t[0, : len(ids)].tolist()
            if mmr and ids:
                phi = torch.tensor(scores, dtype=torch.float64)
                feats = self._held.index.get_features(ids).cpu()
                picks = mmr_select_mol(phi, feats, k, lam, tau=self._held.index.similarity.config.tau).tolist()
                ids, scores = [ids[p] for p in picks], [scores[p] for p in picks]
            return VectorStoreQueryResult(nodes=[node_from_record(self._nodes[i]) for i in ids], similarities=scores, ids=ids)

    # ------------------------------------------------------------------ async (worker thread)
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    # ------------------------------------------------------------------ persistence
    def persist(self, persist_path: str, fs: fsspec.AbstractFileSystem | None = None) -> None:
        """Write the manifest ``persist_path`` and its index folder (see the module docstring)."""
        check_local_fs(fs)
        with self._lock:
            ids = list(self._nodes)
            write_store(Path(persist_path), self._held.index, ids, [self._nodes[i] for i in ids], auto_head=self._held.auto_head,
                        image_or_index_ids=None if (seen := self._image_or_index_ids) is None else sorted(seen),
                        index_kwargs=self._index_kwargs)

    @classmethod
    def from_persist_path(
        cls,
        persist_path: str,
        fs: fsspec.AbstractFileSystem | None = None,
        *,
        embed_model: BaseEmbedding | None = None,
        strategy: Strategy | None = None,
        device: str | torch.device | None = None,
    ) -> MoLVectorStore:
        """Load a store written by :meth:`persist` (format version checked).

        Neither the embedding model nor the strategy is persisted: pass ``embed_model=`` again for
        queries that carry only ``query_str`` (``VectorStoreIndex`` embeds queries itself). A
        store persisted before its first add builds its index with the ``first_stage`` and
        ``cache_dtype`` it was created with (``device``: this call's).
        """
        check_local_fs(fs)
        store = cls(embed_model=embed_model, strategy=strategy, device=device)
        store._held.index, store._nodes, store._held.auto_head, seen, options = read_store(Path(persist_path), device)
        store._image_or_index_ids = seen
        if options is not None:
            store._index_kwargs.update(options)
        return store

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str = "./storage",
        namespace: str = "default",
        fs: fsspec.AbstractFileSystem | None = None,
        **kwargs: Any,
    ) -> MoLVectorStore:
        """Load ``<persist_dir>/<namespace>__vector_store.json`` (what ``StorageContext.persist`` writes)."""
        return cls.from_persist_path(os.path.join(persist_dir, f"{namespace}__{DEFAULT_PERSIST_FNAME}"), fs, **kwargs)
