"""Soft sort / soft rank (Blondel et al. 2020), NeuralSort, SoftSort, pairwise rank, sigmoid top-k."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_relax_plugins.core.isotonic import isotonic_decreasing
from rag_relax_plugins.core.softsort import (
    neural_sort,
    pairwise_soft_rank,
    sigmoid_topk_mask,
    soft_rank,
    soft_sort,
    soft_sort_matrix,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from softsort_reference import isotonic_l2, soft_rank_np, soft_sort_np

REGS = ("l2", "kl")


def _rand(b: int, n: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("strength", [0.01, 0.3, 1.0, 10.0])
@pytest.mark.parametrize("descending", [False, True])
def test_soft_rank_matches_numpy_reference(reg, strength, descending):
    x = _rand(6, 40, seed=int(strength * 100)) * 3
    ours = soft_rank(x, strength, reg, descending=descending)
    ref = soft_rank_np(x.numpy(), strength, reg, descending=descending)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("strength", [0.01, 0.3, 1.0, 10.0])
@pytest.mark.parametrize("descending", [False, True])
def test_soft_sort_matches_numpy_reference(reg, strength, descending):
    x = _rand(6, 40, seed=7 + int(strength * 100)) * 3
    ours = soft_sort(x, strength, reg, descending=descending)
    ref = soft_sort_np(x.numpy(), strength, reg, descending=descending)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-9, rtol=1e-9)


def test_reference_on_ties_and_float32():
    x = torch.tensor([[1.0, 1.0, 2.0, 0.0, 2.0, 1.0]])
    np.testing.assert_allclose(soft_rank(x, 0.5).numpy(), soft_rank_np(x.numpy(), 0.5), atol=1e-6)
    x32 = _rand(3, 200, seed=3, dtype=torch.float32)
    out = soft_rank(x32, 0.1)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), soft_rank_np(x32.numpy(), 0.1), atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=1, max_size=30))
def test_parallel_pav_equals_sequential_pav(values):
    y = torch.tensor([values], dtype=torch.float64)
    sol = isotonic_decreasing(y, torch.zeros_like(y), "l2")
    np.testing.assert_allclose(sol.values[0].numpy(), isotonic_l2(np.array(values)), atol=1e-8, rtol=1e-10)
    assert bool((sol.values[0, :-1] >= sol.values[0, 1:] - 1e-9).all())


@pytest.mark.parametrize("reg", REGS)
def test_small_strength_gives_hard_ranks_and_sort(reg):
    x = _rand(4, 25, seed=1)
    hard_rank = (torch.argsort(torch.argsort(x, dim=1), dim=1) + 1).to(x.dtype)
    torch.testing.assert_close(soft_rank(x, 1e-4, reg), hard_rank, atol=1e-6, rtol=0)
    torch.testing.assert_close(soft_rank(x, 1e-4, reg, descending=True), x.shape[1] + 1 - hard_rank, atol=1e-6, rtol=0)
    torch.testing.assert_close(soft_sort(x, 1e-4, reg), torch.sort(x, dim=1).values, atol=1e-6, rtol=0)
    torch.testing.assert_close(soft_sort(x, 1e-4, reg, descending=True), torch.sort(x, dim=1, descending=True).values, atol=1e-6, rtol=0)


def test_large_strength_collapses_to_the_mean():
    x = _rand(3, 10, seed=2)
    r = soft_rank(x, 1e6)
    torch.testing.assert_close(r, torch.full_like(r, 5.5), atol=1e-4, rtol=0)
    s = soft_sort(x, 1e6)
    torch.testing.assert_close(s, x.mean(dim=1, keepdim=True).expand_as(s), atol=1e-4, rtol=0)


def test_l2_rank_rows_sum_and_sort_is_monotone():
    x = _rand(5, 30, seed=4)
    for eps in (0.05, 1.0, 5.0):
        torch.testing.assert_close(soft_rank(x, eps).sum(dim=1), torch.full((5,), 30 * 31 / 2, dtype=x.dtype))
        s = soft_sort(x, eps)
        assert bool((s[:, 1:] >= s[:, :-1] - 1e-12).all())
    assert bool((soft_rank(x, 1.0, "kl") > 0).all())


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("descending", [False, True])
def test_gradcheck_soft_rank_and_sort(reg, descending):
    # distinct, well-separated values: the ops are piecewise smooth, with kinks where blocks change
    x = (torch.randperm(8, generator=torch.Generator().manual_seed(5)).to(torch.float64) * 0.7).view(2, 4)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: soft_rank(t, 0.8, reg, descending=descending), (x,))
    assert torch.autograd.gradcheck(lambda t: soft_sort(t, 0.8, reg, descending=descending), (x,))


def test_gradcheck_relaxed_permutations_pairwise_and_sigmoid_mask():
    x = _rand(2, 5, seed=6).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: neural_sort(t, 0.7), (x,))
    assert torch.autograd.gradcheck(lambda t: soft_sort_matrix(t, 0.7), (x,))
    assert torch.autograd.gradcheck(lambda t: pairwise_soft_rank(t, 0.7), (x,))
    assert torch.autograd.gradcheck(lambda t: sigmoid_topk_mask(t, 2, 0.7), (x,))


def test_gradient_of_rank_loss_flows_to_a_scorer():
    torch.manual_seed(0)
    scorer = torch.nn.Linear(3, 1)
    feats = torch.randn(12, 3)
    target = torch.arange(1, 13, dtype=torch.float32)
    loss = ((soft_rank(scorer(feats).view(1, -1), 0.5) - target) ** 2).mean()
    loss.backward()
    assert scorer.weight.grad is not None and float(scorer.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("op", [neural_sort, soft_sort_matrix])
@pytest.mark.parametrize("descending", [True, False])
def test_relaxed_permutation_matrices(op, descending):
    s = _rand(3, 7, seed=8)
    p = op(s, 1.0, descending=descending)
    assert p.shape == (3, 7, 7)
    torch.testing.assert_close(p.sum(dim=-1), torch.ones(3, 7, dtype=s.dtype))
    hard = op(s, 1e-4, descending=descending)
    order = torch.argsort(s, dim=1, descending=descending)
    torch.testing.assert_close(hard, torch.nn.functional.one_hot(order, 7).to(s.dtype), atol=1e-6, rtol=0)
    torch.testing.assert_close(hard @ s.unsqueeze(-1), torch.sort(s, dim=1, descending=descending).values.unsqueeze(-1), atol=1e-6, rtol=0)


def test_pairwise_soft_rank_properties():
    x = _rand(4, 9, seed=9)
    r = pairwise_soft_rank(x, 1.0)
    torch.testing.assert_close(r.sum(dim=1), torch.full((4,), 45.0, dtype=x.dtype))
    hard = (torch.argsort(torch.argsort(x, dim=1), dim=1) + 1).to(x.dtype)
    torch.testing.assert_close(pairwise_soft_rank(x, 1e-5), hard, atol=1e-6, rtol=0)
    torch.testing.assert_close(pairwise_soft_rank(x, 1e-5, descending=True), 10 - hard, atol=1e-6, rtol=0)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.data())
def test_sigmoid_topk_selects_the_largest(n, data):
    k = data.draw(st.integers(1, n))
    x = torch.randperm(n, generator=torch.Generator().manual_seed(n * 31 + k)).to(torch.float64).view(1, n)
    mask = sigmoid_topk_mask(x, k, tau=1e-3)
    hard = torch.zeros_like(x).scatter_(1, torch.topk(x, k, dim=1).indices, 1.0)
    torch.testing.assert_close(mask, hard, atol=1e-6, rtol=0)
    soft = sigmoid_topk_mask(x / n, k, tau=0.3)
    assert bool(((soft >= 0) & (soft <= 1)).all())
    if k < n:  # the k largest always weigh more than the rest
        assert float(soft[hard.bool()].min()) > float(soft[~hard.bool()].max())


def test_one_dimensional_inputs_and_device_dtype_follow():
    x = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float32)
    for out in (soft_rank(x), soft_sort(x), pairwise_soft_rank(x), sigmoid_topk_mask(x, 1)):
        assert out.shape == (3,) and out.dtype == torch.float32 and out.device == x.device
    assert neural_sort(x).shape == (3, 3)


def test_large_n_runs_batched():
    x = torch.randn(2, 100_000, generator=torch.Generator().manual_seed(0), requires_grad=True)
    r = soft_rank(x, 1.0)
    r.sum().backward()
    assert r.shape == (2, 100_000) and x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("op", [soft_rank, soft_sort])
def test_bad_input(op):
    with pytest.raises(ValueError, match="x"):
        op(torch.empty(0))
    with pytest.raises(ValueError, match="x"):
        op(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="x"):
        op(torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="x"):
        op(torch.zeros(2, 2, 2))
    with pytest.raises(TypeError, match="x"):
        op(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="regularization_strength"):
        op(torch.tensor([1.0, 2.0]), 0.0)
    with pytest.raises(ValueError, match="regularization"):
        op(torch.tensor([1.0, 2.0]), 1.0, "l1")
    with pytest.raises(ValueError, match="k"):
        sigmoid_topk_mask(torch.tensor([1.0, 2.0]), 3)
    with pytest.raises(ValueError, match="k"):
        sigmoid_topk_mask(torch.tensor([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="tau"):
        neural_sort(torch.tensor([1.0, 2.0]), tau=-1.0)


@pytest.mark.parametrize("reg", REGS)
def test_float16_soft_rank_scales_in_the_work_dtype(reg):
    # x / strength was formed in float16 before the float64 solver: 100 / 1e-3 overflowed to inf
    # and the rank was NaN (review 2026-12-02); float32 and bfloat16 gave the hard ranks
    x = torch.tensor([[100.0, 50.0, 10.0, 0.0]])
    for strength in (1e-3, 1e-5):
        out = soft_rank(x.half(), strength, reg)
        assert out.dtype == torch.float16
        assert out.tolist() == soft_rank(x, strength, reg).tolist() == [[4.0, 3.0, 2.0, 1.0]]
    assert soft_rank(torch.tensor([3.0, 1.0, 2.0], dtype=torch.float16), 1e-5, reg).tolist() == [3.0, 1.0, 2.0]
    # values and gradients equal float32's (the same float16-exact inputs) up to float16 rounding;
    # 100.0625 / 0.1 = 1000.625 is not a float16 number, so scaling in float16 also shifted the ranks
    x16 = torch.tensor([[100.0, 100.0625, 50.0], [0.25, 0.5, 0.125]], dtype=torch.float16, requires_grad=True)
    x32 = x16.detach().float().requires_grad_(True)
    w = torch.tensor([1.0, -2.0, 0.5])
    r16, r32 = soft_rank(x16, 0.1, reg, descending=True), soft_rank(x32, 0.1, reg, descending=True)
    torch.testing.assert_close(r16.float(), r32, atol=0, rtol=1e-3)
    (r16.float() * w).sum().backward()
    (r32 * w).sum().backward()
    torch.testing.assert_close(x16.grad.float(), x32.grad, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_argsort_equals_torchs_stable_descending_sort(dtype: torch.dtype) -> None:
    """The numpy fast path (quicksort, stable re-sort of rows with ties) against torch's stable sort."""
    from rag_relax_plugins.core.softsort import argsort_descending

    g = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(32, 1000, generator=g),  # no ties
        torch.randint(0, 5, (16, 200), generator=g).float(),  # many ties in every row
        torch.cat([torch.randn(3, 50, generator=g), torch.zeros(1, 50), torch.ones(2, 50)]),  # some rows tied
        torch.tensor([[0.0, -0.0, 1.0, -0.0, 0.0]]),  # signed zeros compare equal
        torch.randn(5, 1, generator=g),
        torch.randn(64, 7, generator=g).t().contiguous().t(),  # non-contiguous view
    ]
    for x in cases:
        x = x.to(dtype)
        got = argsort_descending(x)
        assert got.dtype == torch.int64
        assert torch.equal(got, torch.argsort(x, dim=1, descending=True, stable=True))


