"""Differentiable sorting and ranking.

- :func:`soft_sort`, :func:`soft_rank`: projections onto the permutahedron, Blondel, Teboul, Berthet
  and Djolonga, "Fast Differentiable Sorting and Ranking" (ICML 2020). O(n log n): one sort plus an
  isotonic regression solved by pool-adjacent-violators (:mod:`.isotonic`: about ``log2(n)``
  parallel merge rounds, then a sequential pass, so the worst case stays O(n log n)), with exact
  gradients (block-wise averaging Jacobian, never materialised) and exact second derivatives
  (``create_graph=True``). Same conventions as their reference code and as ``torchsort``: ranks
  are 1-based, ascending by default (rank 1 = smallest).
- :func:`neural_sort` (Grover, Wang, Zweig, Ermon, "Stochastic Optimization of Sorting Networks via
  Continuous Relaxations", ICLR 2019) and :func:`soft_sort_matrix` (Prillo and Eisenschlos,
  "SoftSort: A Continuous Relaxation for the argsort Operator", ICML 2020): relaxed permutation
  matrices ``(B, n, n)``, O(n^2).
- :func:`pairwise_soft_rank`: the pairwise-sigmoid baseline, O(n^2) memory.
- :func:`sigmoid_topk_mask`: a smooth mask of the k largest scores.

Every op takes ``(n,)`` or ``(B, n)`` floating tensors and returns tensors on the input's device and
dtype. The isotonic solver runs on the input's device too, in float64 (float32 on MPS, which lacks
float64), and the result is cast back; for float16 / bfloat16 input :func:`soft_rank` scales
``x / strength`` in that working dtype and :func:`neural_sort` builds its logits in float32 (both
overflow float16).
"""

from __future__ import annotations

from typing import Any

import torch

from rag_relax_plugins.core.device import work_dtype
from rag_relax_plugins.core.isotonic import isotonic_decreasing, isotonic_vjp, segment_logsumexp
from rag_relax_plugins.core.validation import (
    check_finite,
    check_floating,
    check_k,
    check_ndim,
    check_positive,
)

__all__ = [
    "neural_sort",
    "pairwise_soft_rank",
    "sigmoid_topk_mask",
    "soft_rank",
    "soft_sort",
    "soft_sort_matrix",
]


def _check_input(name: str, x: object) -> torch.Tensor:
    """Validate a ``(n,)`` / ``(B, n)`` finite floating tensor with ``n, B >= 1``."""
    t = check_floating(name, x)
    check_ndim(name, t, (1, 2))
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    check_finite(name, t)
    return t


def _check_regularization(regularization: object) -> str:
    if regularization not in ("l2", "kl"):
        raise ValueError(f"regularization must be 'l2' or 'kl', got {regularization!r}")
    return str(regularization)


def _solver_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.device.type == "mps" else torch.float64


def argsort_descending(v: torch.Tensor) -> torch.Tensor:
    """Stable descending argsort of each row of a finite ``(B, n)`` tensor (ties: lower index first).

    Equal to ``torch.argsort(v, dim=1, descending=True, stable=True)``, which stays the path on
    accelerators. On the CPU numpy's quicksort is faster (``benchmarks/bench_soft_rank.py``
    reports both at ``(32, 1000)``; torch's sort was ~40% of ``soft_rank``'s time); it is not stable, so in rows holding equal values each run of equal values is put back in
    index order (a sort of the integer keys ``run * n + index``, unique, so quicksort is exact).
    """
    if v.device.type != "cpu" or v.dim() != 2:
        return torch.argsort(v, dim=1, descending=True, stable=True)
    import numpy as np  # here: only this path needs it

    neg = np.negative(v.detach().numpy())  # ascending order of -v is descending order of v
    perm = np.argsort(neg, axis=1)
    ordered = np.take_along_axis(neg, perm, axis=1)
    tied = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if tied.any():
        rows = np.flatnonzero(tied)
        p, o = perm[rows], ordered[rows]
        run = np.zeros(p.shape, dtype=np.int64)
        np.cumsum(o[:, 1:] != o[:, :-1], axis=1, out=run[:, 1:])  # run number along the sorted row
        perm[rows] = np.take_along_axis(p, np.argsort(run * p.shape[1] + p, axis=1), axis=1)
    return torch.from_numpy(perm.astype(np.int64, copy=False))


