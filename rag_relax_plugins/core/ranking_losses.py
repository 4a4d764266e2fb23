"""Listwise and pairwise learning-to-rank losses with masks for variable-length lists.

Every loss takes ``scores (B, n) x float`` (higher = better), graded ``relevance (B, n) x float``
and an optional ``mask (B, n) x bool`` (True = a real item). Masked items contribute nothing,
a row with no valid item contributes 0 (never NaN). ``reduction`` is ``"mean"`` (over rows),
``"sum"`` or ``"none"`` (``(B,)``). float16 / bfloat16 inputs are computed in float32 (the gains
``2^rel - 1`` and the NeuralSort logits overflow float16) and the loss is cast back.

References:
    - ListNet: Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach", ICML 2007.
    - ListMLE: Xia et al., "Listwise Approach to Learning to Rank", ICML 2008.
    - ApproxNDCG: Qin, Liu & Li, "A General Approximation Framework for Direct Optimization of
      Information Retrieval Measures", Information Retrieval 2010.
    - LambdaLoss: Wang et al., "The LambdaLoss Framework for Ranking Metric Optimization",
      CIKM 2018 (the NDCG-Loss2++ weighting, mu = 10 by default as in the paper).
    - NeuralNDCG: Pobrotyn & Bialobrzeski, "NeuralNDCG: Direct Optimisation of a Ranking Metric
      via Differentiable Relaxation of Sorting", 2021 (NeuralSort of Grover et al., ICLR 2019,
      with Sinkhorn scaling).
    - Soft Spearman: 1 - Pearson correlation of soft ranks (Blondel et al., ICML 2020 use it as a
      differentiable Spearman); here the soft rank is the pairwise-sigmoid rank.

Relations: :func:`rag_relax_plugins.core.contrastive.info_nce` is ListNet with a one-hot target
over in-batch candidates.
"""

from __future__ import annotations

import math

import torch

from rag_relax_plugins.core.device import work_dtype
from rag_relax_plugins.core.validation import (
    MASK_HINT,
    check_count,
    check_finite,
    check_floating,
    check_k,
    check_ndim,
    check_nonnegative,
    check_positive,
)

__all__ = [
    "approx_ndcg_loss",
    "lambda_loss",
    "list_mle_loss",
    "list_net_loss",
    "neural_ndcg_loss",
    "soft_spearman_loss",
]


