from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_relax_plugins.core.contrastive import info_nce, triplet_margin
from rag_relax_plugins.core.metrics import ndcg_at_k
from rag_relax_plugins.core.ranking_losses import (
    approx_ndcg_loss,
    lambda_loss,
    list_mle_loss,
    list_net_loss,
    neural_ndcg_loss,
    soft_spearman_loss,
)

LOSSES = [list_net_loss, approx_ndcg_loss, lambda_loss, neural_ndcg_loss, soft_spearman_loss]


def _case(seed=0, b=3, n=5):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, n, dtype=torch.float64, generator=g)
    r = torch.randint(0, 4, (b, n), generator=g).to(torch.float64)
    m = torch.ones(b, n, dtype=torch.bool)
    if b > 1:
        m[1, -2:] = False
    return s, r, m


def test_listnet_hand_worked():
    s = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    r = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    p = np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum()
    logq = np.array([1, 2, 3]) - np.log(np.exp([1, 2, 3]).sum())
    assert float(list_net_loss(s, r)) == pytest.approx(-(p * logq).sum())


def test_listmle_reference():
    s = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    r = torch.tensor([[2.0, 0.0, 1.0]], dtype=torch.float64)  # order: 0, 2, 1
    order = [0, 2, 1]
    ref = 0.0
    for i in range(3):
        rest = [float(s[0, j]) for j in order[i:]]
        ref += math.log(sum(math.exp(x) for x in rest)) - float(s[0, order[i]])
    assert float(list_mle_loss(s, r)) == pytest.approx(ref)


def test_approx_ndcg_tends_to_true_ndcg():
    s, r, _ = _case(1, b=1, n=8)
    ranking = torch.argsort(s[0], descending=True).tolist()
    qrels = {i: float(r[0, i]) for i in range(8)}
    true = ndcg_at_k(ranking, qrels, 8)
    assert float(approx_ndcg_loss(s, r, temperature=1e-4)) == pytest.approx(1 - true, abs=1e-6)
    true5 = ndcg_at_k(ranking, qrels, 5)
    assert float(approx_ndcg_loss(s, r, temperature=1e-4, k=5)) == pytest.approx(1 - true5, abs=1e-6)


def test_neural_ndcg_tends_to_true_ndcg():
    s, r, _ = _case(2, b=1, n=6)
    ranking = torch.argsort(s[0], descending=True).tolist()
    true = ndcg_at_k(ranking, {i: float(r[0, i]) for i in range(6)}, 6)
    assert float(neural_ndcg_loss(s, r, temperature=1e-3)) == pytest.approx(1 - true, abs=1e-4)


def test_perfect_order_gives_small_losses():
    r = torch.tensor([[3.0, 2.0, 1.0, 0.0]], dtype=torch.float64)
    s = r * 10
    assert float(approx_ndcg_loss(s, r, temperature=0.01)) < 1e-6
    assert float(soft_spearman_loss(s, r, temperature=0.01)) < 1e-6
    worse = lambda_loss(-s, r)
    assert float(lambda_loss(s, r)) < float(worse)


@pytest.mark.parametrize("loss", [*LOSSES, list_mle_loss])
def test_padding_does_not_change_the_loss(loss):
    s, r, m = _case(3)
    kw = {"generator": torch.Generator().manual_seed(0)} if loss is list_mle_loss else {}
    base = loss(s, r, m, reduction="none", **kw)
    s2 = s.clone()
    s2[~m] = 123.0
    r2 = r.clone()
    r2[~m] = 3.0
    kw = {"generator": torch.Generator().manual_seed(0)} if loss is list_mle_loss else {}
    torch.testing.assert_close(loss(s2, r2, m, reduction="none", **kw), base)


@pytest.mark.parametrize("loss", [*LOSSES, list_mle_loss])
def test_all_masked_row_is_zero_not_nan(loss):
    s, r, m = _case(4)
    m[0] = False
    out = loss(s, r, m, reduction="none")
    assert torch.isfinite(out).all() and float(out[0]) == 0.0


@pytest.mark.parametrize("loss", LOSSES)
def test_gradcheck(loss):
    s, r, m = _case(5)
    s.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: loss(x, r, m), (s,))


def test_gradcheck_listmle_and_contrastive():
    s, r, m = _case(6)
    s.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: list_mle_loss(x, r, m, generator=torch.Generator().manual_seed(0)), (s,))
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    d = torch.randn(4, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    for sim in ("cosine", "dot", "neg_l2"):
        assert torch.autograd.gradcheck(lambda a, b: info_nce(a, b, temperature=0.5, similarity=sim, symmetric=True), (q, d))
    a, p, n = (torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda x, y, z: triplet_margin(x, y, z, margin=5.0), (a, p, n))


def test_info_nce_reference():
    g = torch.Generator().manual_seed(1)
    q, d = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    logits = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(d, dim=1).T / 0.1
    ref = sum(-torch.log_softmax(logits[i], 0)[i] for i in range(3)) / 3
    assert float(info_nce(q, d, temperature=0.1)) == pytest.approx(float(ref), rel=1e-5)


def test_triplet_hand_worked():
    a = torch.tensor([[0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0]])
    n = torch.tensor([[0.0, 3.0]])
    assert float(triplet_margin(a, p, n, margin=1.0)) == 0.0
    assert float(triplet_margin(a, p, n, margin=3.0)) == pytest.approx(1.0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(2, 8))
def test_losses_are_finite_and_nonnegative(seed, b, n):
    s, r, m = _case(seed, b=b, n=n)
    for loss in [*LOSSES, list_mle_loss]:
        v = float(loss(s, r, m))
        assert math.isfinite(v) and v >= -1e-9


def test_bad_input():
    s = torch.randn(2, 3)
    with pytest.raises(ValueError, match="relevance must have the shape"):
        list_net_loss(s, torch.zeros(2, 4))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        list_net_loss(s, torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        lambda_loss(torch.tensor([[1.0, float("nan")]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="scores must be 2-D"):
        approx_ndcg_loss(torch.randn(3), torch.zeros(3))
    with pytest.raises(ValueError, match="temperature must be"):
        approx_ndcg_loss(s, torch.zeros(2, 3), temperature=0)
    with pytest.raises(ValueError, match="reduction"):
        list_net_loss(s, torch.zeros(2, 3), reduction="avg")
    with pytest.raises(ValueError, match="docs must be"):
        info_nce(torch.randn(2, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match="share a shape"):
        triplet_margin(torch.randn(2, 3), torch.randn(2, 3), torch.randn(1, 3))
    with pytest.raises(TypeError, match="floating-point"):
        list_net_loss(torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 3))


@pytest.mark.parametrize("loss", [approx_ndcg_loss, neural_ndcg_loss])
def test_a_cut_past_int64_is_the_whole_list(loss) -> None:
    # k=10**30 overflowed inside torch (OverflowError); past the list it is the whole list (review)
    g = torch.Generator().manual_seed(0)
    s, r = torch.randn(2, 5, generator=g), torch.randint(0, 3, (2, 5), generator=g).float()
    assert torch.equal(loss(s, r, k=10**30), loss(s, r, k=5))