def _kl_block_softmax(z: torch.Tensor, ctx: Any) -> torch.Tensor:
    """``softmax`` of the sorted ``z`` (B, n) within each pooled block of ``ctx.sol``.

    Recomputed from the saved input in the backward pass, with differentiable ops, so that double
    backward (``create_graph=True``) sees how the Jacobian depends on the input (the block structure
    is piecewise constant and taken as fixed, as for the first derivative).
    """
    sol = ctx.sol
    s = z.to(ctx.wd).gather(1, ctx.perm)  # (B, n), sorted as in the forward pass
    lse = segment_logsumexp(s.reshape(-1), sol.block_ids, sol.num_blocks)  # (num_blocks,)
    return torch.exp(s.reshape(-1) - lse[sol.block_ids]).reshape(s.shape)


def _shift_within_blocks(a: torch.Tensor, b: torch.Tensor, sol: Any, regularization: str) -> torch.Tensor:
    """``a - sol.values`` for ``sol = isotonic_decreasing(a, b, regularization)`` on sorted
    ``(B, n)`` rows, without its cancellation where ``a`` is large (a small strength: ``a`` about
    ``n / strength``, or ``x / strength``). ``soft_sort`` at strength 1e-15 gave ``[-1, 0, 0.25, 2]``
    for ``[-1.2, 0.1, 0.3, 2]``, ``"kl"`` soft ranks exceeded ``n``, and tied values' soft ranks
    ``[5, 5, 1, 3]`` came out ``[3, 3, 1, 2]``.

    Every element alone in its block: ``b`` exactly (``sol.values`` is ``a - b`` there). Else, when
    the rounding of ``a`` (``eps * max|a|``) exceeds 1e-9 (float64: ``|a|`` past ~4.5e6, e.g.
    scores of 5 at strength 1e-6; a float32 solver, on MPS, nearly always):
    ``(d - centre_B(d)) + centre_B(b)`` with
    ``d = a - max_B(a)``, the same in exact arithmetic (centre: the block's mean for ``"l2"``,
    ``logsumexp`` for ``"kl"``); ``d`` is exact for tied values and small within a block.
    Ordinary strengths keep the plain difference (no block sums).
    """
    if sol.num_blocks == a.numel():
        return b.clone()
    if float(a.abs().amax()) * torch.finfo(a.dtype).eps <= 1e-9:
        return a - sol.values
    ids, nb = sol.block_ids, sol.num_blocks
    flat = a.reshape(-1)
    top = torch.full((nb,), float("-inf"), dtype=a.dtype, device=a.device).scatter_reduce(
        0, ids, flat, reduce="amax", include_self=True)
    d = flat - top.index_select(0, ids)  # (B * n,)
    if regularization == "kl":
        centre_d = segment_logsumexp(d, ids, nb)
        centre_b = sol.block_lse_b
    else:
        sizes = sol.block_sizes.to(a.dtype)
        centre_d = torch.zeros(nb, dtype=a.dtype, device=a.device).index_add_(0, ids, d) / sizes
        centre_b = torch.zeros(nb, dtype=a.dtype, device=a.device).index_add_(0, ids, b.reshape(-1)) / sizes
    return ((d - centre_d.index_select(0, ids)) + centre_b.index_select(0, ids)).reshape(a.shape)


