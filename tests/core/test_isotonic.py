"""Isotonic regression (PAV): the parallel merge rounds, the sequential fallback after
``max_rounds`` of them, a brute-force reference over every contiguous partition, and the
structured row on which parallel rounds alone took O(n) rounds (O(n^2) time)."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rag_relax_plugins.core.isotonic import isotonic_decreasing
from rag_relax_plugins.core.softsort import soft_rank

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from softsort_reference import isotonic_kl, isotonic_l2, soft_rank_np


def _lse(x: list[float]) -> float:
    m = max(x)
    return m + math.log(sum(math.exp(v - m) for v in x))


def _brute_force(a: list[float], b: list[float], reg: str) -> list[float]:
    """The optimum by enumeration: the solution is constant on contiguous blocks, each at its own
    unconstrained optimum, so the best feasible (non-increasing) partition is the answer."""
    n = len(a)
    best: tuple[float, list[float]] | None = None
    for cuts in itertools.product((False, True), repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        v: list[float] = []
        for lo, hi in itertools.pairwise(bounds):
            if reg == "l2":
                val = sum(a[lo:hi]) / (hi - lo) - sum(b[lo:hi]) / (hi - lo)
            else:
                val = _lse(a[lo:hi]) - _lse(b[lo:hi])
            v += [val] * (hi - lo)
        if any(v[i] < v[i + 1] - 1e-12 for i in range(n - 1)):
            continue
        if reg == "l2":
            obj = 0.5 * sum((vi - (ai - bi)) ** 2 for vi, ai, bi in zip(v, a, b, strict=True))
        else:
            obj = sum(math.exp(ai - vi) + math.exp(bi) * vi for vi, ai, bi in zip(v, a, b, strict=True))
        if best is None or obj < best[0]:
            best = (obj, v)
    assert best is not None
    return best[1]


def _problem(reg: str, rows: int, n: int, seed: int, scale: float, ties: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, w)`` as :func:`soft_rank` builds them: sorted scores against ``n..1`` (log for kl)."""
    x = torch.randn(rows, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    if ties:
        x = torch.round(x)
    s = torch.sort(x, dim=1, descending=True).values
    w = torch.arange(n, 0, -1, dtype=torch.float64).expand(rows, n)
    return s, (torch.log(w) if reg == "kl" else w)


@pytest.mark.parametrize("reg", ["l2", "kl"])
@pytest.mark.parametrize("max_rounds", [0, 1, 2, None, 100])
@pytest.mark.parametrize("ties", [False, True])
def test_every_round_limit_gives_the_brute_force_optimum(reg, max_rounds, ties):
    s, w = _problem(reg, rows=6, n=8, seed=3, scale=2.0, ties=ties)
    s = torch.cat([s, torch.randn(3, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 3])
    w = torch.cat([w, w[:3]])  # unsorted rows too: more violations, all along the row
    sol = isotonic_decreasing(s, w, reg, max_rounds=max_rounds)
    for row in range(s.shape[0]):
        ref = _brute_force(s[row].tolist(), w[row].tolist(), reg)
        np.testing.assert_allclose(sol.values[row].numpy(), ref, atol=1e-9, rtol=0)


@pytest.mark.parametrize("reg", ["l2", "kl"])
@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_sequential_fallback_equals_parallel_rounds_alone(reg, scale):
    s, w = _problem(reg, rows=16, n=300, seed=int(scale * 7), scale=scale, ties=scale == 1.0)
    parallel = isotonic_decreasing(s, w, reg, max_rounds=300)  # the solver before the fallback existed
    ref = np.stack([isotonic_l2((sr - wr).numpy()) if reg == "l2" else isotonic_kl(sr.numpy(), wr.numpy())
                    for sr, wr in zip(s, w, strict=True)])
    for max_rounds in (0, 1, None):
        sol = isotonic_decreasing(s, w, reg, max_rounds=max_rounds)
        assert torch.equal(sol.block_ids, parallel.block_ids)
        assert torch.equal(sol.block_sizes, parallel.block_sizes)
        torch.testing.assert_close(sol.values, parallel.values, atol=1e-10, rtol=1e-12)
        np.testing.assert_allclose(sol.values.numpy(), ref, atol=1e-9, rtol=1e-12)
        if reg == "kl":
            torch.testing.assert_close(sol.block_lse_a, parallel.block_lse_a, atol=1e-10, rtol=1e-12)
            torch.testing.assert_close(sol.block_lse_b, parallel.block_lse_b, atol=1e-10, rtol=1e-12)
    assert isotonic_decreasing(s, w, reg, max_rounds=0).rounds == 0


def _structured_row(n: int) -> torch.Tensor:
    """100 tied top values, then values spaced ``(1 + 1e-4)`` apart: in parallel rounds the top
    block absorbs one neighbour per round (review 2026-12, 9,851 rounds and 14.5 s at n = 10,100)."""
    return torch.cat([torch.zeros(100, dtype=torch.float64), -(1 + 1e-4) * torch.arange(1, n + 1, dtype=torch.float64)])


def test_structured_row_needs_about_log2_n_parallel_rounds():
    x = _structured_row(2500)
    n = x.numel()
    s = torch.sort(x, descending=True).values.unsqueeze(0)
    w = torch.arange(n, 0, -1, dtype=torch.float64).unsqueeze(0)
    easy = torch.sort(torch.randn(1, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64), descending=True).values
    sol = isotonic_decreasing(torch.cat([s, easy]), torch.cat([w, w]))
    assert sol.rounds <= n.bit_length()
    assert 0 < sol.sequential_blocks <= n  # only the unfinished row went to the sequential pass
    np.testing.assert_allclose(sol.values[0].numpy(), isotonic_l2((s - w)[0].numpy()), atol=1e-9, rtol=0)
    np.testing.assert_allclose(sol.values[1].numpy(), isotonic_l2((easy - w)[0].numpy()), atol=1e-9, rtol=0)
    for reg in ("l2", "kl"):
        np.testing.assert_allclose(soft_rank(x, 1.0, reg).numpy(), soft_rank_np(x.numpy(), 1.0, reg)[0], atol=1e-8)


def test_one_element_rows_and_bad_max_rounds():
    s = torch.tensor([[2.0], [-1.0]], dtype=torch.float64)
    sol = isotonic_decreasing(s, torch.zeros_like(s), max_rounds=0)
    assert sol.values.tolist() == [[2.0], [-1.0]] and sol.num_blocks == 2 and sol.sequential_blocks == 0
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="max_rounds"):
            isotonic_decreasing(s, s, max_rounds=bad)  # type: ignore[arg-type]
    assert isotonic_decreasing(s, s, max_rounds=np.int64(2)).num_blocks == 2
