"""What a LangChain MoL store and its shallow copies share: the index, in one holder, and whether
its head is the cosine the store built itself (at the first add, and again at a new embedding
width once the store is empty)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rag_relax_plugins.core.mol import MoLSimilarity
from rag_relax_plugins.index import MoLIndex
from rag_relax_plugins.index.store_sync import add_in_step

__all__ = ["Contents"]


@dataclass
class Contents:
    """The index of a store and of its shallow copies; ``auto_head``: the head is the cosine the
    store built itself (its width may change when the store is empty)."""

    index: MoLIndex | None
    auto_head: bool = False

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
        run in step with the index (:func:`~rag_relax_plugins.index.store_sync.add_in_step`). A
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
            raise ValueError(f"the embedding gives {dim}-d vectors but the similarity expects item_dim={c.item_dim}")

        def publish_and_record() -> None:  # idempotent, as add_in_step needs
            if built:
                self.index, self.auto_head = index, True
            record()

        add_in_step(index, ids, vectors, publish_and_record)