class _SoftRank(torch.autograd.Function):
    """``soft_rank`` on ``(B, n)``; ``theta = sign * x / strength`` is computed by the caller.

    Twice differentiable: the backward pass is made of differentiable ops of ``theta`` (``"kl"``)
    or is linear with a constant Jacobian (``"l2"``, whose second derivative is 0 between kinks).
    """

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, regularization: str) -> torch.Tensor:
        rows, n = theta.shape
        wd = _solver_dtype(theta)
        th = theta.detach().to(wd)
        perm = argsort_descending(th)  # (B, n)
        s = th.gather(1, perm)  # theta sorted descending
        w = torch.arange(n, 0, -1, dtype=wd, device=th.device).expand(rows, n)  # (n, ..., 1)
        if regularization == "kl":
            w = torch.log(w)
        sol = isotonic_decreasing(s, w, regularization)
        primal = _shift_within_blocks(s, w, sol, regularization)  # s - sol.values, sorted order
        out_sorted = torch.exp(primal) if regularization == "kl" else primal
        out = torch.empty_like(out_sorted).scatter_(1, perm, out_sorted)
        ctx.sol, ctx.perm, ctx.wd, ctx.regularization = sol, perm, wd, regularization
        if regularization == "kl":
            ctx.save_for_backward(theta)
        return out.to(theta.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        g_sorted = grad_out.to(ctx.wd).gather(1, ctx.perm)
        if ctx.regularization == "kl":
            (theta,) = ctx.saved_tensors
            sol = ctx.sol
            p = _kl_block_softmax(theta, ctx)  # d v_B / d s_j within a block
            # the output, exp(s - v) = p * sum of w over the block (lse of log w), in sorted order
            out_sorted = p * torch.exp(sol.block_lse_b[sol.block_ids]).reshape(p.shape)
            g_sorted = g_sorted * out_sorted  # d exp(primal)
            g_sorted = g_sorted - isotonic_vjp(g_sorted, sol, p)  # (I - J)^T g
        else:
            g_sorted = g_sorted - isotonic_vjp(g_sorted, ctx.sol)
        grad = torch.zeros_like(g_sorted).scatter(1, ctx.perm, g_sorted)
        return grad.to(grad_out.dtype), None


class _SoftSort(torch.autograd.Function):
    """``soft_sort`` on ``(B, n)`` of ``values = sign * x``; output in the sign-flipped frame.

    Twice differentiable, as :class:`_SoftRank`.
    """

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, strength: float, regularization: str) -> torch.Tensor:
        rows, n = values.shape
        wd = _solver_dtype(values)
        v = values.detach().to(wd)
        perm = argsort_descending(v)
        s = v.gather(1, perm)  # (B, n) sorted descending
        w = (torch.arange(n, 0, -1, dtype=wd, device=v.device) / strength).expand(rows, n)
        sol = isotonic_decreasing(w, s, regularization)
        out = _shift_within_blocks(w, s, sol, regularization)  # w - sol.values, (B, n) sorted descending
        ctx.sol, ctx.perm, ctx.wd, ctx.regularization = sol, perm, wd, regularization
        if regularization == "kl":
            ctx.save_for_backward(values)
        return out.to(values.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        weights = None
        if ctx.regularization == "kl":
            (values,) = ctx.saved_tensors
            weights = _kl_block_softmax(values, ctx)  # d v_B / d s_j within a block
        g = isotonic_vjp(grad_out.to(ctx.wd), ctx.sol, weights)  # J^T g w.r.t. sorted values
        grad = torch.zeros_like(g).scatter(1, ctx.perm, g)
        return grad.to(grad_out.dtype), None, None


def soft_rank(
    x: torch.Tensor,
    regularization_strength: float = 1.0,
    regularization: str = "l2",
    descending: bool = False,
) -> torch.Tensor:
    """Soft ranks: projection of ``x / strength`` onto the permutahedron (Blondel et al. 2020).

    Ranks are 1-based. ``descending=False`` (default, as ``torchsort``): rank 1 is the smallest
    value, rank n the largest; ``descending=True``: rank 1 is the largest. As
    ``regularization_strength -> 0`` the result tends to the hard ranks, with tied values getting
    their average rank (``[1, 1, 2, 0]`` gives ``[2.5, 2.5, 4, 1]``: the projection pools them;
    exact to about 1e-9 while ``|x| / strength`` stays below ~1e13 in float64, and no longer past
    ~1e15, where float64 has no room for rank-sized differences); as
    it grows, every rank tends to the mean ``(n + 1) / 2`` (``"l2"``). With ``"l2"`` each row sums
    to ``n (n + 1) / 2``; ``"kl"`` gives positive ranks (the projection in log space). Gradients
    are exact (custom autograd, O(n) backward after the sort), and so are second derivatives
    (double backward), between the kinks where the sorting order or the pooled blocks change.

    Args:
        x: ``(n,)`` or ``(B, n)`` x float, finite.
        regularization_strength: ``epsilon > 0``.
        regularization: ``"l2"`` (quadratic) or ``"kl"`` (entropic).
        descending: rank 1 for the largest value instead of the smallest.

    Returns:
        ``x``'s shape x ``x``'s dtype, on ``x``'s device.

    Raises:
        TypeError: ``x`` not a floating tensor, ``regularization_strength`` not a number.
        ValueError: empty/non-finite/not 1-D or 2-D ``x``, strength <= 0, unknown regularization.

    Example:
        >>> soft_rank(torch.tensor([[3.0, 1.0, 2.0]]), regularization_strength=1e-3)
        tensor([[3., 1., 2.]])
    """
    x = _check_input("x", x)
    eps = check_positive("regularization_strength", regularization_strength)
    reg = _check_regularization(regularization)
    sign = -1.0 if descending else 1.0
    x2 = x.unsqueeze(0) if x.dim() == 1 else x  # (B, n)
    if x2.dtype in (torch.float16, torch.bfloat16):
        x2 = x2.to(_solver_dtype(x2))  # x / strength overflows float16 (100 / 1e-3 = inf)
    out = _SoftRank.apply(x2 * (sign / eps), reg).to(x.dtype)
    return out.squeeze(0) if x.dim() == 1 else out


def soft_sort(
    x: torch.Tensor,
    regularization_strength: float = 1.0,
    regularization: str = "l2",
    descending: bool = False,
) -> torch.Tensor:
    """Soft sort: projection of ``rho / strength`` onto the permutahedron of ``x`` (Blondel et al.).

    Ascending by default (as ``torchsort``). As ``regularization_strength -> 0`` the result tends to
    ``torch.sort(x)``; for large strengths the values collapse towards the row mean (``"l2"``).

    Args:
        x: ``(n,)`` or ``(B, n)`` x float, finite.
        regularization_strength: ``epsilon > 0``.
        regularization: ``"l2"`` or ``"kl"``.
        descending: sort from largest to smallest.

    Returns:
        ``x``'s shape x ``x``'s dtype, on ``x``'s device; each row is sorted.

    Raises:
        TypeError, ValueError: as :func:`soft_rank`.
    """
    x = _check_input("x", x)
    eps = check_positive("regularization_strength", regularization_strength)
    reg = _check_regularization(regularization)
    sign = 1.0 if descending else -1.0
    x2 = x.unsqueeze(0) if x.dim() == 1 else x
    out = sign * _SoftSort.apply(x2 * sign, eps, reg)
    return out.squeeze(0) if x.dim() == 1 else out


def _check_tau(tau: float) -> float:
    return check_positive("tau", tau)


def neural_sort(scores: torch.Tensor, tau: float = 1.0, descending: bool = True) -> torch.Tensor:
    """NeuralSort relaxed permutation matrix (Grover et al., ICLR 2019, eq. 5).

    ``P[i, :] = softmax(((n + 1 - 2 i) s - A_s 1) / tau)`` with ``A_s[j, k] = |s_j - s_k|``; row
    ``i`` (0-based) softly selects the ``i``-th largest score (``descending=True``, the paper's
    convention) or the ``i``-th smallest. Rows sum to 1; ``tau -> 0`` gives the hard permutation
    ``P[i, argsort(s)[i]] = 1`` and ``P @ s`` the sorted scores.

    Args:
        scores: ``(n,)`` or ``(B, n)`` x float, finite.
        tau: temperature > 0.
        descending: largest first (default) or smallest first.

    Returns:
        ``(n, n)`` or ``(B, n, n)`` x float, row-stochastic, in the scores' dtype (float16 /
        bfloat16 scores are computed in float32 and cast back).
    """
    scores = _check_input("scores", scores)
    t = _check_tau(tau)
    s = scores.unsqueeze(0) if scores.dim() == 1 else scores
    s = s.to(work_dtype(s.dtype))  # half precision: A_s 1 and (n+1-2i) s overflow float16
    s = s if descending else -s
    n = s.shape[1]
    a_sum = (s.unsqueeze(2) - s.unsqueeze(1)).abs().sum(dim=2)  # (B, n): A_s 1
    scaling = n + 1 - 2 * torch.arange(1, n + 1, dtype=s.dtype, device=s.device)  # (n,)
    logits = scaling.view(1, n, 1) * s.unsqueeze(1) - a_sum.unsqueeze(1)  # (B, n, n)
    p = torch.softmax(logits / t, dim=-1).to(scores.dtype)
    return p.squeeze(0) if scores.dim() == 1 else p


def soft_sort_matrix(scores: torch.Tensor, tau: float = 1.0, descending: bool = True) -> torch.Tensor:
    """SoftSort relaxed permutation matrix (Prillo and Eisenschlos, ICML 2020).

    ``P = softmax(-|sort(s)[:, None] - s[None, :]| / tau)`` (the paper's d = |.|); row ``i``
    softly selects the ``i``-th largest score (``descending=True``) or smallest. Rows sum to 1;
    ``tau -> 0`` gives the hard permutation. Gradients flow through ``s`` in both places, the
    sorted values included (as in the paper); only the sorting permutation is piecewise constant.

    Args:
        scores: ``(n,)`` or ``(B, n)`` x float, finite.
        tau: temperature > 0.
        descending: largest first (default) or smallest first.

    Returns:
        ``(n, n)`` or ``(B, n, n)`` x float, row-stochastic.
    """
    scores = _check_input("scores", scores)
    t = _check_tau(tau)
    s = scores.unsqueeze(0) if scores.dim() == 1 else scores
    sorted_s = torch.sort(s, dim=1, descending=descending).values  # (B, n)
    p = torch.softmax(-(sorted_s.unsqueeze(2) - s.unsqueeze(1)).abs() / t, dim=-1)  # (B, n, n)
    return p.squeeze(0) if scores.dim() == 1 else p


def pairwise_soft_rank(x: torch.Tensor, tau: float = 1.0, descending: bool = False) -> torch.Tensor:
    """Pairwise-sigmoid soft ranks: ``r_i = 0.5 + sum_j sigmoid((x_i - x_j) / tau)``.

    Same convention as :func:`soft_rank`: 1-based, rank 1 = smallest by default; with
    ``descending=True`` the differences flip (``(x_j - x_i)``) and rank 1 = largest. The
    self-term contributes ``0.5``, so ``r_i = 1 + sum_{j != i} sigmoid(...)`` and every row sums to
    ``n (n + 1) / 2``. Builds a ``(B, n, n)`` tensor: O(n^2) time and memory (a baseline).

    Args:
        x: ``(n,)`` or ``(B, n)`` x float, finite.
        tau: temperature > 0; ``tau -> 0`` gives the hard ranks (distinct values).
        descending: rank 1 for the largest value.

    Returns:
        ``x``'s shape x float.
    """
    x = _check_input("x", x)
    t = _check_tau(tau)
    x2 = x.unsqueeze(0) if x.dim() == 1 else x
    diff = x2.unsqueeze(2) - x2.unsqueeze(1)  # (B, n, n): x_i - x_j
    if descending:
        diff = -diff
    r = 0.5 + torch.sigmoid(diff / t).sum(dim=2)
    return r.squeeze(0) if x.dim() == 1 else r


def sigmoid_topk_mask(scores: torch.Tensor, k: int, tau: float = 1.0) -> torch.Tensor:
    """Smooth mask of the ``k`` LARGEST scores: ``sigmoid((s - t) / tau)``.

    ``t`` is the midpoint between the k-th and (k+1)-th largest score of each row (for ``k = n``,
    the smallest score minus 1). Entries above ``t`` tend to 1, below to 0; the mask sums to about
    ``k`` when ``tau`` is small against the gap at the threshold, and ``tau -> 0`` gives the hard
    ``torch.topk`` mask (distinct scores). Gradients flow through ``s`` and through ``t`` (the two
    scores that define it). Note: a published Rust implementation of this trick selects the
    smallest k; this one really selects the largest.

    Args:
        scores: ``(n,)`` or ``(B, n)`` x float, finite.
        k: number of items to keep, ``1 <= k <= n``.
        tau: temperature > 0.

    Returns:
        ``scores``' shape x float in (0, 1).
    """
    scores = _check_input("scores", scores)
    t = _check_tau(tau)
    s = scores.unsqueeze(0) if scores.dim() == 1 else scores
    n = s.shape[1]
    k = check_k("k", k, n)
    s = s.to(work_dtype(s.dtype))  # 40000 + 30000 overflows fp16
    if k < n:
        top = torch.topk(s, k + 1, dim=1).values  # (B, k + 1), descending
        thr = 0.5 * (top[:, k - 1] + top[:, k])  # (B,)
    else:
        thr = s.min(dim=1).values - 1.0
    mask = torch.sigmoid((s - thr.unsqueeze(1)) / t).to(scores.dtype)
    return mask.squeeze(0) if scores.dim() == 1 else mask