@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("strength", [1e-9, 1e-12, 1e-15])
def test_a_tiny_strength_gives_the_hard_sort_and_ranks_without_cancellation(regularization: str, strength: float) -> None:
    """The output was a - (a - b) with a about n / strength: soft_sort at 1e-15 gave [-1, 0, 0.25, 2]
    for [-1.2, 0.1, 0.3, 2], and "kl" soft ranks at n = 1000 were off by up to 128 (review)."""
    x = torch.tensor([0.3, -1.2, 2.0, 0.1], dtype=torch.float64)
    assert soft_sort(x, strength, regularization).tolist() == [-1.2, 0.1, 0.3, 2.0]
    assert torch.allclose(soft_rank(x, strength, regularization), torch.tensor([3.0, 1.0, 4.0, 2.0], dtype=torch.float64),
                          rtol=0, atol=1e-12)
    big = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hard = big.argsort(dim=1).argsort(dim=1).to(torch.float64) + 1
    assert torch.allclose(soft_rank(big, strength, regularization), hard, rtol=0, atol=1e-9)
    assert torch.equal(soft_sort(big, strength, regularization), big.sort(dim=1).values)


@pytest.mark.parametrize(("regularization", "strength"), [("l2", 1e-12), ("l2", 1e-9), ("kl", 1e-12), ("kl", 1e-9)])
def test_tied_values_get_their_average_rank_at_a_tiny_strength(regularization: str, strength: float) -> None:
    """Tied values pool into one block, whose ranks cancelled too: [5, 5, 1, 3] at 1e-15 gave
    [3, 3, 1, 2] (l2) and "kl" at 1e-12 gave 3.49926 for the pair (review). (Where |x| / strength
    reaches ~1e15 the solver itself loses the pooling: float64 has no room left for rank-sized
    differences, e.g. one rank of 300 tied values off by 0.5 at 1e-15.)"""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 20, (2, 300), generator=g).to(torch.float64)  # many ties
    below, equal = (x[:, None, :] < x[:, :, None]).sum(-1), (x[:, None, :] == x[:, :, None]).sum(-1)
    average_rank = below.to(torch.float64) + (equal.to(torch.float64) + 1) / 2
    assert torch.allclose(soft_rank(x, strength, regularization), average_rank, rtol=0, atol=1e-9)
    four = soft_rank(torch.tensor([5.0, 5.0, 1.0, 3.0], dtype=torch.float64), strength, regularization)
    assert torch.allclose(four, torch.tensor([3.5, 3.5, 1.0, 2.0], dtype=torch.float64), rtol=0, atol=1e-12)