def _masked_logits(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with masked entries at ``-inf``; a row with no valid entry becomes all 0 instead, so
    that a softmax over it stays finite (callers zero such rows)."""
    fill = torch.where(mask.any(1, keepdim=True), float("-inf"), 0.0).to(x.dtype)
    return torch.where(mask, x, fill)


def _prepare(scores: torch.Tensor, relevance: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    check_floating("scores", scores)
    check_ndim("scores", scores, 2)
    check_floating("relevance", relevance)
    if relevance.shape != scores.shape:
        raise ValueError(f"relevance must have the shape of scores {tuple(scores.shape)}, got {tuple(relevance.shape)}")
    if scores.shape[1] == 0:
        raise ValueError("scores must hold at least one item per row")
    check_finite("scores", scores, hint=MASK_HINT)
    check_finite("relevance", relevance, hint=MASK_HINT)
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    elif not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    elif mask.shape != scores.shape:
        raise ValueError(f"mask must be a bool tensor of shape {tuple(scores.shape)}, got {tuple(mask.shape)}")
    work = work_dtype(scores.dtype)  # float32 for half precision; callers cast the loss back
    return scores.to(work), relevance.to(work), mask


def _check_gains(relevance: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """NDCG gains ``2^rel - 1`` need ``rel >= 0`` on the valid items, and a finite ideal DCG.

    Returns ``relevance`` with masked items' grades set to 0: a huge masked grade gave an inf gain
    that the later mask multiplied by 0 (a finite loss with NaN gradients)."""
    if bool((relevance < 0).logical_and(mask).any()):
        raise ValueError("relevance must be >= 0 on valid items for NDCG-based losses")
    ideal = (torch.pow(2.0, relevance) - 1.0).masked_fill(~mask, 0.0).sum(dim=-1)  # bounds every DCG of a row
    if not bool(torch.isfinite(ideal).all()):  # 2^128 is inf in float32: the loss was NaN, silently
        raise ValueError(f"relevance is too large for the NDCG gain 2^rel - 1 in {relevance.dtype} (the ideal DCG "
                         "overflows); use grades on a small scale (0-4 as in TREC) or float64")
    return relevance.masked_fill(~mask, 0.0)


def _ratio(num: torch.Tensor, den: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``num / den`` on valid rows, 0 elsewhere, never dividing by 0.

    A clamp such as ``den.clamp_min(1e-12)`` is 0 in float16 (``0 / 0`` on rows with nothing to
    rank), and even where :func:`_reduce` hides the value a NaN would flow back through the
    gradient; dividing by 1 on invalid rows keeps both finite.
    """
    return torch.where(valid, num / torch.where(valid, den, torch.ones_like(den)), torch.zeros_like(num))


def _reduce(per_row: torch.Tensor, valid_rows: torch.Tensor, reduction: str) -> torch.Tensor:
    per_row = torch.where(valid_rows, per_row, torch.zeros_like(per_row))
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    if reduction == "mean":
        return per_row.sum() / valid_rows.sum().clamp_min(1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def list_net_loss(
    scores: torch.Tensor, relevance: torch.Tensor, mask: torch.Tensor | None = None, *, reduction: str = "mean"
) -> torch.Tensor:
    """ListNet top-one loss: cross-entropy between ``softmax(relevance)`` and ``softmax(scores)``.

    Args:
        scores: ``(B, n) x float`` model scores, higher = better.
        relevance: ``(B, n) x float`` graded labels.
        mask: ``(B, n) x bool`` or ``None``; True marks a real item (``None``: all real).
        reduction: ``"mean"`` over rows with something to rank, ``"sum"`` or ``"none"``.

    Returns:
        Scalar loss, or ``(B,) x float`` per-row losses for ``reduction="none"``.
    """
    s, r, m = _prepare(scores, relevance, mask)
    target = torch.softmax(_masked_logits(r, m), dim=1)
    logp = torch.where(m, torch.log_softmax(_masked_logits(s, m), dim=1), 0.0)  # no -inf * 0
    per_row = -(target * logp).sum(1)
    return _reduce(per_row, m.any(1), reduction).to(scores.dtype)


def list_mle_loss(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """ListMLE: negative Plackett-Luce log-likelihood of the order given by ``relevance``.

    Exact ties in ``relevance`` are broken uniformly at random with ``generator`` (``None``: the
    global torch generator), as in the paper's permutation sampling; masked items are excluded.

    Args:
        scores: ``(B, n) x float`` model scores, higher = better.
        relevance: ``(B, n) x float`` graded labels.
        mask: ``(B, n) x bool`` or ``None``; True marks a real item (``None``: all real).
        generator: ``torch.Generator`` (on the scores' device) for the tie-break.
        reduction: ``"mean"`` over rows with something to rank, ``"sum"`` or ``"none"``.

    Returns:
        Scalar loss, or ``(B,) x float`` per-row losses for ``reduction="none"``.
    """
    s, r, m = _prepare(scores, relevance, mask)
    # exact ties broken uniformly at random: shuffle, then a stable sort by relevance
    perm = torch.rand(s.shape, generator=generator, device=s.device).argsort(dim=1)  # (B, n)
    key = r.masked_fill(~m, float("-inf")).gather(1, perm)
    order = perm.gather(1, key.argsort(dim=1, descending=True, stable=True))  # masked last
    m_sorted = m.gather(1, order)
    s_sorted = torch.where(m_sorted, s.gather(1, order), float("-inf"))
    # log sum_{j >= i} exp(s_j): reversed cumulative logsumexp (the masked tail adds exp(-inf) = 0)
    tail = torch.logcumsumexp(s_sorted.flip(1), dim=1).flip(1)
    per_item = torch.where(m_sorted, tail - s_sorted, 0.0)
    return _reduce(per_item.sum(1), m.any(1), reduction).to(scores.dtype)


def _dcg_terms(relevance: torch.Tensor, positions: torch.Tensor, k: int | None) -> torch.Tensor:
    """(2^rel - 1) / log2(1 + position), zero beyond ``k``; positions are 1-based floats."""
    gains = torch.pow(2.0, relevance) - 1.0
    disc = 1.0 / torch.log2(1.0 + positions)
    if k is not None:
        disc = disc * (positions <= k).to(disc.dtype)
    return gains * disc


def _ideal_dcg(relevance: torch.Tensor, mask: torch.Tensor, k: int | None) -> torch.Tensor:
    r = relevance.masked_fill(~mask, 0.0)
    ideal = r.sort(dim=1, descending=True).values
    pos = torch.arange(1, r.shape[1] + 1, device=r.device, dtype=r.dtype).expand_as(r)
    return _dcg_terms(ideal, pos, k).sum(1)


def approx_ndcg_loss(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 0.1,
    k: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """ApproxNDCG: ``1 - NDCG`` with ranks ``1 + sum_j sigmoid((s_j - s_i) / T)``.

    As ``temperature -> 0`` the approximate ranks become the true ranks (ties aside).

    Args:
        scores: ``(B, n) x float`` model scores, higher = better.
        relevance: ``(B, n) x float`` graded labels, ``>= 0`` on valid items (gain ``2^rel - 1``).
        mask: ``(B, n) x bool`` or ``None``; True marks a real item (``None``: all real).
        temperature: sigmoid temperature ``T > 0``.
        k: NDCG cutoff, an int >= 1 (``None``: the whole list).
        reduction: ``"mean"`` over rows with something to rank, ``"sum"`` or ``"none"``.

    Returns:
        Scalar loss, or ``(B,) x float`` per-row losses for ``reduction="none"``.
    """
    s, r, m = _prepare(scores, relevance, mask)
    r = _check_gains(r, m)
    temperature = check_positive("temperature", temperature)
    if k is not None:  # at most the list length: a k past int64 (10**30) overflowed in torch
        k = min(check_k("k", k), s.shape[1])
    diff = (s.unsqueeze(1) - s.unsqueeze(2)) / temperature  # (B, i, j) = (s_j - s_i)/T
    pair = torch.sigmoid(diff) * m.unsqueeze(1).to(s.dtype)
    eye = torch.eye(s.shape[1], dtype=torch.bool, device=s.device)
    ranks = 1.0 + pair.masked_fill(eye, 0.0).sum(-1)
    dcg = _dcg_terms(r, ranks, k).masked_fill(~m, 0.0).sum(1)
    idcg = _ideal_dcg(r, m, k)
    valid = m.any(1) & (idcg > 0)
    return _reduce(1.0 - _ratio(dcg, idcg, valid), valid, reduction).to(scores.dtype)


def lambda_loss(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    mu: float = 10.0,
    sigma: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """LambdaLoss with the NDCG-Loss2++ weights (Wang et al. 2018).

    For pairs with ``rel_i > rel_j``: ``-log2(sigmoid(sigma (s_i - s_j)))`` weighted by
    ``rho_ij + mu * delta_ij`` times ``|G_i - G_j|``, where ranks come from the current scores,
    ``delta_ij = |1/D(|i-j|) - 1/D(|i-j|+1)|``, ``rho_ij = |1/D_i - 1/D_j|``, ``D(x) = log2(1 + x)``,
    and ``G = (2^rel - 1) / IDCG``.

    Args:
        scores: ``(B, n) x float`` model scores, higher = better.
        relevance: ``(B, n) x float`` graded labels, ``>= 0`` on valid items.
        mask: ``(B, n) x bool`` or ``None``; True marks a real item (``None``: all real).
        mu: weight of the ``delta_ij`` (NDCG-Loss2) term, finite, ``>= 0``.
        sigma: logistic scale ``> 0``.
        reduction: ``"mean"`` over rows with something to rank, ``"sum"`` or ``"none"``.

    Returns:
        Scalar loss, or ``(B,) x float`` per-row losses for ``reduction="none"``.
    """
    s, r, m = _prepare(scores, relevance, mask)
    r = _check_gains(r, m)
    sigma = check_positive("sigma", sigma)
    mu = check_nonnegative("mu", mu)
    n = s.shape[1]
    # current ranks (1-based) by score, masked items last
    order = s.masked_fill(~m, float("-inf")).argsort(dim=1, descending=True)
    arange = torch.arange(1, n + 1, device=s.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, arange).to(s.dtype)
    idcg = _ideal_dcg(r, m, None)
    g = torch.pow(2.0, r) - 1.0
    g = g / torch.where(idcg > 0, idcg, torch.ones_like(idcg)).unsqueeze(1)  # no gain: no pairs
    inv_d = 1.0 / torch.log2(1.0 + ranks)
    rank_gap = (ranks.unsqueeze(2) - ranks.unsqueeze(1)).abs()
    delta = (1.0 / torch.log2(1.0 + rank_gap.clamp_min(1)) - 1.0 / torch.log2(2.0 + rank_gap)).abs()
    rho = (inv_d.unsqueeze(2) - inv_d.unsqueeze(1)).abs()
    weight = (rho + mu * delta) * (g.unsqueeze(2) - g.unsqueeze(1)).abs()
    pairs = (r.unsqueeze(2) > r.unsqueeze(1)) & m.unsqueeze(2) & m.unsqueeze(1)
    s_diff = s.unsqueeze(2) - s.unsqueeze(1)
    per_pair = -torch.nn.functional.logsigmoid(sigma * s_diff) / math.log(2.0)
    per_row = (weight.detach() * per_pair).masked_fill(~pairs, 0.0).sum((1, 2))
    return _reduce(per_row, pairs.any(2).any(1), reduction).to(scores.dtype)


def _neural_sort(scores: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """NeuralSort relaxed permutation (Grover et al. 2019) over each row's valid items only.

    Returns ``(B, n, n)``: entry ``[b, i, j]`` is the weight of item ``j`` at position ``i``, row
    ``i`` being ``softmax_j(((n_b + 1 - 2i) s_j - sum_k |s_j - s_k|) / tau)`` with ``n_b`` valid
    items and the sum over them; masked columns and positions ``i > n_b`` are exactly 0.
    """
    mf = mask.to(scores.dtype)
    s = torch.where(mask, scores, 0.0)  # finite everywhere
    n = s.shape[1]
    a_sum = ((s.unsqueeze(2) - s.unsqueeze(1)).abs() * mf.unsqueeze(1)).sum(-1)  # (B, n) over j
    pos = torch.arange(1, n + 1, device=s.device, dtype=s.dtype)
    n_valid = mf.sum(1, keepdim=True)  # (B, 1)
    scale = (n_valid + 1 - 2 * pos).unsqueeze(-1)  # (B, n, 1): one factor per position i
    logits = (scale * s.unsqueeze(1) - a_sum.unsqueeze(1)) / tau  # (B, i, j)
    col = mask.unsqueeze(1).expand_as(logits)
    logits = torch.where(col, logits, float("-inf"))
    logits = torch.where(mask.any(1)[:, None, None], logits, 0.0)  # all-masked rows stay finite
    row_valid = (pos.unsqueeze(0) <= n_valid).to(s.dtype).unsqueeze(-1)  # (B, n, 1)
    return torch.softmax(logits, dim=-1) * row_valid * mf.unsqueeze(1)


def _sinkhorn(p: torch.Tensor, iters: int) -> torch.Tensor:
    """Sinkhorn scaling (alternate column and row normalisation); all-zero rows and columns
    (padding) stay zero, with a divisor of 1 so that no 0/0 or huge gradient appears."""
    for _ in range(iters):
        c = p.sum(dim=1, keepdim=True)
        p = p / torch.where(c > 0, c, 1.0)
        c = p.sum(dim=2, keepdim=True)
        p = p / torch.where(c > 0, c, 1.0)
    return p


def neural_ndcg_loss(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    k: int | None = None,
    sinkhorn_iters: int = 50,
    reduction: str = "mean",
) -> torch.Tensor:
    """NeuralNDCG: ``1 - NDCG`` where gains are sorted by the Sinkhorn-scaled NeuralSort matrix.

    As ``temperature -> 0`` the relaxed permutation becomes the sorting permutation (no score ties)
    and the loss becomes ``1 - NDCG``.

    Args:
        scores: ``(B, n) x float`` model scores, higher = better.
        relevance: ``(B, n) x float`` graded labels, ``>= 0`` on valid items.
        mask: ``(B, n) x bool`` or ``None``; True marks a real item (``None``: all real).
        temperature: NeuralSort temperature ``> 0``.
        k: NDCG cutoff, an int >= 1 (``None``: the whole list).
        sinkhorn_iters: Sinkhorn scaling iterations (0: the row-stochastic NeuralSort matrix).
        reduction: ``"mean"`` over rows with something to rank, ``"sum"`` or ``"none"``.

    Returns:
        Scalar loss, or ``(B,) x float`` per-row losses for ``reduction="none"``.
    """
    s, r, m = _prepare(scores, relevance, mask)
    r = _check_gains(r, m)
    temperature = check_positive("temperature", temperature)
    if k is not None:  # at most the list length: a k past int64 (10**30) overflowed in torch
        k = min(check_k("k", k), s.shape[1])
    sinkhorn_iters = check_count("sinkhorn_iters", sinkhorn_iters, 0)
    p = _sinkhorn(_neural_sort(s, m, temperature), sinkhorn_iters)
    gains = (torch.pow(2.0, r) - 1.0).masked_fill(~m, 0.0)
    sorted_gains = torch.bmm(p, gains.unsqueeze(-1)).squeeze(-1)  # (B, n) expected gain per position
    n = s.shape[1]
    pos = torch.arange(1, n + 1, device=s.device, dtype=s.dtype)
    disc = 1.0 / torch.log2(1.0 + pos)
    if k is not None:
        disc = disc * (pos <= k).to(s.dtype)
    n_valid = m.sum(1, keepdim=True)
    disc = disc.unsqueeze(0) * (pos.unsqueeze(0) <= n_valid).to(s.dtype)
    dcg = (sorted_gains * disc).sum(1)
    idcg = _ideal_dcg(r, m, k)
    valid = m.any(1) & (idcg > 0)
    return _reduce(1.0 - _ratio(dcg, idcg, valid), valid, reduction).to(scores.dtype)


def soft_spearman_loss(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 0.1,
    reduction: str = "mean",
) -> torch.Tensor:
    """``1 - corr(soft_rank(scores), rank(relevance))`` over valid items (pairwise-sigmoid soft rank).

    The soft rank is ``1 + sum_{j != i} sigmoid((s_j - s_i) / T)`` (O(n^2) memory); the label
    ranks average ties, so at ``T -> 0`` this is ``1 - `` Spearman's rho. Lies in ``[0, 2]``.
    A row of equal scores (no soft order yet) has correlation 0, so loss 1, and a finite gradient
    along the centred label ranks.

    Args:
        scores: ``(B, n) x float`` model scores, higher = better.
        relevance: ``(B, n) x float`` graded labels.
        mask: ``(B, n) x bool`` or ``None``; True marks a real item (``None``: all real).
        temperature: sigmoid temperature ``> 0``.
        reduction: ``"mean"`` over rows with something to rank, ``"sum"`` or ``"none"``.

    Returns:
        Scalar loss, or ``(B,) x float`` per-row losses for ``reduction="none"``.
    """
    s, r, m = _prepare(scores, relevance, mask)
    temperature = check_positive("temperature", temperature)
    mf = m.to(s.dtype)
    soft = 1.0 + (torch.sigmoid((s.unsqueeze(1) - s.unsqueeze(2)) / temperature) * mf.unsqueeze(1)).sum(-1) - 0.5
    # average ranks for tied relevance, as Spearman's rho: a tie counts 1/2 (self included, minus 1/2)
    above = (r.unsqueeze(1) > r.unsqueeze(2)).to(s.dtype) + 0.5 * (r.unsqueeze(1) == r.unsqueeze(2)).to(s.dtype)
    hard = 1.0 + (above * mf.unsqueeze(1)).sum(-1) - 0.5
    n = mf.sum(1, keepdim=True).clamp_min(1)

    def centred(x: torch.Tensor) -> torch.Tensor:
        x = x * mf
        return (x - x.sum(1, keepdim=True) / n) * mf

    a, b = centred(soft), centred(hard)
    # a row whose labels are all tied has no order to learn: left out, as rows of < 2 items
    valid = (m.sum(1) > 1) & (b.abs().amax(dim=1) > 0)
    # constant scores (e.g. a zero-initialised head) give a == 0 and corr = 0 / 0: |a| is read as 1
    # there, so corr = 0 (loss 1) with the limit direction b / |b| as gradient, not NaN
    flat = a.abs().amax(dim=1) == 0  # (B,)
    a_norm = a.masked_fill(flat.unsqueeze(1), 1.0).norm(dim=1).masked_fill(flat, 1.0)
    corr = _ratio((a * b).sum(1), a_norm * b.norm(dim=1), valid)
    return _reduce(1.0 - corr, valid, reduction).to(scores.dtype)
