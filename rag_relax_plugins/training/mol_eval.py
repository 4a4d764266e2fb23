"""Deterministic evaluation of two-tower / MoL retrieval models over the whole catalogue.

- :func:`score_all`: brute-force scores of queries against every item, batched, under
  ``torch.inference_mode()`` (item vectors computed once).
- :func:`next_item_metrics`: HR@k, NDCG@k and MRR of one held-out target per query, from the
  target's rank among the non-excluded items (fast path; ties broken by the lower item id, as
  :func:`~rag_relax_plugins.core.metrics.rankings_from_scores`). The tests check it against the
  ranked-list metrics of :mod:`rag_relax_plugins.core.metrics`.
- :func:`target_ranks`, :func:`query_rank_metric`, :func:`rank_metrics`: the same in steps
  (ranks, per-query values, means), for paired comparisons (:func:`paired_hit_difference`).
- :func:`ranked_metrics`: metrics over graded qrels through :func:`core.metrics.evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from rag_relax_plugins.core.metrics import evaluate, paired_difference, rankings_from_scores
from rag_relax_plugins.core.modes import eval_mode
from rag_relax_plugins.core.validation import check_finite, check_floating, check_k, check_ndim
from rag_relax_plugins.training.mol_towers import TwoTowerModel

__all__ = ["mean_std", "next_item_metrics", "paired_hit_difference", "query_rank_metric", "rank_metrics", "ranked_metrics",
           "score_all", "target_ranks"]


@torch.inference_mode()
def score_all(model: TwoTowerModel, queries: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Scores of every query against every item ``0..num_items-1``.

    Args:
        model: a two-tower model (switched to eval mode; restored afterwards).
        queries: ``(B, ...)`` query inputs for the query tower.
        batch_size: queries per forward pass.

    Returns:
        ``(B, num_items) x float32`` on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with eval_mode(model):
        dev = next((p.device for p in model.parameters()), torch.device("cpu"))
        items = model.item_tower(torch.arange(model.num_items, device=dev))  # (N, Dx)
        out = []
        for s in range(0, queries.shape[0], batch_size):
            q = model.query_tower(queries[s : s + batch_size].to(dev))  # (b, Dq)
            scores, _ = model.score(q, items)  # (b, N)
            out.append(scores.float().cpu())
        return torch.cat(out) if out else torch.zeros(0, model.num_items)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each query's single relevant item.

    The rank counts items that score higher, plus items that tie with a lower id, among items
    not excluded (the target itself is never excluded).

    Args:
        scores: ``(B, N) x float`` finite scores.
        targets: ``(B,) x long`` the relevant item of each query.
        exclude: ``(B, N) x bool``, True for items removed from the ranking (seen items, padding).

    Returns:
        ``(B,) x long`` ranks in ``[1, N]``.
    """
    check_floating("scores", scores)
    check_ndim("scores", scores, 2)
    check_finite("scores", scores)
    b, n = scores.shape
    if b == 0:
        raise ValueError("scores must hold at least one query")
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.long or targets.shape != (b,):
        raise ValueError(f"targets must be a long tensor of shape ({b},)")
    if int(targets.min()) < 0 or int(targets.max()) >= n:
        raise ValueError(f"targets must lie in [0, {n})")
    keep = torch.ones_like(scores, dtype=torch.bool) if exclude is None else ~exclude
    if keep.shape != scores.shape:
        raise ValueError(f"exclude must have shape {tuple(scores.shape)}, got {tuple(keep.shape)}")
    rows = torch.arange(b, device=scores.device)
    keep = keep.clone()
    keep[rows, targets] = True
    t_score = scores[rows, targets][:, None]  # (B, 1)
    col = torch.arange(n, device=scores.device)[None, :]
    ahead = (scores > t_score) | ((scores == t_score) & (col < targets[:, None]))
    return (ahead & keep).sum(dim=1) + 1  # (B,) 1-based


def next_item_metrics(
    scores: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None = None,
    *,
    ks: Sequence[int] = (10, 50),
) -> dict[str, float]:
    """Hit rate, NDCG and MRR of a single relevant item per query (from :func:`target_ranks`).

    Args:
        scores: ``(B, N) x float`` finite scores.
        targets: ``(B,) x long`` the relevant item of each query.
        exclude: ``(B, N) x bool``, True for items removed from the ranking (seen items, padding).
        ks: cut-offs for ``hr@k`` and ``ndcg@k``.

    Returns:
        ``{"hr@k": ..., "ndcg@k": ..., "mrr": ...}`` averaged over the ``B`` queries.
    """
    return rank_metrics(target_ranks(scores, targets, exclude), ks=ks)


