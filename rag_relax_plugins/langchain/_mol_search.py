"""The search of the LangChain MoL store: one query vector scored by the index over the documents
that pass ``filter=`` (an id subset handed to the index before scoring), and the maximal marginal
relevance choice among the best hits."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from langchain_core.documents import Document

from rag_relax_plugins.core.mmr import mmr_select_mol
from rag_relax_plugins.index import MoLIndex, Strategy
from rag_relax_plugins.langchain._mol_checks import as_matrix, filter_ids

__all__ = ["DocFilter", "Passed", "mmr_picks", "resolve_callable", "search"]

DocFilter = dict[str, Any] | Callable[[Document], bool]


def search(
    index: MoLIndex | None,
    docs: Mapping[str, tuple[str, dict[str, Any]]],
    embedding: Sequence[float],
    k: int,
    *,
    filter: DocFilter | Passed | None,
    strategy: Strategy | None,
) -> tuple[list[float], list[str]]:
    """Raw ``(scores, ids)`` of one query vector, best first; ``[]`` when nothing matches.

    Args:
        index: the store's index (``None`` before its first add).
        docs: the store's documents, ``id -> (text, metadata)``.
        embedding: the query vector (``query_dim`` values).
        k: how many hits at most.
        filter: the ``filter=`` of the search (:func:`~._mol_checks.filter_ids`), or ``None``;
            :class:`Passed` is a callable's result (:func:`resolve_callable`): the entries it
            passed that ``docs`` still holds unchanged.
        strategy: the index's retrieval strategy for this search (``None``: ``BruteForce()``, exact).
    """
    if index is None or not docs:
        return [], []
    if isinstance(filter, Passed):  # deleted or replaced since the predicate saw it: out
        allowed: list[str] | None = [i for i, entry in docs.items() if filter.entries.get(i) is entry]
    else:
        allowed = None if filter is None else filter_ids(docs, filter)
    if allowed is not None and not allowed:
        return [], []
    query = as_matrix([embedding], 1, "embedding")
    if query.shape[1] != index.similarity.config.query_dim:
        raise ValueError(
            f"the query embedding has {query.shape[1]} dimensions but the similarity expects "
            f"query_dim={index.similarity.config.query_dim}"
        )
    scores, ids = index.search(query, k, strategy=strategy, filter=allowed)
    hits = ids[0]
    return scores[0, : len(hits)].tolist(), hits


class Passed:
    """The entries a callable filter passed (:func:`resolve_callable`): ``id -> (text, metadata)``
    as the predicate saw them. A search keeps an id only while the store holds that same entry,
    so a document deleted or replaced since is left out."""

    __slots__ = ("entries",)

    def __init__(self, entries: dict[str, tuple[str, dict[str, Any]]]) -> None:
        self.entries = entries


def resolve_callable(
    docs: Mapping[str, tuple[str, dict[str, Any]]], filter: DocFilter | None, lock: Any
) -> DocFilter | Passed | None:
    """A callable ``filter`` run over a copy of ``docs`` taken under the store's ``lock`` but
    outside it: the entries it passes (anything else as given). A predicate is user code: run
    under the lock, one taking an application lock held by a thread waiting on the store
    deadlocked."""
    if filter is None or isinstance(filter, dict) or not callable(filter):
        return filter
    with lock:
        snapshot = dict(docs)
    return Passed({i: snapshot[i] for i in filter_ids(snapshot, filter)})


def mmr_picks(index: MoLIndex, scores: list[float], ids: list[str], k: int, lambda_mult: float) -> list[int]:
    """Positions in ``ids`` of the ``k`` documents that MMR picks among the hits ``(scores, ids)``.

    Relevance is ``tau * phi`` (``scores`` are the raw MoL scores ``phi``); the redundancy between
    two candidates is the cosine of their document embeddings. See
    :func:`rag_relax_plugins.core.mmr.mmr_select_mol`.
    """
    feats = index.get_features(ids)
    phi = torch.tensor(scores, dtype=torch.float64, device=feats.device)
    picks = mmr_select_mol(phi, feats, k, lambda_mult, tau=index.similarity.config.tau)
    return picks.tolist()
