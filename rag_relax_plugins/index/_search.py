"""The retrieval algorithms behind :class:`~rag_relax_plugins.index.MoLIndex` (pure torch).

Implements the strategies documented in :mod:`rag_relax_plugins.index.strategies` (RAILS,
Ding & Zhai, WWW 2025, Algorithms 1-3 and the exact two-pass retrieval). Every function takes the
cached item state and returns ``(scores (B, K), rows (B, K))`` best first, where rows are
positions in the item state; missing results have ``score = -inf`` and ``row = -1``. Equal scores
are ordered by ascending row (:func:`topk_lowest_rows`); exact duplicates may still differ in the
last float32 bit (the gate's product rounds a row by its position), so their order is not
guaranteed across strategies (docs/mol.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rag_relax_plugins.core.mol import (
    MoLItemState,
    MoLQueryState,
    MoLSimilarity,
    mol_component_dots,
)
from rag_relax_plugins.index.strategies import (
    BruteForce,
    Combined,
    ExactTwoPass,
    Strategy,
    TopKAvg,
    TopKPerEmbd,
)

__all__ = [
    "SearchContext",
    "brute_force",
    "dedupe",
    "exact_two_pass",
    "rerank",
    "run_strategy",
    "search_groups",
]

logger = logging.getLogger(__name__)

_RERANK_ELEMENTS = 1 << 24  # gathered candidate component elements per rerank chunk
_RANGE_ELEMENTS = 1 << 22  # (B, n, P) elements per range-search chunk
# slack on the exact bound, in logit units (components are unit vectors, so logits lie in [-1, 1]):
# absorbs float32 rounding between the range-search and rerank kernels, whatever tau is
_BOUND_MARGIN = 1e-4


FirstStageSearch = Callable[[torch.Tensor, int, torch.Tensor | None], torch.Tensor]
"""``(queries (Q, d_P), n, allowed (N,) x bool or None) -> item rows (Q, n') x long`` of the best
``n`` first-stage vectors per query, ``-1`` where fewer were found (rows may repeat)."""


@dataclass
class SearchContext:
    """What a strategy needs: the similarity, the cached items and lazily built first stages.

    Attributes:
        similarity: the (eval-mode) MoL similarity.
        items: cached state, components ``(N, P_x, d_P)``, gate ``(N, P)``.
        per_embd: searches the first stage over the ``N * P_x`` component vectors.
        avg: searches the first stage over the ``N`` mean item components.
    """

    similarity: MoLSimilarity
    items: MoLItemState
    per_embd: FirstStageSearch
    avg: FirstStageSearch


def _finish(scores: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return scores, rows.masked_fill(torch.isinf(scores), -1)


def topk_lowest_rows(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` columns per row, best first, equal scores by ascending column.

    ``torch.topk`` leaves the order of ties (and which tied column is kept at the cut) to the
    kernel; callers pass columns in ascending item-row order, so this makes exact duplicates come
    back the same way from every strategy.

    Args:
        scores: ``(B, C) x float``, no NaN.
        k: ``<= C``.

    Returns:
        ``(top scores (B, k), columns (B, k) x long)``.
    """
    top_s, top_i = scores.topk(k, dim=1)  # (B, k) best first, ties in kernel order
    order = top_i.argsort(dim=1)  # by column, then stably by score: ties by ascending column
    top_s, top_i = top_s.gather(1, order), top_i.gather(1, order)
    order = top_s.argsort(dim=1, descending=True, stable=True)
    top_s, top_i = top_s.gather(1, order), top_i.gather(1, order)
    if k == 0:
        return top_s, top_i
    kth = top_s[:, -1:]  # (B, 1)
    # a tie at the cut may have kept a higher column than an excluded one: rare, fixed per row
    cut = torch.isfinite(kth.squeeze(1)) & ((scores == kth).sum(dim=1) > (top_s == kth).sum(dim=1))
    for q in cut.nonzero().squeeze(1).tolist():
        keep = int((top_s[q] > kth[q]).sum())
        top_i[q, keep:] = (scores[q] == kth[q]).nonzero().squeeze(1)[: k - keep]
    return top_s, top_i


def brute_force(
    sim: MoLSimilarity,
    queries: MoLQueryState,
    items: MoLItemState,
    k: int,
    *,
    rows: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top ``k`` by scoring every item.

    ``rows`` (``(m,) x long``) scores only a gathered subset (small filters); ``allowed``
    (``(N,) x bool``) scores everything in place and masks the rest (large filters, no copy).
    """
    if allowed is not None:
        scores = sim.score_all(queries, items).masked_fill(~allowed.unsqueeze(0), -math.inf)
        return _finish(*topk_lowest_rows(scores, min(k, scores.shape[1])))
    sub = items if rows is None else items.select(rows)
    b = len(queries)
    if len(sub) == 0:
        empty = torch.empty(b, 0, device=queries.components.device)
        return empty, empty.long()
    scores = sim.score_all(queries, sub)  # (B, m); ``rows`` ascend (group_filter), so do columns
    top_s, top_i = topk_lowest_rows(scores, min(k, scores.shape[1]))
    if rows is not None:
        top_i = rows[top_i]
    return _finish(top_s, top_i)


def dedupe(candidates: torch.Tensor) -> torch.Tensor:
    """Distinct candidates per query, compacted to the front.

    Args:
        candidates: ``(B, C) x long`` item rows, ``-1`` for none, duplicates allowed.

    Returns:
        ``(B, C') x long``, each row's distinct valid rows ascending then ``-1`` padding, with
        ``C'`` the largest number of distinct rows of any query.
    """
    cand, _ = candidates.sort(dim=1)
    invalid = cand < 0
    invalid[:, 1:] |= cand[:, 1:] == cand[:, :-1]  # duplicates after sorting
    big = torch.iinfo(torch.long).max
    cand, _ = cand.masked_fill(invalid, big).sort(dim=1)  # (B, C), valid rows first
    width = int((~invalid).sum(dim=1).max()) if cand.numel() else 0
    cand = cand[:, :width]
    return cand.masked_fill(cand == big, -1)


def rerank(
    sim: MoLSimilarity,
    queries: MoLQueryState,
    items: MoLItemState,
    candidates: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact MoL rerank of per-query candidates (de-duplicated before scoring).

    Args:
        candidates: ``(B, C) x long`` item rows; ``-1`` and duplicates are ignored.
        k: results per query.

    Returns:
        ``(scores (B, min(k, C')), rows)``, best first, ``C'`` the most distinct candidates of
        any query; a query with fewer has ``-inf`` / ``-1`` in its trailing columns.
    """
    cand = dedupe(candidates)  # (B, C')
    b, c = cand.shape
    if c == 0:
        return brute_force(sim, queries, items, k, rows=candidates.new_empty(0))
    invalid = cand < 0
    safe = cand.clamp_min(0)
    per_query = c * items.components.shape[-2] * items.components.shape[-1]
    step = max(1, _RERANK_ELEMENTS // max(1, per_query))
    parts = []
    for start in range(0, b, step):
        sl = slice(start, start + step)
        sub_q = MoLQueryState(queries.components[sl], queries.gate[sl])
        parts.append(sim.score_candidates(sub_q, items.select(safe[sl])))  # (b', C)
    scores = torch.cat(parts).masked_fill(invalid, -math.inf)
    top_s, pos = topk_lowest_rows(scores, min(k, c))  # dedupe sorted each row's candidates
    return _finish(top_s, safe.gather(1, pos))


def _per_embd_candidates(
    ctx: SearchContext, queries: MoLQueryState, n: int, allowed: torch.Tensor | None
) -> torch.Tensor:
    b, p_q, d = queries.components.shape
    rows = ctx.per_embd(queries.components.reshape(b * p_q, d), n, allowed)  # (B*P_q, n')
    return rows.reshape(b, -1)  # (B, P_q * n')


def _avg_candidates(
    ctx: SearchContext, queries: MoLQueryState, n: int, allowed: torch.Tensor | None
) -> torch.Tensor:
    return ctx.avg(queries.components.mean(dim=1), n, allowed)  # (B, n')


def _range_mask(
    sim: MoLSimilarity, queries: MoLQueryState, items: MoLItemState, bound: torch.Tensor
) -> torch.Tensor:
    """``(B, N) x bool``: items whose best component logit reaches ``bound`` ``(B,)``."""
    b, n = len(queries), len(items)
    out = torch.empty(b, n, dtype=torch.bool, device=queries.components.device)
    step = max(1, _RANGE_ELEMENTS // max(1, b * sim.config.num_pairs))
    dtype = queries.components.dtype
    for start in range(0, n, step):
        comps = items.components[start : start + step].to(dtype)
        best = mol_component_dots(queries.components, comps).amax(dim=-1)  # (B, n)
        out[:, start : start + step] = best >= bound.unsqueeze(1)
    return out


def exact_two_pass(
    ctx: SearchContext, queries: MoLQueryState, k: int, budget: int, allowed: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top ``k`` by the two-pass algorithm (see :class:`ExactTwoPass`)."""
    sim, items = ctx.similarity, ctx.items
    tau = sim.config.tau
    k = min(k, len(items) if allowed is None else int(allowed.sum()))  # buffers never exceed N
    if k == 0:
        empty = torch.empty(len(queries), 0, device=queries.components.device)
        return empty, empty.long()
    # pass 1: any candidate set gives a valid threshold. Per-component top-k hits often share
    # items (fewer than k distinct), so the k items of the average logit are added: >= k
    # distinct candidates whenever >= k items are allowed.
    cand = torch.cat(
        [_per_embd_candidates(ctx, queries, k, allowed), _avg_candidates(ctx, queries, k, allowed)],
        dim=1,
    )
    first, first_rows = rerank(sim, queries, items, cand, k)
    kth = (
        first[:, -1]
        if first.shape[1] >= k
        else torch.full((len(queries),), -math.inf, device=first.device)
    )
    # an absolute slack in logit units: kth * tau is a convex mix of unit-vector dot products
    bound = kth * tau - _BOUND_MARGIN
    # pass 2: range search on max_ij s_ij >= S * tau, then exact rerank; pass 1's top k are in
    # the range set by construction, added explicitly so that rounding can never drop one
    mask = _range_mask(sim, queries, items, bound)
    hit = first_rows >= 0
    mask[hit.nonzero()[:, 0], first_rows[hit]] = True
    if allowed is not None:
        mask &= allowed.unsqueeze(0)
    counts = mask.sum(dim=1)
    b = len(queries)
    out_s = torch.full((b, k), -math.inf, device=first.device)
    out_r = torch.full((b, k), -1, dtype=torch.long, device=first.device)
    small = counts <= min(budget, len(items))  # a budget past int64 (10**30) overflowed the comparison
    if bool(small.any()):
        idx = small.nonzero().squeeze(1)
        width = int(counts[idx].max())
        cand = torch.full((len(idx), width), -1, dtype=torch.long, device=first.device)
        for j, q in enumerate(idx.tolist()):
            rows = mask[q].nonzero().squeeze(1)
            cand[j, : len(rows)] = rows
        sub_q = MoLQueryState(queries.components[idx], queries.gate[idx])
        s, r = rerank(sim, sub_q, items, cand, k)
        out_s[idx, : s.shape[1]], out_r[idx, : r.shape[1]] = s, r
    if not bool(small.all()):
        idx = (~small).nonzero().squeeze(1)
        logger.debug(
            "ExactTwoPass: %d queries exceeded budget=%d, falling back to brute force",
            len(idx),
            budget,
        )
        sub_q = MoLQueryState(queries.components[idx], queries.gate[idx])
        s, r = brute_force(sim, sub_q, items, k, allowed=allowed)
        out_s[idx, : s.shape[1]], out_r[idx, : r.shape[1]] = s, r
    return out_s, out_r


def run_strategy(
    ctx: SearchContext,
    queries: MoLQueryState,
    k: int,
    strategy: Strategy,
    allowed: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch ``strategy`` over the items allowed by ``allowed`` (``(N,) x bool`` or ``None``)."""
    sim, items = ctx.similarity, ctx.items
    if isinstance(strategy, BruteForce):
        return brute_force(sim, queries, items, k, allowed=allowed)
    if isinstance(strategy, ExactTwoPass):
        return exact_two_pass(ctx, queries, k, strategy.budget, allowed)
    # every candidate budget is at least k, so a strategy never returns fewer than k results
    # for want of candidates (see the strategies' module docstring)
    parts: list[torch.Tensor] = []
    if isinstance(strategy, TopKAvg):
        parts.append(_avg_candidates(ctx, queries, max(strategy.n, k), allowed))
    if isinstance(strategy, Combined):
        parts.append(_avg_candidates(ctx, queries, max(strategy.n_avg, k), allowed))
        parts.append(_per_embd_candidates(ctx, queries, max(strategy.n_per_embd, k), allowed))
    if isinstance(strategy, TopKPerEmbd):
        parts.append(_per_embd_candidates(ctx, queries, max(strategy.n, k), allowed))
        parts = [_top_up_per_embd(ctx, queries, parts[0], k, allowed)]
    return rerank(sim, queries, items, torch.cat(parts, dim=1), k)


def _top_up_per_embd(
    ctx: SearchContext,
    queries: MoLQueryState,
    cand: torch.Tensor,
    k: int,
    allowed: torch.Tensor | None,
) -> torch.Tensor:
    """Per-component hits can repeat items (up to ``P_x`` vectors per item): a query left with
    fewer than ``k`` distinct items, while more are allowed, searches ``k * P_x`` vectors per
    component instead, which holds at least ``k`` distinct items (exact first stage)."""
    cand = dedupe(cand)  # (B, C')
    wanted = min(k, len(ctx.items) if allowed is None else int(allowed.sum()))
    short = (cand >= 0).sum(dim=1) < wanted
    if not bool(short.any()):
        return cand
    idx = short.nonzero().squeeze(1)
    sub = MoLQueryState(queries.components[idx], queries.gate[idx])
    more = dedupe(_per_embd_candidates(ctx, sub, k * ctx.items.components.shape[1], allowed))
    width = max(cand.shape[1], more.shape[1])
    out = torch.full((len(cand), width), -1, dtype=torch.long, device=cand.device)
    out[:, : cand.shape[1]] = cand
    out[idx] = -1
    out[idx, : more.shape[1]] = more
    return out


def search_groups(
    ctx: SearchContext,
    queries: MoLQueryState,
    k: int,
    strategy: Strategy,
    groups: list[tuple[torch.Tensor, torch.Tensor | None]],
    *,
    exact_filter_threshold: int,
) -> tuple[torch.Tensor, list[list[int]]]:
    """Run ``strategy`` per filter group and assemble the padded result.

    Args:
        groups: ``[(query indices, allowed rows or None), ...]`` from
            :func:`~rag_relax_plugins.index.filters.group_filter`.
        exact_filter_threshold: row subsets up to this size are scored by brute force.

    Returns:
        ``(scores (B, K) x float32, rows)``: ``K`` the most results of any query, ``rows[b]``
        the item rows of query ``b`` best first; shorter queries have ``-inf`` trailing scores.
    """
    b, n_items = len(queries), len(ctx.items)
    device = queries.components.device
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for qidx, rows in groups:
        sub = MoLQueryState(queries.components[qidx], queries.gate[qidx])
        if rows is None:
            s, r = run_strategy(ctx, sub, k, strategy, None)
        elif len(rows) <= exact_filter_threshold:
            s, r = brute_force(ctx.similarity, sub, ctx.items, k, rows=rows)
        else:
            allowed = torch.zeros(n_items, dtype=torch.bool, device=device)
            allowed[rows] = True
            s, r = run_strategy(ctx, sub, k, strategy, allowed)
        parts.append((qidx, s, r))
    return _assemble(parts, b, device)


def _assemble(
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], b: int, device: torch.device
) -> tuple[torch.Tensor, list[list[int]]]:
    """The groups' ``(query indices, scores, rows)`` as one padded result, each query's found
    rows moved to the front in their order. Whole-batch tensor ops and one copy to the host: a
    loop over queries cost several device round trips each (a ``TopKAvg(500)`` search of 32
    queries over 1M items on an H200: 9.1-10.3 ms with the loop, 3.5-3.7 ms without;
    ``cuda_mol_check.py``, 2026-12-04, ``benchmarks/results/cuda_mol_assembly_ab.json``)."""
    width = max((r.shape[1] for _, _, r in parts), default=0)
    scores = torch.full((b, width), -math.inf, device=device)
    rows = torch.full((b, width), -1, dtype=torch.long, device=device)
    for qidx, s, r in parts:
        scores[qidx, : r.shape[1]] = s.float()
        rows[qidx, : r.shape[1]] = r
    valid = rows >= 0
    order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)  # found rows first
    scores, rows = scores.gather(1, order), rows.gather(1, order)
    counts = valid.sum(dim=1)
    host = torch.cat([counts.unsqueeze(1), rows], dim=1).cpu()  # one copy to the host
    kept = int(host[:, 0].max()) if b else 0
    scores = scores[:, :kept].masked_fill(torch.arange(kept, device=device) >= counts.unsqueeze(1), -math.inf)
    return scores, [row[1 : 1 + n] for row, n in zip(host.tolist(), host[:, 0].tolist(), strict=True)]
