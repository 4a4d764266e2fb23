"""What a LangChain MoL store and its shallow copies share: the index, in one holder, and whether
its head is the cosine the store built itself (at the first add, and again at a new embedding
width once the store is empty)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rag_relax_plugins.core.mol import MoLSimilarity
from rag_relax_plugins.index import MoLIndex

__all__ = ["Contents"]


@dataclass
class Contents:
    """The index of a store and of its shallow copies; ``auto_head``: the head is the cosine the
    store built itself (its width may change when the store is empty)."""

    index: MoLIndex | None
    auto_head: bool = False

    def ensure_index(self, dim: int, *, has_docs: bool, index_kwargs: dict[str, Any]) -> MoLIndex:
        """The index that ``dim``-d document vectors are added to.

        Args:
            dim: the width of the vectors about to be added.
            has_docs: whether the store holds documents.
            index_kwargs: ``device`` / ``first_stage`` / ``cache_dtype`` of an index built here.

        Raises:
            ValueError: ``dim`` is not the head's ``item_dim`` (a given head, or a self-built one
                while the store holds documents).
        """
        if self.index is None:
            self.index, self.auto_head = MoLIndex(MoLSimilarity.cosine(dim), **index_kwargs), True
        elif self.auto_head and not has_docs and len(self.index) == 0 and dim != self.index.similarity.config.item_dim:
            self.index = self.index.empty_like(MoLSimilarity.cosine(dim))  # empty self-built head: follow the embedding
        c = self.index.similarity.config
        if dim != c.item_dim:
            raise ValueError(f"the embedding gives {dim}-d vectors but the similarity expects item_dim={c.item_dim}")
        return self.index
