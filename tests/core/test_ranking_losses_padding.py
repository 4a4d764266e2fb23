"""Regression tests for ranking losses: exact masking at any score scale, ListMLE tie-breaking,
Spearman ties, brute-force LambdaLoss, argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from rag_relax_plugins.core.ranking_losses import (
    approx_ndcg_loss,
    lambda_loss,
    list_mle_loss,
    list_net_loss,
    neural_ndcg_loss,
    soft_spearman_loss,
)

ALL = [list_net_loss, list_mle_loss, approx_ndcg_loss, lambda_loss, neural_ndcg_loss, soft_spearman_loss]


@pytest.mark.parametrize("loss", ALL)
@pytest.mark.parametrize("offset", [-3e4, 0.0, 3e4])
def test_masked_items_contribute_nothing_at_any_score_scale(loss, offset):
    g = torch.Generator().manual_seed(11)
    s = torch.randn(2, 4, dtype=torch.float64, generator=g) + offset
    r = torch.tensor([[0.0, 2.0, 1.0, 3.0], [1.0, 0.0, 2.0, 3.0]], dtype=torch.float64)  # no ties (ListMLE)
    m = torch.tensor([[True, True, True, False], [True, False, True, True]])
    kw = {"temperature": 0.5} if loss in (approx_ndcg_loss, neural_ndcg_loss, soft_spearman_loss) else {}
    padded = loss(s, r, m, reduction="none", **kw)
    for row in range(2):
        keep = m[row]
        alone = loss(s[row : row + 1, keep], r[row : row + 1, keep], reduction="none", **kw)
        torch.testing.assert_close(padded[row : row + 1], alone)


def test_listmle_breaks_only_exact_ties():
    s = torch.tensor([[0.0, 3.0]], dtype=torch.float64)
    strict = torch.tensor([[0.5001, 0.5]], dtype=torch.float64)  # item 0 strictly first
    ref = math.log(1 + math.exp(3.0))  # -log P(0 then 1) = log(e^0 + e^3) - 0
    for seed in range(20):
        got = float(list_mle_loss(s, strict, generator=torch.Generator().manual_seed(seed)))
        assert got == pytest.approx(ref)
    tied = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    seen = {round(float(list_mle_loss(s, tied, generator=torch.Generator().manual_seed(i))), 6) for i in range(40)}
    assert seen == {round(ref, 6), round(math.log(1 + math.exp(-3.0)), 6)}  # both orders occur


def test_soft_spearman_matches_scipy_with_tied_labels():
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(3)
    s = torch.randn(1, 9, dtype=torch.float64, generator=g)
    r = torch.tensor([[0.0, 1.0, 1.0, 2.0, 0.0, 3.0, 1.0, 2.0, 0.0]], dtype=torch.float64)
    rho = scipy_stats.spearmanr(s[0].numpy(), r[0].numpy()).statistic
    assert float(soft_spearman_loss(s, r, temperature=1e-4)) == pytest.approx(1 - rho, abs=1e-6)


def _lambda_loss_loop(s, r, mu=10.0, sigma=1.0):
    """Wang et al. 2018 NDCG-Loss2++ with explicit loops over the pairs of one list."""
    n = len(s)
    order = sorted(range(n), key=lambda i: -s[i])
    rank = {item: pos + 1 for pos, item in enumerate(order)}
    ideal = sorted(r, reverse=True)
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    disc = lambda x: 1 / math.log2(1 + x)  # noqa: E731
    total = 0.0
    for i in range(n):
        for j in range(n):
            if r[i] <= r[j]:
                continue
            gap = abs(rank[i] - rank[j])
            delta = abs(disc(gap) - disc(gap + 1))
            rho = abs(disc(rank[i]) - disc(rank[j]))
            weight = (rho + mu * delta) * abs((2 ** r[i] - 2 ** r[j]) / idcg)
            total += -weight * math.log2(1 / (1 + math.exp(-sigma * (s[i] - s[j]))))
    return total


@pytest.mark.parametrize("seed", range(3))
def test_lambda_loss_matches_loop(seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(1, 6, dtype=torch.float64, generator=g)
    r = torch.randint(0, 4, (1, 6), generator=g).to(torch.float64)
    ref = _lambda_loss_loop(s[0].tolist(), r[0].tolist())
    assert float(lambda_loss(s, r)) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_approx_ndcg_matches_loop():
    g = torch.Generator().manual_seed(4)
    s = torch.randn(1, 5, dtype=torch.float64, generator=g)
    r = torch.tensor([[0.0, 3.0, 1.0, 0.0, 2.0]], dtype=torch.float64)
    t = 0.7
    sv, rv = s[0].tolist(), r[0].tolist()
    dcg = 0.0
    for i in range(5):
        rank = 1 + sum(1 / (1 + math.exp(-(sv[j] - sv[i]) / t)) for j in range(5) if j != i)
        dcg += (2 ** rv[i] - 1) / math.log2(1 + rank)
    idcg = sum((2**x - 1) / math.log2(i + 2) for i, x in enumerate(sorted(rv, reverse=True)))
    assert float(approx_ndcg_loss(s, r, temperature=t)) == pytest.approx(1 - dcg / idcg, rel=1e-9)


def test_masked_gradients_are_zero_and_finite():
    s = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    r = torch.randint(0, 3, (2, 5)).to(torch.float64)
    m = torch.tensor([[True, True, False, True, False], [False] * 5])
    for loss in ALL:
        s.grad = None
        loss(s, r, m).backward()
        assert torch.isfinite(s.grad).all(), loss.__name__
        assert float(s.grad[~m].abs().sum()) == 0.0, loss.__name__


def test_argument_errors():
    s, r = torch.randn(1, 3), torch.tensor([[1.0, -1.0, 0.0]])
    for loss in (approx_ndcg_loss, lambda_loss, neural_ndcg_loss):
        with pytest.raises(ValueError, match="relevance must be >= 0"):
            loss(s, r)
    with pytest.raises(ValueError, match="mu must be"):
        lambda_loss(s, r.abs(), mu=-1.0)
    with pytest.raises(ValueError, match="sinkhorn_iters"):
        neural_ndcg_loss(s, r.abs(), sinkhorn_iters=-1)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        list_net_loss(s, r, torch.ones(1, 3))
    for loss in (approx_ndcg_loss, neural_ndcg_loss):  # k=0 gave a loss of 0 for every row
        with pytest.raises(ValueError, match="k must be >= 1"):
            loss(s, r.abs(), k=0)
        with pytest.raises(TypeError, match="k must be an int"):
            loss(s, r.abs(), k=2.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="k must be an int"):
            loss(s, r.abs(), k=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("loss", [approx_ndcg_loss, neural_ndcg_loss, lambda_loss, soft_spearman_loss])
def test_half_precision_rows_with_nothing_to_rank_give_finite_gradients(loss):
    # an all-zero relevance row (no gain) and an all-tied row: 1e-12 clamps are 0 in float16, and
    # 0 / 0 on such rows made NaN gradients (review 2026-12-02)
    s = torch.randn(3, 5, dtype=torch.float16, requires_grad=True)
    r = torch.tensor([[2.0, 0.0, 1.0, 0.0, 3.0], [0.0] * 5, [1.0] * 5], dtype=torch.float16)
    out = loss(s, r, reduction="none")
    assert bool(torch.isfinite(out).all())
    out.sum().backward()
    assert s.grad is not None and bool(torch.isfinite(s.grad).all())
    # the no-gain row has nothing to rank (the tied row still has a gradient under the NDCG
    # relaxations, whose approximate NDCG of a tied list is not exactly 1)
    assert float(s.grad[1].abs().sum()) == 0.0 and float(out[1].detach().abs()) == 0.0


def test_soft_spearman_leaves_out_rows_whose_labels_are_all_tied():
    s = torch.tensor([[0.3, -1.0, 2.0], [0.5, 0.1, -0.2]])
    r = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    per_row = soft_spearman_loss(s, r, reduction="none")
    assert float(per_row[1]) == 0.0  # was a constant 1.0, and averaged into the mean
    torch.testing.assert_close(soft_spearman_loss(s, r), per_row[0])


def test_info_nce_hard_negatives_match_loop():
    from rag_relax_plugins.core.contrastive import info_nce

    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 4, generator=g, dtype=torch.float64)
    d = torch.randn(3, 3, 4, generator=g, dtype=torch.float64)  # positive + 2 hard negatives
    cands, t, ref = d.reshape(9, 4), 0.3, 0.0
    for i in range(3):
        logits = [float(q[i] @ c) / t for c in cands]
        ref += math.log(sum(math.exp(x) for x in logits)) - logits[3 * i]
    assert float(info_nce(q, d, temperature=t, similarity="dot")) == pytest.approx(ref / 3, rel=1e-12)


def test_triplet_zero_distance_has_finite_gradient_and_margin_is_checked():
    from rag_relax_plugins.core.contrastive import triplet_margin

    a = torch.zeros(2, 3, requires_grad=True)
    triplet_margin(a, torch.zeros(2, 3), torch.ones(2, 3), margin=5.0).backward()
    assert torch.isfinite(a.grad).all()
    with pytest.raises(ValueError, match="margin must be"):
        triplet_margin(a, a, a, margin=float("nan"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_soft_spearman_constant_scores_give_loss_one_and_the_limit_gradient(dtype):
    # constant scores (a zero-initialised head) made the soft ranks constant and the correlation
    # 0 / 0: NaN loss and gradient, which a "mean" spread over the whole batch (review 2026-12-02)
    t, n = 0.1, 4
    s = torch.tensor([[0.3, -1.0, 2.0, 0.5], [0.0] * 4, [0.7] * 4], dtype=dtype, requires_grad=True)
    r = torch.tensor([[2.0, 0.0, 1.0, 3.0], [0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 1.0, 1.0]], dtype=dtype)
    per_row = soft_spearman_loss(s, r, temperature=t, reduction="none")
    assert per_row[1:].tolist() == [1.0, 1.0]  # correlation 0
    per_row.sum().backward()
    # at equal scores d soft_rank_i / d s_k = sigmoid'(0) / T * (1 - n [i = k]), so the gradient of
    # -<a, b> / (|a| |b|), with |a| read as 1, is n / (4 T) * b / |b| (b: centred label ranks,
    # rank 1 = most relevant; Spearman's average rank for the tie)
    for row, b in ((1, [1.5, 0.5, -0.5, -1.5]), (2, [-1.5, 1.5, 0.0, 0.0])):
        bt = torch.tensor(b, dtype=torch.float64)
        expected = n / (4 * t) * bt / bt.norm()
        torch.testing.assert_close(s.grad[row].double(), expected, atol=0, rtol=2e-3)
    # the non-constant row is untouched by its neighbours
    s0 = s.detach()[:1].clone().requires_grad_(True)
    alone = soft_spearman_loss(s0, r[:1], temperature=t, reduction="none")
    alone.sum().backward()
    assert float(per_row[0].detach()) == float(alone[0].detach()) and torch.equal(s.grad[0], s0.grad[0])
    mean = soft_spearman_loss(s.detach(), r, temperature=t)
    torch.testing.assert_close(mean, (alone[0].detach() + 2.0) / 3)
