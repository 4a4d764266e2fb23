"""Argument checks of the LangChain MoL vector store (names the argument and what it received),
and the evaluation of its ``filter=`` argument."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from langchain_core.documents import Document

from rag_relax_plugins.core.mmr import check_lambda_mult
from rag_relax_plugins.core.validation import check_k, check_optional_count
from rag_relax_plugins.index.filters import id_list, ids_matching

__all__ = [
    "IGNORED_SEARCH_KWARGS",
    "SEARCH_KWARGS",
    "as_matrix",
    "assign_ids",
    "check_batch_size",
    "check_mmr_args",
    "check_search_kwargs",
    "copy_metadata",
    "filter_ids",
]

SEARCH_KWARGS = frozenset({"filter", "strategy"})
# common LangChain search kwargs that do not apply to a plain similarity search (``as_retriever``
# passes its ``search_kwargs`` whatever the search type): accepted and ignored, as
# ``InMemoryVectorStore`` does; anything else is a TypeError
IGNORED_SEARCH_KWARGS = frozenset({"fetch_k", "lambda_mult", "score_threshold"})


def copy_metadata(meta: object, i: int) -> dict[str, Any]:
    """A deep copy of ``metadatas[i]`` (the caller's dict is never stored or mutated)."""
    if not isinstance(meta, dict):
        raise TypeError(f"metadatas[{i}] must be a dict, got {type(meta).__name__}")
    return copy.deepcopy(meta)


def as_matrix(rows: Sequence[Sequence[float]], n: int, name: str) -> torch.Tensor:
    """``(n, D) x float32`` from embedding rows, checking the count and a common width."""
    if len(rows) != n:
        raise ValueError(f"{name} returned {len(rows)} vectors for {n} inputs")
    widths = {len(r) for r in rows}
    if len(widths) != 1 or 0 in widths:
        raise ValueError(f"{name} must give non-empty vectors of one width, got widths {sorted(widths)}")
    return torch.tensor(rows if isinstance(rows, list) else list(rows), dtype=torch.float32)


def check_search_kwargs(kwargs: dict[str, Any]) -> None:
    """Only :data:`SEARCH_KWARGS` (used) and :data:`IGNORED_SEARCH_KWARGS` (ignored) are accepted."""
    unknown = sorted(set(kwargs) - SEARCH_KWARGS - IGNORED_SEARCH_KWARGS)
    if unknown:
        raise TypeError(
            f"unexpected search keyword arguments {unknown}; accepted: {sorted(SEARCH_KWARGS)} "
            f"(and {sorted(IGNORED_SEARCH_KWARGS)}, ignored by similarity search)"
        )


def check_mmr_args(k: int, fetch_k: int, lambda_mult: float, kwargs: dict[str, Any]) -> None:
    """The MMR arguments, checked even when the store (or the filter) leaves nothing to search."""
    check_k("k", k)
    check_k("fetch_k", fetch_k)
    check_lambda_mult(lambda_mult)
    check_search_kwargs(kwargs)


def check_batch_size(batch_size: object) -> int | None:
    """``None`` or an int ``>= 1`` (texts per ``embed_documents`` call)."""
    return check_optional_count("batch_size", batch_size, 1)


def filter_ids(
    docs: Mapping[str, tuple[str, dict[str, Any]]],
    filter: dict[str, Any] | Callable[[Document], bool],
) -> list[str]:
    """Ids of ``docs`` (``id -> (text, metadata)``) that pass ``filter``, in storage order.

    A dict matches metadata values by JSON equality (operator dicts refused:
    :func:`~rag_relax_plugins.index.filters.ids_matching`); a callable receives a ``Document`` with a deep copy of the
    metadata, so it cannot change the store.
    """
    if isinstance(filter, dict):
        return ids_matching(list(docs), [m for _, m in docs.values()], filter)
    if callable(filter):
        return [
            i for i, (text, m) in docs.items()
            if filter(Document(page_content=text, metadata=copy.deepcopy(m), id=i))
        ]
    raise TypeError(f"filter must be a dict of metadata values or a callable, got {type(filter).__name__}")


def assign_ids(ids: Sequence[str | None] | None, n: int) -> list[str]:
    """The ``n`` ids of an ``add_texts`` call: the given ones, a fresh ``uuid4`` for ``None``.

    Raises:
        ValueError: a count other than ``n``, an empty id, or duplicates within the call.
        TypeError: an id that is neither ``str`` nor ``None``.
    """
    ids = None if ids is None else id_list("ids", ids)
    if ids is not None and len(ids) != n:
        raise ValueError(f"ids must have one entry per text ({n}), got {len(ids)}")
    out: list[str] = []
    for i in range(n):
        given = None if ids is None else ids[i]
        if given is not None and not isinstance(given, str):
            raise TypeError(f"ids[{i}] must be a str or None, got {type(given).__name__}")
        if given == "":
            raise ValueError(f"ids[{i}] must not be empty")
        out.append(str(uuid.uuid4()) if given is None else str.__str__(given))  # np.str_, a str enum -> its text
    if len(set(out)) != n:
        raise ValueError("ids must be unique within one call")
    return out

