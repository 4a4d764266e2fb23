"""The MaxSim reranker's training objective and its evaluation over cached backbone tokens.

:func:`group_info_nce` is the InfoNCE loss with several positives per query that
:mod:`.maxsim_train` minimises; :func:`evaluate_groups` ranks each HotpotQA question's candidates
with a reranker's projection head over :class:`~rag_relax_plugins.training.maxsim_data.TokenCache`
vectors (no backbone forward), as training validation and the benchmark do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rag_relax_plugins.core.metrics import evaluate
from rag_relax_plugins.rerankers.maxsim import MaxSimReranker, PackedTokens
from rag_relax_plugins.training.maxsim_data import QueryGroup, TokenCache

__all__ = ["batch_scores", "evaluate_groups", "group_info_nce"]


def group_info_nce(
    scores: torch.Tensor, gold: Sequence[Sequence[int]], *, temperature: float
) -> torch.Tensor:
    """InfoNCE with several positives per query, one softmax per (query, positive) pair.

    Args:
        scores: ``(B, C) x float`` scores of every query against every candidate of the batch.
        gold: for each of the ``B`` queries, the columns of its positives (at least one each).
        temperature: softmax temperature > 0.

    Returns:
        Scalar mean over pairs of ``-log softmax`` of the positive, where the row's candidates are
        all columns except the query's other positives.
    """
    if scores.dim() != 2 or len(gold) != scores.shape[0]:
        raise ValueError(f"scores must be (B, C) with B = len(gold) = {len(gold)}, got {tuple(scores.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    rows, targets = [], []
    is_gold = torch.zeros_like(scores, dtype=torch.bool)
    for b, cols in enumerate(gold):
        if not cols:
            raise ValueError(f"gold[{b}] must hold at least one positive column")
        for c in cols:
            rows.append(b)
            targets.append(c)
            is_gold[b, c] = True
    r = torch.tensor(rows, device=scores.device)
    t = torch.tensor(targets, device=scores.device)
    drop = is_gold[r].clone()  # (P, C): the query's positives ...
    drop[torch.arange(len(rows), device=scores.device), t] = False  # ... except this pair's one
    logits = (scores[r] / temperature).masked_fill(drop, float("-inf"))
    return F.cross_entropy(logits, t)


def batch_scores(
    reranker: MaxSimReranker, q: tuple[torch.Tensor, torch.Tensor], docs: PackedTokens
) -> torch.Tensor:
    """``(B, C)`` scores from backbone query tokens ``(B, Lq, D)`` and packed document tokens."""
    q_vecs = reranker.head(q[0]) * q[1][..., None]  # (B, Lq, d) zero at padding
    return reranker.score_tokens(q_vecs, q[1], reranker.head(docs.tokens), docs.offsets)


def evaluate_groups(
    reranker: MaxSimReranker,
    groups: Sequence[QueryGroup],
    queries: TokenCache,
    texts: TokenCache,
    *,
    metrics: Sequence[str] = ("recall@2", "recall@5", "mrr"),
) -> dict[str, dict[str, float]]:
    """Rank each group's candidates with the reranker's head over cached backbone tokens.

    Returns:
        ``{"all": {metric: mean}, <type>: {...}, ...}`` with ``"n"`` (judged questions) in each
        entry. A group with no gold candidate is left out of every mean and count, and a type with
        no judged question has no entry (as :func:`~.grerank_eval.evaluate_rankings`); ``"all"``
        is always there (its figures 0, ``n`` 0, when nothing is judged).
    """
    if not groups:
        raise ValueError("groups must not be empty")
    dev = reranker.device
    rankings: list[list[str | int]] = []
    with torch.inference_mode():
        for g in groups:
            q = queries.padded([g.query], dev)
            s = batch_scores(reranker, q, texts.gather(g.candidates, dev))[0]
            rankings.append(torch.sort(s, descending=True, stable=True).indices.tolist())
    qrels: list[dict[str | int, float]] = [{i: 1.0 for i in g.gold} for g in groups]
    out: dict[str, dict[str, float]] = {}
    for name in ["all", *sorted({g.type for g in groups})]:
        keep = [i for i, g in enumerate(groups) if name in ("all", g.type) and g.gold]  # judged only
        if not keep and name != "all":  # zeros for unjudged questions read as a failed ranking
            continue
        rows = keep or list(range(len(groups)))  # nothing judged: evaluate's zeros, n 0
        res = evaluate([rankings[i] for i in rows], [qrels[i] for i in rows], list(metrics), skip_empty=True)
        out[name] = {**res, "n": float(len(keep))}
    return out