def query_rank_metric(ranks: torch.Tensor, metric: str) -> torch.Tensor:
    """Each query's ``hr@k``, ``ndcg@k`` or ``mrr`` from its 1-based target rank.

    Args:
        ranks: ``(..., Q)`` 1-based target ranks (:func:`target_ranks`), e.g. ``(S, Q)`` for
            ``S`` seeds.
        metric: ``"hr@k"``, ``"ndcg@k"`` or ``"mrr"``.

    Returns:
        ``ranks.shape x float64`` values (hit 0/1, ``1 / log2(rank + 1)`` within the cut-off,
        ``1 / rank``).
    """
    if ranks.numel() == 0 or int(ranks.min()) < 1:
        raise ValueError("ranks must hold at least one 1-based rank")
    rank = ranks.double()
    if metric == "mrr":
        return 1.0 / rank
    name, _, cut = metric.partition("@")
    if name not in ("hr", "ndcg") or not cut.isdigit():
        raise ValueError(f"metric must be 'hr@k', 'ndcg@k' or 'mrr', got {metric!r}")
    k = int(cut)
    check_k("k", k)
    hit = rank <= k
    return hit.double() if name == "hr" else torch.where(hit, 1.0 / torch.log2(rank + 1.0), 0.0)


def rank_metrics(ranks: torch.Tensor, *, ks: Sequence[int] = (10, 50)) -> dict[str, float]:
    """``hr@k``, ``ndcg@k`` and ``mrr`` averaged over ``(B,)`` 1-based target ranks (:func:`target_ranks`)."""
    check_ndim("ranks", ranks, 1)
    out: dict[str, float] = {}
    for k in ks:
        check_k("ks", k)
        for name in ("hr", "ndcg"):
            out[f"{name}@{k}"] = float(query_rank_metric(ranks, f"{name}@{k}").mean())
    out["mrr"] = float(query_rank_metric(ranks, "mrr").mean())
    return out


def ranked_metrics(
    scores: torch.Tensor,
    doc_ids: Sequence[Any],
    qrels: Sequence[dict[Any, int]],
    metrics: Sequence[str] = ("recall@10", "ndcg@10"),
    *,
    depth: int = 100,
    skip_empty: bool = True,
) -> dict[str, float]:
    """IR metrics of score rows against graded qrels (via :mod:`rag_relax_plugins.core.metrics`).

    Args:
        scores: ``(B, N) x float``.
        doc_ids: the ``N`` document ids.
        qrels: ``B`` mappings ``{doc_id: grade}``.
        metrics: metric names understood by :func:`core.metrics.evaluate`.
        depth: ranking depth kept per query (must cover the metrics' cut-offs); a metric without
            a cut-off (``"mrr"``) ranks every document instead, so that it agrees with
            :func:`core.metrics.evaluate` on the full ranking.
        skip_empty: leave out queries without a relevant document.
    """
    cut = max((int(m.split("@")[1]) for m in metrics if "@" in m), default=depth)
    if cut > depth:
        raise ValueError(f"depth ({depth}) must be >= the largest cut-off ({cut})")
    full = any("@" not in m for m in metrics)
    rankings = rankings_from_scores(scores, list(doc_ids), k=scores.shape[1] if full else min(depth, scores.shape[1]))
    return evaluate(rankings, list(qrels), list(metrics), skip_empty=skip_empty)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        raise ValueError("values must not be empty")
    m = sum(values) / len(values)
    if len(values) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def paired_hit_difference(ranks_a: Sequence[Sequence[int]], ranks_b: Sequence[Sequence[int]], k: int = 10) -> dict[str, float]:
    """Paired comparison of two models' hit rates on the same queries, over several seeds.

    Each query's hit rate is averaged over the seeds of each model, then the per-query
    differences ``a - b`` give the mean difference (the HR@k difference of the seed means) and
    its standard error over queries (sample standard deviation / sqrt(#queries)), i.e. the
    uncertainty that comes from the finite set of evaluation queries.

    Args:
        ranks_a: one sequence of ``Q`` 1-based target ranks per seed of model A.
        ranks_b: the same for model B (same queries, same order; any number of seeds).
        k: the hit cut-off.

    Returns:
        ``{"hr_a", "hr_b", "diff", "diff_se", "relative", "relative_se", "queries"}``; the
        relative figures divide by ``hr_b``.
    """
    check_k("k", k)
    if not ranks_a or not ranks_b:
        raise ValueError("ranks_a and ranks_b need at least one seed each")
    hits = []
    for name, seeds in (("ranks_a", ranks_a), ("ranks_b", ranks_b)):
        if len({len(r) for r in seeds}) != 1:
            raise ValueError(f"every seed of {name} must rank the same queries, got lengths {[len(r) for r in seeds]}")
        r = torch.tensor([list(x) for x in seeds], dtype=torch.long)  # (S, Q)
        hits.append(query_rank_metric(r, f"hr@{k}").mean(0).tolist())  # (Q,) per-query hit rate over the seeds
    hit_a, hit_b = hits
    pd = paired_difference(hit_a, hit_b)
    hr_a, hr_b = sum(hit_a) / len(hit_a), sum(hit_b) / len(hit_b)
    rel = hr_a / hr_b - 1 if hr_b > 0 else float("nan")
    return {"hr_a": hr_a, "hr_b": hr_b, "diff": pd["mean"], "diff_se": pd["se"], "relative": rel,
            "relative_se": pd["se"] / hr_b if hr_b > 0 else float("nan"), "queries": pd["n"]}
