"""A plain numpy implementation of soft sort / soft rank (Blondel et al., ICML 2020), for checking.

Written straight from the paper: sort, then a sequential pool-adjacent-violators pass (one
Python loop over the elements, one stack of blocks), then un-sort. No vectorisation and no
batching tricks, so that it is easy to read against the paper and independent of the torch
implementation in :mod:`rag_relax_plugins.core.softsort` (which pools violating blocks in parallel
rounds). Used by ``tests/core/test_softsort.py`` and ``benchmarks/bench_soft_rank.py``.

Conventions follow the paper's reference code: ranks are 1-based and ascending by default
(rank 1 = smallest value); ``descending=True`` gives rank 1 to the largest value.
"""

from __future__ import annotations

import numpy as np

__all__ = ["isotonic_kl", "isotonic_l2", "projection", "soft_rank_np", "soft_sort_np"]


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + float(np.log(np.sum(np.exp(x - m))))


def isotonic_l2(y: np.ndarray) -> np.ndarray:
    """``argmin_{v_1 >= ... >= v_n} 0.5 ||v - y||^2`` by sequential PAV."""
    sums: list[float] = []
    counts: list[int] = []
    for value in y.tolist():
        sums.append(value)
        counts.append(1)
        # pool while the last block's mean exceeds the one before it (a violation of >=)
        while len(sums) > 1 and sums[-2] / counts[-2] < sums[-1] / counts[-1]:
            s, c = sums.pop(), counts.pop()
            sums[-1] += s
            counts[-1] += c
    return np.concatenate([np.full(c, s / c) for s, c in zip(sums, counts, strict=True)])


def isotonic_kl(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``argmin_{v_1 >= ... >= v_n} <exp(y - v), 1> + <exp(w), v>`` by sequential PAV.

    A block ``B`` takes the value ``logsumexp(y_B) - logsumexp(w_B)``.
    """
    blocks: list[tuple[int, int]] = []  # (start, end) half-open

    def value(b: tuple[int, int]) -> float:
        return _logsumexp(y[b[0] : b[1]]) - _logsumexp(w[b[0] : b[1]])

    for i in range(len(y)):
        blocks.append((i, i + 1))
        while len(blocks) > 1 and value(blocks[-2]) < value(blocks[-1]):
            last = blocks.pop()
            blocks[-1] = (blocks[-1][0], last[1])
    return np.concatenate([np.full(b[1] - b[0], value(b)) for b in blocks])


def projection(theta: np.ndarray, w: np.ndarray, regularization: str) -> np.ndarray:
    """Projection of ``theta`` onto the permutahedron of ``w`` (the paper's P_Q / P_E)."""
    perm = np.argsort(-theta, kind="stable")  # descending
    s = theta[perm]
    dual = isotonic_l2(s - w) if regularization == "l2" else isotonic_kl(s, w)
    out = np.empty_like(s)
    out[perm] = s - dual
    return out


def soft_rank_np(
    x: np.ndarray, regularization_strength: float = 1.0, regularization: str = "l2", descending: bool = False
) -> np.ndarray:
    """Soft ranks of each row of ``x`` (``(n,)`` or ``(B, n)``), float64."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[1]
    sign = -1.0 if descending else 1.0
    w = np.arange(n, 0, -1, dtype=np.float64)
    rows = []
    for row in x:
        theta = row * sign / regularization_strength
        if regularization == "kl":
            rows.append(np.exp(projection(theta, np.log(w), "kl")))
        else:
            rows.append(projection(theta, w, "l2"))
    return np.stack(rows)


def soft_sort_np(
    x: np.ndarray, regularization_strength: float = 1.0, regularization: str = "l2", descending: bool = False
) -> np.ndarray:
    """Soft sort of each row of ``x`` (``(n,)`` or ``(B, n)``), float64, ascending by default."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[1]
    sign = 1.0 if descending else -1.0
    w = np.arange(n, 0, -1, dtype=np.float64) / regularization_strength
    rows = []
    for row in x:
        s = np.sort(sign * row)[::-1]  # descending
        dual = isotonic_l2(w - s) if regularization == "l2" else isotonic_kl(w, s)
        rows.append(sign * (w - dual))
    return np.stack(rows)
