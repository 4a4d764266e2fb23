"""Argument checks of the LangChain MoL vector store (names the argument and what it received)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "IGNORED_SEARCH_KWARGS",
    "SEARCH_KWARGS",
    "as_matrix",
    "check_batch_size",
    "check_dict_filter",
    "check_search_kwargs",
    "copy_metadata",
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


def check_batch_size(batch_size: object) -> int | None:
    """``None`` or an int ``>= 1`` (texts per ``embed_documents`` call)."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
    return batch_size


def check_dict_filter(filter: dict[str, Any]) -> None:
    """Refuse query-language filters (``{"k": {"$in": [...]}}``, ``{"$and": ...}``) clearly.

    A dict filter here is plain metadata equality; an operator dict would otherwise silently
    match nothing (no stored value equals ``{"$in": ...}``).
    """
    for key, value in filter.items():
        operators = [k for k in value if isinstance(k, str) and k.startswith("$")] if isinstance(value, dict) else []
        if (isinstance(key, str) and key.startswith("$")) or operators:
            raise TypeError(
                f"filter {key!r}: operator filters ({(operators or [key])[0]!r}) are not supported; "
                "a dict filter matches metadata values by equality, for anything else pass a "
                "callable Document -> bool"
            )
