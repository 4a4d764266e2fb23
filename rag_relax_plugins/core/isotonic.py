"""Batched isotonic regression (decreasing) by pool-adjacent-violators, in torch.

The solver behind :mod:`rag_relax_plugins.core.softsort`, following Blondel, Teboul, Berthet and
Djolonga, "Fast Differentiable Sorting and Ranking" (ICML 2020), section 5 and their reference code
(google-research/fast-soft-sort). For each row it solves

- ``"l2"``: ``v* = argmin_{v_1 >= ... >= v_n} 0.5 * ||v - (a - b)||^2``; a pooled block ``B`` takes
  the value ``mean(a_B - b_B)``;
- ``"kl"``: ``v* = argmin_{v_1 >= ... >= v_n} <exp(a - v), 1> + <exp(b), v>``; a pooled block takes
  ``logsumexp(a_B) - logsumexp(b_B)``.

Departure from the paper's sequential PAV: blocks are merged in parallel rounds. In each round every
maximal chain of adjacent violating blocks (``v_B < v_B'`` for consecutive ``B, B'``) is pooled at
once, for all rows of the batch together, with segment reductions (``index_add_``/``scatter_reduce_``).
A chain of strictly increasing blocks pools to the same result as merging its pairs one by one (the
pooled value always lies between its parts' values, for both regularisations), and PAV's answer does
not depend on the merge order, so the result is the exact PAV solution. Each round costs O(#blocks)
tensor work; typical inputs need a handful of rounds, adversarial ones (one block absorbing one
neighbour per round) up to O(n) rounds. Everything runs on the input's device; no numpy, no copy to
the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["IsotonicSolution", "isotonic_decreasing", "isotonic_vjp"]

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
    """

    values: torch.Tensor
    block_ids: torch.Tensor
    num_blocks: int
    block_lse_a: torch.Tensor
    block_lse_b: torch.Tensor
    block_sizes: torch.Tensor
    rounds: int


def _segment_lse(x: torch.Tensor, ids: torch.Tensor, m: int) -> torch.Tensor:
    """``logsumexp`` of ``x`` (N,) over the segments ``ids`` (N,) -> (m,)."""
    top = torch.full((m,), float("-inf"), dtype=x.dtype, device=x.device)
    top.scatter_reduce_(0, ids, x, reduce="amax", include_self=True)
    acc = torch.zeros(m, dtype=x.dtype, device=x.device)
    acc.index_add_(0, ids, torch.exp(x - top[ids]))
    return top + torch.log(acc)


def isotonic_decreasing(a: torch.Tensor, b: torch.Tensor, regularization: str = "l2") -> IsotonicSolution:
    """Solve the decreasing isotonic problem of every row (see the module docstring).

    Args:
        a: ``(B, n)`` x float, first input (``"l2"`` regresses ``a - b``).
        b: ``(B, n)`` x float, second input, same shape, dtype and device as ``a``.
        regularization: ``"l2"`` or ``"kl"``.

    Returns:
        An :class:`IsotonicSolution`; ``values`` has ``a``'s shape, dtype and device.

    Raises:
        ValueError: ``regularization`` unknown or ``a``/``b`` not 2-D of the same shape.
    """
    if regularization not in _REGULARIZATIONS:
        raise ValueError(f"regularization must be 'l2' or 'kl', got {regularization!r}")
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must be 2-D of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    rows, n = a.shape
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
    first_of_row[::n] = True
    rounds = 0
    while val.numel() > 1:
        # viol[j]: blocks j and j+1 are in the same row and violate v_j >= v_{j+1}
        viol = (val[:-1] < val[1:]) & ~first_of_row[1:]
        if not bool(viol.any()):
            break
        rounds += 1
        keep = torch.ones_like(first_of_row)
        keep[1:] = ~viol  # a block that violates with its left neighbour joins it
        new_id = torch.cumsum(keep, 0) - 1
        m = int(new_id[-1].item()) + 1
        sizes = torch.zeros(m, dtype=torch.long, device=dev).index_add_(0, new_id, sizes)
        first_of_row = first_of_row[keep]
        if kl:
            s1 = _segment_lse(s1, new_id, m)
            s2 = _segment_lse(s2, new_id, m)
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


def block_softmax(z: torch.Tensor, sol: IsotonicSolution, block_lse: torch.Tensor) -> torch.Tensor:
    """``softmax`` of ``z`` (B, n) within each pooled block, given the blocks' ``logsumexp(z_B)``."""
    return torch.exp(z.reshape(-1) - block_lse[sol.block_ids]).reshape(z.shape)
