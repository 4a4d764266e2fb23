"""Batched isotonic regression (decreasing) by pool-adjacent-violators, in torch.

The solver behind :mod:`rag_relax_plugins.core.softsort`, following Blondel, Teboul, Berthet and
Djolonga, "Fast Differentiable Sorting and Ranking" (ICML 2020), section 5 and their reference code
(google-research/fast-soft-sort). For each row it solves

- ``"l2"``: ``v* = argmin_{v_1 >= ... >= v_n} 0.5 * ||v - (a - b)||^2``; a pooled block ``B`` takes
  the value ``mean(a_B - b_B)``;
- ``"kl"``: ``v* = argmin_{v_1 >= ... >= v_n} <exp(a - v), 1> + <exp(b), v>``; a pooled block takes
  ``logsumexp(a_B) - logsumexp(b_B)``.

Departure from the paper's sequential PAV: blocks are first merged in parallel rounds. In each round
every maximal chain of adjacent violating blocks (``v_B < v_B'`` for consecutive ``B, B'``) is pooled
at once, for all rows of the batch together, with segment reductions (``index_add_``/
``scatter_reduce_``). A chain of strictly increasing blocks pools to the same result as merging its
pairs one by one (the pooled value always lies between its parts' values, for both regularisations),
and PAV's answer does not depend on the merge order, so the result is the exact PAV solution. Each
round costs O(#blocks) tensor work and typical inputs need a handful of rounds, but some need O(n)
(one block absorbing one neighbour per round: O(n^2) in all). So after ``max_rounds`` rounds
(default ``bit_length(n)``, about ``log2(n)``) the blocks left in the rows that still violate are
handed to the paper's sequential PAV (one stack per row, O(#blocks), a Python loop on the host), which
only decides the remaining merges; the pooled sums are then formed by the same segment reductions.
In all: O(n log n) per row. The parallel rounds run on the input's device; the fallback copies the
block sums of the unfinished rows to the host once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rag_relax_plugins.core.validation import check_count

__all__ = ["IsotonicSolution", "isotonic_decreasing", "isotonic_vjp", "segment_logsumexp"]

_REGULARIZATIONS = ("l2", "kl")


@dataclass(frozen=True)
class IsotonicSolution:
    """Result of :func:`isotonic_decreasing`.

    Attributes:
        values: ``(B, n)`` x float, the solution ``v*`` (non-increasing along each row).
        block_ids: ``(B * n,)`` x int64, the pooled block of every element (flattened, row-major;
            blocks never cross rows).
        num_blocks: total number of blocks over the batch.
        block_lse_a: ``(num_blocks,)`` x float, ``logsumexp(a_B)`` per block (``"kl"`` only, else
            an empty tensor).
        block_lse_b: ``(num_blocks,)`` x float, ``logsumexp(b_B)`` per block (``"kl"`` only).
        block_sizes: ``(num_blocks,)`` x int64, number of elements per block.
        rounds: number of parallel merge rounds used.
        sequential_blocks: number of blocks handed to the sequential fallback (0: none was needed).
    """

    values: torch.Tensor
    block_ids: torch.Tensor
    num_blocks: int
    block_lse_a: torch.Tensor
    block_lse_b: torch.Tensor
    block_sizes: torch.Tensor
    rounds: int
    sequential_blocks: int = 0


def segment_logsumexp(x: torch.Tensor, ids: torch.Tensor, m: int) -> torch.Tensor:
    """``logsumexp`` of ``x`` (N,) over the segments ``ids`` (N,) -> (m,); differentiable in ``x``
    (the shift by the segment maximum is detached: the value does not depend on it)."""
    top = torch.full((m,), float("-inf"), dtype=x.dtype, device=x.device)
    top = top.scatter_reduce(0, ids, x.detach(), reduce="amax", include_self=True)
    acc = torch.zeros(m, dtype=x.dtype, device=x.device).index_add(0, ids, torch.exp(x - top[ids]))
    return top + torch.log(acc)


def _sequential_keep(s1: list[float], s2: list[float], first: list[bool], kl: bool) -> list[bool]:
    """Sequential PAV over blocks given by their sums (one stack per row, as the paper's code).

    Args:
        s1, s2: per block, ``sum(a - b)`` and its size (``"l2"``) or ``logsumexp(a_B)`` and
            ``logsumexp(b_B)`` (``"kl"``), in row-major order.
        first: per block, whether it opens a row.
        kl: the regularisation.

    Returns:
        Per block, whether it opens a pooled block of the PAV solution (the others join the block
        on their left).
    """
    keep = [False] * len(s1)
    starts: list[int] = []  # the stack of the current row: first block, sums
    a: list[float] = []
    b: list[float] = []
    for j, opens in enumerate(first):
        if opens:
            for k in starts:
                keep[k] = True
            starts, a, b = [], [], []
        starts.append(j)
        a.append(s1[j])
        b.append(s2[j])
        if kl:
            while len(a) > 1 and a[-2] - b[-2] < a[-1] - b[-1]:  # the value rises: a violation
                starts.pop()
                x, y = a.pop(), b.pop()
                a[-1] = max(a[-1], x) + math.log1p(math.exp(-abs(a[-1] - x)))  # logaddexp
                b[-1] = max(b[-1], y) + math.log1p(math.exp(-abs(b[-1] - y)))
        else:
            while len(a) > 1 and a[-2] / b[-2] < a[-1] / b[-1]:
                starts.pop()
                x, y = a.pop(), b.pop()
                a[-1] += x
                b[-1] += y
    for k in starts:
        keep[k] = True
    return keep


def _fallback_keep(
    s1: torch.Tensor, s2: torch.Tensor, first_of_row: torch.Tensor, viol: torch.Tensor, kl: bool
) -> tuple[torch.Tensor, int]:
    """The merge mask of :func:`_sequential_keep` for the rows that still violate (others keep
    every block); returns it and the number of blocks handed over."""
    row = torch.cumsum(first_of_row, 0) - 1  # (num_blocks,) row of each block
    bad = torch.zeros(int(row[-1].item()) + 1, dtype=torch.bool, device=row.device)
    bad[row[1:][viol]] = True
    sel = bad[row]  # blocks of the unfinished rows
    kept = _sequential_keep(s1[sel].tolist(), s2[sel].tolist(), first_of_row[sel].tolist(), kl)
    keep = torch.ones_like(first_of_row)
    keep[sel] = torch.tensor(kept, dtype=torch.bool, device=keep.device)
    return keep, len(kept)


def isotonic_decreasing(
    a: torch.Tensor, b: torch.Tensor, regularization: str = "l2", *, max_rounds: int | None = None
) -> IsotonicSolution:
    """Solve the decreasing isotonic problem of every row (see the module docstring).

    Args:
        a: ``(B, n)`` x float, first input (``"l2"`` regresses ``a - b``).
        b: ``(B, n)`` x float, second input, same shape, dtype and device as ``a``.
        regularization: ``"l2"`` or ``"kl"``.
        max_rounds: parallel merge rounds before the sequential fallback, an int ``>= 0``;
            ``None`` (default) for ``n.bit_length()``. ``0`` is the sequential PAV alone, a
            value ``>= n`` the parallel rounds alone (O(n^2) in the worst case).

    Returns:
        An :class:`IsotonicSolution`; ``values`` has ``a``'s shape, dtype and device.

    Raises:
        ValueError: ``regularization`` unknown, ``a``/``b`` not 2-D of the same shape, or
            ``max_rounds`` not ``None`` or an int ``>= 0``.
    """
    if regularization not in _REGULARIZATIONS:
        raise ValueError(f"regularization must be 'l2' or 'kl', got {regularization!r}")
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must be 2-D of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    rows, n = a.shape
    limit = n.bit_length() if max_rounds is None else check_count("max_rounds", max_rounds)
    total = rows * n
    dev = a.device
    kl = regularization == "kl"
    # Block-level state, one entry per current block, flattened over rows: (num_blocks,)
    if kl:
        s1 = a.reshape(-1).clone()  # logsumexp(a_B)
        s2 = b.reshape(-1).clone()  # logsumexp(b_B)
        val = s1 - s2
    else:
        s1 = (a - b).reshape(-1).clone()  # sum of a - b over the block
        s2 = torch.ones(total, dtype=a.dtype, device=dev)  # block size as float
        val = s1.clone()
    sizes = torch.ones(total, dtype=torch.long, device=dev)
    first_of_row = torch.zeros(total, dtype=torch.bool, device=dev)
    first_of_row[:: max(n, 1)] = True  # n = 0: no element (a step of 0 raised "slice step cannot be zero")
    rounds = handed = 0
    while val.numel() > 1 and not handed:
        # viol[j]: blocks j and j+1 are in the same row and violate v_j >= v_{j+1}
        viol = (val[:-1] < val[1:]) & ~first_of_row[1:]
        if not bool(viol.any()):
            break
        if rounds < limit:
            rounds += 1
            keep = torch.ones_like(first_of_row)
            keep[1:] = ~viol  # a block that violates with its left neighbour joins it
        else:  # the last merges, decided by sequential PAV; pooled below as a round would
            keep, handed = _fallback_keep(s1, s2, first_of_row, viol, kl)
        new_id = torch.cumsum(keep, 0) - 1
        m = int(new_id[-1].item()) + 1
        sizes = torch.zeros(m, dtype=torch.long, device=dev).index_add_(0, new_id, sizes)
        first_of_row = first_of_row[keep]
        if kl:
            s1 = segment_logsumexp(s1, new_id, m)
            s2 = segment_logsumexp(s2, new_id, m)
            val = s1 - s2
        else:
            s1 = torch.zeros(m, dtype=a.dtype, device=dev).index_add_(0, new_id, s1)
            s2 = torch.zeros(m, dtype=a.dtype, device=dev).index_add_(0, new_id, s2)
            val = s1 / s2
    num_blocks = val.numel()
    block_ids = torch.repeat_interleave(torch.arange(num_blocks, device=dev), sizes)  # (B * n,)
    values = val[block_ids].reshape(rows, n)
    empty = torch.empty(0, dtype=a.dtype, device=dev)
    return IsotonicSolution(
        values=values,
        block_ids=block_ids,
        num_blocks=num_blocks,
        block_lse_a=s1 if kl else empty,
        block_lse_b=s2 if kl else empty,
        block_sizes=sizes,
        rounds=rounds,
        sequential_blocks=handed,
    )


def isotonic_vjp(grad: torch.Tensor, sol: IsotonicSolution, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Vector-Jacobian product of the block-wise averaging Jacobian, without forming ``n x n``.

    The Jacobian of the isotonic solution is block diagonal with, inside a block ``B``, rows equal to
    ``weights_B`` (``1/|B|`` for ``"l2"``; ``softmax`` of the differentiated input over ``B`` for
    ``"kl"``). Hence ``(J^T g)_i = weights_i * sum_{j in B(i)} g_j``.

    Args:
        grad: ``(B, n)`` x float, the incoming gradient ``g``.
        sol: the forward solution (gives the blocks).
        weights: ``(B, n)`` x float per-element weights, or ``None`` for ``1/|B|`` (``"l2"``).

    Returns:
        ``(B, n)`` x float, ``J^T g``.
    """
    flat = grad.reshape(-1)
    sums = torch.zeros(sol.num_blocks, dtype=grad.dtype, device=grad.device).index_add_(0, sol.block_ids, flat)
    if weights is None:
        per = sums / sol.block_sizes.to(grad.dtype)
        return per[sol.block_ids].reshape(grad.shape)
    return (weights.reshape(-1) * sums[sol.block_ids]).reshape(grad.shape)
