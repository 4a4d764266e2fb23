"""Keep a vector store's own records in step with its :class:`~rag_relax_plugins.index.MoLIndex`.

The LangChain and LlamaIndex stores keep each document's text and metadata beside the index. An
index add or delete is all or nothing, but an interrupt (``KeyboardInterrupt``) can also arrive
just after it committed and before the store recorded it: the store then lagged the index (an
id the index returns and the store does not know: ``KeyError`` at the next search). These two
functions run the index edit and the store's update together, and after an interrupt or a
failure make the store agree with what the index holds, whichever side of the commit it hit.
:class:`StoreIndex` holds a store's index, builds it at the first add and publishes it only
once that add succeeded.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rag_relax_plugins.core.mol import MoLSimilarity
from rag_relax_plugins.index.mol_index import MoLIndex

__all__ = ["StoreIndex", "add_in_step", "delete_in_step"]


def _holds(index: MoLIndex, ids: Sequence[str], vectors: torch.Tensor) -> bool:
    """Whether every id is in ``index`` with exactly these raw features (the add committed)."""
    if not all(i in index for i in ids):
        return False
    stored = index.get_features(list(ids)).to("cpu")
    return torch.equal(stored, vectors.detach().to("cpu", torch.float32))


def add_in_step(index: MoLIndex, ids: Sequence[str], vectors: torch.Tensor, record: Callable[[], None]) -> None:
    """``index.add(ids, vectors)``, then ``record()`` (the store's own update, idempotent).

    On any exception, ``record()`` runs (again) when the index holds the new vectors, so the store
    has what the index has; the exception is then re-raised.
    """
    try:
        index.add(ids, vectors)
        record()
    except BaseException:
        if _holds(index, ids, vectors):
            record()
        raise


def delete_in_step(index: MoLIndex | None, ids: Sequence[str], forget: Callable[[str], object]) -> None:
    """``index.delete(ids, missing_ok=True)``, then ``forget(i)`` for each id (idempotent).

    On any exception, every id the index no longer holds is forgotten, then the exception is
    re-raised (an index delete that failed or was undone keeps its ids: the store keeps them too).
    """
    try:
        if ids and index is not None:
            index.delete(ids, missing_ok=True)
        for i in ids:
            forget(i)
    except BaseException:
        for i in ids:
            if index is None or i not in index:
                forget(i)
        raise


# the holder of each index a store uses (LangChain or LlamaIndex), weakly: an index whose stores
# were collected, or which its store replaced, may serve another store
_OWNERS: weakref.WeakKeyDictionary[MoLIndex, weakref.ref[StoreIndex]] = weakref.WeakKeyDictionary()
_CLAIM = threading.Lock()  # the check and the registration of a given index, as one step


def index_in_use(index: MoLIndex) -> bool:
    """Whether a living store (its :class:`StoreIndex`, shared with its shallow copies) holds ``index``."""
    owner = _OWNERS.get(index)
    holder = owner() if owner is not None else None
    return holder is not None and holder.index is index


def hold(index: MoLIndex | None) -> StoreIndex:
    """A new :class:`StoreIndex` of a store given ``index`` (``None``: built later).

    Raises:
        ValueError: a living store holds ``index`` (both stores' documents landed in it and each
            one's searches failed with ``KeyError``); checked and registered under one lock, so
            two threads building stores on one index cannot both pass.
    """
    with _CLAIM:
        if index is not None and index_in_use(index):
            raise ValueError("index is already used by another MoLVectorStore: give each store its own "
                             "(index.empty_like(index.similarity))")
        return StoreIndex(index)


@dataclass
class StoreIndex:
    """A vector store's index (``None`` until the first add when no head was given), in one
    holder that the store's shallow copies share (a first add through a copy reaches the
    original too); ``auto_head``: the head is the cosine the store built itself (its width may
    change when the store is empty)."""

    index: MoLIndex | None = None
    auto_head: bool = False

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "index" and value is not None:  # every way a store comes to hold an index
            _OWNERS[value] = weakref.ref(self)

    def add(
        self,
        ids: list[str],
        vectors: torch.Tensor,
        *,
        has_docs: bool,
        index_kwargs: dict[str, Any],
        record: Callable[[], None],
    ) -> None:
        """Add ``dim``-d document vectors to the index, building it at the first add (or anew
        for an empty self-built head of another width); ``record()`` is the store's own update,
        run in step with the index (:func:`add_in_step`). A
        new index replaces the current one only when the add succeeded: after a failed first
        add, :attr:`index` is still ``None``.

        Args:
            ids / vectors: unique ids and their ``(N, dim)`` vectors.
            has_docs: whether the store holds documents.
            index_kwargs: ``device`` / ``first_stage`` / ``cache_dtype`` of an index built here.

        Raises:
            ValueError: ``dim`` is not the head's ``item_dim`` (a given head, or a self-built one
                while the store holds documents); or what ``MoLIndex.add`` raises.
        """
        dim = int(vectors.shape[1])
        index, built = self.index, False
        if index is None:
            index, built = MoLIndex(MoLSimilarity.cosine(dim), **index_kwargs), True
        elif self.auto_head and not has_docs and len(index) == 0 and dim != index.similarity.config.item_dim:
            index, built = index.empty_like(MoLSimilarity.cosine(dim)), True  # empty self-built head: follow the embedding
        c = index.similarity.config
        if dim != c.item_dim:
            raise ValueError(f"the embeddings are {dim}-d but the similarity expects item_dim={c.item_dim}")

        def publish_and_record() -> None:  # idempotent, as add_in_step needs
            if built:
                self.index, self.auto_head = index, True
            record()

        add_in_step(index, ids, vectors, publish_and_record)
