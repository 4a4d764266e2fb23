"""Evaluate a reranker on HotpotQA distractor paragraphs: Recall@k and MRR, overall and per type.

The relevance judgements are the supporting-fact paragraphs present in each question's context
(:attr:`~rag_relax_plugins.datasets.hotpotqa.HotpotExample.gold_indices`); questions with none
present are skipped. Scores come from :meth:`BaseReranker.score` (deterministic, batched).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rag_relax_plugins.core.metrics import check_metrics, evaluate
from rag_relax_plugins.core.scalars import check_count
from rag_relax_plugins.datasets.hotpotqa import HotpotExample
from rag_relax_plugins.rerankers.base import BaseReranker

__all__ = [
    "HOTPOT_METRICS",
    "evaluate_rankings",
    "evaluate_reranker",
    "hotpot_split",
    "rank_examples",
]

HOTPOT_METRICS = ("recall@2", "recall@5", "mrr")


def hotpot_split(
    examples: Sequence[HotpotExample], train_size: int = 400
) -> tuple[list[HotpotExample], list[HotpotExample]]:
    """The fixed split of the shared file: first ``train_size`` rows train, the rest test."""
    train_size = check_count("train_size", train_size, 1, len(examples) - 1)
    return list(examples[:train_size]), list(examples[train_size:])


def rank_examples(reranker: BaseReranker, examples: Sequence[HotpotExample]) -> list[list[int]]:
    """Paragraph indices of each example, best first, by ``reranker.score``."""
    out: list[list[int]] = []
    for ex in examples:
        if not ex.paragraphs:
            out.append([])
            continue
        scores = reranker.score(ex.question, ex.paragraph_texts())
        out.append(torch.sort(scores, descending=True, stable=True).indices.tolist())
    return out


def evaluate_rankings(
    examples: Sequence[HotpotExample],
    rankings: Sequence[Sequence[int]],
    metrics: Sequence[str] = HOTPOT_METRICS,
) -> dict[str, Any]:
    """Mean metrics over the judged examples: ``{"all": {...}, "bridge": {...}, "comparison": {...}}``.

    Each group also carries ``"n"``, the number of judged questions in it; a question type with
    none judged has no entry, and ``"all"`` is always there (its figures 0, ``n`` 0, when no
    question is judged).

    Raises:
        ValueError: no example (a ``--test-rows 0`` returned ``{}``, and a caller's ``["all"]``
            failed with a bare ``KeyError``); ``rankings`` and ``examples`` differ in length; an
            unknown or repeated metric.
        TypeError: ``metrics`` is a single string (``"mrr"``: pass ``["mrr"]``).
    """
    metrics = check_metrics(metrics)
    if len(examples) == 0:
        raise ValueError("examples must hold at least one question")
    if len(rankings) != len(examples):
        raise ValueError(f"rankings has {len(rankings)} rows, examples {len(examples)}")
    groups: dict[str, list[int]] = {"all": list(range(len(examples)))}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.type, []).append(i)
    out: dict[str, Any] = {}
    for name, idx in groups.items():
        qrels: list[dict[str | int, float]] = [
            {g: 1.0 for g in examples[i].gold_indices} for i in idx
        ]
        judged = sum(1 for q in qrels if q)
        if judged == 0 and name != "all":  # zeros for unjudged questions read as a failed ranking
            continue
        res = evaluate([list(rankings[i]) for i in idx], qrels, metrics, skip_empty=True)
        out[name] = {**{m: float(v) for m, v in res.items()}, "n": judged}
    return out


def evaluate_reranker(
    reranker: BaseReranker,
    examples: Sequence[HotpotExample],
    metrics: Sequence[str] = HOTPOT_METRICS,
) -> dict[str, Any]:
    """:func:`evaluate_rankings` of :func:`rank_examples` (``metrics`` and ``examples`` checked
    before any scoring).

    Raises:
        TypeError: ``metrics`` is a single string (``"mrr"``: pass ``["mrr"]``).
        ValueError: an unknown or repeated metric name; no example.
    """
    metrics = check_metrics(metrics)
    if len(examples) == 0:
        raise ValueError("examples must hold at least one question")
    return evaluate_rankings(examples, rank_examples(reranker, examples), metrics)
