"""What the LangChain MoL store is given, read: the texts, metadata and ids of an ``add_texts``
call (checked, copied and completed, in that order) and the texts' embeddings, in batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from langchain_core.embeddings import Embeddings

from rag_relax_plugins.index.filters import id_list
from rag_relax_plugins.langchain._mol_checks import (
    as_matrix,
    assign_ids,
    check_batch_size,
    copy_metadata,
)

__all__ = ["PASSED_THROUGH", "embed_texts", "read_add_args"]

# what LangChain's own components pass to any store's add_documents, unused here (the rest is refused)
PASSED_THROUGH = frozenset({"current_time"})


def read_add_args(
    texts: Iterable[str],
    metadatas: list[dict[str, Any]] | None,
    ids: list[str | None] | None,
    batch_size: int | None,
    kwargs: dict[str, Any],
) -> tuple[list[str], list[dict[str, Any]], list[str], int | None]:
    """The ``N`` texts, metadata copies and ids and the batch size of an ``add_texts`` call.

    Args:
        texts / metadatas / ids / batch_size: as given to ``add_texts`` (see its docstring);
            ``[]`` for ``metadatas`` or ``ids`` means none given.
        kwargs: its other keyword arguments: only :data:`PASSED_THROUGH` is accepted.

    Returns:
        ``(texts, metadatas, ids, batch_size)``: the texts as a list, a deep copy of each
        metadata dict (``{}`` when none was given), the given ids with a fresh ``uuid4`` for
        each ``None`` or ``""`` (:func:`~._mol_checks.assign_ids`; an id may repeat), and
        ``None`` or an int ``>= 1``.
    """
    unknown = sorted(set(kwargs) - PASSED_THROUGH)
    if unknown:
        raise TypeError(f"add_texts got unexpected keyword arguments {unknown}")
    batch = check_batch_size(batch_size)
    if isinstance(texts, str):  # list("hello") would add five one-letter documents
        raise TypeError("texts must be a list of str, got a str: pass [text] for one text")
    if isinstance(metadatas, Mapping):
        raise TypeError("metadatas must be a list of dicts, one per text, got a dict: pass [metadata] for one text")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
    n = len(texts)
    if metadatas is not None and len(metadatas) == 0:  # [] means none given, as in InMemoryVectorStore
        metadatas = None
    if ids is not None and len(id_list("ids", ids)) == 0:
        ids = None
    if metadatas is not None and len(metadatas) != n:
        raise ValueError(f"metadatas must have one dict per text ({n}), got {len(metadatas)}")
    metas = [{} if metadatas is None else copy_metadata(metadatas[i], i) for i in range(n)]
    return texts, metas, assign_ids(ids, n), batch


def embed_texts(embedding: Embeddings, texts: list[str], batch: int | None) -> torch.Tensor:
    """``(N, D) x float32`` vectors of the ``N >= 1`` ``texts``: one ``embed_documents`` call per
    ``batch`` texts (one call when ``None``), every text embedded before anything is added."""
    n = len(texts)
    step = n if batch is None else batch
    return torch.cat([
        as_matrix(embedding.embed_documents(texts[s : s + step]), len(texts[s : s + step]), "embed_documents")
        for s in range(0, n, step)
    ])
