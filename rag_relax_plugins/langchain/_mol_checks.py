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
from rag_relax_plugins.core.validation import (
    NONFINITE_VECTOR,
    check_k,
    check_optional_count,
    first_nonfinite_row,
)
from rag_relax_plugins.index._guards import float_rows
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
    "fresh_metadata",
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
    try:
        return copy.deepcopy(meta)
    except Exception as exc:  # a lock, a connection, an open file: what pickling refuses
        raise TypeError(f"metadatas[{i}] cannot be copied (the store keeps a copy): {exc}") from exc


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def fresh_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """A copy of stored metadata that its receiver cannot use to change the store, equal to a deep
    copy: keys and values of the exact types ``str``, ``int``, ``float``, ``bool`` and ``None``
    are immutable and kept, every other key or value is deep-copied (key first, one memo for the
    dict, as ``copy.deepcopy`` does: objects shared within the dict stay shared in the copy).
    Cheaper than ``copy.deepcopy`` of the dict, which a callable filter would pay per stored
    document per query (benchmarks/bench_lc_filters.py)."""
    memo: dict[int, Any] = {}
    return {
        (k if type(k) in _IMMUTABLE else copy.deepcopy(k, memo)): (v if type(v) in _IMMUTABLE else copy.deepcopy(v, memo))
        for k, v in meta.items()
    }


def _row(row: object) -> object:
    """An embedding row as a Python list: numpy arrays and tensors converted once (a list of
    numpy rows given to ``torch.tensor`` is slow, and it warns)."""
    tolist = getattr(row, "tolist", None)
    return tolist() if callable(tolist) and not isinstance(row, list) else row


def as_matrix(rows: Sequence[Sequence[float]], n: int, name: str) -> torch.Tensor:
    """``(n, D) x float32`` from ``n`` embedding rows (lists of floats, or numpy / torch
    vectors), checking the count, a common width and that each row is a flat vector."""
    if len(rows) != n:
        raise ValueError(f"{name} returned {len(rows)} vectors for {n} inputs")
    plain: list[Any] = [_row(r) for r in rows]
    bad = next((i for i, r in enumerate(plain) if isinstance(r, (str, bytes)) or not isinstance(r, Sequence)), None)
    if bad is not None:
        raise TypeError(f"{name}: vector {bad} must be a sequence of floats, got {type(plain[bad]).__name__}")
    widths = {len(r) for r in plain}
    if len(widths) != 1 or 0 in widths:
        raise ValueError(f"{name} must give non-empty vectors of one width, got widths {sorted(widths)}")
    try:
        matrix = float_rows(plain)
    except (TypeError, ValueError, RuntimeError) as exc:  # a row of strings, of ragged lists
        raise TypeError(f"{name} must give flat vectors of floats: {exc}") from exc
    if matrix.dim() != 2:
        raise ValueError(f"{name} must give flat vectors of floats, got vectors of shape {tuple(matrix.shape[1:])}")
    row = first_nonfinite_row(matrix)
    if row is not None:  # named here: the index blamed "query_features" / "item_features"
        raise ValueError(f"{name}: vector {row} {NONFINITE_VECTOR}")
    return matrix


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
    :func:`~rag_relax_plugins.index.filters.ids_matching`); a callable receives a ``Document`` with a copy of the
    metadata (:func:`fresh_metadata`), so it cannot change the store.
    """
    if isinstance(filter, dict):
        return ids_matching(list(docs), [m for _, m in docs.values()], filter)
    if callable(filter):
        return [
            i for i, (text, m) in docs.items()
            if filter(Document(page_content=text, metadata=fresh_metadata(m), id=i))
        ]
    raise TypeError(f"filter must be a dict of metadata values or a callable, got {type(filter).__name__}")


def assign_ids(ids: Sequence[str | None] | None, n: int) -> list[str]:
    """The ``n`` ids of an ``add_texts`` call: the given ones, a fresh ``uuid4`` for ``None`` or
    ``""`` (as ``InMemoryVectorStore``, and as ``from_documents`` gives documents whose ids are
    all empty). An id may repeat (the store keeps the last of its texts).

    Raises:
        ValueError: a count other than ``n``.
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
        out.append(str.__str__(given) if given else str(uuid.uuid4()))  # np.str_, a str enum -> its text
    return out

